//! The half that qmail-lspawn and qmail-rspawn share (qmail's spawn.c): the slot
//! byte handshake, the delivery commands qmail-send writes on descriptor 0, one
//! child per delivery, and one report per child on descriptor 1.
//!
//! Signals: SIGCHLD is blocked and read from a signalfd in the same poll as the
//! command pipe and the children's report pipes, so nothing runs in a handler. The
//! spawn keeps its own copy of each report pipe's write end until it has reaped the
//! child, so end-of-file on a report pipe always comes with a known wait status.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// qmail's conf-spawn: the slots a spawn offers, sent to qmail-send as one byte.
pub const AUTO_SPAWN: usize = 120;
/// A command field longer than this is refused as qmail refuses one it has no memory
/// for: the spawn stays within `softlimit -m` whatever qmail-send writes.
const MAX_FIELD: usize = 100_000;
/// qmail-lspawn reads its children's output in pieces of this size (spawn.c's inbuf),
/// which decides where a too-long report is cut.
const PIECE: usize = 128;
const TRUNCMESS: &[u8] = b"\nError report too long, sorry.\n";

/// How a delivery child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Killed(i32),
}

impl Status {
    pub fn from_wait(w: i32) -> Status {
        if libc::WIFSIGNALED(w) {
            Status::Killed(libc::WTERMSIG(w))
        } else {
            Status::Exited(libc::WEXITSTATUS(w))
        }
    }
}

/// One delivery command, checked.
pub struct Delivery<'a> {
    /// The message, open for reading at offset 0.
    pub message: &'a File,
    /// The report pipe's write end: the child's descriptors 1 and 2.
    pub out: &'a OwnedFd,
    pub sender: &'a [u8],
    pub recipient: &'a [u8],
    /// The position of the recipient's last `@`.
    pub at: usize,
}

/// What [`Spawn::start`] did with a delivery.
pub enum Started {
    /// A child is delivering.
    Child(libc::pid_t),
    /// No child: this report (letter, text) answers the delivery at once.
    Report(&'static [u8]),
}

/// What differs between qmail-lspawn and qmail-rspawn.
pub trait Spawn {
    /// Where a child's output is cut (qmail-lspawn: 3000 bytes); `None`: never.
    fn truncreport(&self) -> Option<usize>;
    /// Starts a delivery.
    fn start(&mut self, d: &Delivery) -> io::Result<Started>;
    /// Appends the report's letter and text for a child that ended with `status`
    /// after writing `output`.
    fn report(&self, status: Status, output: &[u8], out: &mut Vec<u8>);
}

/// Forks; the child runs `f` and exits with what it returns. The spawns and
/// qmail-start are single-threaded, so the child may allocate and take locks.
pub fn fork(f: impl FnOnce() -> i32) -> io::Result<libc::pid_t> {
    // SAFETY: this process has one thread, so the child inherits no lock held by
    // another thread; it leaves with _exit, running no destructor of ours twice.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = f();
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// In a child: makes `message` its descriptor 0 and `out` its 1 and 2, and closes
/// every other descriptor (the other deliveries' pipes, qmail-send's).
pub fn child_descriptors(message: RawFd, out: RawFd) -> io::Result<()> {
    qmail::fd::place(message, 0)?;
    qmail::fd::place(out, 1)?;
    qmail::fd::place(1, 2)?;
    close_from(3);
    Ok(())
}

/// Closes every descriptor from `low` up.
pub fn close_from(low: u32) {
    // SAFETY: close_range only closes descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, low, u32::MAX, 0) } == 0 {
        return;
    }
    // SAFETY: sysconf and close have no memory preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 65536) as i32;
    for fd in low as i32..max {
        unsafe { libc::close(fd) };
    }
}

/// In a child about to exec: the signal mask the spawn set is not the program's.
/// (SIGPIPE stays ignored, as the spawns have always passed it on.)
pub fn unblock_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// A write to a reader that has gone fails with EPIPE instead of killing us.
pub fn ignore_sigpipe() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code of ours.
    let _ = unsafe { sigaction(Signal::SIGPIPE, &ignore) };
}

/// The four fields of a command, read byte by byte (spawn.c's four stages).
#[derive(Default)]
struct Parser {
    stage: u8,
    slot: u8,
    fields: [Vec<u8>; 3],
    /// A field outgrew [`MAX_FIELD`]: the command is answered "out of memory".
    abort: bool,
}

