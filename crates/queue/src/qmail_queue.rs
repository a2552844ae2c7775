//! qmail-queue: puts one message into the queue, crash-safely (qmail-queue(8)).
//!
//! The message comes on fd 0, then the envelope on fd 1. Exit 0 is the promise that
//! both are on disk: the message file and the envelope are fsynced, and so are the
//! directories holding their names, before the envelope is linked into `todo/`, the
//! one step that makes the message visible to qmail-send. Until then a failure or a
//! kill leaves nothing qmail-send would pick up; failures clean up at once, a kill -9
//! leaves files that qmail-clean removes after 36 hours, as in qmail.

use qmail::date822::Utc;
use qmail::ids::Ids;
use qmail::queuedir;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The exit codes of qmail-queue(8) that qmail-queue itself produces.
pub mod code {
    pub const ADDR_TOO_LONG: i32 = 11;
    pub const NOMEM: i32 = 51;
    pub const TIMEOUT: i32 = 52;
    pub const WRITE: i32 = 53;
    pub const READ: i32 = 54;
    pub const HOME: i32 = 61;
    pub const QUEUE: i32 = 62;
    pub const PID: i32 = 63;
    pub const MESS: i32 = 64;
    pub const INTD: i32 = 65;
    pub const TODO: i32 = 66;
    pub const BUG: i32 = 81;
    pub const FORMAT: i32 = 91;
}

/// An address longer than this (without its NUL) is refused with 11 (qmail's ADDR - 1).
pub const ADDR_MAX: usize = 1002;
/// qmail's DEATH: a qmail-queue still running after a day gives up, well before the
/// 36-hour cleanup could remove files it still owns.
const DEATH: u32 = 86400;

/// Everything before the first file: signals, the alarm, umask, the queue directory.
pub fn setup() -> Result<Ids, i32> {
    // The caller's blocked and ignored signals survive exec: a blocked SIGALRM would
    // switch off the death alarm, a default SIGXFSZ under a low RLIMIT_FSIZE would
    // kill us mid-file. With SIGXFSZ ignored that write fails with EFBIG: exit 53.
    qmail::signals::sanitize();
    qmail::signals::ignore_misc();
    catch_signals();
    // SAFETY: alarm and umask have no preconditions.
    unsafe {
        libc::alarm(DEATH);
        libc::umask(0o033);
    }
    let home = qmail::home::home();
    std::env::set_current_dir(&home).map_err(|_| code::HOME)?;
    let ids = Ids::load(Path::new(".")).map_err(|_| code::HOME)?;
    std::env::set_current_dir("queue").map_err(|_| code::QUEUE)?;
    Ok(ids)
}

/// `invoked by uid N` and friends, as qmail-send's and admins' eyes expect them.
pub fn invoker(ids: &Ids, uid: u32) -> String {
    if uid == ids.uid("alias") {
        "by alias".into()
    } else if uid == ids.uid("qmaild") {
        "from network".into()
    } else if uid == ids.uid("qmails") {
        "for bounce".into()
    } else {
        format!("by uid {uid}")
    }
}

pub fn received(pid: u32, who: &str, when: Utc) -> String {
    format!("Received: (qmail {pid} invoked {who}); {}\n", when.rfc822())
}

/// Files made so far, removed again if the message is not committed.
#[derive(Default)]
struct Made {
    pid: Option<String>,
    mess: Option<(String, File)>,
    intd: Option<(String, File)>,
}

