//! Raw descriptors for the relay: poll, non-blocking reads and writes that never wait,
//! and the network side, which is shared with the application (the STARTTLS case) and
//! so is never switched to O_NONBLOCK: sockets get MSG_DONTWAIT per call instead.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One end of the relay.
#[derive(Clone, Copy, Debug)]
pub struct Fd {
    pub fd: RawFd,
    /// recv/send with MSG_DONTWAIT; false for pipes made non-blocking by us.
    pub socket: bool,
}

impl Fd {
    /// The network side: a socket if it is one, else a descriptor used as it is.
    pub fn net(fd: RawFd) -> Fd {
        let mut ty: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `ty`.
        let socket = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&mut ty as *mut libc::c_int).cast(),
                &mut len,
            )
        } == 0;
        Fd { fd, socket }
    }

    /// A pipe end of our own, switched to O_NONBLOCK.
    pub fn own(fd: RawFd) -> io::Result<Fd> {
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Fd { fd, socket: false })
    }
}

impl io::Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reads at most buf.len() bytes into buf.
        check(unsafe {
            if self.socket {
                libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
            } else {
                libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len())
            }
        })
    }
}

impl io::Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: writes at most buf.len() bytes from buf.
        check(unsafe {
            if self.socket {
                libc::send(
                    self.fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            } else {
                libc::write(self.fd, buf.as_ptr().cast(), buf.len())
            }
        })
    }
    /// A whole handshake flight in one call: one segment instead of several small
    /// ones that Nagle's algorithm would hold back for the peer's delayed ACK.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let iov = bufs.as_ptr() as *mut libc::iovec;
        let n = bufs.len().min(64);
        // SAFETY: IoSlice is ABI-compatible with iovec; the kernel only reads them.
        check(unsafe {
            if self.socket {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov;
                msg.msg_iovlen = n as _;
                libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            } else {
                libc::writev(self.fd, iov, n as libc::c_int)
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits until one of `fds` (fd, events) is ready or `deadline` passes; returns the
/// revents in the same order (all zero on timeout). A negative fd is ignored.
pub fn poll(fds: &[(RawFd, i16)], deadline: Option<Instant>) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 })
        .collect();
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
        };
        // SAFETY: p is a valid array of p.len() pollfd structures.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            return Ok(p.iter().map(|x| x.revents).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor this process owns and no longer uses.
    unsafe { libc::close(fd) };
}

/// Writes all of `buf` to a blocking descriptor.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a valid slice.
        match check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
