//! Which work yields the CPU when the machine is short of it. Mail comes first. The password
//! checks run under `SCHED_IDLE` (`server::verify`), and the web side's threads [`WEB_NICE`]
//! steps lower, so that a crowd of readers slows reading, not submission. A nice value weighs
//! per thread, though, the web side has many, and a reader's own client takes CPU for every
//! answer: so while mail arrives ([`MailPressure`]) the web side also answers at most
//! [`WEB_RATE_WHILE_MAIL`] requests a second, each reader waiting its turn. A web load alone is
//! never paced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after a delivery mail counts as arriving ([`MailPressure::busy`]): longer than a
/// lock-step client's pause between two messages, short enough that a web load alone is
/// served at full speed again at once.
pub const MAIL_BUSY_FOR: Duration = Duration::from_millis(200);

/// The most web requests answered a second while mail arrives: a busy site's readers, far
/// below what the web side serves alone (60 000–78 000 a second on two cores), so that a
/// flood of them leaves the cores to mail.
pub const WEB_RATE_WHILE_MAIL: u64 = 5_000;

/// When mail last arrived, and the web side's pace meanwhile.
#[derive(Debug)]
pub struct MailPressure {
    base: Instant,
    /// Microseconds after `base` of the last delivery, plus one; 0: none yet.
    last_delivery: AtomicU64,
    /// Microseconds after `base` at which the next paced web request may be answered.
    next_web_turn: AtomicU64,
}

impl MailPressure {
    /// No mail yet; `now` is the clock's origin.
    pub fn new(now: Instant) -> MailPressure {
        MailPressure {
            base: now,
            last_delivery: AtomicU64::new(0),
            next_web_turn: AtomicU64::new(0),
        }
    }

    /// A delivery was submitted at `now`.
    pub fn note_delivery(&self, now: Instant) {
        self.last_delivery
            .store(self.micros(now).saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a delivery was submitted within [`MAIL_BUSY_FOR`] of `now`.
    pub fn busy(&self, now: Instant) -> bool {
        match self.last_delivery.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let since = self.micros(now).saturating_sub(last - 1);
                u128::from(since) < MAIL_BUSY_FOR.as_micros()
            }
        }
    }

    /// When the web request that arrived at `now` may be answered: `None` (at once) unless
    /// mail is busy, else its turn at [`WEB_RATE_WHILE_MAIL`], which it takes. The wait is
    /// bounded by the requests waiting before it: one per open web connection at most.
    pub fn web_turn(&self, now: Instant) -> Option<Instant> {
        if !self.busy(now) {
            return None;
        }
        let now_us = self.micros(now);
        let interval = 1_000_000 / WEB_RATE_WHILE_MAIL;
        let taken = self
            .next_web_turn
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                Some(next.max(now_us).saturating_add(interval))
            })
            .unwrap_or(now_us);
        let turn = taken.max(now_us);
        (turn > now_us).then(|| self.base + Duration::from_micros(turn))
    }

    fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }
}

/// How many nice steps below the daemon's own the threads that serve web requests run
/// (smol's web executor, std's thread per web connection). CFS gives a thread about 1.95×
/// the share of one 3 steps lower on a contended core, and the lower one all of a free
/// core: SMTP keeps most of its rate under a web load, and readers get the rest. The
/// figures: ARCHITECTURE.md, "Web threads at nice +3".
pub const WEB_NICE: i32 = 3;

