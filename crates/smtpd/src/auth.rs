//! SMTP AUTH's back end: which checkpassword program verifies which mechanism, decided
//! from qmail-smtpd's arguments, the way each AUTH patch family reads them, so that every run line in the field
//! means what its admin meant and none becomes an open relay, and the run of that
//! program with the credentials on fd 3.
//!
//! - no arguments: no AUTH;
//! - `hostname checker subprogram...` (brush ≥0.30, jms1): the host name is only for
//!   the CRAM-MD5 challenge;
//! - four words, the first and third absolute paths of executables (the seeds'
//!   `vchkpw /bin/true cmd5checkpw /bin/true`): LOGIN and PLAIN run the first pair,
//!   CRAM-MD5 the second, with brush's field order;
//! - anything else (Hoffmann): all the words are checker and subprogram, for every
//!   mechanism, with Hoffmann's CRAM-MD5 field order.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `user\0challenge\0response\0` (brush, cmd5checkpw 0.22).
    Brush,
    /// `user\0response\0challenge\0` (Hoffmann, vchkpw 5.4, cmd5checkpw 0.30).
    Hoffmann,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checker {
    pub argv: Vec<OsString>,
    pub order: Order,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkers {
    pub login: Checker,
    pub cram: Checker,
    pub hostname: Option<Vec<u8>>,
}

fn executable(p: &OsString) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

fn absolute(p: &OsString) -> bool {
    p.as_bytes().first() == Some(&b'/')
}

/// The checkers named by qmail-smtpd's arguments; an error names an unusable checker.
pub fn checkers(args: &[OsString]) -> Result<Option<Checkers>, String> {
    let (login, cram, hostname) = match args {
        [] => return Ok(None),
        [host, rest @ ..] if !host.as_bytes().contains(&b'/') && rest.len() >= 2 => {
            let c = Checker {
                argv: rest.to_vec(),
                order: Order::Brush,
            };
            (c.clone(), c, Some(host.as_bytes().to_vec()))
        }
        [a, b, c, d] if absolute(a) && absolute(c) && executable(a) && executable(c) => (
            Checker {
                argv: vec![a.clone(), b.clone()],
                order: Order::Brush,
            },
            Checker {
                argv: vec![c.clone(), d.clone()],
                order: Order::Brush,
            },
            None,
        ),
        _ => {
            let c = Checker {
                argv: args.to_vec(),
                order: Order::Hoffmann,
            };
            (c.clone(), c, None)
        }
    };
    for c in [&login, &cram] {
        // /bin/true (or false) exits the same whatever the password: with it as the
        // checker, a brush 0.31 reading of the seeds' line is an open relay.
        if matches!(
            std::path::Path::new(&c.argv[0]).file_name().map(|n| n.as_bytes()),
            Some(b"true" | b"false")
        ) {
            return Err(format!(
                "checker {} cannot verify passwords",
                c.argv[0].to_string_lossy()
            ));
        }
        if absolute(&c.argv[0]) && !executable(&c.argv[0]) {
            return Err(format!("checker {} is not executable", c.argv[0].to_string_lossy()));
        }
    }
    Ok(Some(Checkers { login, cram, hostname }))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Bad,
    /// Exit 111, a signal, or the checker could not run: 454, never 235.
    Temporary,
}

/// Runs the checker with `fields` on fd 3 (each NUL-terminated). Its stdin is
/// /dev/null and its output goes to our log, never to the client. A field holding
/// NUL is refused before anything runs.
pub fn check(checker: &Checker, fields: &[&[u8]]) -> Verdict {
    let Some(data) = qmail::checkpw::record(fields) else {
        return Verdict::Bad;
    };
    let Ok((r, w)) = qmail::fd::pipe() else {
        return Verdict::Temporary;
    };
    let mut cmd = Command::new(&checker.argv[0]);
    cmd.args(&checker.argv[1..]).stdin(Stdio::null());
    let log = || std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from);
    if let (Ok(out), Ok(err)) = (log(), log()) {
        cmd.stdout(out).stderr(err);
    }
    let child = qmail::fd::spawn(&mut cmd, &[(r.as_raw_fd(), 3)]);
    drop(r);
    let Ok(mut child) = child else {
        return Verdict::Temporary;
    };
    // A checker that exits without reading is answered by its exit code.
    let _ = std::fs::File::from(w).write_all(&data);
    drop(data);
    match child.wait() {
        Ok(s) if s.code() == Some(0) => Verdict::Ok,
        Ok(s) if s.code() == Some(111) || s.signal().is_some() => Verdict::Temporary,
        Ok(_) => Verdict::Bad,
        Err(_) => Verdict::Temporary,
    }
}

