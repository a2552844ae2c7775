//! The scheduler's state and its loop: jobs, passes over channel files, the
//! deliveries in flight on each spawn, the retry queues, message completion.
//! The names are qmail-send's (job, pass, del, pqchan, pqdone, messdone) so a
//! reader who knows qmail-send.c finds each piece.

use super::bounce;
use super::config::{Channel, Controls};
use super::logfmt::{self, Sink};
use super::proto::{self, Report, Reports};
use super::sched::{next_retry, Prioq};
use super::sys;
use qmail::queuedir::{flat_name, split_name, SPLIT};
use std::fs::{File, OpenOptions, ReadDir};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Scan `todo/` at least this often without a trigger.
pub const SLEEP_TODO: i64 = 1500;
/// Slop on every computed sleep, so a wakeup is never a moment early.
pub const SLEEP_FUZZ: i64 = 1;
pub const SLEEP_FOREVER: i64 = 86400;
/// Between garbage passes over `mess/`.
pub const SLEEP_CLEANUP: i64 = 76431;
/// Retry delay after a failed stat/unlink/open of queue files.
pub const SLEEP_SYSFAIL: i64 = 123;
/// Orphans in `mess/` older than this (atime) are removed: it must exceed
/// qmail-queue's 24-hour death alarm, so no live qmail-queue still owns them.
pub const OSSIFIED: i64 = 129600;
/// How many `todo/` entries, finished messages and `mess/` cleanup entries one
/// loop turn takes on at most before signals, the trigger and timers are looked
/// at again. For `todo/` it is also the group commit's size: the entries of one
/// turn are written, made durable together, then cleaned (see the todo module).
/// Deliveries do not wait for a batch: they are serviced between every two todo
/// entries, while writing and while syncing (see the module documentation of
/// qmail_send).
pub const BATCH: usize = 64;
/// The write phase of a todo batch ends after this long even short of [`BATCH`]
/// entries (cold reads of `todo/` and `mess/` are what could make it slow), so a
/// message written first waits at most this plus one commit for its deliveries.
pub const BATCH_WRITE_TIME: Duration = Duration::from_millis(100);

const FD_LOCAL_OUT: RawFd = 1;
const FD_LOCAL_IN: RawFd = 2;
const FD_REMOTE_OUT: RawFd = 3;
const FD_REMOTE_IN: RawFd = 4;
const FD_CLEAN_OUT: RawFd = 5;
const FD_CLEAN_IN: RawFd = 6;

static FLAG_TERM: AtomicBool = AtomicBool::new(false);
static FLAG_ALRM: AtomicBool = AtomicBool::new(false);
static FLAG_HUP: AtomicBool = AtomicBool::new(false);
static SELF_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: nix::libc::c_int) {
    match sig {
        nix::libc::SIGTERM => FLAG_TERM.store(true, Ordering::SeqCst),
        nix::libc::SIGALRM => FLAG_ALRM.store(true, Ordering::SeqCst),
        nix::libc::SIGHUP => FLAG_HUP.store(true, Ordering::SeqCst),
        _ => {}
    }
    let fd = SELF_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, and a
        // full pipe already means "wake up".
        unsafe { nix::libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
}

/// TERM, ALRM and HUP set a flag and wake the loop through a self-pipe (poll
/// would otherwise sleep on past them); SIGPIPE is ignored, so a dead peer is a
/// write error; SIGCHLD stays default, so bounce injections can be waited for.
fn catch_signals() -> io::Result<File> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).map_err(io::Error::from)?;
    SELF_PIPE.store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::SeqCst);
    let catch = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores atomics and calls write(2).
    unsafe {
        for s in [Signal::SIGTERM, Signal::SIGALRM, Signal::SIGHUP] {
            sigaction(s, &catch).map_err(io::Error::from)?;
        }
        sigaction(Signal::SIGPIPE, &ignore).map_err(io::Error::from)?;
    }
    Ok(File::from(r))
}

/// One spawn's pipes and what is in flight on them.
struct Chan {
    fdout: RawFd,
    fdin: RawFd,
    alive: bool,
    /// Commands not yet taken by the spawn.
    out: Vec<u8>,
    reports: Reports,
    /// Delivery slots: the slot byte is the index.
    dels: Vec<Option<Del>>,
    used: u32,
    concurrency: u32,
    pass: Option<Pass>,
    pq: Prioq,
}

