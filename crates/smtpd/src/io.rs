//! The connection: buffered lines and bytes from the client with the timeoutsmtpd
//! deadline on every read, and replies collected until the client's input runs dry
//! (so a pipelining client gets its replies in one write, as qmail does). After
//! STARTTLS the same object reads and writes the TLS engine's pipes instead.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Why the session cannot go on.
#[derive(Debug)]
pub enum End {
    Eof,
    Timeout,
    Io(io::Error),
}

pub struct Conn {
    rfd: RawFd,
    wfd: RawFd,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    out: Vec<u8>,
    pub timeout: Duration,
}

/// A command line, or one that was longer than allowed (its rest was skipped).
pub enum Line {
    Ok(Vec<u8>),
    TooLong,
}

fn wait(fd: RawFd, events: i16, timeout: Duration) -> Result<(), End> {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            0 => return Err(End::Timeout),
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(End::Io(e));
                }
            }
        }
    }
}

impl Conn {
    pub fn new(rfd: RawFd, wfd: RawFd, timeout: Duration) -> Conn {
        Conn {
            rfd,
            wfd,
            buf: vec![0; 4096],
            pos: 0,
            len: 0,
            out: Vec::with_capacity(1024),
            timeout,
        }
    }

    /// Reads from now on from `rfd` and writes to `wfd`; input already buffered is
    /// dropped (RFC 3207: nothing the client sent before the handshake counts).
    pub fn switch(&mut self, rfd: RawFd, wfd: RawFd) {
        self.rfd = rfd;
        self.wfd = wfd;
        self.pos = 0;
        self.len = 0;
    }

    pub fn out(&mut self, s: &[u8]) {
        self.out.extend_from_slice(s);
    }

    /// One reply line, CRLF added.
    pub fn reply(&mut self, s: &[u8]) {
        self.out.extend_from_slice(s);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn flush(&mut self) -> Result<(), End> {
        let mut done = 0;
        while done < self.out.len() {
            wait(self.wfd, libc::POLLOUT, self.timeout)?;
            // SAFETY: writes from the initialised part of `out`.
            let n = unsafe { libc::write(self.wfd, self.out[done..].as_ptr().cast(), self.out.len() - done) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock {
                    continue;
                }
                return Err(End::Io(e));
            }
            done += n as usize;
        }
        self.out.clear();
        Ok(())
    }

    /// More input: replies are flushed first, then one read within the deadline.
    fn fill(&mut self) -> Result<(), End> {
        self.flush()?;
        wait(self.rfd, libc::POLLIN, self.timeout)?;
        // SAFETY: reads into our own buffer.
        let n = unsafe { libc::read(self.rfd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
        match n {
            0 => Err(End::Eof),
            n if n < 0 => Err(End::Io(io::Error::last_os_error())),
            n => {
                self.pos = 0;
                self.len = n as usize;
                Ok(())
            }
        }
    }

    /// Zeroes the input already consumed (an AUTH line has just been read from it).
    pub fn wipe_consumed(&mut self) {
        qmail::secret::wipe(&mut self.buf[..self.pos]);
    }

    pub fn byte(&mut self) -> Result<u8, End> {
        if self.pos == self.len {
            self.fill()?;
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    /// A line up to `max` bytes, without its LF (and CR before it).
    pub fn line(&mut self, max: usize) -> Result<Line, End> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            if self.pos == self.len {
                self.fill()?;
            }
            let avail = &self.buf[self.pos..self.len];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if !too_long {
                        line.extend_from_slice(&avail[..i]);
                    }
                    self.pos += i + 1;
                    break;
                }
                None => {
                    if !too_long {
                        line.extend_from_slice(avail);
                    }
                    self.pos = self.len;
                }
            }
            if line.len() > max {
                too_long = true;
                line.clear();
            }
        }
        if too_long || line.len() > max {
            return Ok(Line::TooLong);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Line::Ok(line))
    }
}
