//! The tokio server's phase (serving, then stopping, then cut) as its connections wait
//! for it while they wait for input.
//!
//! perf: a connection waits for input once per command, and must wake if the server
//! moves on meanwhile. A `tokio::sync::watch` wait, set up and torn down at every read,
//! was 6 % of the C server's user time under S1 (smtp-source, four reads per message),
//! and a wait kept for the connection's life still locked the channel's waiter list at
//! every poll. Here the phase is one atomic word, and each connection has one waker slot
//! of its own, registered with the server once: a read's wait costs an atomic load and
//! an uncontended lock of that slot; moving the phase on wakes every slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Where the server is in its life; it only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum Phase {
    Serving = 0,
    /// Stop accepting, 421 at each connection's next idle moment.
    Stopping = 1,
    /// After the grace period: drop every connection.
    Cut = 2,
}

impl Phase {
    fn from_word(word: u8) -> Phase {
        match word {
            0 => Phase::Serving,
            1 => Phase::Stopping,
            _ => Phase::Cut,
        }
    }
}

type Slot = Mutex<Option<Waker>>;

/// The phase and the connections waiting for it to move.
#[derive(Debug, Default)]
pub(super) struct PhaseBell {
    phase: AtomicU8,
    /// One slot per listener, by a key of its own.
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_key: AtomicU64,
}

impl PhaseBell {
    /// The phase now.
    pub(super) fn get(&self) -> Phase {
        Phase::from_word(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase` unless the server is there or further already, and wakes every
    /// connection waiting. True when it moved.
    pub(super) fn advance(&self, phase: Phase) -> bool {
        let before = self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        if before >= phase as u8 {
            return false;
        }
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in slots.values() {
            let waker = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        true
    }

    /// Registers a listener (a connection, an accept loop); the registration ends when
    /// it is dropped.
    pub(super) fn listen(&self) -> PhaseListener<'_> {
        let id = self.next_key.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Mutex::new(None));
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&slot));
        PhaseListener {
            bell: self,
            id,
            slot,
        }
    }
}

/// One connection's registration with the [`PhaseBell`].
pub(super) struct PhaseListener<'a> {
    bell: &'a PhaseBell,
    id: u64,
    slot: Arc<Slot>,
}

impl PhaseListener<'_> {
    /// Ready with the phase once it is no longer `seen`; until then the task is woken
    /// when it moves.
    pub(super) fn poll_moved(&self, cx: &mut Context<'_>, seen: Phase) -> Poll<Phase> {
        let now = self.bell.get();
        if now != seen {
            return Poll::Ready(now);
        }
        {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // Again after registering: `advance` stores the phase before it wakes the slots,
        // so a move between the first look and the registration is seen here.
        let now = self.bell.get();
        if now != seen {
            Poll::Ready(now)
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the phase is no longer `seen`.
    pub(super) fn moved(&self, seen: Phase) -> Moved<'_, '_> {
        Moved {
            listener: self,
            seen,
        }
    }
}

impl Drop for PhaseListener<'_> {
    fn drop(&mut self) {
        self.bell
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The future of [`PhaseListener::moved`].
pub(super) struct Moved<'l, 'b> {
    listener: &'l PhaseListener<'b>,
    seen: Phase,
}

impl Future for Moved<'_, '_> {
    type Output = Phase;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Phase> {
        self.listener.poll_moved(cx, self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_connection_is_woken_once_per_move_and_sees_the_new_phase() {
        let bell = PhaseBell::default();
        let listener = bell.listen();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(listener.poll_moved(&mut cx, Phase::Serving), Poll::Pending);
        assert!(bell.advance(Phase::Stopping));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            listener.poll_moved(&mut cx, Phase::Serving),
            Poll::Ready(Phase::Stopping)
        );
        // Not registered again: the next move wakes nobody until it polls again.
        assert!(bell.advance(Phase::Cut));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            listener.poll_moved(&mut cx, Phase::Stopping),
            Poll::Ready(Phase::Cut)
        );
    }

    #[test]
    fn the_phase_only_moves_forward() {
        let bell = PhaseBell::default();
        assert!(bell.advance(Phase::Cut));
        assert!(!bell.advance(Phase::Stopping));
        assert!(!bell.advance(Phase::Cut));
        assert_eq!(bell.get(), Phase::Cut);
    }

    #[test]
    fn a_dropped_listener_leaves_no_slot() {
        let bell = PhaseBell::default();
        let one = bell.listen();
        let two = bell.listen();
        drop(one);
        assert_eq!(bell.slots.lock().unwrap().len(), 1);
        drop(two);
        assert!(bell.slots.lock().unwrap().is_empty());
    }
}