impl Made {
    /// Truncates first, so a full disk gets its space back even if unlink fails.
    fn clean(self) {
        for (name, file) in [self.intd, self.mess].into_iter().flatten() {
            let _ = file.set_len(0);
            let _ = std::fs::remove_file(name);
        }
        if let Some(p) = self.pid {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Queues fd 0 with the envelope from fd 1; the result is the exit code.
pub fn run(ids: &Ids) -> i32 {
    let uid = nix::unistd::getuid().as_raw();
    let pid = std::process::id();
    let start = qmail::date822::now();
    let mut made = Made::default();
    match queue(&mut made, ids, uid, pid, start) {
        Ok(()) => {
            pull_trigger();
            0
        }
        Err(code) => {
            made.clean();
            code
        }
    }
}

fn queue(made: &mut Made, ids: &Ids, uid: u32, pid: u32, start: i64) -> Result<(), i32> {
    let (pidname, pidfile) = create_pid_file(pid, start)?;
    made.pid = Some(pidname.clone());
    let n = pidfile.metadata().map_err(|_| code::PID)?.ino();
    let messname = queuedir::split_name("mess", n);
    std::fs::hard_link(&pidname, &messname).map_err(|_| code::MESS)?;
    made.mess = Some((messname.clone(), pidfile));
    std::fs::remove_file(&pidname).map_err(|_| code::PID)?;
    made.pid = None;

    let mess = &made.mess.as_ref().expect("just set").1;
    let head = received(pid, &invoker(ids, uid), Utc::from_unix(start));
    copy_message(head.as_bytes(), mess)?;

    let intdname = queuedir::flat_name("intd", n);
    let intd = create_excl(&intdname).map_err(|_| code::INTD)?;
    made.intd = Some((intdname.clone(), intd));
    let intd = &made.intd.as_ref().expect("just set").1;
    // SAFETY: fd 1 is the envelope pipe by qmail-queue's contract; ManuallyDrop keeps
    // it open, since nothing here owns it.
    let envelope = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    copy_envelope(&mut BufReader::with_capacity(4096, &*envelope), intd, uid, pid)?;
    // Both files are written before either is synced, so one journal commit can
    // carry both (qmail syncs the message before making intd/).
    mess.sync_all().map_err(|_| code::WRITE)?;
    intd.sync_all().map_err(|_| code::WRITE)?;
    // The mess/ name must be durable no later than the todo/ one: after a crash,
    // qmail-send would find todo/N without the message it promises.
    sync_dir(&format!("mess/{}", n % queuedir::SPLIT)).map_err(|_| code::WRITE)?;

    std::fs::hard_link(&intdname, queuedir::flat_name("todo", n)).map_err(|_| code::TODO)?;
    // Committed: from here nothing may be removed, whatever happens.
    std::mem::forget(std::mem::take(made));
    sync_dir("todo").map_err(|_| code::WRITE)
}

/// `pid/PID.START.SEQ`, exclusive; its inode number becomes the message number.
fn create_pid_file(pid: u32, start: i64) -> Result<(String, File), i32> {
    for seq in 1..=9 {
        let name = format!("pid/{pid}.{start}.{seq}");
        match create_excl(&name) {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return Err(code::PID),
        }
    }
    Err(code::PID)
}

fn create_excl(name: &str) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(name)
}

/// The Received line, then fd 0 verbatim.
fn copy_message(head: &[u8], mut out: &File) -> Result<(), i32> {
    // SAFETY: fd 0 is the message by qmail-queue's contract; see copy_envelope.
    let input = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    let mut buf = [0u8; 16384];
    let mut filled = head.len();
    buf[..filled].copy_from_slice(head);
    loop {
        match (&*input).read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(code::READ),
        }
        if filled == buf.len() {
            out.write_all(&buf).map_err(|_| code::WRITE)?;
            filled = 0;
        }
    }
    out.write_all(&buf[..filled]).map_err(|_| code::WRITE)
}

/// Copies the envelope into the todo format, checking it. qmail-queue(8)'s envelope is
/// `F` sender NUL, then `T` recipient NUL for each recipient, then a NUL; the todo file
/// is `u` uid NUL `p` pid NUL, then the same records without the final NUL.
fn copy_envelope(input: &mut impl BufRead, out: &File, uid: u32, pid: u32) -> Result<(), i32> {
    let mut out = BufWriter::with_capacity(4096, out);
    let w = |r: io::Result<()>| r.map_err(|_| code::WRITE);
    w(write!(out, "u{uid}\0p{pid}\0"))?;
    if next_byte(input)? != b'F' {
        return Err(code::FORMAT);
    }
    w(out.write_all(b"F"))?;
    copy_address(input, &mut out)?;
    loop {
        match next_byte(input)? {
            0 => break,
            b'T' => {
                w(out.write_all(b"T"))?;
                copy_address(input, &mut out)?;
            }
            _ => return Err(code::FORMAT),
        }
    }
    w(out.flush())
}

fn next_byte(input: &mut impl BufRead) -> Result<u8, i32> {
    let mut b = [0u8];
    match input.read_exact(&mut b) {
        Ok(()) => Ok(b[0]),
        Err(_) => Err(code::READ),
    }
}

/// One address and its NUL; EOF before the NUL is a read error (54), more than
/// ADDR_MAX bytes is 11.
fn copy_address(input: &mut impl BufRead, out: &mut impl Write) -> Result<(), i32> {
    let mut len = 0;
    loop {
        let buf = match input.fill_buf() {
            Ok([]) | Err(_) => return Err(code::READ),
            Ok(b) => b,
        };
        let (take, done) = match buf.iter().position(|&b| b == 0) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        len += take - usize::from(done);
        if len > ADDR_MAX {
            return Err(code::ADDR_TOO_LONG);
        }
        out.write_all(&buf[..take]).map_err(|_| code::WRITE)?;
        input.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Makes the names in `dir` durable.
fn sync_dir(dir: &str) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Wakes qmail-send: one byte into `lock/trigger` if anyone reads it; errors ignored.
pub fn pull_trigger() {
    // SAFETY: plain open/write/close; the path and buffer are static.
    unsafe {
        let fd = libc::open(
            c"lock/trigger".as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            let _ = libc::write(fd, c"".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

extern "C" fn on_alarm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. No cleanup here, as in qmail: the 36-hour
    // cleanup removes what is left, and no qmail-queue lives that long.
    unsafe { libc::_exit(code::TIMEOUT) }
}

extern "C" fn on_fault(_: libc::c_int) {
    // SAFETY: as above.
    unsafe { libc::_exit(code::BUG) }
}

extern "C" fn on_abort(_: libc::c_int) {
    // Rust aborts when an allocation fails; panics exit 81 from the hook below first.
    // SAFETY: as above.
    unsafe { libc::_exit(code::NOMEM) }
}

fn catch_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    let handlers: [(Signal, extern "C" fn(libc::c_int)); 6] = [
        (Signal::SIGALRM, on_alarm),
        (Signal::SIGSEGV, on_fault),
        (Signal::SIGBUS, on_fault),
        (Signal::SIGILL, on_fault),
        (Signal::SIGFPE, on_fault),
        (Signal::SIGABRT, on_abort),
    ];
    for (sig, h) in handlers {
        // SAFETY: the handlers only call _exit.
        let _ = unsafe { signal(sig, SigHandler::Handler(h)) };
    }
    std::panic::set_hook(Box::new(|_| {
        // SAFETY: as above; a panic is a bug, and qmail-queue prints nothing.
        unsafe { libc::_exit(code::BUG) }
    }));
}

/// Creates a queue directory at `path` (for tests of this module).
#[cfg(test)]
fn mkdirs(root: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true).mode(0o750);
    for d in ["pid", "intd", "todo", "lock"] {
        b.create(root.join(d)).unwrap();
    }
    for s in 0..queuedir::SPLIT {
        b.create(root.join(format!("mess/{s}"))).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(bytes: &[u8]) -> Result<Vec<u8>, i32> {
        let d = std::env::temp_dir().join(format!("rqmail-qq-{}-{}", std::process::id(), bytes.len()));
        mkdirs(&d);
        let f = File::create(d.join("intd/1")).unwrap();
        let r = copy_envelope(&mut &bytes[..], &f, 7, 9);
        let out = std::fs::read(d.join("intd/1")).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        r.map(|()| out)
    }

    #[test]
    fn envelope_is_checked_and_copied() {
        assert_eq!(env(b"Fa@b\0Tc@d\0Te\0\0").unwrap(), b"u7\0p9\0Fa@b\0Tc@d\0Te\0");
        assert_eq!(env(b"F\0\0").unwrap(), b"u7\0p9\0F\0");
        assert_eq!(env(b"Xa\0\0"), Err(code::FORMAT));
        assert_eq!(env(b"Fa\0Xb\0\0"), Err(code::FORMAT));
        // A NUL inside a recipient ends it; what follows is not a record.
        assert_eq!(env(b"Fa\0Tb\0c\0\0"), Err(code::FORMAT));
        assert_eq!(env(b"Fa\0Tb\0"), Err(code::READ));
        assert_eq!(env(b"Fa"), Err(code::READ));
        assert_eq!(env(b""), Err(code::READ));
    }

    #[test]
    fn address_length_limit() {
        let ok = [b"F".as_slice(), &[b'x'; ADDR_MAX], b"\0\0"].concat();
        assert!(env(&ok).is_ok());
        let long = [b"F".as_slice(), &[b'x'; ADDR_MAX + 1], b"\0\0"].concat();
        assert_eq!(env(&long), Err(code::ADDR_TOO_LONG));
        let rcpt = [b"F\0T".as_slice(), &[b'x'; ADDR_MAX + 1], b"\0\0"].concat();
        assert_eq!(env(&rcpt), Err(code::ADDR_TOO_LONG));
    }

    #[test]
    fn received_line() {
        let ids = Ids::single(5, 5);
        let mut ids2 = ids.clone();
        ids2.set_user("qmaild", 6, 5);
        ids2.set_user("qmails", 8, 5);
        assert_eq!(invoker(&ids, 5), "by alias");
        assert_eq!(invoker(&ids2, 6), "from network");
        assert_eq!(invoker(&ids2, 8), "for bounce");
        assert_eq!(invoker(&ids2, 1000), "by uid 1000");
        assert_eq!(
            received(4711, "by uid 1000", Utc::from_unix(1_706_951_107)),
            "Received: (qmail 4711 invoked by uid 1000); 3 Feb 2024 09:05:07 -0000\n"
        );
    }
}
