//! Signal state that a caller cannot choose for us.
//!
//! Blocked signals, ignored signals and a pending alarm all survive execve. A setuid
//! program (qmail-queue, checkpassword, qmail-qread) is started by a user it does not
//! trust, so it begins by undoing them: a caller that blocks SIGALRM would otherwise
//! switch off qmail-queue's 24-hour death timer, and one that leaves SIGXFSZ at its
//! default with a low RLIMIT_FSIZE would kill it halfway through a file.

use nix::sys::signal::{sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Unblocks every signal, puts every disposition back to its default and cancels any
/// pending alarm. Programs then set the handlers they need.
pub fn sanitize() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: installing SIG_DFL runs no code of ours.
        let _ = unsafe { sigaction(sig, &default) };
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