/// Base64 as clients send it: padding optional, nothing else tolerated.
pub fn decode(line: &[u8]) -> Option<qmail::secret::Secret> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(line).ok().map(qmail::secret::Secret)
}

/// A CRAM-MD5 response's digest: 32 hex digits (RFC 2195), lower-cased. Anything
/// else, a clear password above all, is refused before the checker runs.
pub fn digest(d: &[u8]) -> Option<Vec<u8>> {
    (d.len() == 32 && d.iter().all(u8::is_ascii_hexdigit)).then(|| d.to_ascii_lowercase())
}

pub fn encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn argument_forms() {
        assert_eq!(checkers(&[]).unwrap(), None);
        let seed = checkers(&os(&["/bin/sh", "/bin/true", "/bin/sh", "/bin/true"]))
            .unwrap()
            .unwrap();
        assert_eq!(seed.login.argv, os(&["/bin/sh", "/bin/true"]));
        assert_eq!(seed.cram.argv, os(&["/bin/sh", "/bin/true"]));
        assert_eq!(seed.cram.order, Order::Brush);
        let brush = checkers(&os(&["mail.example.com", "/bin/sh", "/bin/true"]))
            .unwrap()
            .unwrap();
        assert_eq!(brush.hostname.as_deref(), Some(&b"mail.example.com"[..]));
        assert_eq!(brush.login.argv, os(&["/bin/sh", "/bin/true"]));
        let hoff = checkers(&os(&["/bin/sh", "/bin/true"])).unwrap().unwrap();
        assert_eq!((hoff.login.order, hoff.hostname), (Order::Hoffmann, None));
        // Never a path taken for a host name, never /bin/true as the checker.
        let odd = checkers(&os(&["/bin/sh", "/bin/true", "/nonexistent", "/bin/true"]));
        assert!(odd.unwrap().unwrap().login.argv[0] == "/bin/sh");
        assert!(checkers(&os(&["/bin/true", "/bin/true", "/bin/true", "/bin/true"])).is_err());
        assert!(checkers(&os(&["mail.example.com", "/bin/true", "/bin/true"])).is_err());
        assert!(checkers(&os(&["/nonexistent/vchkpw", "/bin/true"])).is_err());
    }

    #[test]
    fn base64_lenient_padding_only() {
        assert_eq!(&*decode(b"dGltIGI5MTNh").unwrap(), b"tim b913a");
        assert_eq!(&*decode(b"YQ").unwrap(), b"a");
        assert_eq!(&*decode(b"YQ==").unwrap(), b"a");
        assert!(decode(b"Y Q==").is_none() && decode(b"!!!!").is_none());
    }

    #[test]
    fn cram_digest_only() {
        assert_eq!(
            digest(b"B913A602C7EDA7A495B4E6E7334D3890").unwrap(),
            b"b913a602c7eda7a495b4e6e7334d3890"
        );
        for bad in [
            &b"tanstaaftanstaaf"[..],
            b"b913a602c7eda7a495b4e6e7334d389",
            b"b913a602c7eda7a495b4e6e7334d389g",
        ] {
            assert!(digest(bad).is_none());
        }
    }
}