/// A complete command: slot, messid, sender, recipient (without their NULs).
struct Command<'a> {
    slot: usize,
    messid: &'a [u8],
    sender: &'a [u8],
    recipient: &'a [u8],
    abort: bool,
}

impl Parser {
    fn feed(&mut self, buf: &[u8], mut done: impl FnMut(Command)) {
        for &c in buf {
            if self.stage == 0 {
                self.slot = c;
                self.fields.iter_mut().for_each(Vec::clear);
                self.stage = 1;
                continue;
            }
            let field = &mut self.fields[usize::from(self.stage - 1)];
            if c != 0 {
                if field.len() < MAX_FIELD {
                    field.push(c);
                } else {
                    self.abort = true;
                }
                continue;
            }
            if self.stage < 3 {
                self.stage += 1;
                continue;
            }
            done(Command {
                slot: usize::from(self.slot),
                messid: &self.fields[0],
                sender: &self.fields[1],
                recipient: &self.fields[2],
                abort: self.abort,
            });
            self.abort = false;
            self.stage = 0;
        }
    }
}

/// The checks spawn.c makes before it opens the message, in its order; `Err` is the
/// report that answers the command instead. `Ok` is the position of the last `@`.
fn check(cmd: &Command, in_use: bool) -> Result<usize, &'static [u8]> {
    if cmd.abort {
        return Err(b"Zqmail-spawn out of memory. (#4.3.0)\n");
    }
    if cmd.slot >= AUTO_SPAWN {
        return Err(b"ZInternal error: delnum too big. (#4.3.5)\n");
    }
    if in_use {
        return Err(b"ZInternal error: delnum in use. (#4.3.5)\n");
    }
    let numeric = |(i, c): (usize, &u8)| c.is_ascii_digit() || (i > 0 && *c == b'/');
    if !cmd.messid.iter().enumerate().all(numeric) {
        return Err(b"DInternal error: messid has nonnumerics. (#5.3.5)\n");
    }
    // qmail counts the NUL: at most 99 bytes of name.
    if cmd.messid.len() + 1 > 100 {
        return Err(b"DInternal error: messid too long. (#5.3.5)\n");
    }
    if cmd.messid.is_empty() {
        return Err(b"DInternal error: messid too short. (#5.3.5)\n");
    }
    cmd.recipient
        .iter()
        .rposition(|&c| c == b'@')
        .ok_or(b"DSorry, address must include host name. (#5.1.3)\n")
}

/// Opens the message (relative to `queue/mess`) as spawn.c does: only a regular file
/// owned by qmailq is handed to a delivery.
fn open_message(messid: &[u8], qmailq: u32) -> Result<File, &'static [u8]> {
    use std::os::unix::ffi::OsStrExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(std::ffi::OsStr::from_bytes(messid))
        .map_err(|_| &b"Zqmail-spawn unable to open message. (#4.3.0)\n"[..])?;
    let meta = f
        .metadata()
        .map_err(|_| &b"Zqmail-spawn unable to fstat message. (#4.3.0)\n"[..])?;
    if !meta.file_type().is_file() {
        return Err(b"ZSorry, message has wrong type. (#4.3.5)\n");
    }
    if meta.uid() != qmailq {
        return Err(b"ZSorry, message has wrong owner. (#4.3.5)\n");
    }
    Ok(f)
}

/// A delivery in progress.
struct Slot {
    /// The report pipe's read end.
    input: File,
    /// The child, until it is reaped.
    pid: Option<libc::pid_t>,
    status: Option<Status>,
    /// Our copy of the write end, closed when the child is reaped.
    out: Option<OwnedFd>,
    output: Vec<u8>,
}

/// Descriptor 1 to qmail-send: a failed write (other than EINTR) stops all further
/// writing, silently, as spawn.c's okwrite does.
struct Reports {
    fd: RawFd,
    writing: bool,
}

impl Reports {
    fn send(&mut self, mut buf: &[u8]) {
        while self.writing && !buf.is_empty() {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::write(self.fd, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                buf = &buf[n as usize..];
            } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                self.writing = false;
                // SAFETY: closing our descriptor 1, which nothing else uses.
                unsafe { libc::close(self.fd) };
            }
        }
    }
}

