//! Realtime scheduling for the threads that keep audio's clock (the media threads, the WebRTC
//! shards and their reader). A tick that starts late is audio that goes out late, so these
//! threads ask the kernel for a realtime policy (`SCHED_RR`, low priority) when the process may
//! have one (root or `CAP_SYS_NICE`, as Asterisk's `-p` and FreeSWITCH's `-rp` do): then
//! nothing else on the machine — signalling, the store, a load generator, a build — delays a
//! tick while the thread has work. Without permission they run as ordinary threads, as before.
//!
//! A realtime thread that never sleeps would starve everything else, the control plane
//! included (hanging up must still work). So each thread watches its own load, the CPU time it
//! used each second (not the time its work took: waiting for a CPU is not load): above
//! [`DEMOTE_BUSY`] it returns to the ordinary policy, and only takes the realtime one back
//! after [`CALM_WINDOWS`] seconds each under [`PROMOTE_BUSY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Realtime priority of the threads that send and receive (the WebRTC shards), 1 being the
/// lowest (kernel threads such as interrupt handlers run at 50). Their ticks are long: a
/// shard encodes and encrypts for hundreds of legs.
pub const TRANSPORT_PRIORITY: i32 = 10;
/// Realtime priority of the media threads, above the shards': a room's tick is short and
/// every leg waits on it, so it may interrupt a shard's tick rather than wait for its end.
pub const MIXING_PRIORITY: i32 = 11;
/// Realtime priority of the thread that takes datagrams off a socket and hands them on (the
/// WebRTC endpoint's reader), above everything it feeds: it runs for a few microseconds a
/// millisecond, and while it waits for a CPU every browser's packets wait with it (a run
/// without it showed the reader waiting up to 15 ms behind the shards and the load).
pub const RECEIVE_PRIORITY: i32 = 12;
/// Fraction of a second of CPU above which a realtime thread steps down.
pub const DEMOTE_BUSY: f64 = 0.85;
/// Fraction of a second of CPU under which a second counts as calm.
pub const PROMOTE_BUSY: f64 = 0.6;
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
    priority: i32,
    realtime: bool,
    window: Instant,
    /// The thread's CPU time when the window began.
    cpu: Duration,
    calm: u32,
}

impl<'a> Clock<'a> {
    /// Ask for realtime scheduling at `priority` for the calling thread when `wanted`.
    pub fn start(wanted: bool, name: &str, priority: i32, stats: &'a SchedStats) -> Clock<'a> {
        let mut c = Clock {
            stats,
            allowed: false,
            priority,
            realtime: false,
            window: Instant::now(),
            cpu: thread_cpu(),
            calm: 0,
        };
        if wanted {
            match set_realtime(Some(priority)) {
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

    /// Call after each piece of work: once a second the thread's load is judged. The load
    /// of the second that ended, if one did.
    pub fn check(&mut self, now: Instant) -> Option<f64> {
        let span = now.saturating_duration_since(self.window);
        if span < WINDOW {
            return None;
        }
        let cpu = thread_cpu();
        let load = cpu.saturating_sub(self.cpu).as_secs_f64() / span.as_secs_f64();
        (self.window, self.cpu) = (now, cpu);
        self.judge(load);
        Some(load)
    }

    /// Step down after a second busier than [`DEMOTE_BUSY`]; back up after calm ones.
    fn judge(&mut self, load: f64) {
        if !self.allowed {
            return;
        }
        if self.realtime && load > DEMOTE_BUSY {
            if set_realtime(None).is_ok() {
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
            if self.calm >= CALM_WINDOWS && set_realtime(Some(self.priority)).is_ok() {
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

/// CPU time the calling thread has used.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: an out-parameter that lives across the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Duration {
    Duration::ZERO
}

#[cfg(target_os = "linux")]
/// Realtime at this priority, or (None) the ordinary policy.
fn set_realtime(priority: Option<i32>) -> Result<(), std::io::Error> {
    let (policy, priority) = match priority {
        Some(p) => (libc::SCHED_RR, p),
        None => (libc::SCHED_OTHER, 0),
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
fn set_realtime(_priority: Option<i32>) -> Result<(), std::io::Error> {
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
            let mut c = Clock::start(true, "test", MIXING_PRIORITY, &stats);
            if !c.is_realtime() {
                // Not permitted here (no root or CAP_SYS_NICE): the thread stays ordinary.
                assert_eq!(policy(), libc::SCHED_OTHER);
                assert_eq!(stats.realtime.load(Ordering::Relaxed), 0);
                return;
            }
            assert_eq!(policy(), libc::SCHED_RR);
            assert_eq!(stats.realtime.load(Ordering::Relaxed), 1);
            // A second 90 % busy: it steps down.
            c.judge(0.9);
            assert!(!c.is_realtime());
            assert_eq!(policy(), libc::SCHED_OTHER);
            assert_eq!(stats.demotions.load(Ordering::Relaxed), 1);
            assert_eq!(stats.realtime.load(Ordering::Relaxed), 0);
            // Calm seconds, one short of enough, then one busy: still ordinary.
            for _ in 0..CALM_WINDOWS - 1 {
                c.judge(0.1);
            }
            c.judge(0.7);
            assert!(!c.is_realtime());
            for _ in 0..CALM_WINDOWS {
                c.judge(0.1);
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
            let mut c = Clock::start(false, "test", MIXING_PRIORITY, &stats);
            c.judge(1.0);
            assert!(!c.is_realtime());
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_load_is_the_threads_cpu_time_not_the_time_it_waited() {
        std::thread::spawn(|| {
            let stats = SchedStats::default();
            let mut c = Clock::start(false, "test", MIXING_PRIORITY, &stats);
            // A second asleep is no load.
            std::thread::sleep(WINDOW + Duration::from_millis(50));
            let idle = c.check(Instant::now()).expect("a second ended");
            assert!(idle < 0.2, "asleep: {idle}");
            // A second spinning is (on a machine that gives it a CPU at least half the time).
            let end = Instant::now() + WINDOW + Duration::from_millis(50);
            let mut spins = 0u64;
            while Instant::now() < end {
                spins = std::hint::black_box(spins + 1);
            }
            let busy = c.check(Instant::now()).expect("a second ended");
            assert!(busy > 0.5, "spinning: {busy}");
            assert_eq!(c.check(Instant::now()), None, "not yet another second");
        })
        .join()
        .unwrap();
    }
}
