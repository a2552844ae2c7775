//! mbox delivery, as qmail-local(8) and mbox(5): append a `From ` line, Return-Path,
//! Delivered-To and the message with `>From ` quoting, then one empty line; fsync; on
//! any error cut the file back to its old size.
//!
//! Locking. qmail takes flock() alone, which neither mutt nor Dovecot look at.
//! Here the writer takes the two locks those readers use, in Dovecot's order:
//! - a dot-lock `PATH.lock`, made by link() from a unique file so it also works on
//!   NFS (mutt's mutt_dotlock, Dovecot's `mbox_write_locks = dotlock fcntl`, procmail
//!   and liblockfile agree on it); one older than 5 minutes is stale and removed,
//!   as liblockfile does. In a directory where the user cannot create files (a
//!   `/var/mail` writable only by group mail) a dot-lock someone else holds is
//!   waited for, but none is made;
//! - an fcntl() write lock on the whole file (mutt's default, Dovecot's
//!   `mbox_read_locks = fcntl`).
//!
//! Both are retried for 30 seconds in all; then `File has been locked for 30 seconds
//! straight.` and a retry later. An fcntl that fails for another reason than a
//! conflict (no lock support) lets the delivery go on, as qmail's does.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qmail::exit::Failure;

use super::message::{Message, CHUNK};
use super::{err_text, Fields};

/// How long the locks are waited for, in all.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A dot-lock not changed for this long belongs to a dead process.
pub const STALE_DOTLOCK: Duration = Duration::from_secs(300);
const RETRY: Duration = Duration::from_millis(100);

fn slow_lock() -> Failure {
    Failure::temp("File has been locked for 30 seconds straight. (#4.3.0)")
}

/// A held dot-lock, removed when dropped.
pub struct DotLock {
    path: PathBuf,
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes `mbox.lock`: Ok(None) when the directory will not let us (no dot-lock, as
/// for a reader that cannot make one either), Err when another holds it past
/// `deadline`.
pub fn dotlock(mbox: &Path, deadline: Instant) -> Result<Option<DotLock>, Failure> {
    let mut lock = mbox.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let mut unique = mbox.as_os_str().to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    unique.push(format!(
        ".lock.{}.{}.{}",
        std::process::id(),
        now.as_secs(),
        now.subsec_nanos()
    ));
    let unique = PathBuf::from(unique);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&unique)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{}", std::process::id());
            }
            // We cannot lock here, but a reader that can (mutt_dotlock, setgid mail)
            // may hold the lock: wait for it to go, then deliver under fcntl alone.
            Err(_) if std::fs::symlink_metadata(&lock).is_ok() => {
                if Instant::now() >= deadline {
                    return Err(slow_lock());
                }
                std::thread::sleep(RETRY);
                continue;
            }
            Err(_) => return Ok(None),
        }
        let linked = std::fs::hard_link(&unique, &lock);
        // On NFS link() may fail after it worked: the link count says.
        let got = linked.is_ok() || std::fs::metadata(&unique).map(|m| m.nlink() == 2).unwrap_or(false);
        let _ = std::fs::remove_file(&unique);
        if got {
            return Ok(Some(DotLock { path: lock }));
        }
        match linked {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            _ => return Ok(None),
        }
        if let Ok(m) = std::fs::metadata(&lock) {
            let age = now.as_secs() as i64 - m.mtime();
            if age > STALE_DOTLOCK.as_secs() as i64 {
                let _ = std::fs::remove_file(&lock);
                continue;
            }
        }
        if Instant::now() >= deadline {
            return Err(slow_lock());
        }
        std::thread::sleep(RETRY);
    }
}

/// An fcntl write lock on all of `file`, retried until `deadline`. Ok(false): the
/// file system has no locks, the delivery goes on unlocked.
pub fn fcntl_lock(file: &File, deadline: Instant) -> Result<bool, Failure> {
    loop {
        // SAFETY: flock is plain data; zero is a valid start for every field.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: F_SETLK with a valid flock structure on our descriptor.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
            return Ok(true);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES | libc::EINTR) => {}
            _ => return Ok(false),
        }
        if Instant::now() >= deadline {
            return Err(slow_lock());
        }
        std::thread::sleep(RETRY);
    }
}

