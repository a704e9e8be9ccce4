//! Thread priorities: which work yields the CPU when the machine is short of it. Mail comes
//! first. The password checks run under `SCHED_IDLE` (`server::verify`), and the web side's
//! threads [`WEB_NICE`] steps lower, so that a crowd of readers slows reading, not submission.

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
}
