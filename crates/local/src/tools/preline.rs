//! preline(1): `preline [-dfr] command [arg ...]` feeds the message to command with
//! qmail-local's `$UFLINE` (the mbox `From_` line), `$RPLINE` (Return-Path) and
//! `$DTLINE` (Delivered-To) in front, for programs such as procmail that do not read
//! the environment. `-f`, `-r`, `-d` leave out one of them; `-F`, `-R`, `-D` put it
//! back. preline exits with command's exit code, so the .qmail contract (0, 99, 100,
//! 111) passes through unchanged.

use qmail::exit::Failure;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// Which of the three lines go in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lines {
    pub uf: bool,
    pub rp: bool,
    pub dt: bool,
}

/// Runs `argv` with `head` and then `input` on its standard input; returns its exit code.
pub fn run(argv: &[OsString], head: &[&[u8]], mut input: impl Read) -> Result<i32, Failure> {
    let (r, w) = qmail::fd::pipe().map_err(|e| Failure::io("unable to create pipe", &e))?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::from(r))
        .spawn()
        .map_err(|e| Failure {
            permanent: !super::temporary(&e),
            text: format!(
                "unable to run {}: {}",
                argv[0].to_string_lossy(),
                qmail::errstr::io_str(&e)
            ),
        })?;
    let mut pipe = File::from(w);
    let copied = head
        .iter()
        .try_for_each(|l| pipe.write_all(l))
        .and_then(|()| copy(&mut input, &mut pipe));
    drop(pipe);
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::io("wait failed", &e)),
        }
    };
    // A crash is what happened, whatever the copy saw (a command killed mid-read
    // also broke the pipe); otherwise, as preline(1), a command that stops reading
    // early loses preline its pipe.
    if status.signal().is_some() {
        return Err(Failure::temp("child crashed"));
    }
    copied.map_err(|e| Failure::io("unable to copy input", &e))?;
    match status.code() {
        Some(c) => Ok(c),
        None if status.signal().is_some() => Err(Failure::temp("child crashed")),
        None => Err(Failure::temp("wait failed")),
    }
}

fn copy(input: &mut impl Read, out: &mut impl Write) -> io::Result<()> {
    let mut buf = [0u8; super::BUF];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `$UFLINE`, `$RPLINE`, `$DTLINE` as `lines` selects them; None when one is not set.
pub fn head(lines: Lines) -> Option<Vec<Vec<u8>>> {
    let uf = super::env_bytes("UFLINE")?;
    let rp = super::env_bytes("RPLINE")?;
    let dt = super::env_bytes("DTLINE")?;
    Some(
        [(lines.uf, uf), (lines.rp, rp), (lines.dt, dt)]
            .into_iter()
            .filter_map(|(on, l)| on.then_some(l))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<OsString> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_lines_go_in_front_and_the_exit_code_comes_back() {
        let out = std::env::temp_dir().join(format!("rqmail-preline-{}", std::process::id()));
        let script = format!("cat > {}; exit 99", out.display());
        let head: [&[u8]; 2] = [b"From a@b Thu Jan 01 00:00:00 1970\n", b"Return-Path: <a@b>\n"];
        assert_eq!(run(&sh(&script), &head, &b"Subject: x\n\nbody\n"[..]), Ok(99));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"From a@b Thu Jan 01 00:00:00 1970\nReturn-Path: <a@b>\nSubject: x\n\nbody\n"
        );
        std::fs::remove_file(&out).unwrap();
        assert_eq!(
            run(&sh("cat >/dev/null; kill -9 $$"), &[], &b""[..]),
            Err(Failure::temp("child crashed"))
        );
        let e = run(&["/nonexistent/rqmail-x".into()], &[], &b""[..]).unwrap_err();
        assert_eq!(
            e,
            Failure::perm("unable to run /nonexistent/rqmail-x: file does not exist")
        );
    }

    #[test]
    fn a_command_that_stops_reading_is_a_temporary_failure() {
        let big = vec![b'x'; 1 << 20];
        let e = run(&sh("exit 0"), &[], &big[..]).unwrap_err();
        assert_eq!(e, Failure::temp("unable to copy input: broken pipe"));
    }
}