struct Del {
    job: usize,
    delid: u64,
    /// Where the recipient's record starts in the channel file (to mark it D).
    mpos: u64,
    recip: Vec<u8>,
}

struct Pass {
    id: u64,
    job: usize,
    reader: BufReader<File>,
    mpos: u64,
}

#[derive(Default)]
struct Job {
    /// 0: free. One for an open pass, one per delivery in flight.
    refs: u32,
    id: u64,
    channel: usize,
    retry: i64,
    sender: Vec<u8>,
    numtodo: u32,
    hiteof: bool,
    dying: bool,
}

/// qmail-send, running.
pub struct State {
    pub(super) home: PathBuf,
    pub(super) ctl: Controls,
    pub(super) log: Box<dyn Sink>,
    pub(super) recent: i64,
    pub(super) exitasap: bool,
    chans: [Chan; 2],
    jobs: Vec<Job>,
    masterdelid: u64,
    pub(super) pqdone: Prioq,
    pqfail: Prioq,
    pub(super) todo_dir: Option<ReadDir>,
    pub(super) next_todo_run: i64,
    trigger: Option<File>,
    cleanup: Option<(u64, Option<ReadDir>)>,
    cleanup_time: i64,
    self_pipe: File,
    clean_alive: bool,
}

/// How qmail-send ends: the exit code, after the alert line if any.
pub fn run(home: &Path) -> i32 {
    let mut log: Box<dyn Sink> = Box::new(logfmt::Fd0);
    if std::env::set_current_dir(home).is_err() {
        log.line("alert: cannot start: unable to switch to home directory");
        return 111;
    }
    let home = std::env::current_dir().unwrap_or_else(|_| home.to_path_buf());
    let ctl = match Controls::load(&home) {
        Ok(c) => c,
        Err(_) => {
            log.line("alert: cannot start: unable to read controls");
            return 111;
        }
    };
    if std::env::set_current_dir("queue").is_err() {
        log.line("alert: cannot start: unable to switch to queue directory");
        return 111;
    }
    let self_pipe = match catch_signals() {
        Ok(p) => p,
        Err(_) => {
            log.line("alert: cannot start: unable to catch signals");
            return 111;
        }
    };
    sys::umask(0o077);
    let mutex = match OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("lock/sendmutex")
    {
        Ok(f) => f,
        Err(_) => {
            log.line("alert: cannot start: unable to open mutex");
            return 111;
        }
    };
    if sys::lock_exnb(mutex.as_raw_fd()).is_err() {
        log.line("alert: cannot start: qmail-send is already running");
        return 111;
    }
    let mut concurrency = ctl.concurrency;
    for (c, fd) in [FD_LOCAL_IN, FD_REMOTE_IN].into_iter().enumerate() {
        let mut b = [0u8];
        match sys::read(fd, &mut b) {
            Ok(1) => concurrency[c] = concurrency[c].min(u32::from(b[0])),
            _ => {
                log.line("alert: cannot start: hath the daemon spawn no fire?");
                return 111;
            }
        }
    }
    let mut state = State::new(home, ctl, log, concurrency, self_pipe);
    for fd in [FD_LOCAL_OUT, FD_REMOTE_OUT, FD_LOCAL_IN, FD_REMOTE_IN] {
        if sys::set_nonblocking(fd).is_err() {
            // As qmail: better to stop than to risk a deadlock on a blocking pipe.
            let c = if fd == FD_LOCAL_OUT || fd == FD_LOCAL_IN { 0 } else { 1 };
            state.spawn_died(c);
        }
    }
    state.main_loop();
    drop(mutex);
    0
}

