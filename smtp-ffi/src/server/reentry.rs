//! Which server's callbacks are running on this thread: how `smtpx_server_stop` and
//! `smtpx_server_free` tell that they were called from inside one of the server's own
//! callbacks, where waiting for the server's connections would wait for the caller
//! itself, forever.
//!
//! Every server gets a token (never 0) when it starts; a connection thread holds an
//! [`Inside`] guard with that token while it runs a handler or log callback of the
//! server. Nested guards (a callback that drives another server) restore the outer one.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The token of the server whose callback runs on this thread; 0 for none.
    static RUNNING: Cell<u64> = const { Cell::new(0) };
}

/// A fresh server token.
pub(crate) fn new_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Marks this thread as running a callback of server `token` until dropped.
#[derive(Debug)]
#[must_use]
pub(crate) struct Inside {
    previous: u64,
}

impl Inside {
    pub(crate) fn enter(token: u64) -> Inside {
        Inside {
            previous: RUNNING.with(|r| r.replace(token)),
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        RUNNING.with(|r| r.set(self.previous));
    }
}

/// Whether this thread is running a callback of server `token` right now.
pub(crate) fn is_inside(token: u64) -> bool {
    token != 0 && RUNNING.with(Cell::get) == token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_marks_its_server_until_dropped_and_nests() {
        let (a, b) = (new_token(), new_token());
        assert!(!is_inside(a) && !is_inside(0));
        {
            let _outer = Inside::enter(a);
            assert!(is_inside(a) && !is_inside(b));
            {
                let _inner = Inside::enter(b);
                assert!(is_inside(b) && !is_inside(a));
            }
            assert!(is_inside(a));
            // Other threads are not marked.
            assert!(!std::thread::spawn(move || is_inside(a)).join().unwrap());
        }
        assert!(!is_inside(a));
    }
}
