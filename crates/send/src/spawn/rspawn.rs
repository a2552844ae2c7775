//! qmail-rspawn (qmail-rspawn(8)): runs qmail-remote for each remote delivery, as
//! qmailr, and turns its records into one report.
//!
//! The program is `$QMAILREMOTE` when set (notqmail's variable, searched in PATH),
//! else `QMAILHOME/bin/qmail-remote`. Until that program is installed every remote
//! delivery is answered at once with a temporary failure that says why, so mail
//! waits in the queue instead of bouncing.

use super::spawner::{self, Delivery, Spawn, Started, Status};
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// The answer while there is no qmail-remote to run.
pub const NOT_BUILT: &[u8] = b"Zremote delivery is not built yet: no bin/qmail-remote to run. (#4.3.0)\n";

/// The report for qmail-remote's output (qmail-rspawn.c): its exit code first,
/// then the recipient record (`r`, `h`, `s`) and the message record (`K`, `Z`, `D`).
pub fn report(status: Status, s: &[u8], out: &mut Vec<u8>) {
    match status {
        Status::Killed(_) => return out.extend_from_slice(b"Zqmail-remote crashed.\n"),
        Status::Exited(0) => {}
        Status::Exited(111) => return out.extend_from_slice(b"ZUnable to run qmail-remote.\n"),
        Status::Exited(_) => return out.extend_from_slice(b"DUnable to run qmail-remote.\n"),
    }
    if s.is_empty() {
        return out.extend_from_slice(b"Zqmail-remote produced no output.\n");
    }
    // result: the first record that starts with K, Z or D (+1, 0, -1; none: -1).
    let mut result = -1;
    let mut j = 0;
    for k in 0..s.len() {
        if s[k] == 0 {
            match s[j] {
                b'K' => result = 1,
                b'Z' => result = 0,
                b'D' => {}
                _ => {
                    j = k + 1;
                    continue;
                }
            }
            break;
        }
    }
    let verdict = match s[0] {
        b's' => 0,
        b'h' => -1,
        _ => result,
    };
    out.push(match verdict {
        1 => b'K',
        0 => b'Z',
        _ => b'D',
    });
    let text = |from: usize| s[from..].iter().take_while(|&&c| c != 0).copied().collect::<Vec<u8>>();
    // The first record's text, then the message record's if the first was the
    // recipient's and it does not contradict it.
    if let Some(nul) = s[1..].iter().position(|&c| c == 0).map(|p| p + 1) {
        out.extend(text(1));
        let k = nul + 1;
        if result <= verdict && k < s.len() && matches!(s[k], b'Z' | b'D' | b'K') {
            out.extend(text(k + 1));
        }
    }
}

/// What qmail-rspawn reads once at start.
pub struct Rspawn {
    /// `$QMAILREMOTE`, if set.
    pub program: Option<OsString>,
    /// `QMAILHOME/bin/qmail-remote`.
    pub installed: PathBuf,
}

impl Spawn for Rspawn {
    fn truncreport(&self) -> Option<usize> {
        None
    }

    fn start(&mut self, d: &Delivery) -> io::Result<Started> {
        let program = match &self.program {
            Some(p) => p.clone(),
            None if self.installed.exists() => self.installed.clone().into_os_string(),
            None => return Ok(Started::Report(NOT_BUILT)),
        };
        let argv = argv(program, d);
        spawner::fork(|| {
            if spawner::child_descriptors(d.message.as_raw_fd(), d.out.as_raw_fd()).is_err() {
                return 111;
            }
            spawner::unblock_signals();
            let e = qmail::env::Env::inherited().exec(&argv);
            match e.raw_os_error() {
                Some(n) if qmail::errstr::is_temporary(n) => 111,
                _ => 100,
            }
        })
        .map(Started::Child)
    }

    fn report(&self, status: Status, output: &[u8], out: &mut Vec<u8>) {
        report(status, output, out)
    }
}

/// `qmail-remote host sender recipient`.
fn argv(program: OsString, d: &Delivery) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_os_string();
    vec![program, os(&d.recipient[d.at + 1..]), os(d.sender), os(d.recipient)]
}

/// qmail-rspawn's main: no arguments, as qmailr, started by qmail-start.
pub fn main() -> i32 {
    qmail::signals::sanitize();
    let home = qmail::home::home();
    let Ok(ids) = qmail::ids::Ids::load(&home) else {
        return 111;
    };
    let Ok(home) = std::fs::canonicalize(&home) else {
        return 111;
    };
    if std::env::set_current_dir(home.join("queue/mess")).is_err() {
        return 111;
    }
    zero_tcpto();
    let mut r = Rspawn {
        program: std::env::var_os("QMAILREMOTE").filter(|p| !p.is_empty()),
        installed: home.join("bin/qmail-remote"),
    };
    spawner::run(&mut r, ids.uid("qmailq"))
}

/// A restart forgets every remote host's timeouts (qmail's tcpto_clean): 1024 NULs
/// over `lock/tcpto`; errors are ignored, as there.
fn zero_tcpto() {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("../lock/tcpto") {
        let _ = f.write_all(&[0; 1024]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(status: Status, output: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        report(status, output, &mut out);
        out
    }

    #[test]
    fn reports_from_qmail_remote_records() {
        let ok = b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 ok\n\0";
        assert_eq!(
            rep(Status::Exited(0), ok),
            b"K127.0.0.1 accepted message.\nRemote host said: 250 ok\n"
        );
        let refused = b"h127.0.0.1 does not like recipient.\nRemote host said: 550 no\n\0DGiving up on 127.0.0.1.\n\0";
        assert_eq!(
            rep(Status::Exited(0), refused),
            b"D127.0.0.1 does not like recipient.\nRemote host said: 550 no\nGiving up on 127.0.0.1.\n"
        );
        let later = b"s127.0.0.1 does not like recipient.\nRemote host said: 450 later\n\0DGiving up on 127.0.0.1.\n\0";
        assert_eq!(
            rep(Status::Exited(0), later),
            b"Z127.0.0.1 does not like recipient.\nRemote host said: 450 later\nGiving up on 127.0.0.1.\n"
        );
        // Accepted recipient, refused message: the message record's letter and text.
        let data = b"r\0D127.0.0.1 failed after I sent the message.\nRemote host said: 554 no\n\0";
        assert_eq!(
            rep(Status::Exited(0), data),
            b"D127.0.0.1 failed after I sent the message.\nRemote host said: 554 no\n"
        );
        // No recipient record (connection failure): the message record alone.
        assert_eq!(
            rep(Status::Exited(0), b"ZSorry, I couldn't find any host.\n\0"),
            b"ZSorry, I couldn't find any host.\n"
        );
        assert_eq!(rep(Status::Exited(0), b""), b"Zqmail-remote produced no output.\n");
        assert_eq!(rep(Status::Exited(111), b"x\0"), b"ZUnable to run qmail-remote.\n");
        assert_eq!(rep(Status::Exited(100), b"x\0"), b"DUnable to run qmail-remote.\n");
        assert_eq!(rep(Status::Killed(11), b"x\0"), b"Zqmail-remote crashed.\n");
        // Output without a NUL: only the letter, nothing read past the end.
        assert_eq!(rep(Status::Exited(0), b"Kno nul"), b"D");
        assert_eq!(rep(Status::Exited(0), b"r\0Kunterminated"), b"Dunterminated");
    }
}
