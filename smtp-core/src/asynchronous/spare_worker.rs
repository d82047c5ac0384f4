//! Hooks that may block, run on their worker thread while another worker stays free
//! ([`BlockingHooks::SpareWorker`](super::server::BlockingHooks::SpareWorker)).
//!
//! A hook run in place holds its worker for as long as it runs. That is safe while some
//! other worker is free to serve the rest, so [`SpareWorkers`] counts the workers held
//! and lets a hook in only while fewer than all but one are; the others go through
//! `block_in_place` as before. Two things of tokio's scheduler still depend on the held
//! worker, and the [watchdog] takes care of them:
//!
//! - the I/O driver: the worker that last polled it may be the one now held, and the
//!   free workers sleep on a condition variable without polling it, so no socket becomes
//!   ready for anyone until a worker parks again;
//! - the held worker's run queue: the free workers take from it only when they look for
//!   work, which they do when woken.
//!
//! So a thread checks every [`TICK`] whether some hook has held its worker for a whole
//! tick (hooks held, none entered or left since the last look), and then wakes a free
//! worker by spawning an empty task on the runtime; that worker steals the queue and, once
//! idle, parks on the I/O driver. One such kick per state of the hooks in place is
//! enough (the woken worker then goes on as tokio's workers do), so a hook that never
//! returns costs the watchdog's tick and nothing more. A hook that blocks therefore delays the other
//! connections by one or two ticks, against a hand-over of the thread for every hook
//! with `block_in_place` (which cost more than the rest of a message with a trivial C
//! callback, see `bench/README.md`).
//!
//! What it cannot reach is a worker's LIFO slot, which tokio does not let other workers
//! steal: a task woken *from the hook itself* (a `tokio::spawn`, a send on a tokio
//! channel to a task of this runtime) waits there until the hook returns, and a hook that
//! then waits for that task deadlocks. Hence the mode is for hooks that never wake a task
//! of the runtime they are served on, such as the C library's callbacks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

/// How often the watchdog looks: the longest a blocked hook delays other connections
/// before they move to another worker is about two of these.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Ticks without any hook in place after which the watchdog sleeps until the next one.
const IDLE_TICKS: u32 = 200;

/// The workers held by hooks that run in place, and their watchdog.
#[derive(Debug)]
pub(crate) struct SpareWorkers {
    held: AtomicUsize,
    /// How many may be held at once: the runtime's workers minus one.
    max: usize,
    /// Entries into and exits from hooks in place: the watchdog's sign of progress.
    turns: AtomicU64,
    /// Set while the watchdog sleeps past its tick; the next hook in place wakes it.
    sleeping: AtomicBool,
    watchdog: OnceLock<Thread>,
}

/// A worker held by a hook in place; gives it back when dropped (a panicking hook too).
pub(crate) struct HeldWorker<'a>(&'a SpareWorkers);

impl Drop for HeldWorker<'_> {
    fn drop(&mut self) {
        self.0.turns.fetch_add(1, Ordering::Relaxed);
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SpareWorkers {
    /// Counts for a runtime of `workers` worker threads and starts the watchdog; `None`
    /// when there is no worker to spare (one worker: every hook needs `block_in_place`).
    pub(crate) fn start(
        workers: usize,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Option<Arc<SpareWorkers>>> {
        if workers < 2 {
            return Ok(None);
        }
        let spare = Arc::new(SpareWorkers {
            held: AtomicUsize::new(0),
            max: workers - 1,
            turns: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            watchdog: OnceLock::new(),
        });
        let weak = Arc::downgrade(&spare);
        let thread = std::thread::Builder::new()
            .name("smtpx-watchdog".into())
            .spawn(move || watchdog(&weak, &runtime))?;
        let _ = spare.watchdog.set(thread.thread().clone());
        Ok(Some(spare))
    }

    /// Holds a worker for a hook in place, if another stays free.
    pub(crate) fn take(&self) -> Option<HeldWorker<'_>> {
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        self.turns.fetch_add(1, Ordering::Relaxed);
        if self.sleeping.load(Ordering::SeqCst)
            && let Some(thread) = self.watchdog.get()
        {
            thread.unpark();
        }
        Some(HeldWorker(self))
    }
}

impl Drop for SpareWorkers {
    fn drop(&mut self) {
        // The watchdog sees the count gone at its next look; wake it if it sleeps long.
        if let Some(thread) = self.watchdog.get() {
            thread.unpark();
        }
    }
}

/// Wakes a free worker whenever a hook has held its worker for a whole tick; ends with
/// the server (when the last [`Arc<SpareWorkers>`] is dropped).
fn watchdog(spare: &Weak<SpareWorkers>, runtime: &tokio::runtime::Handle) {
    let mut last_turns = u64::MAX;
    let mut kicked_at = u64::MAX;
    let mut idle = 0u32;
    loop {
        let Some(s) = spare.upgrade() else { return };
        let held = s.held.load(Ordering::Acquire);
        let turns = s.turns.load(Ordering::Relaxed);
        if held > 0 && turns == last_turns && turns != kicked_at {
            // Wakes a parked worker (a task spawned from outside the runtime goes to
            // its shared queue and unparks one), which steals and then polls the driver.
            // Once per state of the hooks in place: after that the woken worker goes on
            // as tokio's workers do, and only a hook entering or leaving changes things.
            drop(runtime.spawn(async {}));
            kicked_at = turns;
        }
        last_turns = turns;
        idle = if held == 0 { idle + 1 } else { 0 };
        if idle < IDLE_TICKS {
            drop(s);
            std::thread::sleep(TICK);
            continue;
        }
        // Quiet: sleep until a hook enters (it unparks), checking the flag after setting
        // it so that a hook entering meanwhile is not missed.
        s.sleeping.store(true, Ordering::SeqCst);
        let quiet = s.held.load(Ordering::SeqCst) == 0;
        drop(s);
        if quiet {
            std::thread::park_timeout(Duration::from_secs(1));
        }
        if let Some(s) = spare.upgrade() {
            s.sleeping.store(false, Ordering::SeqCst);
        }
        idle = 0;
    }
}
