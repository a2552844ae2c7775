//! maildir2mbox(1): moves the messages of `$MAILDIR` (new/ and cur/) to the end of the
//! mbox `$MAIL`, by way of `$MAILTMP` (same filesystem): the old mbox and then each
//! message, oldest first, go to MAILTMP, which is fsynced and renamed over MAIL; only
//! then are the messages removed. A crash leaves every message in the Maildir or in
//! the mbox, at worst in both. Relative MAIL and MAILTMP are inside MAILDIR.
//!
//! Each message gets a `From_` line made from its `Return-Path` first line
//! (`MAILER-DAEMON` for `<>`, `XXX` without one) and its file's time, `>` in front of
//! every `>*From ` line, and an empty line after it; a last line without a newline
//! gets one. Messages whose time is not yet in the past are left for the next run.
//! MAIL is locked as qmail-local locks it, a dot-lock `MAIL.lock` and then fcntl
//! (what mutt and Dovecot respect), and with flock as qmail's maildir2mbox did; the
//! dot-lock is held until the new file has replaced MAIL. Temp files in tmp/ unused for 36 hours are removed.

use qmail::exit::Failure;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The three paths, from MAILDIR, MAIL and MAILTMP.
pub struct Paths {
    pub maildir: PathBuf,
    pub mail: PathBuf,
    pub tmp: PathBuf,
}

impl Paths {
    pub fn from_env() -> Result<Paths, Failure> {
        let var = |name: &str| std::env::var_os(name).ok_or_else(|| Failure::temp(format!("{name} not set")));
        let mail = var("MAIL")?;
        let tmp = var("MAILTMP")?;
        let maildir = PathBuf::from(var("MAILDIR")?);
        Ok(Paths {
            mail: maildir.join(mail),
            tmp: maildir.join(tmp),
            maildir,
        })
    }
}

/// The `From ` line's sender, from a message's first line.
fn sender(first: &[u8]) -> Vec<u8> {
    match first.strip_prefix(b"Return-Path: <") {
        Some(rest) if first.ends_with(b"\n") => {
            if rest.first() == Some(&b'>') {
                return b"MAILER-DAEMON".to_vec();
            }
            // The line less its `>\n`, as maildir2mbox.c takes it.
            let end = rest.len().saturating_sub(2);
            rest[..end]
                .iter()
                .map(|&b| if b == b' ' || b == b'\t' { b'-' } else { b })
                .collect()
        }
        _ => b"XXX".to_vec(),
    }
}

/// `>*From ` at the start of a line.
fn gfrom(line: &[u8]) -> bool {
    let i = line.iter().take_while(|&&b| b == b'>').count();
    line[i..].starts_with(b"From ")
}

