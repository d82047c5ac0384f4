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
//! So a thread looks every tick whether some hook has held its worker for a whole tick
//! (hooks held, none entered or left since the last look), and then wakes a free worker
//! by spawning an empty task on the runtime; that worker steals the queue and, once
//! idle, parks on the I/O driver. One such kick per state of the hooks in place is
//! enough (the woken worker then goes on as tokio's workers do), so a hook that never
//! returns costs the watchdog's tick and nothing more. A hook that blocks therefore
//! delays the other connections by one or two ticks, against a hand-over of the thread
//! for every hook with `block_in_place` (which cost more than the rest of a message with
//! a trivial C callback, see `bench/README.md`).
//!
//! The tick is [`TICK`] for [`ALERT`] after a hook was last caught holding its worker,
//! and [`CALM_TICK`] otherwise: the watchdog wakes on the servers' CPUs at every tick, and
//! at a millisecond that cost the C server more than 1 % of its CPU per message under
//! load, spent looking at hooks that never block. So the first hook to block in a while
//! delays the others by up to two calm ticks, and those that block after it by a
//! millisecond or two.
//!
//! # The worker in reserve
//!
//! A runtime with more workers than CPUs (the C library's servers keep two workers even on
//! one CPU, so that one can be spared) pays for its spare while no hook blocks: tokio
//! wakes a parked worker whenever more than one task is ready, and the two then take
//! turns on the one CPU, with a thread switch every few messages. So while no hook holds a
//! worker for long, one worker waits *in reserve*: the watchdog spawns a task that blocks
//! its worker on a condition variable. tokio counts that worker as busy and stops waking
//! it, so the others run as a runtime of one worker fewer would. The watchdog lets it go
//! as soon as a hook has held another worker for a tick (the same look that kicks a free
//! worker), and sends one back to the reserve once no hook has needed it for
//! [`REARM`]. A worker stays there at most [`LEASE`] at a time, so a runtime dropped while
//! the server still lives is not held up longer than that.
//!
//! What it cannot reach is a worker's LIFO slot, which tokio does not let other workers
//! steal: a task woken *from the hook itself* (a `tokio::spawn`, a send on a tokio
//! channel to a task of this runtime) waits there until the hook returns, and a hook that
//! then waits for that task deadlocks. Hence the mode is for hooks that never wake a task
//! of the runtime they are served on, such as the C library's callbacks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How often the watchdog looks while hooks block ([`ALERT`]): the longest such a hook
/// delays other connections before they move to another worker is about two of these.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How often the watchdog looks while no hook has been caught holding its worker for
/// [`ALERT`].
const CALM_TICK: Duration = Duration::from_millis(5);

/// How long after a hook was last caught holding its worker the watchdog looks every
/// [`TICK`].
const ALERT: Duration = Duration::from_secs(1);

/// Ticks without any hook in place after which the watchdog sleeps until the next one.
const IDLE_TICKS: u32 = 200;

/// The longest the watchdog sleeps while no hook runs in place.
const QUIET: Duration = Duration::from_secs(1);

/// How long no hook must have held a worker for a tick before one goes back to the
/// reserve.
const REARM: Duration = Duration::from_millis(100);

