//! Raw descriptors for the relay: non-blocking reads and writes that never wait,
//! and the network side, which is shared with the application (the STARTTLS case) and
//! so is never switched to O_NONBLOCK: sockets get MSG_DONTWAIT per call instead.

use std::io;
use std::os::fd::RawFd;

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

/// A close-on-exec pipe as raw descriptors: the engine and the application each take
/// their ends across a fork.
pub fn pipe() -> io::Result<(RawFd, RawFd)> {
    use std::os::fd::IntoRawFd;
    let (r, w) = qmail::fd::pipe()?;
    Ok((r.into_raw_fd(), w.into_raw_fd()))
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