/// The messages to move, oldest first: (time, name relative to MAILDIR).
fn scan(maildir: &Path, now: i64) -> Result<Vec<(i64, PathBuf)>, Failure> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let dir = fs::read_dir(maildir.join(sub))
            .map_err(|e| Failure::io(format_args!("unable to scan $MAILDIR/{sub}"), &e))?;
        for entry in dir {
            let entry = entry.map_err(|e| Failure::io(format_args!("unable to read $MAILDIR/{sub}"), &e))?;
            let name = entry.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            let rel = Path::new(sub).join(&name);
            if let Ok(st) = fs::metadata(maildir.join(&rel)) {
                if st.mtime() < now {
                    found.push((st.mtime(), rel));
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Removes what was left in tmp/ by a writer that died, 36 hours after its last use.
fn clean(maildir: &Path, now: i64) {
    let Ok(dir) = fs::read_dir(maildir.join("tmp")) else {
        return;
    };
    for entry in dir.flatten() {
        if entry.file_name().as_bytes().first() == Some(&b'.') {
            continue;
        }
        let p = entry.path();
        if fs::metadata(&p).is_ok_and(|st| now > st.atime() + 129_600) {
            let _ = fs::remove_file(&p);
        }
    }
}

/// How long to wait for another holder of MAIL.lock, as qmail-local does.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn lock(f: &File) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: flock and fcntl on a descriptor this function borrows; `fl` lives
    // across the call.
    unsafe {
        if libc::flock(fd, libc::LOCK_EX) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        loop {
            if libc::fcntl(fd, libc::F_SETLKW, &fl) == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Moves the messages; says on stderr which could not be removed afterwards.
pub fn run(p: &Paths) -> Result<(), Failure> {
    let now = qmail::date822::now();
    clean(&p.maildir, now);
    let messages = scan(&p.maildir, now)?;
    if messages.is_empty() {
        return Ok(());
    }
    let (mail, tmp) = (p.mail.display(), p.tmp.display());
    // qmail-local's order: the dot-lock first (held until the rename is done, so a
    // delivery waits before it opens the file we replace), then flock and fcntl.
    let _dotlock = crate::qmail_local::mbox::dotlock(&p.mail, std::time::Instant::now() + LOCK_WAIT)?;
    let lock_file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p.mail)
        .and_then(|f| lock(&f).map(|()| f))
        .map_err(|e| Failure::io(format_args!("unable to lock {mail}"), &e))?;
    let mut old = File::open(&p.mail).map_err(|e| Failure::io(format_args!("unable to read {mail}"), &e))?;
    let new = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p.tmp)
        .map_err(|e| Failure::io(format_args!("unable to create {tmp}"), &e))?;
    let write_err = |e: io::Error| Failure::io(format_args!("unable to write to {tmp}"), &e);
    let mut out = BufWriter::with_capacity(super::BUF, new);
    let mut buf = [0u8; super::BUF];
    loop {
        let n = match old.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::io(format_args!("unable to read {mail}"), &e)),
        };
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
    for (time, name) in &messages {
        let read_err = |e: io::Error| Failure::io(format_args!("unable to read $MAILDIR/{}", name.display()), &e);
        let f = File::open(p.maildir.join(name)).map_err(read_err)?;
        let mut input = BufReader::with_capacity(super::BUF, f);
        let mut line = Vec::with_capacity(256);
        input.read_until(b'\n', &mut line).map_err(read_err)?;
        out.write_all(b"From ").map_err(write_err)?;
        out.write_all(&sender(&line)).map_err(write_err)?;
        out.write_all(b" ").map_err(write_err)?;
        out.write_all(qmail::date822::myctime(*time).as_bytes())
            .map_err(write_err)?;
        while !line.is_empty() {
            if gfrom(&line) {
                out.write_all(b">").map_err(write_err)?;
            }
            out.write_all(&line).map_err(write_err)?;
            if !line.ends_with(b"\n") {
                out.write_all(b"\n").map_err(write_err)?;
                break;
            }
            line.clear();
            input.read_until(b'\n', &mut line).map_err(read_err)?;
        }
        out.write_all(b"\n").map_err(write_err)?;
    }
    let new = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    new.sync_all().map_err(write_err)?;
    drop(new);
    fs::rename(&p.tmp, &p.mail).map_err(|e| Failure::io(format_args!("unable to move {tmp} to {mail}"), &e))?;
    drop(lock_file);
    for (_, name) in &messages {
        if let Err(e) = fs::remove_file(p.maildir.join(name)) {
            qmail::exit::warn(
                "maildir2mbox",
                "warning",
                &format!(
                    "$MAILDIR/{} will be delivered twice; unable to unlink: {}",
                    name.display(),
                    qmail::errstr::io_str(&e)
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lines_as_qmail_writes_them() {
        assert_eq!(qmail::date822::myctime(0), "Thu Jan 01 00:00:00 1970\n");
        assert_eq!(qmail::date822::myctime(1_706_778_307), "Thu Feb 01 09:05:07 2024\n");
        assert_eq!(qmail::date822::myctime(1_709_164_800), "Thu Feb 29 00:00:00 2024\n");
        assert_eq!(sender(b"Return-Path: <a b@c>\n"), b"a-b@c");
        assert_eq!(sender(b"Return-Path: <>\n"), b"MAILER-DAEMON");
        assert_eq!(sender(b"Return-Path: <a@b>"), b"XXX"); // no newline
        assert_eq!(sender(b"Received: x\n"), b"XXX");
        assert_eq!(sender(b"Return-Path: <\n"), b"");
        assert!(gfrom(b"From x") && gfrom(b">>From x") && !gfrom(b" From x") && !gfrom(b">From"));
    }
}