/// Writes the message with qmail's `>From ` quoting: a line that is zero or more
/// `>` then `From ` gets one more `>`; a last line without LF gets one. Lines may be
/// of any length: only the count of leading `>` and how much of `From ` matched so
/// far are kept.
pub struct Quoter<W: Write> {
    out: W,
    /// At the start of a line, still deciding.
    start: bool,
    gt: usize,
    from: usize,
}

const FROM: &[u8] = b"From ";

impl<W: Write> Quoter<W> {
    pub fn new(out: W) -> Quoter<W> {
        Quoter {
            out,
            start: true,
            gt: 0,
            from: 0,
        }
    }

    fn pending(&mut self) -> io::Result<()> {
        for _ in 0..self.gt {
            self.out.write_all(b">")?;
        }
        self.out.write_all(&FROM[..self.from])?;
        (self.gt, self.from) = (0, 0);
        Ok(())
    }

    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if !self.start {
                match data.iter().position(|&c| c == b'\n') {
                    Some(i) => {
                        self.out.write_all(&data[..=i])?;
                        data = &data[i + 1..];
                        self.start = true;
                    }
                    None => return self.out.write_all(data),
                }
                continue;
            }
            let c = data[0];
            data = &data[1..];
            if self.from == 0 && c == b'>' {
                self.gt += 1;
            } else if c == FROM[self.from] {
                self.from += 1;
                if self.from == FROM.len() {
                    self.out.write_all(b">")?;
                    self.pending()?;
                    self.start = false;
                }
            } else {
                self.pending()?;
                self.out.write_all(&[c])?;
                self.start = c == b'\n';
            }
        }
        Ok(())
    }

    /// Ends the last line and adds the empty line that separates messages.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.start || self.gt > 0 || self.from > 0 {
            self.pending()?;
            self.out.write_all(b"\n")?;
        }
        self.out.write_all(b"\n")?;
        Ok(self.out)
    }
}

enum Stop {
    Read(io::Error),
    Write(io::Error),
}

/// Appends the message to the mbox `path` (relative to the home directory).
pub fn deliver(path: &[u8], msg: &mut Message, fields: &Fields) -> Result<(), Failure> {
    deliver_with(path, msg, fields, LOCK_WAIT)
}

pub fn deliver_with(path: &[u8], msg: &mut Message, fields: &Fields, wait: Duration) -> Result<(), Failure> {
    msg.rewind()?;
    let shown = String::from_utf8_lossy(path).into_owned();
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| Failure::temp(format!("Unable to open {shown}: {}. (#4.2.1)", err_text(&e))))?;
    let deadline = Instant::now() + wait;
    let dot = dotlock(p, deadline)?;
    let locked = fcntl_lock(&file, deadline)? || dot.is_some();

    let mut f = &file;
    let start = f
        .seek(SeekFrom::End(0))
        .map_err(|e| Failure::temp(format!("Unable to write {shown}: {}. (#4.3.0)", err_text(&e))))?;
    let written = (|| {
        let mut q = Quoter::new(BufWriter::with_capacity(CHUNK, &file));
        q.out
            .write_all(&[fields.ufline.as_slice(), &fields.rpline, &fields.dtline].concat())
            .map_err(Stop::Write)?;
        let mut buf = vec![0; CHUNK];
        loop {
            let n = msg.read(&mut buf).map_err(Stop::Read)?;
            if n == 0 {
                break;
            }
            q.write(&buf[..n]).map_err(Stop::Write)?;
        }
        let out = q.finish().map_err(Stop::Write)?;
        out.into_inner().map_err(|e| Stop::Write(e.into_error()))?;
        file.sync_all().map_err(Stop::Write)
    })();
    let failure = match written {
        Ok(()) => return Ok(()),
        Err(Stop::Read(e)) => format!("Unable to read message: {}. (#4.3.0)", err_text(&e)),
        Err(Stop::Write(e)) => format!("Unable to write {shown}: {}. (#4.3.0)", err_text(&e)),
    };
    // Without a lock another writer may have appended after us: leave the file be.
    if locked {
        let _ = file.set_len(start);
        let _ = file.sync_all();
    }
    drop(dot);
    Err(Failure::temp(failure))
}

