//! The tools of .qmail files and admins, each qmail 1.03's program of the same name:
//! the same arguments, environment, messages and exit codes.
//!
//! - [`newu`]: qmail-newu(8), `users/assign` into `users/cdb`, byte for byte the
//!   file qmail's qmail-newu writes; [`pw2u`]: qmail-pw2u(8), a passwd file into
//!   `users/assign`.
//! - [`preline`]: preline(1), the `From_`, `Return-Path` and `Delivered-To` lines in
//!   front of the message for a program that wants them.
//! - [`forward`]: forward(1); [`condredirect`]: condredirect(1); [`bouncesaying`]:
//!   bouncesaying(1); [`except`]: except(1).
//! - [`maildirmake`]: maildirmake(1); [`maildir2mbox`]: maildir2mbox(1).
//!
//! The programs that a `.qmail` line runs (preline, forward, condredirect,
//! bouncesaying, except) run as the recipient under the delivery's memory limit: they
//! stream the message through a small buffer and keep nothing else.
//!
//! condredirect, bouncesaying and except share one reading of their program's exit
//! ([`ran`]): 0 is "yes", 111 is a temporary failure, anything else (a program that
//! cannot be run included) is "no".

use qmail::exit::Failure;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

pub mod bouncesaying;
pub mod condredirect;
pub mod except;
pub mod forward;
pub mod maildir2mbox;
pub mod maildirmake;
pub mod newu;
pub mod preline;
pub mod pw2u;

/// The buffer every tool streams the message through.
const BUF: usize = 8192;

/// qmail's error_temp: errors that may go away by themselves.
pub fn temporary(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(qmail::errstr::is_temporary)
}

/// What the program of condredirect, bouncesaying and except said.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// It exited 0.
    Yes,
    /// It exited with anything but 0 and 111, or could not be run for a reason that
    /// will not go away.
    No,
}

/// Runs `argv` (PATH searched, this process's descriptors and environment) and
/// reads its exit as the three tools do. A program that cannot be run counts as one
/// that exited 111 (a temporary reason) or 100, as the tools' own forked child
/// would have exited.
pub fn ran(argv: &[OsString]) -> Result<Answer, Failure> {
    let code = match Command::new(&argv[0]).args(&argv[1..]).spawn() {
        Err(e) if temporary(&e) => 111,
        Err(_) => 100,
        Ok(mut child) => {
            let status = child.wait().map_err(|_| Failure::temp("wait failed"))?;
            match status.code() {
                Some(c) => c,
                None if status.signal().is_some() => return Err(Failure::temp("child crashed")),
                None => return Err(Failure::temp("wait failed")),
            }
        }
    };
    match code {
        0 => Ok(Answer::Yes),
        111 => Err(Failure::temp("temporary child error")),
        _ => Ok(Answer::No),
    }
}

/// Queues `dtline` and then `message` for `recipients` with envelope sender `sender`,
/// as forward and condredirect do: the message as qmail-local gave it, with this
/// delivery's Delivered-To line in front (which is what stops a forward loop).
/// Returns the queue program's pid, qmail's `qp`.
pub fn queue(
    home: &Path,
    dtline: &[u8],
    mut message: impl Read,
    sender: &[u8],
    recipients: &[&[u8]],
) -> Result<u32, Failure> {
    let mut q = qmail::queueclient::Queue::open(home).map_err(|_| qmail::queueclient::exec_failure())?;
    q.put(dtline);
    let mut buf = [0u8; BUF];
    loop {
        match message.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => q.put(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                q.abort();
                return Err(Failure::io("unable to read message", &e));
            }
        }
    }
    let qp = q.pid();
    q.from(sender);
    for r in recipients {
        q.to(r);
    }
    q.close()?;
    Ok(qp)
}

/// An environment variable's bytes.
fn env_bytes(name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::env::var_os(name).map(OsStringExt::into_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_programs_exit_is_yes_no_or_temporary() {
        assert_eq!(ran(&argv(&["/bin/sh", "-c", "exit 0"])), Ok(Answer::Yes));
        for code in ["1", "99", "100", "112"] {
            assert_eq!(ran(&argv(&["/bin/sh", "-c", &format!("exit {code}")])), Ok(Answer::No));
        }
        assert_eq!(
            ran(&argv(&["/bin/sh", "-c", "exit 111"])),
            Err(Failure::temp("temporary child error"))
        );
        assert_eq!(
            ran(&argv(&["/bin/sh", "-c", "kill -9 $$"])),
            Err(Failure::temp("child crashed"))
        );
        // Not there: as a child whose exec failed with a permanent error (100).
        assert_eq!(ran(&argv(&["/nonexistent/rqmail-no-such"])), Ok(Answer::No));
    }

    #[test]
    fn temporary_errors_are_qmails() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(temporary(&e(libc::ENOSPC)) && temporary(&e(libc::EAGAIN)) && temporary(&e(libc::ETXTBSY)));
        assert!(!temporary(&e(libc::ENOENT)) && !temporary(&e(libc::EACCES)) && !temporary(&e(libc::ENOEXEC)));
    }
}
