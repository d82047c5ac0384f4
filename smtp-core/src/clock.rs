//! The drivers' clock for the engine's deadlines: time since a connection (or server)
//! started, read from the kernel's coarse monotonic clock where there is one.
//!
//! The engine is told the time at every step (a dozen times per message, on either side),
//! and a precise `clock_gettime` costs about 45 ns on a virtual machine (it reads the TSC
//! and scales it); the coarse clock returns the time of the last timer tick in about
//! 11 ns, with the tick's resolution (1-4 ms). Deadlines are seconds long, so a few
//! milliseconds either way change nothing; where a driver knows that a deadline has
//! passed (its timer fired), it says so with [`Clock::at_least`] instead of trusting the
//! coarse reading.

use std::time::{Duration, Instant};

/// Time since the start of a server or a connection.
#[derive(Debug)]
pub(crate) struct Clock {
    /// The precise start, for turning deadlines into timer instants (the tokio server's).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) epoch: Instant,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    coarse_epoch: Duration,
}

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            coarse_epoch: coarse(),
        }
    }

    /// Time since the start, within a clock tick.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn now(&self) -> Duration {
        coarse().saturating_sub(self.coarse_epoch)
    }

    /// Time since the start.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The time, known to be `deadline` or later (a timer for it fired).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the tokio server's
    pub(crate) fn at_least(&self, deadline: Duration) -> Duration {
        self.now().max(deadline)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_follows_the_precise_one_within_a_tick() {
        let clock = Clock::start();
        std::thread::sleep(Duration::from_millis(30));
        let coarse = clock.now();
        let precise = clock.epoch.elapsed();
        let apart = coarse.abs_diff(precise);
        assert!(
            apart <= Duration::from_millis(10),
            "{coarse:?} against {precise:?}"
        );
        assert!(clock.at_least(Duration::from_secs(3600)) == Duration::from_secs(3600));
    }
}
