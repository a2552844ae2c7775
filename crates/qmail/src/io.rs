//! A connection to a client or a server, as qmail-smtpd uses it (and qmail-popup,
//! qmail-pop3d and qmail-remote will): lines and bytes read through a buffer with a
//! deadline on every read, lines of at most a given length as bytes, and output
//! collected until more input is needed, so a pipelining peer gets its replies in one
//! write. After STARTTLS the same object reads and writes the TLS engine's pipes
//! ([`crate::ucspitls`]).

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Why the conversation cannot go on.
#[derive(Debug)]
pub enum End {
    Eof,
    /// No byte came (or none could be written) within the timeout.
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
    /// The deadline of each read and each write, from its start.
    pub timeout: Duration,
}

/// A line, or one longer than allowed (its rest was read and dropped).
pub enum Line {
    Ok(Vec<u8>),
    TooLong,
}

fn wait(fd: RawFd, events: i16, timeout: Duration) -> Result<(), End> {
    match crate::fd::wait(fd, events, Instant::now() + timeout) {
        Ok(true) => Ok(()),
        Ok(false) => Err(End::Timeout),
        Err(e) => Err(End::Io(e)),
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
    /// dropped (RFC 3207 §4.2: nothing the client sent before the handshake counts).
    pub fn switch(&mut self, rfd: RawFd, wfd: RawFd) {
        self.rfd = rfd;
        self.wfd = wfd;
        self.pos = 0;
        self.len = 0;
    }

    pub fn out(&mut self, s: &[u8]) {
        self.out.extend_from_slice(s);
    }

    /// One line, CRLF added.
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

    /// More input: output is flushed first, then one read within the deadline.
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
        crate::secret::wipe(&mut self.buf[..self.pos]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn lines_limits_and_deadline() {
        let (r, w) = crate::fd::pipe().unwrap();
        let (out_r, out_w) = crate::fd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"one\r\ntwo\nbare\rcr\r\n").unwrap();
        w.write_all(&[b'x'; 5000]).unwrap();
        w.write_all(b"\r\nafter\r\n").unwrap();
        let mut c = Conn::new(r.as_raw_fd(), out_w.as_raw_fd(), Duration::from_millis(100));
        let next = |c: &mut Conn| match c.line(1000) {
            Ok(Line::Ok(l)) => Ok(Some(l)),
            Ok(Line::TooLong) => Ok(None),
            Err(e) => Err(e),
        };
        assert_eq!(next(&mut c).unwrap().unwrap(), b"one");
        assert_eq!(next(&mut c).unwrap().unwrap(), b"two");
        assert_eq!(next(&mut c).unwrap().unwrap(), b"bare\rcr");
        assert!(next(&mut c).unwrap().is_none(), "5000 bytes are too long");
        assert_eq!(next(&mut c).unwrap().unwrap(), b"after");
        c.reply(b"250 ok");
        assert!(matches!(next(&mut c), Err(End::Timeout)));
        drop(w);
        assert!(matches!(next(&mut c), Err(End::Eof)));
        let mut got = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::from(out_r), &mut got).unwrap();
        assert_eq!(&got, b"250 ok\r\n", "replies are flushed before the next read");
    }
}