impl State {
    fn new(home: PathBuf, ctl: Controls, log: Box<dyn Sink>, concurrency: [u32; 2], self_pipe: File) -> State {
        let chan = |fdout, fdin, n: u32| Chan {
            fdout,
            fdin,
            alive: true,
            out: Vec::new(),
            reports: Reports::default(),
            dels: (0..n).map(|_| None).collect(),
            used: 0,
            concurrency: n,
            pass: None,
            pq: Prioq::default(),
        };
        let numjobs = (concurrency[0] + concurrency[1]) as usize;
        let now = qmail::date822::now();
        State {
            home,
            ctl,
            log,
            recent: now,
            exitasap: false,
            chans: [
                chan(FD_LOCAL_OUT, FD_LOCAL_IN, concurrency[0]),
                chan(FD_REMOTE_OUT, FD_REMOTE_IN, concurrency[1]),
            ],
            jobs: (0..numjobs).map(|_| Job::default()).collect(),
            masterdelid: 1,
            pqdone: Prioq::default(),
            pqfail: Prioq::default(),
            todo_dir: None,
            next_todo_run: now,
            trigger: None,
            cleanup: None,
            cleanup_time: now,
            self_pipe,
            clean_alive: true,
        }
    }

    pub(super) fn warn(&mut self, text: &str) {
        self.log.line(&format!("warning: {text}"));
    }