/// The longest a worker waits in the reserve at a time; the watchdog then sends one
/// back (at its next look).
const LEASE: Duration = Duration::from_secs(1);

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
    /// With more workers than CPUs: the worker kept out of tokio's way.
    reserve: Option<Reserve>,
    /// The longest a worker waits in the reserve at a time ([`LEASE`]).
    lease: Duration,
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
    /// One worker waits in reserve while idle when there are more workers than CPUs.
    pub(crate) fn start(
        workers: usize,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Option<Arc<SpareWorkers>>> {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::start_with(workers, workers > cpus, LEASE, runtime)
    }

    /// [`start`](Self::start), saying whether a worker waits in reserve, and for how long
    /// at most at a time.
    fn start_with(
        workers: usize,
        reserve: bool,
        lease: Duration,
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
            reserve: reserve.then(Reserve::default),
            lease,
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
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake_watchdog();
        }
        Some(HeldWorker(self))
    }

    /// Lets the worker in reserve go for good and sends none back: the server is
    /// stopping, and the runtime must be able to end.
    pub(crate) fn close(&self) {
        if let Some(reserve) = &self.reserve {
            reserve.set(State::Closed);
        }
    }

    fn wake_watchdog(&self) {
        if let Some(thread) = self.watchdog.get() {
            thread.unpark();
        }
    }

    /// The reserve task's body, on the worker that took it: waits until let go, for at
    /// most its lease.
    fn wait_in_reserve(&self) {
        let Some(reserve) = &self.reserve else { return };
        let mut state = reserve.lock();
        // A hook holding another worker now would leave none free: stay out.
        if *state != State::Sent || self.held.load(Ordering::SeqCst) > 0 {
            if *state == State::Sent {
                *state = State::Free;
            }
            return;
        }
        *state = State::Holding;
        // This worker may have been the one polling the I/O driver: have the watchdog
        // wake a parked worker, which polls it once idle.
        reserve.kick.store(true, Ordering::SeqCst);
        self.wake_watchdog();
        let until = Instant::now() + self.lease;
        while *state == State::Holding {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                *state = State::Free;
                break;
            }
            state = reserve
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for SpareWorkers {
    fn drop(&mut self) {
        // The watchdog sees the count gone at its next look; wake it if it sleeps long.
        self.wake_watchdog();
    }
}

/// The worker in reserve (see the module's documentation).
#[derive(Debug, Default)]
struct Reserve {
    state: Mutex<State>,
    wake: Condvar,
    /// Set by a worker entering the reserve: the watchdog wakes a parked worker.
    kick: AtomicBool,
}

/// Where the reserve is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No worker there; the watchdog may send one.
    #[default]
    Free,
    /// The watchdog has spawned the reserve task; no worker has taken it yet.
    Sent,
    /// A worker waits there.
    Holding,
    /// The server is stopping: no worker goes there any more.
    Closed,
}

