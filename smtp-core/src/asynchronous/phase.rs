//! The tokio server's phase (serving, then stopping, then cut) as its connections wait
//! for it while they wait for input.
//!
//! perf: a connection waits for input once per command, and must wake if the server
//! moves on meanwhile. A `tokio::sync::watch` wait, set up and torn down at every read,
//! was 6 % of the C server's user time under S1 (smtp-source, four reads per message),
//! and a wait kept for the connection's life still locked the channel's waiter list at
//! every poll. Here the phase is one atomic word, and each connection has one waker slot
//! of its own, registered with the server once and left there until the phase moves: a
//! read's wait costs three atomic loads (the phase, whether the slot is still armed, and
//! which waker armed it) and no lock; moving the phase on wakes every slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
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

/// One listener's waker, and whether it is still there (`advance` takes it).
#[derive(Debug, Default)]
struct Slot {
    waker: Mutex<Option<Waker>>,
    /// True from the registration of a waker until `advance` takes it; written under the
    /// `waker` lock, read without it.
    armed: AtomicBool,
}

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
            let waker = {
                let mut waker = slot.waker.lock().unwrap_or_else(PoisonError::into_inner);
                slot.armed.store(false, Ordering::Release);
                waker.take()
            };
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
        let slot = Arc::new(Slot::default());
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&slot));
        PhaseListener {
            bell: self,
            id,
            slot,
            armed_by: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }
}

/// One connection's registration with the [`PhaseBell`].
pub(super) struct PhaseListener<'a> {
    bell: &'a PhaseBell,
    id: u64,
    slot: Arc<Slot>,
    /// The data and vtable pointers of the waker last put in the slot (what
    /// [`Waker::will_wake`] compares), written only by the listener's own polls.
    armed_by: [AtomicUsize; 2],
}

/// A waker's identity, as [`Waker::will_wake`] sees it.
fn identity(waker: &Waker) -> [usize; 2] {
    [
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    ]
}

impl PhaseListener<'_> {
    /// Ready with the phase once it is no longer `seen`; until then the task is woken
    /// when it moves.
    pub(super) fn poll_moved(&self, cx: &mut Context<'_>, seen: Phase) -> Poll<Phase> {
        let now = self.bell.get();
        if now != seen {
            return Poll::Ready(now);
        }
        let waker = identity(cx.waker());
        // perf: the slot still holds this very waker (the task's, which does not change):
        // nothing to register. `advance` disarms the slot before it takes the waker, and
        // stores the phase before that, so a slot seen armed here is woken later if the
        // phase moved since the look above.
        if self.slot.armed.load(Ordering::Acquire)
            && self.armed_by[0].load(Ordering::Relaxed) == waker[0]
            && self.armed_by[1].load(Ordering::Relaxed) == waker[1]
        {
            return Poll::Pending;
        }
        {
            let mut slot = self
                .slot
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(registered) if registered.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
            self.armed_by[0].store(waker[0], Ordering::Relaxed);
            self.armed_by[1].store(waker[1], Ordering::Relaxed);
            self.slot.armed.store(true, Ordering::Release);
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
    fn polls_that_find_the_slot_armed_still_see_the_move_and_a_new_waker_takes_the_slot() {
        let bell = PhaseBell::default();
        let listener = bell.listen();
        let first = Arc::new(Count(AtomicUsize::new(0)));
        let second = Arc::new(Count(AtomicUsize::new(0)));
        let first_waker = Waker::from(Arc::clone(&first));
        let second_waker = Waker::from(Arc::clone(&second));
        let mut cx = Context::from_waker(&first_waker);
        // The first poll arms the slot, the next ones find it armed by the same waker.
        for _ in 0..3 {
            assert_eq!(listener.poll_moved(&mut cx, Phase::Serving), Poll::Pending);
        }
        // Another waker (the future moved to another task) replaces it.
        let mut other = Context::from_waker(&second_waker);
        assert_eq!(
            listener.poll_moved(&mut other, Phase::Serving),
            Poll::Pending
        );
        assert!(bell.advance(Phase::Stopping));
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        // Disarmed by the move: the next wait registers again and is woken by the next.
        assert_eq!(
            listener.poll_moved(&mut other, Phase::Stopping),
            Poll::Pending
        );
        assert_eq!(
            listener.poll_moved(&mut other, Phase::Stopping),
            Poll::Pending
        );
        assert!(bell.advance(Phase::Cut));
        assert_eq!(second.0.load(Ordering::SeqCst), 2);
        assert_eq!(
            listener.poll_moved(&mut other, Phase::Stopping),
            Poll::Ready(Phase::Cut)
        );
    }

    #[test]
    fn a_move_racing_with_waits_is_never_missed() {
        // Each round: a thread moves the phase while this one waits on it, polling
        // whenever woken; the wait must end with the new phase, in bounded time.
        for _ in 0..200 {
            let bell = Arc::new(PhaseBell::default());
            let mover = {
                let bell = Arc::clone(&bell);
                std::thread::spawn(move || bell.advance(Phase::Stopping))
            };
            let got = {
                let listener = bell.listen();
                let count = Arc::new(Count(AtomicUsize::new(0)));
                let waker = Waker::from(Arc::clone(&count));
                let mut cx = Context::from_waker(&waker);
                let mut woken = 0;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    if let Poll::Ready(phase) = listener.poll_moved(&mut cx, Phase::Serving) {
                        break phase;
                    }
                    // Pending: the move is either still to come or has woken us.
                    while count.0.load(Ordering::SeqCst) == woken {
                        assert!(std::time::Instant::now() < deadline, "a move was missed");
                        std::thread::yield_now();
                    }
                    woken = count.0.load(Ordering::SeqCst);
                }
            };
            assert_eq!(got, Phase::Stopping);
            assert!(mover.join().unwrap());
        }
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