    fn main_loop(&mut self) {
        self.pqstart();
        self.del_status();
        self.trigger_set();
        while !self.exitasap || !self.del_canexit() {
            self.recent = qmail::date822::now();
            self.check_signals();
            let mut wakeup = self.recent + SLEEP_FOREVER;
            let mut fds: Vec<(RawFd, i16)> = vec![(self.self_pipe.as_raw_fd(), nix::libc::POLLIN)];
            for ch in &self.chans {
                if ch.alive {
                    fds.push((ch.fdin, nix::libc::POLLIN));
                    if !ch.out.is_empty() {
                        fds.push((ch.fdout, nix::libc::POLLOUT));
                    }
                }
            }
            let trigger_at = match (&self.trigger, self.exitasap) {
                (Some(t), false) => {
                    fds.push((t.as_raw_fd(), nix::libc::POLLIN));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            self.pass_selprep(&mut wakeup);
            self.todo_selprep(&mut wakeup);
            self.cleanup_selprep(&mut wakeup);
            let timeout = if wakeup <= self.recent {
                0
            } else {
                wakeup - self.recent + SLEEP_FUZZ
            };
            let deadline = Instant::now() + Duration::from_secs(timeout as u64);
            let revents = match qmail::fd::poll(&fds, Some(deadline)) {
                Ok(r) => r,
                Err(_) => {
                    self.warn("trouble in select");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if revents[0] != 0 {
                let mut sink = [0u8; 64];
                while matches!((&self.self_pipe).read(&mut sink), Ok(n) if n > 0) {}
            }
            self.recent = qmail::date822::now();
            self.check_signals();
            let pulled = trigger_at.is_some_and(|i| revents[i] != 0);
            self.service();
            self.todo_do(pulled);
            self.pass_do();
            self.cleanup_do();
        }
        self.pqfinish();
        self.log.line("status: exiting");
    }

    fn check_signals(&mut self) {
        if FLAG_TERM.load(Ordering::SeqCst) {
            self.exitasap = true;
        }
        if FLAG_ALRM.swap(false, Ordering::SeqCst) {
            for ch in &mut self.chans {
                ch.pq.all_due(self.recent);
            }
        }
        if FLAG_HUP.swap(false, Ordering::SeqCst) {
            self.reread();
        }
    }

    /// SIGHUP: `locals` and `virtualdomains` again; on any error the old ones stay.
    fn reread(&mut self) {
        let locals = match qmail::rewrite::Addresses::read_locals(&self.home, self.ctl.me.as_deref()) {
            Ok(l) => l,
            Err(_) => {
                self.log.line("alert: unable to reread control/locals");
                return;
            }
        };
        let vdoms = match qmail::rewrite::Addresses::read_vdoms(&self.home) {
            Ok(v) => v,
            Err(_) => {
                self.log.line("alert: unable to reread control/virtualdomains");
                return;
            }
        };
        self.ctl.addresses.locals = locals;
        self.ctl.addresses.vdoms = vdoms;
    }

    /// Everything the delivery side can do right now without waiting: write
    /// pending commands, read the reports that are there, start every delivery a
    /// free slot allows. Called once per loop turn and between todo entries.
    pub(super) fn service(&mut self) {
        if FLAG_TERM.load(Ordering::SeqCst) {
            self.exitasap = true;
        }
        for c in 0..2 {
            self.comm_do(c);
            self.del_do(c);
        }
        self.pass_fill();
    }

    // ---------------------------------------------------------------- the spawns

    fn spawn_died(&mut self, c: usize) {
        self.log.line("alert: oh no! lost spawn connection! dying...");
        self.chans[c].alive = false;
        self.exitasap = true;
    }

    fn comm_do(&mut self, c: usize) {
        let ch = &mut self.chans[c];
        if !ch.alive || ch.out.is_empty() {
            return;
        }
        match sys::write(ch.fdout, &ch.out) {
            Ok(n) => {
                ch.out.drain(..n);
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => self.spawn_died(c),
            Err(_) => {} // EAGAIN: the spawn is busy; poll says when it is not
        }
    }

    fn del_avail(&self, c: usize) -> bool {
        let ch = &self.chans[c];
        ch.alive && ch.used < ch.concurrency
    }

    fn del_canexit(&self) -> bool {
        self.chans.iter().all(|ch| !ch.alive || ch.used == 0)
    }

    fn del_status(&mut self) {
        let used = [self.chans[0].used, self.chans[1].used];
        let max = [self.chans[0].concurrency, self.chans[1].concurrency];
        let line = logfmt::status(used, max, self.exitasap);
        self.log.line(&line);
    }

    fn del_start(&mut self, j: usize, mpos: u64, recip: &[u8]) {
        let c = self.jobs[j].channel;
        let Some(slot) = self.chans[c].dels.iter().position(|d| d.is_none()) else {
            return;
        };
        let delid = self.masterdelid;
        self.masterdelid += 1;
        self.jobs[j].refs += 1;
        let id = self.jobs[j].id;
        let sender = super::config::verp_sender(&self.jobs[j].sender, recip);
        let ch = &mut self.chans[c];
        ch.dels[slot] = Some(Del {
            job: j,
            delid,
            mpos,
            recip: recip.to_vec(),
        });
        ch.used += 1;
        ch.out
            .extend_from_slice(&proto::command(slot as u8, id, &sender, recip));
        self.comm_do(c);
        let line = logfmt::starting(delid, id, c, recip);
        self.log.line(&line);
        self.del_status();
    }

    fn del_do(&mut self, c: usize) {
        let mut buf = [0u8; 4096];
        while self.chans[c].alive {
            match sys::read(self.chans[c].fdin, &mut buf) {
                Ok(0) => self.spawn_died(c),
                Ok(n) => {
                    let reports = self.chans[c].reports.feed(&buf[..n]);
                    for r in reports {
                        self.report(c, r);
                    }
                }
                Err(_) => return, // EAGAIN: nothing more for now
            }
        }
    }

    fn report(&mut self, c: usize, mut r: Report) {
        let slot = r.slot as usize;
        let Some(del) = self.chans[c].dels.get_mut(slot).and_then(Option::take) else {
            self.warn("internal error: delivery report out of range");
            return;
        };
        let j = del.job;
        if r.letter == b'Z' && self.jobs[j].dying {
            r.letter = b'D';
            r.text
                .extend_from_slice(b"I'm not going to try again; this message has been in the queue too long.\n");
        }
        let line = logfmt::delivery(del.delid, r.letter, &r.text);
        self.log.line(&line);
        let id = self.jobs[j].id;
        match r.letter {
            b'K' => {
                self.markdone(c, id, del.mpos);
                self.jobs[j].numtodo -= 1;
            }
            b'D' => {
                self.addbounce(id, &del.recip, &r.text);
                self.markdone(c, id, del.mpos);
                self.jobs[j].numtodo -= 1;
            }
            _ => {}
        }
        self.job_close(j);
        self.chans[c].used -= 1;
        self.del_status();
    }

    /// The recipient's record becomes `D`: one byte, no fsync (a crash may mean a
    /// second delivery, which qmail's design accepts).
    fn markdone(&mut self, c: usize, id: u64, pos: u64) {
        let name = split_name(Channel::ALL[c].dir(), id);
        let ok = (|| -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).open(&name)?;
            f.seek(SeekFrom::Start(pos))?;
            f.write_all(b"D")
        })();
        if ok.is_err() {
            self.warn(&format!("trouble marking {name}; message will be delivered twice!"));
        }
    }

    fn addbounce(&mut self, id: u64, recip: &[u8], report: &[u8]) {
        let text = bounce::paragraph(self.ctl.addresses.strip_vdom_prepend(recip), report);
        let name = flat_name("bounce", id);
        loop {
            let r = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&name)
                .and_then(|mut f| f.write_all(&text));
            if r.is_ok() {
                return;
            }
            self.log
                .line("alert: unable to append to bounce message; HELP! sleeping...");
            std::thread::sleep(Duration::from_secs(10));
        }
    }

    // ------------------------------------------------------------- qmail-clean

    /// One request to qmail-clean; true when it answered `+`.
    pub(super) fn clean(&mut self, kind: &str, id: u64) -> bool {
        self.clean_many(kind, &[id])[0]
    }

    /// Requests to qmail-clean for each of `ids`, all written before the answers
    /// are read (qmail-clean answers each in turn, one byte, so a batch costs one
    /// round trip); for each, true when it answered `+`.
    pub(super) fn clean_many(&mut self, kind: &str, ids: &[u64]) -> Vec<bool> {
        if ids.is_empty() {
            return Vec::new();
        }
        let req: Vec<u8> = ids.iter().flat_map(|&id| proto::clean_request(kind, id)).collect();
        let mut answers = vec![0u8; ids.len()];
        let ok = self.clean_alive && sys::write_all(FD_CLEAN_OUT, &req).is_ok() && read_full(FD_CLEAN_IN, &mut answers);
        if !ok {
            if self.clean_alive {
                self.log.line("alert: oh no! lost qmail-clean connection! dying...");
            }
            self.clean_alive = false;
            self.exitasap = true;
            return vec![false; ids.len()];
        }
        let mut done = Vec::with_capacity(ids.len());
        for (&a, &id) in answers.iter().zip(ids) {
            if a != b'+' {
                self.warn(&format!("qmail-clean unable to clean up {kind}/{id}"));
            }
            done.push(a == b'+');
        }
        done
    }

    // -------------------------------------------------------- jobs and passes

    fn job_open(&mut self, id: u64, c: usize) -> Option<usize> {
        let j = self.jobs.iter().position(|j| j.refs == 0)?;
        self.jobs[j] = Job {
            refs: 1,
            id,
            channel: c,
            ..Job::default()
        };
        Some(j)
    }

    fn job_close(&mut self, j: usize) {
        self.jobs[j].refs -= 1;
        if self.jobs[j].refs > 0 {
            return;
        }
        let (id, c) = (self.jobs[j].id, self.jobs[j].channel);
        let mut dt = self.jobs[j].retry;
        if self.jobs[j].hiteof && self.jobs[j].numtodo == 0 {
            let name = split_name(Channel::ALL[c].dir(), id);
            if std::fs::remove_file(&name).is_err() {
                self.warn(&format!("unable to unlink {name}; will try again later"));
                dt = qmail::date822::now() + SLEEP_SYSFAIL;
            } else {
                let other = split_name(Channel::ALL[1 - c].dir(), id);
                match std::fs::metadata(&other) {
                    Ok(_) => return, // the other channel is still going
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => self.warn(&format!("unable to stat {other}")),
                }
                self.pqdone.insert(qmail::date822::now(), id);
                return;
            }
        }
        self.chans[c].pq.insert(dt, id);
    }

    /// The sender and birth (mtime) of message `id` from `info/`.
    pub(super) fn getinfo(&self, id: u64) -> Option<(Vec<u8>, i64)> {
        let f = File::open(split_name("info", id)).ok()?;
        let birth = f.metadata().ok()?.mtime();
        let mut line = Vec::new();
        BufReader::new(f).read_until(0, &mut line).ok()?;
        if line.last() != Some(&0) || line[0] != b'F' {
            return None;
        }
        line.pop();
        line.remove(0);
        Some((line, birth))
    }

    fn pass_selprep(&self, wakeup: &mut i64) {
        if self.exitasap {
            return;
        }
        for c in 0..2 {
            if self.chans[c].pass.is_some() && self.del_avail(c) {
                *wakeup = 0;
                return;
            }
        }
        if self.jobs.iter().any(|j| j.refs == 0) {
            for ch in &self.chans {
                if ch.pass.is_none() {
                    if let Some((dt, _)) = ch.pq.min() {
                        *wakeup = (*wakeup).min(dt);
                    }
                }
            }
        }
        for q in [&self.pqfail, &self.pqdone] {
            if let Some((dt, _)) = q.min() {
                *wakeup = (*wakeup).min(dt);
            }
        }
    }

    /// Starts every delivery the free slots allow, on both channels.
    fn pass_fill(&mut self) {
        for c in 0..2 {
            while self.pass_dochan(c) {}
        }
    }

    /// One step of channel `c`'s pass (open a job, start one delivery, skip a done
    /// record, or finish the file); false when no step could be taken.
    fn pass_dochan(&mut self, c: usize) -> bool {
        if self.exitasap {
            return false;
        }
        if self.chans[c].pass.is_none() {
            if !self.jobs.iter().any(|j| j.refs == 0) {
                return false;
            }
            let Some(id) = self.chans[c].pq.pop_due(self.recent) else {
                return false;
            };
            let name = split_name(Channel::ALL[c].dir(), id);
            let opened = File::open(&name).ok().and_then(|f| Some((f, self.getinfo(id)?)));
            let Some((f, (sender, birth))) = opened else {
                self.warn(&format!("trouble opening {name}; will try again later"));
                self.chans[c].pq.insert(self.recent + SLEEP_SYSFAIL, id);
                return true;
            };
            let Some(j) = self.job_open(id, c) else {
                self.chans[c].pq.insert(self.recent, id);
                return false;
            };
            self.jobs[j].retry = next_retry(birth, self.recent, c);
            self.jobs[j].dying = self.recent > birth + self.ctl.lifetime;
            self.jobs[j].sender = sender;
            self.chans[c].pass = Some(Pass {
                id,
                job: j,
                reader: BufReader::new(f),
                mpos: 0,
            });
        }
        if !self.del_avail(c) {
            return false;
        }
        let mut pass = self.chans[c].pass.take().expect("a pass is open");
        let mut line = Vec::new();
        let read = pass.reader.read_until(0, &mut line);
        match read {
            Err(_) => {
                let name = split_name(Channel::ALL[c].dir(), pass.id);
                self.warn(&format!("trouble reading {name}; will try again later"));
                self.job_close(pass.job);
                return true;
            }
            Ok(_) if line.last() != Some(&0) => {
                // End of file (a last record without its NUL counts as none).
                self.jobs[pass.job].hiteof = true;
                self.job_close(pass.job);
                return true;
            }
            Ok(_) => {}
        }
        match line[0] {
            b'T' => {
                self.jobs[pass.job].numtodo += 1;
                self.del_start(pass.job, pass.mpos, &line[1..line.len() - 1]);
            }
            b'D' => {}
            _ => {
                let name = split_name(Channel::ALL[c].dir(), pass.id);
                self.warn(&format!("unknown record type in {name}!"));
                self.job_close(pass.job);
                return true;
            }
        }
        pass.mpos += line.len() as u64;
        self.chans[c].pass = Some(pass);
        true
    }

    fn pass_do(&mut self) {
        self.pass_fill();
        if self.exitasap {
            return;
        }
        if let Some(id) = self.pqfail.pop_due(self.recent) {
            self.pqadd(id);
        }
        for _ in 0..BATCH {
            let Some(id) = self.pqdone.pop_due(self.recent) else {
                break;
            };
            self.messdone(id);
            self.service();
            if self.exitasap {
                break;
            }
        }
    }

    // ------------------------------------------------------ the queue at start

    /// Puts message `id` (found in `info/`) in the channel queues by its channel
    /// files' mtimes, or straight into "done" when it has none.
    fn pqadd(&mut self, id: u64) {
        let stat = |name: &str| -> Result<Option<i64>, ()> {
            match std::fs::metadata(name) {
                Ok(m) => Ok(Some(m.mtime())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(_) => Err(()),
            }
        };
        let info = split_name("info", id);
        let todo = flat_name("todo", id);
        let result = (|| -> Result<(), String> {
            if stat(&info).map_err(|_| info.clone())?.is_none() {
                return Ok(());
            }
            if stat(&todo).map_err(|_| todo.clone())?.is_some() {
                return Ok(()); // preprocessing will redo it
            }
            let mut times = [None, None];
            for (t, c) in times.iter_mut().zip(Channel::ALL) {
                let name = split_name(c.dir(), id);
                *t = stat(&name).map_err(|_| name.clone())?;
            }
            for (t, ch) in times.iter().zip(&mut self.chans) {
                if let Some(t) = t {
                    ch.pq.insert(*t, id);
                }
            }
            if times.iter().all(Option::is_none) {
                self.pqdone.insert(qmail::date822::now(), id);
            }
            Ok(())
        })();
        if let Err(name) = result {
            self.warn(&format!("unable to stat {name}; will try again later"));
            self.pqfail.insert(qmail::date822::now() + SLEEP_SYSFAIL, id);
        }
    }

    fn pqstart(&mut self) {
        for s in 0..SPLIT {
            for id in self.read_numbers(&format!("info/{s}")) {
                self.pqadd(id);
            }
        }
    }

    /// The message numbers in a directory; an unreadable directory is waited for.
    fn read_numbers(&mut self, dir: &str) -> Vec<u64> {
        loop {
            match std::fs::read_dir(dir) {
                Ok(rd) => return rd.filter_map(|e| number(&e.ok()?.file_name())).collect(),
                Err(_) => self.pausedir(dir),
            }
        }
    }

    pub(super) fn pausedir(&mut self, dir: &str) {
        self.log.line(&format!("alert: unable to opendir {dir}, sleeping..."));
        std::thread::sleep(Duration::from_secs(10));
    }

    /// At exit: each channel file's next-retry time goes into its mtime, where
    /// the next qmail-send finds it.
    fn pqfinish(&mut self) {
        for c in 0..2 {
            if let Some(pass) = self.chans[c].pass.take() {
                self.job_close(pass.job);
            }
            while let Some((dt, id)) = self.chans[c].pq.pop() {
                let name = split_name(Channel::ALL[c].dir(), id);
                if sys::utime(Path::new(&name), dt).is_err() {
                    self.warn(&format!("unable to utime {name}; message will be retried too soon"));
                }
            }
        }
    }

    // ------------------------------------------------------------ messdone

    /// Message `id` is finished on every channel: bounce if there were failures,
    /// then remove it (info here, mess through qmail-clean).
    fn messdone(&mut self, id: u64) {
        let retry = |s: &mut State| s.pqdone.insert(qmail::date822::now() + SLEEP_SYSFAIL, id);
        let mut names: Vec<String> = Channel::ALL.iter().map(|c| split_name(c.dir(), id)).collect();
        names.push(flat_name("todo", id));
        for name in &names {
            match std::fs::metadata(name) {
                Ok(_) => return, // a false alarm
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => {
                    self.warn(&format!("unable to stat {name}; will try again later"));
                    return retry(self);
                }
            }
        }
        let info = split_name("info", id);
        match std::fs::metadata(&info) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => {
                self.warn(&format!("unable to stat {info}; will try again later"));
                return retry(self);
            }
        }
        if !self.injectbounce(id) {
            return retry(self);
        }
        self.log.line(&logfmt::end_msg(id));
        if std::fs::remove_file(&info).is_err() {
            self.warn(&format!("unable to unlink {info}; will try again later"));
            return retry(self);
        }
        self.clean("foop", id);
    }

    /// Queues the bounce for `id` if `bounce/N` exists; false means "try later"
    /// (the reason is logged).
    fn injectbounce(&mut self, id: u64) -> bool {
        let Some((sender, _)) = self.getinfo(id) else {
            return false;
        };
        let sender = bounce::unverp(&sender).to_vec();
        let bname = flat_name("bounce", id);
        match std::fs::metadata(&bname) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) => {
                self.warn(&format!("unable to stat {bname}"));
                return false;
            }
        }
        let (from, to) = match bounce::kind(&sender, &self.ctl.doublebounceto) {
            bounce::Kind::Triple => {
                self.log.line(&format!("triple bounce: discarding {bname}"));
                return self.unlink_bounce(&bname);
            }
            bounce::Kind::Single { recip } => (b"".to_vec(), recip),
            bounce::Kind::Double { recip } => (b"#@[]".to_vec(), recip),
        };
        let mut q = match qmail::queueclient::Queue::open(&self.home) {
            Ok(q) => q,
            Err(_) => {
                self.warn("unable to start qmail-queue, will try later");
                return false;
            }
        };
        let qp = q.pid();
        let paragraphs = std::fs::read(&bname);
        let message = File::open(split_name("mess", id));
        let (Ok(paragraphs), Ok(mut message)) = (paragraphs, message) else {
            q.abort();
            self.warn("trouble injecting bounce message, will try later");
            return false;
        };
        let date = qmail::date822::Utc::from_unix(qmail::date822::now()).rfc822();
        q.put(&bounce::head(
            &date,
            &self.ctl.bouncefrom,
            &self.ctl.bouncehost,
            &to,
            &sender,
            &paragraphs,
        ));
        let mut buf = vec![0u8; 65536];
        loop {
            match message.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => q.put(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    q.abort();
                    self.warn("trouble injecting bounce message, will try later");
                    return false;
                }
            }
        }
        q.from(&from);
        q.to(&to);
        if q.close().is_err() {
            self.warn("trouble injecting bounce message, will try later");
            return false;
        }
        self.log.line(&logfmt::bounce_msg(id, qp));
        self.unlink_bounce(&bname)
    }

    fn unlink_bounce(&mut self, bname: &str) -> bool {
        if std::fs::remove_file(bname).is_err() {
            self.warn(&format!("unable to unlink {bname}"));
            return false;
        }
        true
    }

    // ------------------------------------------------------------- todo, timers

    /// Reopens `lock/trigger`, which throws away what is in it: from here on, a
    /// byte means a message queued after this moment.
    pub(super) fn trigger_set(&mut self) {
        self.trigger = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("lock/trigger")
            .ok();
    }

    fn todo_selprep(&self, wakeup: &mut i64) {
        if self.exitasap {
            return;
        }
        if self.todo_dir.is_some() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.next_todo_run);
    }

    fn cleanup_selprep(&self, wakeup: &mut i64) {
        if self.cleanup.is_some() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.cleanup_time);
    }

    /// Up to [`BATCH`] entries of `mess/` per turn: an orphan (no info, no todo)
    /// older than [`OSSIFIED`] goes, through qmail-clean.
    fn cleanup_do(&mut self) {
        for _ in 0..BATCH {
            if self.cleanup.is_none() {
                if self.recent < self.cleanup_time {
                    return;
                }
                self.cleanup = Some((0, None));
            }
            let Some(id) = self.cleanup_next() else {
                self.cleanup = None;
                self.cleanup_time = self.recent + SLEEP_CLEANUP;
                return;
            };
            let Ok(m) = std::fs::metadata(split_name("mess", id)) else {
                continue; // probably qmail-queue removed it
            };
            if self.recent <= m.atime() + OSSIFIED {
                continue;
            }
            let gone = |n: String| matches!(std::fs::metadata(n), Err(e) if e.kind() == io::ErrorKind::NotFound);
            if !gone(split_name("info", id)) || !gone(flat_name("todo", id)) {
                continue;
            }
            self.clean("foop", id);
        }
    }

    /// The next message number under `mess/`, subdirectory by subdirectory.
    fn cleanup_next(&mut self) -> Option<u64> {
        loop {
            let (s, rd) = self.cleanup.as_mut()?;
            if *s >= SPLIT {
                return None;
            }
            if rd.is_none() {
                let dir = format!("mess/{s}");
                match std::fs::read_dir(&dir) {
                    Ok(r) => *rd = Some(r),
                    Err(_) => {
                        self.pausedir(&dir);
                        continue;
                    }
                }
            }
            let (s, rd) = self.cleanup.as_mut()?;
            match rd.as_mut().and_then(Iterator::next) {
                Some(Ok(e)) => {
                    if let Some(id) = number(&e.file_name()) {
                        return Some(id);
                    }
                }
                Some(Err(_)) => {}
                None => {
                    *s += 1;
                    *rd = None;
                }
            }
        }
    }

    /// Schedules a freshly preprocessed message: due now on each channel it has.
    pub(super) fn schedule_new(&mut self, id: u64, channels: [bool; 2]) {
        let now = qmail::date822::now();
        for (&due, ch) in channels.iter().zip(&mut self.chans) {
            if due {
                ch.pq.insert(now, id);
            }
        }
        if !channels.iter().any(|&x| x) {
            self.pqdone.insert(now, id);
        }
    }
}

/// Fills `buf` from `fd`; false at end of file or on an error.
fn read_full(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match sys::read(fd, &mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    true
}

/// A directory entry that is a message number, written as qmail writes it.
pub(super) fn number(name: &std::ffi::OsStr) -> Option<u64> {
    let s = name.to_str()?;
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}