impl Reserve {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` (unless closed) and lets a waiting worker go.
    fn set(&self, to: State) {
        let mut state = self.lock();
        if *state != State::Closed {
            *state = to;
        }
        drop(state);
        self.wake.notify_all();
    }
}

/// Wakes a parked worker: a task spawned from outside the runtime goes to its shared
/// queue and unparks one, which steals from the others' queues and, once idle, polls the
/// I/O driver.
fn kick(runtime: &tokio::runtime::Handle) {
    drop(runtime.spawn(async {}));
}

/// The watchdog's tick at `now`, the last kick (a hook caught holding its worker) given.
fn tick_after(last_kick: Option<Instant>, now: Instant) -> Duration {
    match last_kick {
        Some(at) if now.saturating_duration_since(at) < ALERT => TICK,
        _ => CALM_TICK,
    }
}

/// Wakes a free worker whenever a hook has held its worker for a whole tick, and keeps a
/// worker in reserve while none has; ends with the server (when the last
/// [`Arc<SpareWorkers>`] is dropped).
fn watchdog(spare: &Weak<SpareWorkers>, runtime: &tokio::runtime::Handle) {
    let mut last_turns = u64::MAX;
    let mut kicked_at = u64::MAX;
    // None until the first kick: a worker goes to the reserve at once.
    let mut last_kick: Option<Instant> = None;
    let mut idle = 0u32;
    let mut tick = CALM_TICK;
    let mut looked_at = Instant::now();
    loop {
        let Some(s) = spare.upgrade() else { return };
        let since = looked_at.elapsed();
        if since < tick {
            // Woken before the tick's end (by a worker entering the reserve, or by the
            // server's end): only that. A hook's hold is judged over whole ticks.
            if let Some(reserve) = &s.reserve
                && reserve.kick.swap(false, Ordering::SeqCst)
            {
                kick(runtime);
            }
            drop(s);
            std::thread::park_timeout(tick - since);
            continue;
        }
        looked_at = Instant::now();
        let held = s.held.load(Ordering::Acquire);
        let turns = s.turns.load(Ordering::Relaxed);
        if held > 0 && turns == last_turns && turns != kicked_at {
            // A hook has held its worker for a tick: let the reserve go and wake a free
            // worker. Once per state of the hooks in place: after that the woken worker
            // goes on as tokio's workers do, and only a hook entering or leaving changes
            // things.
            if let Some(reserve) = &s.reserve {
                let mut state = reserve.lock();
                if matches!(*state, State::Sent | State::Holding) {
                    *state = State::Free;
                }
                drop(state);
                reserve.wake.notify_all();
            }
            kick(runtime);
            kicked_at = turns;
            last_kick = Some(Instant::now());
        }
        if let Some(reserve) = &s.reserve {
            if reserve.kick.swap(false, Ordering::SeqCst) {
                kick(runtime);
            }
            if held == 0 && last_kick.is_none_or(|at| at.elapsed() >= REARM) {
                let mut state = reserve.lock();
                if *state == State::Free {
                    *state = State::Sent;
                    drop(state);
                    let weak = Weak::clone(spare);
                    drop(runtime.spawn(async move {
                        if let Some(s) = weak.upgrade() {
                            s.wait_in_reserve();
                        }
                    }));
                }
            }
        }
        idle = if held == 0 && turns == last_turns {
            idle.saturating_add(1)
        } else {
            0
        };
        last_turns = turns;
        if idle < IDLE_TICKS {
            drop(s);
            tick = tick_after(last_kick, Instant::now());
            // Parked rather than asleep: a worker entering the reserve wakes the watchdog
            // at once, to kick a parked worker into polling the I/O driver.
            std::thread::park_timeout(tick);
            continue;
        }
        // Quiet: sleep until a hook enters (it unparks), checking the flag after setting
        // it so that a hook entering meanwhile is not missed. Waking at least every
        // [`QUIET`] sends a worker back to the reserve after its lease.
        s.sleeping.store(true, Ordering::SeqCst);
        let quiet = s.held.load(Ordering::SeqCst) == 0;
        drop(s);
        if quiet {
            std::thread::park_timeout(QUIET);
        }
        if let Some(s) = spare.upgrade() {
            s.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::thread::ThreadId;

    /// A lease longer than any test: a worker leaves the reserve only when let go.
    const LONG: Duration = Duration::from_secs(60);

    fn runtime(workers: usize) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    }

    fn state(spare: &SpareWorkers) -> State {
        *spare.reserve.as_ref().unwrap().lock()
    }

    /// Waits (bounded) until the reserve is in `want`.
    fn wait_for(spare: &SpareWorkers, want: State, within: Duration) {
        let until = Instant::now() + within;
        while state(spare) != want {
            assert!(
                Instant::now() < until,
                "the reserve stayed {:?}",
                state(spare)
            );
            std::thread::sleep(TICK);
        }
    }

    /// The threads that ran `n` tasks spawned from outside the runtime.
    fn threads_running(rt: &tokio::runtime::Runtime, n: usize) -> HashSet<ThreadId> {
        let (tx, rx) = mpsc::channel();
        for _ in 0..n {
            let tx = tx.clone();
            rt.spawn(async move { tx.send(std::thread::current().id()).unwrap() });
        }
        (0..n)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect()
    }

    #[test]
    fn one_worker_waits_in_reserve_and_the_other_runs_every_task() {
        let rt = runtime(2);
        // A long lease: the worker does not leave the reserve on its own during the test.
        let spare = SpareWorkers::start_with(2, true, LONG, rt.handle().clone())
            .unwrap()
            .unwrap();
        wait_for(&spare, State::Holding, Duration::from_secs(2));
        // tokio counts the worker in reserve as busy: every task runs on the other one.
        assert_eq!(threads_running(&rt, 200).len(), 1);
        // And the I/O driver is polled by it (it may have been the reserve's worker's).
        let ran = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
            tokio::time::timeout(Duration::from_secs(2), async {
                let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
                accept.await.unwrap()
            })
            .await
        });
        assert!(matches!(ran, Ok(Ok(()))), "{ran:?}");
        // As a stopping server does, so that the runtime can end.
        spare.close();
    }

    #[test]
    fn a_hook_held_for_a_tick_lets_the_reserve_go_and_it_comes_back_after() {
        let rt = runtime(2);
        let spare = SpareWorkers::start_with(2, true, LONG, rt.handle().clone())
            .unwrap()
            .unwrap();
        wait_for(&spare, State::Holding, Duration::from_secs(2));
        // A hook in place on the only free worker, blocking for a long while.
        let (entered_tx, entered) = mpsc::channel();
        let hook = {
            let spare = Arc::clone(&spare);
            rt.spawn(async move {
                let held = spare.take().expect("a worker to spare");
                entered_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(600));
                drop(held);
            })
        };
        entered.recv_timeout(Duration::from_secs(2)).unwrap();
        // Another task still runs, well before the hook returns: the reserve's worker.
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        rt.spawn(async move { tx.send(()).unwrap() });
        rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "the task waited {:?} for the hook",
            started.elapsed()
        );
        assert_ne!(state(&spare), State::Holding);
        rt.block_on(hook).unwrap();
        // No hook holds a worker any more: one goes back to the reserve.
        wait_for(&spare, State::Holding, REARM + Duration::from_secs(2));
        spare.close();
    }

    #[test]
    fn the_watchdog_looks_every_millisecond_only_for_a_while_after_a_hook_blocked() {
        let now = Instant::now();
        assert_eq!(tick_after(None, now), CALM_TICK);
        assert_eq!(tick_after(Some(now), now), TICK);
        assert_eq!(tick_after(Some(now), now + ALERT / 2), TICK);
        assert_eq!(tick_after(Some(now), now + ALERT), CALM_TICK);
        assert!(TICK < CALM_TICK && CALM_TICK * 2 <= Duration::from_millis(10));
    }

    #[test]
    fn a_closed_reserve_lets_its_worker_go_and_the_runtime_end_at_once() {
        let rt = runtime(2);
        let spare = SpareWorkers::start_with(2, true, LONG, rt.handle().clone())
            .unwrap()
            .unwrap();
        wait_for(&spare, State::Holding, Duration::from_secs(2));
        spare.close();
        assert_eq!(state(&spare), State::Closed);
        let started = Instant::now();
        rt.shutdown_timeout(Duration::from_secs(5));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the runtime took {:?} to end",
            started.elapsed()
        );
        // And none goes back.
        std::thread::sleep(REARM + 10 * TICK);
        assert_eq!(state(&spare), State::Closed);
    }

    #[test]
    fn a_runtime_dropped_while_the_server_lives_waits_one_lease_at_most() {
        let rt = runtime(2);
        let lease = Duration::from_millis(100);
        let spare = SpareWorkers::start_with(2, true, lease, rt.handle().clone())
            .unwrap()
            .unwrap();
        wait_for(&spare, State::Holding, Duration::from_secs(2));
        // Not closed: the reserve's worker leaves when its lease ends.
        let started = Instant::now();
        rt.shutdown_timeout(Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the runtime took {:?} to end",
            started.elapsed()
        );
        drop(spare);
    }

    #[test]
    fn no_reserve_without_more_workers_than_cpus() {
        let rt = runtime(2);
        let spare = SpareWorkers::start_with(2, false, LONG, rt.handle().clone())
            .unwrap()
            .unwrap();
        assert!(spare.reserve.is_none());
        let one = SpareWorkers::start_with(1, true, LONG, rt.handle().clone()).unwrap();
        assert!(one.is_none(), "one worker has none to spare");
    }
}
