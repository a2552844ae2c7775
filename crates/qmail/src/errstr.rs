//! djb's errno texts. qmail and ucspi-tcp log `unable to read x: file does not exist`,
//! not strerror's wording; log analysers and admins' habits match on these.

use std::io;

/// The short text for an errno, as djb's `error_str` gives it.
pub fn errno_str(errno: i32) -> String {
    let s = match errno {
        0 => "no error",
        libc::EINTR => "interrupted system call",
        libc::ENOMEM => "out of memory",
        libc::ENOENT => "file does not exist",
        libc::ETXTBSY => "text busy",
        libc::EIO => "input/output error",
        libc::EEXIST => "file already exists",
        libc::ETIMEDOUT => "timed out",
        libc::EINPROGRESS => "operation in progress",
        libc::EAGAIN => "temporary failure",
        libc::EPIPE => "broken pipe",
        libc::EPERM => "permission denied",
        libc::EACCES => "access denied",
        libc::ENXIO => "device not configured",
        libc::EPROTO => "protocol error",
        libc::EISDIR => "is a directory",
        libc::ESPIPE => "unseekable descriptor",
        libc::EBADF => "file descriptor not open",
        libc::ECHILD => "no child processes",
        libc::EDEADLK => "operation would cause deadlock",
        libc::EFAULT => "bad address",
        libc::ENOTBLK => "not a block device",
        libc::EBUSY => "device busy",
        libc::EXDEV => "cross-device link",
        libc::ENODEV => "device does not support operation",
        libc::ENOTDIR => "not a directory",
        libc::EINVAL => "invalid argument",
        libc::ENFILE => "system cannot open more files",
        libc::EMFILE => "process cannot open more files",
        libc::ENOTTY => "not a tty",
        libc::EFBIG => "file too big",
        libc::ENOSPC => "out of disk space",
        libc::EROFS => "read-only file system",
        libc::EMLINK => "too many links",
        libc::EDOM => "input out of range",
        libc::ERANGE => "output out of range",
        libc::ENOTSOCK => "not a socket",
        libc::EDESTADDRREQ => "destination address required",
        libc::EMSGSIZE => "message too long",
        libc::EPROTOTYPE => "incorrect protocol type",
        libc::ENOPROTOOPT => "protocol not available",
        libc::EPROTONOSUPPORT => "protocol not supported",
        libc::ESOCKTNOSUPPORT => "socket type not supported",
        libc::EOPNOTSUPP => "operation not supported",
        libc::EPFNOSUPPORT => "protocol family not supported",
        libc::EAFNOSUPPORT => "address family not supported",
        libc::EADDRINUSE => "address already used",
        libc::EADDRNOTAVAIL => "address not available",
        libc::ENETDOWN => "network down",
        libc::ENETUNREACH => "network unreachable",
        libc::ENETRESET => "network reset",
        libc::ECONNABORTED => "connection aborted",
        libc::ECONNRESET => "connection reset",
        libc::ENOBUFS => "out of buffer space",
        libc::EISCONN => "already connected",
        libc::ENOTCONN => "not connected",
        libc::ESHUTDOWN => "socket shut down",
        libc::ETOOMANYREFS => "too many references",
        libc::ECONNREFUSED => "connection refused",
        libc::ELOOP => "symbolic link loop",
        libc::ENAMETOOLONG => "file name too long",
        libc::EHOSTDOWN => "host down",
        libc::EHOSTUNREACH => "host unreachable",
        libc::ENOTEMPTY => "directory not empty",
        libc::EUSERS => "too many users",
        libc::EDQUOT => "disk quota exceeded",
        libc::ESTALE => "stale NFS file handle",
        libc::EREMOTE => "too many levels of remote in path",
        libc::ENOLCK => "no locks available",
        libc::ENOSYS => "system call not available",
        _ => return format!("error {errno}"),
    };
    s.to_string()
}

/// The djb text for an IO error; errors without an errno (a malformed file, say)
/// are `protocol error`, as djb's readers report a bad format.
pub fn io_str(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_str(n),
        None if e.kind() == io::ErrorKind::UnexpectedEof => "protocol error".into(),
        None if e.kind() == io::ErrorKind::OutOfMemory => "out of memory".into(),
        None => "protocol error".into(),
    }
}

/// djb's error_temp: the errnos that may go away by themselves (qmail's
/// temporary failures: try again later).
pub fn is_temporary(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINTR
            | libc::ENOMEM
            | libc::ETXTBSY
            | libc::EIO
            | libc::ETIMEDOUT
            | libc::EAGAIN
            | libc::EDEADLK
            | libc::EBUSY
            | libc::ENFILE
            | libc::EMFILE
            | libc::EFBIG
            | libc::ENOSPC
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::ENETRESET
            | libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::ENOBUFS
            | libc::ETOOMANYREFS
            | libc::ECONNREFUSED
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::EUSERS
            | libc::EDQUOT
            | libc::ESTALE
            | libc::ENOLCK
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_djb() {
        assert_eq!(errno_str(libc::ENOENT), "file does not exist");
        assert_eq!(errno_str(libc::EADDRINUSE), "address already used");
        assert_eq!(io_str(&io::Error::other("Invalid file format")), "protocol error");
        assert_eq!(errno_str(99999), "error 99999");
    }
}