#[cfg(test)]
mod tests {
    use super::super::message::message;
    use super::*;

    fn quote(input: &[&[u8]]) -> Vec<u8> {
        let mut q = Quoter::new(Vec::new());
        for part in input {
            q.write(part).unwrap();
        }
        q.finish().unwrap()
    }

    #[test]
    fn from_quoting_as_qmail() {
        assert_eq!(
            quote(&[b"From x\n>From y\nFrom\n From z\n>>From w\n"]),
            b">From x\n>>From y\nFrom\n From z\n>>>From w\n\n"
        );
        // Split anywhere, the same bytes.
        let msg: &[u8] = b"a\nFrom x\n>>Fro\n>>>From \nFrFrom \nend";
        let whole = quote(&[msg]);
        assert_eq!(whole, b"a\n>From x\n>>Fro\n>>>>From \nFrFrom \nend\n\n");
        for i in 0..msg.len() {
            for j in i..msg.len() {
                assert_eq!(quote(&[&msg[..i], &msg[i..j], &msg[j..]]), whole, "{i} {j}");
            }
        }
        // A last line that stopped while deciding, and the empty message.
        assert_eq!(quote(&[b"x\n>>Fr"]), b"x\n>>Fr\n\n");
        assert_eq!(quote(&[b""]), b"\n");
        assert_eq!(quote(&[b"x\n"]), b"x\n\n");
        // A line of a million '>' keeps nothing but a count.
        let long = vec![b'>'; 1_000_000];
        assert_eq!(quote(&[&long, b"From \n"]).len(), 1_000_000 + 1 + 6 + 1);
    }

    fn fields() -> Fields {
        Fields {
            dtline: b"Delivered-To: joe@example.org\n".to_vec(),
            rpline: b"Return-Path: <bob@example.com>\n".to_vec(),
            ufline: b"From bob@example.com Thu Jan 01 00:00:00 1970\n".to_vec(),
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rqmail-mbox-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn appends_and_removes_its_dotlock() {
        let d = dir("append");
        let p = d.join("Mailbox");
        let pb = p.as_os_str().as_bytes();
        deliver(pb, &mut message(b"Subject: a\n\nFrom here\n"), &fields()).unwrap();
        deliver(pb, &mut message(b"Subject: b\n\nlast"), &fields()).unwrap();
        let head = "From bob@example.com Thu Jan 01 00:00:00 1970\nReturn-Path: <bob@example.com>\nDelivered-To: joe@example.org\n";
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{head}Subject: a\n\n>From here\n\n{head}Subject: b\n\nlast\n\n")
        );
        assert!(!d.join("Mailbox.lock").exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_held_dotlock_times_out_and_a_stale_one_is_removed() {
        let d = dir("dotlock");
        let p = d.join("Mailbox");
        std::fs::write(d.join("Mailbox.lock"), "").unwrap();
        let t = Instant::now();
        assert_eq!(
            deliver_with(
                p.as_os_str().as_bytes(),
                &mut message(b"x\n"),
                &fields(),
                Duration::from_millis(300)
            )
            .unwrap_err(),
            slow_lock()
        );
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        // Ten minutes old: stale.
        let old = std::fs::File::options()
            .write(true)
            .open(d.join("Mailbox.lock"))
            .unwrap();
        old.set_modified(std::time::SystemTime::now() - Duration::from_secs(600))
            .unwrap();
        deliver_with(
            p.as_os_str().as_bytes(),
            &mut message(b"x\n"),
            &fields(),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(!d.join("Mailbox.lock").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_dotlock_we_could_not_have_made_is_still_waited_for() {
        // As root every directory is writable: this needs a user who cannot write.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let d = dir("nodotlock");
        std::fs::write(d.join("Mailbox"), "").unwrap();
        std::fs::write(d.join("Mailbox.lock"), "").unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
        let p = d.join("Mailbox");
        let r = deliver_with(
            p.as_os_str().as_bytes(),
            &mut message(b"x\n"),
            &fields(),
            Duration::from_millis(300),
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(r.unwrap_err(), slow_lock());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