/// Appends `piece` to a child's output, cutting it as spawn.c does when it passes
/// `limit`: to `limit - 34` bytes and the "too long" line.
fn collect(output: &mut Vec<u8>, piece: &[u8], limit: Option<usize>) {
    output.extend_from_slice(piece);
    if let Some(limit) = limit.filter(|&l| l > 100) {
        if output.len() > limit {
            output.truncate(limit - TRUNCMESS.len() - 3);
            output.extend_from_slice(TRUNCMESS);
        }
    }
}

/// Reads what is there on a signalfd and reaps every child that has ended.
fn reap(sigfd: &SignalFd, slots: &mut [Option<Slot>]) {
    while let Ok(Some(_)) = sigfd.read_signal() {}
    loop {
        let mut w = 0;
        // SAFETY: w is a valid int for the status.
        let pid = unsafe { libc::waitpid(-1, &mut w, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        for s in slots.iter_mut().flatten() {
            if s.pid == Some(pid) {
                s.pid = None;
                s.status = Some(Status::from_wait(w));
                s.out = None;
            }
        }
    }
}

/// The spawn's life: handshake, commands and reports until qmail-send closes
/// descriptor 0 and every child has reported. Runs from `queue/mess`; returns the
/// exit code (111 for trouble at start).
pub fn run(spawn: &mut impl Spawn, qmailq: u32) -> i32 {
    ignore_sigpipe();
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None).is_err() {
        return 111;
    }
    let Ok(sigfd) = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) else {
        return 111;
    };
    let mut reports = Reports { fd: 1, writing: true };
    reports.send(&[AUTO_SPAWN as u8]);
    let mut slots: Vec<Option<Slot>> = (0..AUTO_SPAWN).map(|_| None).collect();
    let mut parser = Parser::default();
    let mut reading = true;
    let mut cmdbuf = [0u8; 1024];
    let mut piece = [0u8; PIECE];
    loop {
        if !reading && slots.iter().all(Option::is_none) {
            return 0;
        }
        let mut fds = vec![
            (sigfd.as_raw_fd(), libc::POLLIN),
            (if reading { 0 } else { -1 }, libc::POLLIN),
        ];
        let busy: Vec<usize> = (0..AUTO_SPAWN).filter(|&i| slots[i].is_some()).collect();
        for &i in &busy {
            fds.push((slots[i].as_ref().map_or(-1, |s| s.input.as_raw_fd()), libc::POLLIN));
        }
        let Ok(ready) = qmail::fd::poll(&fds, None) else {
            continue;
        };
        if ready[0] != 0 {
            reap(&sigfd, &mut slots);
        }
        if ready[1] != 0 {
            // SAFETY: cmdbuf is valid for its length.
            let n = unsafe { libc::read(0, cmdbuf.as_mut_ptr().cast(), cmdbuf.len()) };
            if n == 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted) {
                reading = false;
            } else if n > 0 {
                parser.feed(&cmdbuf[..n as usize], |cmd| {
                    let answer = command(spawn, &cmd, &mut slots, qmailq);
                    if let Some(text) = answer {
                        let mut r = vec![cmd.slot as u8];
                        r.extend_from_slice(text);
                        r.push(0);
                        reports.send(&r);
                    }
                });
            }
        }
        for (k, &i) in busy.iter().enumerate() {
            if ready[k + 2] == 0 {
                continue;
            }
            let Some(s) = slots[i].as_mut() else { continue };
            let n = match io::Read::read(&mut s.input, &mut piece) {
                Ok(n) => n,
                Err(_) => continue,
            };
            if n > 0 {
                collect(&mut s.output, &piece[..n], spawn.truncreport());
                continue;
            }
            let status = s.status.unwrap_or(Status::Killed(0));
            let mut r = vec![i as u8];
            spawn.report(status, &s.output, &mut r);
            r.push(0);
            reports.send(&r);
            slots[i] = None;
        }
    }
}

