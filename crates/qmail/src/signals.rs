//! Signal state that a caller cannot choose for us.
//!
//! Blocked signals, ignored signals and a pending alarm all survive execve. A setuid
//! program (qmail-queue, checkpassword, qmail-qread) is started by a user it does not
//! trust, so it begins by undoing them: a caller that blocks SIGALRM would otherwise
//! switch off qmail-queue's 24-hour death timer, and one that leaves SIGXFSZ at its
//! default with a low RLIMIT_FSIZE would kill it halfway through a file.

use nix::sys::signal::{sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Unblocks every signal, puts every disposition back to its default (the real-time
/// signals too) and cancels any pending alarm. Programs then set the handlers they
/// need.
pub fn sanitize() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // The kernel's own call, because the C library refuses the signals it reserves
    // (32 to 34), which a caller may still have set to "ignore".
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid sigaction for SIG_DFL, no old action wanted, the kernel's
        // 8-byte signal set.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    // SAFETY: alarm has no preconditions.
    unsafe { libc::alarm(0) };
}

/// Ignores what qmail's own programs ignore (sig_miscignore, sig_pipeignore): a
/// file-size or CPU limit, a terminal's hangup, interrupt and quit, a closed pipe. A
/// write past RLIMIT_FSIZE then fails with EFBIG and is reported, not a silent death.
pub fn ignore_misc() {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in [
        Signal::SIGXFSZ,
        Signal::SIGXCPU,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
    ] {
        // SAFETY: installing SIG_IGN runs no code of ours.
        let _ = unsafe { sigaction(sig, &ignore) };
    }
}
