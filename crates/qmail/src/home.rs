//! QMAILHOME: where an instance lives (default `/var/qmail`, as qmail's conf-qmail).
//!
//! `QMAILHOME` in the environment selects an instance, so tests and `make run` can
//! use their own. A setuid or setgid program must not let its caller choose where it
//! writes, so when the kernel marks the process secure (AT_SECURE) the variable is
//! ignored and the compiled-in home is used.

use std::path::PathBuf;

/// The compiled-in home: `RQMAIL_HOME` at build time, or qmail's `/var/qmail`.
pub const DEFAULT: &str = match option_env!("RQMAIL_HOME") {
    Some(h) => h,
    None => "/var/qmail",
};

/// True when this process runs with privileges its caller lacks (setuid/setgid).
pub fn secure() -> bool {
    // SAFETY: getauxval has no preconditions; AT_SECURE is always present on Linux.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The instance's home directory.
pub fn home() -> PathBuf {
    if secure() {
        return PathBuf::from(DEFAULT);
    }
    match std::env::var_os("QMAILHOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => PathBuf::from(DEFAULT),
    }
}
