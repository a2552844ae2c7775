//! UCSPI-TLS (ucspi-tls(2), as s6-networking and ucspi-ssl speak it), the
//! application's side: the TLS engine in front of it sets `SSLCTLFD`, `SSLREADFD` and
//! `SSLWRITEFD`; a `Y` on the control socket starts the handshake; the engine then
//! answers with the session's variables, `NAME=value\0` each and one more `\0`, and
//! from then on the plaintext flows through the two pipes. qmail-smtpd's STARTTLS
//! uses it now, qmail-popup's STLS and qmail-remote's STARTTLS will.
//!
//! The same variables, in the same form, go from ucspi-tlsd and ucspi-tlsc to their
//! applications: [`encode`] and [`decode`] are the one reading of that form.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The engine's descriptors, as its variables name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Engine {
    pub ctl: RawFd,
    pub read: RawFd,
    pub write: RawFd,
}

impl Engine {
    /// The engine that `var` (an environment lookup) names, if all three are set.
    pub fn from_vars(var: impl Fn(&str) -> Option<Vec<u8>>) -> Option<Engine> {
        let fd = |name| -> Option<RawFd> { std::str::from_utf8(&var(name)?).ok()?.parse().ok() };
        Some(Engine {
            ctl: fd("SSLCTLFD")?,
            read: fd("SSLREADFD")?,
            write: fd("SSLWRITEFD")?,
        })
    }

    /// Asks for the handshake and waits for its end, at most `timeout`; the session's
    /// variables. An error means there is no TLS session: the engine has closed the
    /// control socket (it logs why), or it did not answer in time.
    pub fn start(&self, timeout: Duration) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // SAFETY: one byte from a static buffer to the control socket.
        if unsafe { libc::write(self.ctl, b"Y".as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
        let info = read_info(self.ctl, Instant::now() + timeout)?;
        if !info.ends_with(b"\0\0") {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "TLS handshake failed"));
        }
        Ok(decode(&info))
    }
}

/// What `fd` says until `\0\0` or EOF, within `deadline` and at most 64 KiB.
pub fn read_info(fd: RawFd, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut info = Vec::new();
    let mut buf = [0u8; 512];
    while !info.ends_with(b"\0\0") && info.len() < 65536 {
        if !crate::fd::wait(fd, libc::POLLIN, deadline)? {
            return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
        }
        // SAFETY: reads into a local buffer.
        match unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } {
            0 => break,
            n if n > 0 => info.extend_from_slice(&buf[..n as usize]),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(info)
}

/// `NAME=value\0` for each variable, then one more `\0` (and one for no variables).
pub fn encode(vars: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut s = Vec::new();
    for (k, v) in vars {
        s.extend_from_slice(k);
        s.push(b'=');
        s.extend_from_slice(v);
        s.push(0);
    }
    if vars.is_empty() {
        s.push(0);
    }
    s.push(0);
    s
}

/// The variables of an [`encode`]d list; items without `=` are skipped.
pub fn decode(info: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    info.split(|&b| b == 0)
        .filter_map(|item| {
            let eq = item.iter().position(|&b| b == b'=')?;
            Some((item[..eq].to_vec(), item[eq + 1..].to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn info_round_trip() {
        assert_eq!(encode(&[]), b"\0\0");
        let v: [(&[u8], &[u8]); 2] = [(b"SSL_PROTOCOL", b"TLSv1.3"), (b"A", b"b=c")];
        let e = encode(&v);
        assert_eq!(e, b"SSL_PROTOCOL=TLSv1.3\0A=b=c\0\0");
        assert_eq!(
            decode(&e),
            vec![
                (b"SSL_PROTOCOL".to_vec(), b"TLSv1.3".to_vec()),
                (b"A".to_vec(), b"b=c".to_vec())
            ]
        );
    }

    #[test]
    fn start_asks_and_reads_the_answer() {
        let env = |name: &str| match name {
            "SSLCTLFD" => Some(b"7".to_vec()),
            "SSLREADFD" => Some(b"8".to_vec()),
            "SSLWRITEFD" => Some(b"9".to_vec()),
            _ => None,
        };
        assert_eq!(
            Engine::from_vars(env),
            Some(Engine {
                ctl: 7,
                read: 8,
                write: 9
            })
        );
        assert_eq!(Engine::from_vars(|n| if n == "SSLCTLFD" { None } else { env(n) }), None);
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let engine = Engine {
            ctl: a.as_raw_fd(),
            read: -1,
            write: -1,
        };
        (&b).write_all(b"SSL_PROTOCOL=TLSv1.2\0\0").unwrap();
        let vars = engine.start(Duration::from_secs(5)).unwrap();
        assert_eq!(vars, vec![(b"SSL_PROTOCOL".to_vec(), b"TLSv1.2".to_vec())]);
        let mut y = [0u8; 1];
        std::io::Read::read_exact(&mut &b, &mut y).unwrap();
        assert_eq!(&y, b"Y");
        drop(b);
        assert!(engine.start(Duration::from_secs(5)).is_err());
    }
}