/// Acts on one command: `Some(report)` when it is answered at once.
fn command(spawn: &mut impl Spawn, cmd: &Command, slots: &mut [Option<Slot>], qmailq: u32) -> Option<&'static [u8]> {
    let in_use = slots.get(cmd.slot).is_some_and(Option::is_some);
    let at = match check(cmd, in_use) {
        Ok(at) => at,
        Err(text) => return Some(text),
    };
    let message = match open_message(cmd.messid, qmailq) {
        Ok(f) => f,
        Err(text) => return Some(text),
    };
    let Ok((input, out)) = qmail::fd::pipe() else {
        return Some(b"Zqmail-spawn unable to create pipe. (#4.3.0)\n");
    };
    let d = Delivery {
        message: &message,
        out: &out,
        sender: cmd.sender,
        recipient: cmd.recipient,
        at,
    };
    match spawn.start(&d) {
        Err(_) => Some(b"Zqmail-spawn unable to fork. (#4.3.0)\n"),
        Ok(Started::Report(text)) => Some(text),
        Ok(Started::Child(pid)) => {
            slots[cmd.slot] = Some(Slot {
                input: File::from(input),
                pid: Some(pid),
                status: None,
                out: Some(out),
                output: Vec::new(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Checked = (usize, Result<usize, &'static [u8]>, Vec<u8>);

    fn commands(input: &[u8]) -> Vec<Checked> {
        let mut out = Vec::new();
        let mut p = Parser::default();
        // Byte by byte, as a pipe may deliver it.
        for b in input.chunks(1) {
            p.feed(b, |c| out.push((c.slot, check(&c, c.slot == 7), c.sender.to_vec())));
        }
        out
    }

    #[test]
    fn commands_and_their_checks() {
        let got = commands(b"\x005/123\0a@b\0joe@example.com\0\x01\0\0@\0");
        assert_eq!(got[0], (0, Ok(3), b"a@b".to_vec()));
        assert_eq!(got[1].1, Err(&b"DInternal error: messid too short. (#5.3.5)\n"[..]));
        let one = |cmd: &[u8]| commands(cmd).remove(0).1;
        assert_eq!(
            one(b"\x785/1\0\0r@h\0"),
            Err(&b"ZInternal error: delnum too big. (#4.3.5)\n"[..])
        );
        assert_eq!(
            one(b"\x075/1\0\0r@h\0"),
            Err(&b"ZInternal error: delnum in use. (#4.3.5)\n"[..])
        );
        let nonnum = Err(&b"DInternal error: messid has nonnumerics. (#5.3.5)\n"[..]);
        assert_eq!(one(b"\x00/5/1\0\0r@h\0"), nonnum);
        assert_eq!(one(b"\x005/../1\0\0r@h\0"), nonnum);
        assert_eq!(one(b"\x005//1/\0\0r@h\0"), Ok(1));
        let long = [&b"\x00"[..], &[b'1'; 99], b"\0\0r@h\0"].concat();
        assert_eq!(one(&long), Ok(1));
        let long = [&b"\x00"[..], &[b'1'; 100], b"\0\0r@h\0"].concat();
        assert_eq!(one(&long), Err(&b"DInternal error: messid too long. (#5.3.5)\n"[..]));
        assert_eq!(
            one(b"\x005/1\0\0nohost\0"),
            Err(&b"DSorry, address must include host name. (#5.1.3)\n"[..])
        );
        assert_eq!(one(b"\x005/1\0\0a@b@c\0"), Ok(3));
        let huge = [&b"\x005/1\0"[..], &vec![b'x'; MAX_FIELD + 1], b"\0r@h\0"].concat();
        assert_eq!(one(&huge), Err(&b"Zqmail-spawn out of memory. (#4.3.0)\n"[..]));
        // The next command is not tainted by the one before.
        let two = [&huge[..], b"\x005/1\0\0r@h\0"].concat();
        assert_eq!(commands(&two)[1].1, Ok(1));
    }

    #[test]
    fn long_output_is_cut_as_spawn_c_does() {
        let mut out = Vec::new();
        for piece in vec![b'x'; 5000].chunks(PIECE) {
            collect(&mut out, piece, Some(3000));
        }
        assert_eq!(out.len(), 2966 + TRUNCMESS.len());
        assert!(out.starts_with(&[b'x'; 2966]) && out.ends_with(TRUNCMESS));
        // A last piece of three bytes or fewer stays behind the line (spawn.c's quirk).
        let mut out = Vec::new();
        for piece in vec![b'x'; 128 * 30 + 3].chunks(PIECE) {
            collect(&mut out, piece, Some(3000));
        }
        assert_eq!(out.len(), 3000);
        assert!(out.ends_with(b"sorry.\nxxx"));
        let mut out = Vec::new();
        collect(&mut out, &[b'x'; 9000], None);
        assert_eq!(out.len(), 9000);
    }

    #[test]
    fn status_from_wait() {
        assert_eq!(Status::from_wait(111 << 8), Status::Exited(111));
        assert_eq!(Status::from_wait(libc::SIGKILL), Status::Killed(libc::SIGKILL));
    }
}
