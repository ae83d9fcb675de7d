//! Realtime scheduling for the threads that keep audio's clock (the media threads, the WebRTC
//! shards). A tick that starts late is audio that goes out late, so these threads ask the
//! kernel for a realtime policy (`SCHED_RR`, low priority) when the process may have one
//! (root or `CAP_SYS_NICE`, as Asterisk's `-p` and FreeSWITCH's `-rp` do): then nothing else
//! on the machine — signalling, the store, a load generator, a build — delays a tick while the
//! thread has work. Without permission they run as ordinary threads, as before.
//!
//! A realtime thread that never sleeps would starve everything else, the control plane
//! included (hanging up must still work). So each thread watches its own load: when it is busy
//! more than [`DEMOTE_BUSY`] of a second it returns to the ordinary policy, and only takes the
//! realtime one back after [`CALM_WINDOWS`] seconds each under [`PROMOTE_BUSY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Realtime priority asked for (1 is the lowest; kernel threads such as interrupt handlers
/// run at 50).
const PRIORITY: i32 = 10;
/// Busy fraction of a second above which a realtime thread steps down.
pub const DEMOTE_BUSY: f64 = 0.6;
/// Busy fraction under which a second counts as calm.
pub const PROMOTE_BUSY: f64 = 0.3;
/// Calm seconds in a row before a stepped-down thread is realtime again.
pub const CALM_WINDOWS: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

/// How a group of clock threads is scheduled, for `/admin/media`.
#[derive(Default)]
pub struct SchedStats {
    /// Threads running realtime now.
    pub realtime: AtomicU64,
    /// Times a thread stepped down because it was too busy.
    pub demotions: AtomicU64,
}

/// One clock thread's scheduling: create it on the thread, report its busy time.
pub struct Clock<'a> {
    stats: &'a SchedStats,
    /// Realtime was asked for and granted once (so it may be taken back after a step down).
    allowed: bool,
    realtime: bool,
    window: Instant,
    busy: Duration,
    calm: u32,
}

impl<'a> Clock<'a> {
    /// Ask for realtime scheduling for the calling thread when `wanted`.
    pub fn start(wanted: bool, name: &str, stats: &'a SchedStats) -> Clock<'a> {
        let mut c = Clock {
            stats,
            allowed: false,
            realtime: false,
            window: Instant::now(),
            busy: Duration::ZERO,
            calm: 0,
        };
        if wanted {
            match set_realtime(true) {
                Ok(()) => {
                    c.allowed = true;
                    c.realtime = true;
                    stats.realtime.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(thread = name, "realtime scheduling");
                }
                Err(e) => tracing::debug!(
                    thread = name,
                    "ordinary scheduling (realtime refused: {e}; it needs root or CAP_SYS_NICE)"
                ),
            }
        }
        c
    }

    pub fn is_realtime(&self) -> bool {
        self.realtime
    }

    /// The thread worked for `busy` (call after each piece of work, with `now` after it).
    pub fn worked(&mut self, busy: Duration, now: Instant) {
        self.busy += busy;
        let span = now.saturating_duration_since(self.window);
        if span < WINDOW {
            return;
        }
        let load = self.busy.as_secs_f64() / span.as_secs_f64();
        (self.window, self.busy) = (now, Duration::ZERO);
        if !self.allowed {
            return;
        }
        if self.realtime && load > DEMOTE_BUSY {
            if set_realtime(false).is_ok() {
                self.realtime = false;
                self.calm = 0;
                self.stats.realtime.fetch_sub(1, Ordering::Relaxed);
                self.stats.demotions.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    busy = format!("{:.0} %", load * 100.0),
                    "a media clock thread is overloaded: back to ordinary scheduling so the rest of ringside keeps running"
                );
            }
        } else if !self.realtime {
            self.calm = if load < PROMOTE_BUSY {
                self.calm + 1
            } else {
                0
            };
            if self.calm >= CALM_WINDOWS && set_realtime(true).is_ok() {
                self.realtime = true;
                self.stats.realtime.fetch_add(1, Ordering::Relaxed);
                tracing::info!("a media clock thread is realtime again");
            }
        }
    }
}

impl Drop for Clock<'_> {
    fn drop(&mut self) {
        if self.realtime {
            self.stats.realtime.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(target_os = "linux")]
fn set_realtime(on: bool) -> Result<(), std::io::Error> {
    let (policy, priority) = if on {
        (libc::SCHED_RR, PRIORITY)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: the calling thread's own handle and a parameter that lives across the call.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(r))
    }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime(_on: bool) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("not supported on this system"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        let mut policy = 0;
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: the calling thread's handle and two out-parameters that live across the call.
        unsafe { libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param) };
        policy
    }

    #[test]
    fn a_busy_clock_thread_steps_down_and_comes_back_when_calm() {
        std::thread::spawn(|| {
            let stats = SchedStats::default();
            let mut c = Clock::start(true, "test", &stats);
            if !c.is_realtime() {
                // Not permitted here (no root or CAP_SYS_NICE): the thread stays ordinary.
                assert_eq!(policy(), libc::SCHED_OTHER);
                assert_eq!(stats.realtime.load(Ordering::Relaxed), 0);
                return;
            }
            assert_eq!(policy(), libc::SCHED_RR);
            assert_eq!(stats.realtime.load(Ordering::Relaxed), 1);
            let t0 = Instant::now();
            // A second 80 % busy: it steps down.
            c.worked(Duration::from_millis(800), t0 + WINDOW);
            assert!(!c.is_realtime());
            assert_eq!(policy(), libc::SCHED_OTHER);
            assert_eq!(stats.demotions.load(Ordering::Relaxed), 1);
            assert_eq!(stats.realtime.load(Ordering::Relaxed), 0);
            // Calm seconds, one short of enough, then one busy: still ordinary.
            let mut t = t0 + WINDOW;
            for _ in 0..CALM_WINDOWS - 1 {
                t += WINDOW;
                c.worked(Duration::from_millis(100), t);
            }
            t += WINDOW;
            c.worked(Duration::from_millis(500), t);
            assert!(!c.is_realtime());
            for _ in 0..CALM_WINDOWS {
                t += WINDOW;
                c.worked(Duration::from_millis(100), t);
            }
            assert!(c.is_realtime());
            assert_eq!(policy(), libc::SCHED_RR);
            drop(c);
            assert_eq!(stats.realtime.load(Ordering::Relaxed), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn not_wanted_means_ordinary() {
        std::thread::spawn(|| {
            let stats = SchedStats::default();
            let mut c = Clock::start(false, "test", &stats);
            c.worked(Duration::from_millis(10), Instant::now() + WINDOW);
            assert!(!c.is_realtime());
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
