//! What the caller writes on descriptor 3 (the checkpassword interface,
//! <https://cr.yp.to/checkpwd/interface.html>): `login\0password\0` and an optional
//! third field (qmail-popup's APOP timestamp, a CRAM-MD5 challenge or response), at
//! most 512 bytes, within [`DEADLINE`].

use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// More than this many bytes is an unacceptable password (0.90's 513-byte buffer).
pub const MAX: usize = 512;

/// Every caller writes its few bytes and closes at once; a descriptor that has not
/// reached EOF by then (a FIFO whose writer stays open) is not going to.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The three fields. The buffer is wiped when dropped.
pub struct Request {
    buf: Vec<u8>,
    login: (usize, usize),
    password: (usize, usize),
    third: (usize, usize),
}

#[derive(Debug)]
pub enum BadInput {
    /// fd 3 could not be read (not open, an error).
    Unreadable(io::Error),
    /// fd 3 did not reach EOF within the deadline.
    Timeout,
    /// 513 bytes or more.
    TooLong,
    /// No login, or a field without its NUL.
    Malformed,
}

impl Request {
    pub fn login(&self) -> &[u8] {
        &self.buf[self.login.0..self.login.1]
    }
    pub fn password(&self) -> &[u8] {
        &self.buf[self.password.0..self.password.1]
    }
    pub fn third(&self) -> &[u8] {
        &self.buf[self.third.0..self.third.1]
    }

    /// Splits `buf` as checkpassword 0.90 does: an empty buffer, a login or a
    /// password without its NUL is malformed; the third field may be absent.
    pub fn parse(buf: Vec<u8>) -> Result<Request, BadInput> {
        if buf.len() > MAX {
            wipe(buf);
            return Err(BadInput::TooLong);
        }
        let nul = |from: usize| buf[from..].iter().position(|&b| b == 0).map(|i| from + i);
        let Some(l) = nul(0) else {
            wipe(buf);
            return Err(BadInput::Malformed);
        };
        let Some(p) = nul(l + 1) else {
            wipe(buf);
            return Err(BadInput::Malformed);
        };
        let t = nul(p + 1).unwrap_or(buf.len());
        Ok(Request {
            login: (0, l),
            password: (l + 1, p),
            third: ((p + 1).min(t), t),
            buf,
        })
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.buf));
    }
}

/// Overwrites a buffer that held a password, then frees it.
pub fn wipe(mut buf: Vec<u8>) {
    qmail::secret::wipe(&mut buf);
}

/// Reads fd 3 to EOF or to MAX+1 bytes, within `deadline` in all, then closes it.
pub fn read_fd3(deadline: Duration) -> Result<Vec<u8>, BadInput> {
    // SAFETY: fd 3 belongs to this process by the interface; the File closes it.
    let mut f = unsafe { std::fs::File::from_raw_fd(3) };
    let deadline = Instant::now() + deadline;
    let mut buf = vec![0u8; MAX + 1];
    let mut len = 0;
    let result = loop {
        if len > MAX {
            break Ok(());
        }
        // A closed fd 3 is "ready" (POLLNVAL): the read then says EBADF.
        match qmail::fd::wait(3, libc::POLLIN, deadline) {
            Ok(true) => {}
            Ok(false) => break Err(BadInput::Timeout),
            Err(e) => break Err(BadInput::Unreadable(e)),
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break Ok(()),
            Ok(n) => len += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            Err(e) => break Err(BadInput::Unreadable(e)),
        }
    };
    buf.truncate(len);
    match result {
        Ok(()) => Ok(buf),
        Err(e) => {
            if matches!(&e, BadInput::Unreadable(e) if e.raw_os_error() == Some(libc::EBADF)) {
                std::mem::forget(f);
            }
            wipe(buf);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = (Vec<u8>, Vec<u8>, Vec<u8>);

    fn parse(b: &[u8]) -> Result<Fields, String> {
        Request::parse(b.to_vec())
            .map(|r| (r.login().to_vec(), r.password().to_vec(), r.third().to_vec()))
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn layouts() {
        assert_eq!(
            parse(b"u\0p\0t\0").unwrap(),
            (b"u".to_vec(), b"p".to_vec(), b"t".to_vec())
        );
        assert_eq!(parse(b"u\0p\0").unwrap().2, b"");
        assert_eq!(parse(b"u\0p\0t").unwrap().2, b"t");
        assert_eq!(parse(b"u\0p\0t\0extra").unwrap().2, b"t");
        assert_eq!(parse(b"u\0\0").unwrap().1, b"");
        assert_eq!(parse(b"\0p\0").unwrap().0, b"");
        for bad in [&b""[..], b"u", b"u\0", b"u\0p"] {
            assert_eq!(parse(bad).unwrap_err(), "Malformed", "{bad:?}");
        }
        let mut big = vec![b'a'; MAX - 3];
        big.extend_from_slice(b"\0p\0");
        assert!(parse(&big).is_ok());
        big.push(0);
        assert_eq!(parse(&big).unwrap_err(), "TooLong");
    }
}
