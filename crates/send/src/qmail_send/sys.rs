//! The few system calls qmail-send makes on raw descriptors (the ones qmail-start
//! placed) and on queue files, each a thin wrapper that returns io::Result.

use nix::libc;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; no memory is passed.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        check(fl)?;
        check(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))
    }
}

/// read(2), EINTR retried.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// write(2), EINTR retried; may write less than `buf`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// An exclusive lock without waiting (qmail's lock_exnb).
pub fn lock_exnb(fd: RawFd) -> io::Result<()> {
    // SAFETY: flock on a descriptor we own.
    check(unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) })
}

pub fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// Sets atime and mtime of `path` to `t` (how a next-retry time outlives us).
pub fn utime(path: &Path, t: i64) -> io::Result<()> {
    let c = cpath(path)?;
    let tv = libc::timeval {
        tv_sec: t as libc::time_t,
        tv_usec: 0,
    };
    let times = [tv, tv];
    // SAFETY: c is a NUL-terminated path, times two timevals.
    check(unsafe { libc::utimes(c.as_ptr(), times.as_ptr()) })
}

/// Makes a directory's entries durable (a new info/local/remote file's name).
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Starts writing a file's dirty data out without waiting (sync_file_range with
/// SYNC_FILE_RANGE_WRITE), so its block allocation joins the journal transaction
/// the next fsync commits; only a hint, the fsync is what counts.
pub fn start_writeback(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range on a descriptor we own; no memory is passed.
    check(unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) })
}