/// Lowers the calling thread's priority by `steps` nice values below its own (Linux keeps
/// the value per thread; 19 at most), so that a daemon started at some nice value keeps the
/// order among its threads. Where that fails, or on other systems, the thread competes as an
/// ordinary one: slower mail under load, nothing worse.
#[allow(unsafe_code)] // getpriority and setpriority have no safe wrapper in std
pub fn lower_thread_priority(steps: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority and setpriority take integers only. `who` 0 is the calling thread
    // on Linux. getpriority's -1 may be a value or an error: either way the new value is a
    // valid nice value, and only lower than before.
    unsafe {
        let own = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, own.saturating_add(steps).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = steps;
}

/// Moves the calling thread to `SCHED_IDLE` (it runs only when nothing else wants the core),
/// else `fallback_steps` nice values lower ([`lower_thread_priority`]).
#[allow(unsafe_code)] // sched_setscheduler has no safe wrapper in std
pub fn set_thread_idle(fallback_steps: i32) {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads the sched_param we pass, which lives across the
        // call; `pid` 0 is the calling thread on Linux.
        let refused = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0;
        if refused {
            lower_thread_priority(fallback_steps);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fallback_steps;
}

/// The CPU clock of one thread of this process: how much CPU it has had, read from any
/// thread. Tells a thread that shares a core from one that is starved.
#[derive(Debug, Clone, Copy)]
pub struct ThreadCpu {
    #[cfg(target_os = "linux")]
    clock: libc::clockid_t,
}

impl ThreadCpu {
    /// The calling thread's clock; `None` where there is none to read.
    #[allow(unsafe_code)] // pthread_getcpuclockid has no safe wrapper in std
    pub fn of_this_thread() -> Option<ThreadCpu> {
        #[cfg(target_os = "linux")]
        {
            let mut clock: libc::clockid_t = 0;
            // SAFETY: pthread_self is always valid for the calling thread, and the call
            // writes one clockid_t into `clock`, which lives across it.
            let failed = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
            (failed == 0).then_some(ThreadCpu { clock })
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// The CPU time the thread has had so far. Only while it runs: a clock of a thread that
    /// ended may name another.
    #[allow(unsafe_code)] // clock_gettime has no safe wrapper in std
    pub fn used(&self) -> Option<Duration> {
        #[cfg(target_os = "linux")]
        {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: the call writes one timespec into `now`, which lives across it.
            let failed = unsafe { libc::clock_gettime(self.clock, &mut now) };
            let secs = u64::try_from(now.tv_sec).ok()?;
            let nanos = u32::try_from(now.tv_nsec).ok()?;
            (failed == 0).then(|| Duration::new(secs, nanos))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

#[cfg(test)]
mod pressure_tests {
    use super::*;

    #[test]
    fn mail_is_busy_for_a_while_after_each_delivery() {
        let start = Instant::now();
        let pressure = MailPressure::new(start);
        assert!(!pressure.busy(start));
        let at = start + Duration::from_secs(5);
        pressure.note_delivery(at);
        assert!(pressure.busy(at));
        assert!(pressure.busy(at + MAIL_BUSY_FOR - Duration::from_millis(1)));
        assert!(!pressure.busy(at + MAIL_BUSY_FOR + Duration::from_millis(1)));
        // A clock read before the delivery (another thread's): busy, never an overflow.
        assert!(pressure.busy(start));
    }

    #[test]
    fn without_mail_the_web_side_is_never_paced() {
        let start = Instant::now();
        let pressure = MailPressure::new(start);
        for n in 0..10_000 {
            assert_eq!(pressure.web_turn(start + Duration::from_micros(n)), None);
        }
    }

    #[test]
    fn while_mail_arrives_web_requests_take_turns_at_the_rate() {
        let start = Instant::now();
        let pressure = MailPressure::new(start);
        let at = start + Duration::from_secs(1);
        pressure.note_delivery(at);
        let interval = Duration::from_micros(1_000_000 / WEB_RATE_WHILE_MAIL);
        // Fifty requests at the same instant: the first at once, then one per interval.
        let turns: Vec<Option<Instant>> = (0..50).map(|_| pressure.web_turn(at)).collect();
        assert_eq!(turns[0], None);
        for (n, turn) in turns.iter().enumerate().skip(1) {
            assert_eq!(*turn, Some(at + interval * n as u32), "request {n}");
        }
        // Once mail stops, the queue is forgotten: no wait.
        let later = at + MAIL_BUSY_FOR + Duration::from_millis(1);
        assert_eq!(pressure.web_turn(later), None);
        // A request after a quiet spell while mail is busy again: at once.
        let again = later + Duration::from_secs(1);
        pressure.note_delivery(again);
        assert_eq!(pressure.web_turn(again), None);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn nice_of_this_thread() -> i32 {
        // SAFETY: getpriority takes integers only; `who` 0 is the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn a_thread_goes_steps_below_its_own_and_its_neighbours_keep_theirs() {
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(|| {
            lower_thread_priority(WEB_NICE);
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + WEB_NICE).min(19));
        assert_eq!(nice_of_this_thread(), before);
    }

    #[test]
    fn another_threads_cpu_clock_counts_its_work_and_not_its_sleep() {
        let (clock, clock_rx) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let cpu = ThreadCpu::of_this_thread().unwrap();
            clock.send(cpu).unwrap();
            go_rx.recv().unwrap();
            // Works until its own clock says 50 ms more.
            let start = cpu.used().unwrap();
            while cpu.used().unwrap() < start + Duration::from_millis(50) {
                std::hint::black_box(0);
            }
            go_rx.recv().unwrap();
        });
        let cpu = clock_rx.recv().unwrap();
        let asleep = cpu.used().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(cpu.used().unwrap() < asleep + Duration::from_millis(20));
        go.send(()).unwrap();
        // Read from here, its clock reaches the 50 ms it worked.
        let deadline = Instant::now() + Duration::from_secs(30);
        while cpu.used().unwrap() < asleep + Duration::from_millis(50) {
            assert!(
                Instant::now() < deadline,
                "its clock never counted its work"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        go.send(()).unwrap();
        worker.join().unwrap();
    }
}
