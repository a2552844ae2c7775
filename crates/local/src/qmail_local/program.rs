//! `|command` delivery, as qmail-command(8): `/bin/sh -c command` in the home
//! directory, with qmail-local's environment, the message on stdin from its first
//! byte (as it is: `preline` adds the From_, Return-Path and Delivered-To lines),
//! stdout and stderr on the report, SIGPIPE at its default.
//!
//! The exit code decides: 0 success, 99 success and skip the later lines, 64, 65, 70,
//! 76, 77, 78, 100 and 112 a bounce, anything else a retry. qmail lets a program run
//! forever; here it runs in a process group of its own, and when the timeout
//! (`control/timeoutlocal`) passes the whole group is killed and the delivery retried.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use qmail::env::Env;
use qmail::exit::Failure;

use super::err_text;
use super::message::Message;

/// What the program's result means for the rest of the `.qmail` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// Exit 99: delivered; ignore the later lines (forwards so far still go).
    Stop,
}

/// qmail-local's table of program exit codes.
pub fn outcome(code: i32) -> Result<Outcome, Failure> {
    match code {
        0 => Ok(Outcome::Continue),
        99 => Ok(Outcome::Stop),
        64 | 65 | 70 | 76 | 77 | 78 | 100 | 112 => Err(Failure::perm(String::new())),
        _ => Err(Failure::temp(String::new())),
    }
}

fn crashed() -> Failure {
    Failure::temp("Aack, child crashed. (#4.3.0)")
}

/// A descriptor that becomes readable when `pid` exits (Linux 5.3 and later).
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor the kernel just gave us.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for `child` until `deadline`; None when it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>, Failure> {
    let fd = pidfd(child.id());
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(_) => return Err(crashed()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        match &fd {
            Some(fd) => {
                use std::os::fd::AsRawFd;
                let _ = qmail::fd::wait(fd.as_raw_fd(), libc::POLLIN, deadline);
            }
            // Without pidfd: look again every 20 ms.
            None => std::thread::sleep((deadline - now).min(Duration::from_millis(20))),
        }
    }
}

/// Runs `command` on the message.
pub fn deliver(command: &[u8], msg: &mut Message, env: &Env, timeout: Duration) -> Result<Outcome, Failure> {
    msg.rewind()?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(std::ffi::OsStr::from_bytes(command))
        .env_clear()
        .envs(env.iter())
        .process_group(0)
        .stdin(
            msg.share()
                .map_err(|e| Failure::temp(format!("Unable to fork: {}. (#4.3.0)", err_text(&e))))?,
        );
    // std puts SIGPIPE back to its default and clears the signal mask in the child;
    // stdin is the message (a second descriptor of it), stdout and stderr are ours:
    // the report pipe.
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOMEM)) => {
            return Err(Failure::temp(format!("Unable to fork: {}. (#4.3.0)", err_text(&e))));
        }
        Err(e) => {
            return Err(Failure::temp(format!(
                "Unable to run /bin/sh: {}. (#4.3.0)",
                err_text(&e)
            )))
        }
    };
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
    let status = match wait_until(&mut child, deadline)? {
        Some(s) => s,
        None => {
            // SAFETY: kill takes a process group id and a signal; the group is the
            // child's own (process_group(0)), so only it and what it started die.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            return Err(Failure::temp(format!(
                "Timeout on program delivery: killed after {} seconds. (#4.3.0)",
                timeout.as_secs()
            )));
        }
    };
    match status.code() {
        Some(code) => outcome(code).map_err(|f| Failure {
            text: String::new(),
            ..f
        }),
        None if status.signal().is_some() => Err(crashed()),
        None => Err(crashed()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::message;
    use super::*;

    #[test]
    fn exit_code_table() {
        assert_eq!(outcome(0), Ok(Outcome::Continue));
        assert_eq!(outcome(99), Ok(Outcome::Stop));
        for c in [64, 65, 70, 76, 77, 78, 100, 112] {
            assert!(outcome(c).unwrap_err().permanent, "{c}");
        }
        for c in [1, 2, 75, 101, 111, 113, 255] {
            assert!(!outcome(c).unwrap_err().permanent, "{c}");
        }
    }

    #[test]
    fn runs_with_the_message_and_environment() {
        let d = std::env::temp_dir().join(format!("rqmail-program-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let out = d.join("out");
        let mut env = Env::default();
        env.set("PATH", "/bin:/usr/bin");
        env.set("RECIPIENT", "joe@example.org");
        let cmd = format!("{{ echo \"$RECIPIENT\"; cat; }} > {}", out.display());
        let mut m = message(b"Subject: x\n\nbody\n");
        assert_eq!(
            deliver(cmd.as_bytes(), &mut m, &env, Duration::from_secs(10)),
            Ok(Outcome::Continue)
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"joe@example.org\nSubject: x\n\nbody\n");
        assert_eq!(
            deliver(b"exit 99", &mut m, &env, Duration::from_secs(10)),
            Ok(Outcome::Stop)
        );
        assert!(
            deliver(b"exit 100", &mut m, &env, Duration::from_secs(10))
                .unwrap_err()
                .permanent
        );
        assert!(
            !deliver(b"exit 111", &mut m, &env, Duration::from_secs(10))
                .unwrap_err()
                .permanent
        );
        assert_eq!(
            deliver(b"kill -9 $$", &mut m, &env, Duration::from_secs(10)).unwrap_err(),
            crashed()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_hanging_program_and_its_children_are_killed_at_the_timeout() {
        let env = Env::inherited();
        let t = Instant::now();
        let f = deliver(
            b"sleep 30 & sleep 30",
            &mut message(b"x\n"),
            &env,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(
            !f.permanent && f.text.starts_with("Timeout on program delivery"),
            "{f:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
