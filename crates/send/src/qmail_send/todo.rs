//! Preprocessing (qmail's INTERNALS: a message moves from `todo/` to `info/`,
//! `local/` and `remote/`): the sender record goes to `info/S/N`, each recipient,
//! rewritten, to its channel's file, and only when those are durable does
//! qmail-clean remove `todo/N`. Until then a crash just means doing it again: the
//! partial files of a failed attempt are removed first.
//!
//! # Group commit
//!
//! Making a new file durable costs a journal commit (and its directory entry a
//! directory fsync); paid per message that was four disk waits each, and the whole
//! limit of a burst. So preprocessing goes by batches ([`State::todo_do`]):
//!
//! 1. **write**: up to [`BATCH`] todo entries, or what [`BATCH_WRITE_TIME`]
//!    allows, are turned into their info and channel files, written, not synced
//!    (the `new msg` and `info msg` lines are logged here, per message as qmail
//!    writes them);
//! 2. **durable** ([`commit`]): the writeback of every file is started, then each
//!    file is fsynced (the first fsync's journal commit carries the whole batch, so
//!    the others find their data and inode already committed) and each directory
//!    the batch touched is fsynced once;
//! 3. **clean**: only then is qmail-clean asked to remove each `todo/N` of the
//!    batch whose files all made it (the requests written together, the answers
//!    read after: one round trip), and each message so removed is scheduled.
//!
//! A message whose file or directory fsync failed is left in `todo/` (after the
//! warning) and redone from scratch on a later scan, as is every message of a
//! batch that a crash interrupts before its clean request.

use super::config::Channel;
use super::daemon::{number, State, BATCH, BATCH_WRITE_TIME, SLEEP_TODO};
use super::logfmt;
use super::sys;
use qmail::queuedir::{flat_name, split_name};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

/// What went wrong: the warning to log, and the message stays in `todo/`.
struct Fail(String);

/// One message of a batch, written but not yet durable.
pub(super) struct Written {
    pub(super) id: u64,
    /// `info/S/N` first, then the channel files it has, each with its name.
    files: Vec<(String, File)>,
    /// Which channels have a file.
    used: [bool; 2],
}

/// What the durable and clean phases do to the world: [`State`] does it for real,
/// the unit test records the order.
pub(super) trait Commit {
    fn fsync_file(&mut self, name: &str, f: &File) -> io::Result<()>;
    fn fsync_dir(&mut self, dir: &str) -> io::Result<()>;
    fn commit_warn(&mut self, text: &str);
    /// Asks qmail-clean to remove each `todo/N` (all requests at once); for each,
    /// true when it did.
    fn clean_todos(&mut self, ids: &[u64]) -> Vec<bool>;
    /// Deliveries, between two messages' fsyncs.
    fn between(&mut self);
}

/// Makes a written batch durable, then has qmail-clean remove each `todo/N` whose
/// files and directory entries are durable; returns those messages with their
/// channels, in batch order. No clean request is sent before every fsync of the
/// batch has returned.
pub(super) fn commit(batch: Vec<Written>, io: &mut impl Commit) -> Vec<(u64, [bool; 2])> {
    // Start the writeback of all the data first: the block allocations then join
    // the journal transaction that the first fsync commits.
    for w in &batch {
        for (_, f) in &w.files {
            let _ = sys::start_writeback(f);
        }
    }
    let mut ok = vec![true; batch.len()];
    for (i, w) in batch.iter().enumerate() {
        for (name, f) in &w.files {
            if io.fsync_file(name, f).is_err() {
                io.commit_warn(&format!("trouble fsyncing {name}"));
                ok[i] = false;
                break;
            }
        }
        io.between();
    }
    // Each directory the batch's durable files are in, once.
    let dirs: BTreeSet<&str> = batch
        .iter()
        .zip(&ok)
        .filter(|(_, &ok)| ok)
        .flat_map(|(w, _)| w.files.iter().map(|(name, _)| parent(name)))
        .collect();
    let mut bad = BTreeSet::new();
    for d in dirs {
        if io.fsync_dir(d).is_err() {
            io.commit_warn(&format!("trouble fsyncing {d}"));
            bad.insert(d);
        }
    }
    let durable: Vec<&Written> = batch
        .iter()
        .zip(ok)
        .filter(|(w, ok)| *ok && !w.files.iter().any(|(name, _)| bad.contains(parent(name))))
        .map(|(w, _)| w)
        .collect();
    let ids: Vec<u64> = durable.iter().map(|w| w.id).collect();
    let cleaned = io.clean_todos(&ids);
    durable
        .iter()
        .zip(cleaned)
        .filter(|(_, c)| *c)
        .map(|(w, _)| (w.id, w.used))
        .collect()
}

impl Commit for State {
    fn fsync_file(&mut self, _name: &str, f: &File) -> io::Result<()> {
        f.sync_all()
    }
    fn fsync_dir(&mut self, dir: &str) -> io::Result<()> {
        sys::fsync_dir(Path::new(dir))
    }
    fn commit_warn(&mut self, text: &str) {
        self.warn(text);
    }
    fn clean_todos(&mut self, ids: &[u64]) -> Vec<bool> {
        self.clean_many("todo", ids)
    }
    fn between(&mut self) {
        self.service();
    }
}

fn create_excl(name: &str) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o644).open(name)
}

fn unlink_if_there(name: &str) -> Result<(), Fail> {
    match std::fs::remove_file(name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(Fail(format!("unable to unlink {name}"))),
    }
}

/// The leading decimal digits of a `u` or `p` record, as scan_ulong reads them.
fn scan_ulong(s: &[u8]) -> u64 {
    s.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &b| n.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
}

impl State {
    /// Takes on one batch of `todo/` entries (see the module documentation):
    /// writes up to [`BATCH`] of them, servicing deliveries after each one, makes
    /// them durable together, then has qmail-clean remove them. A scan starts when
    /// the trigger was pulled or [`SLEEP_TODO`] passed, and goes on over the
    /// following turns until the directory ends.
    pub(super) fn todo_do(&mut self, trigger_pulled: bool) {
        if self.exitasap {
            return;
        }
        if self.todo_dir.is_none() {
            if !trigger_pulled && self.recent < self.next_todo_run {
                return;
            }
            self.trigger_set();
            match std::fs::read_dir("todo") {
                Ok(rd) => self.todo_dir = Some(rd),
                Err(_) => {
                    self.pausedir("todo");
                    return;
                }
            }
            self.next_todo_run = self.recent + SLEEP_TODO;
        }
        let started = Instant::now();
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            let entry = match self.todo_dir.as_mut().and_then(Iterator::next) {
                None => {
                    self.todo_dir = None;
                    break;
                }
                Some(e) => e,
            };
            let Some(id) = entry.ok().and_then(|e| number(&e.file_name())) else {
                continue;
            };
            if let Some(w) = self.preprocess(id) {
                batch.push(w);
            }
            self.service();
            if self.exitasap || started.elapsed() >= BATCH_WRITE_TIME {
                break;
            }
        }
        for (id, channels) in commit(batch, self) {
            self.schedule_new(id, channels);
        }
    }

    /// Writes message `id`'s files; on any failure it stays in `todo/` for the next
    /// scan, after a warning.
    fn preprocess(&mut self, id: u64) -> Option<Written> {
        let todo = flat_name("todo", id);
        let data = match std::fs::read(&todo) {
            Ok(d) => d,
            Err(_) => {
                self.warn(&format!("unable to open {todo}"));
                return None;
            }
        };
        match self.preprocess_records(id, &data) {
            Ok(w) => Some(w),
            Err(Fail(w)) => {
                self.warn(&w);
                None
            }
        }
    }

    /// The info and channel files of message `id`, written and not yet synced.
    fn preprocess_records(&mut self, id: u64, data: &[u8]) -> Result<Written, Fail> {
        let mess = split_name("mess", id);
        let bytes = match std::fs::metadata(&mess) {
            Ok(m) => m.len(),
            Err(_) => return Err(Fail(format!("unable to stat {mess}"))),
        };
        let chan_names = Channel::ALL.map(|c| split_name(c.dir(), id));
        for name in &chan_names {
            unlink_if_there(name)?;
        }
        let info_name = split_name("info", id);
        unlink_if_there(&info_name)?;
        let mut info = create_excl(&info_name).map_err(|_| Fail(format!("unable to create {info_name}")))?;
        self.log.line(&logfmt::new_msg(id));

        let mut chans: [Option<io::BufWriter<File>>; 2] = [None, None];
        let (mut uid, mut pid) = (0u64, 0u64);
        let mut rest = data;
        // Records end in NUL; a last one without its NUL is not a record.
        while let Some(end) = rest.iter().position(|&b| b == 0) {
            let record = &rest[..=end];
            rest = &rest[end + 1..];
            match record[0] {
                b'u' => uid = scan_ulong(&record[1..]),
                b'p' => pid = scan_ulong(&record[1..]),
                b'F' => {
                    info.write_all(record)
                        .map_err(|_| Fail(format!("trouble writing to {info_name}")))?;
                    let line = logfmt::info_msg(id, bytes, &record[1..record.len() - 1], pid, uid);
                    self.log.line(&line);
                }
                b'T' => {
                    let (channel, addr) = self.ctl.addresses.rewrite(&record[1..record.len() - 1]);
                    let c = channel.index();
                    if chans[c].is_none() {
                        let f = create_excl(&chan_names[c])
                            .map_err(|_| Fail(format!("unable to create {}", chan_names[c])))?;
                        chans[c] = Some(io::BufWriter::new(f));
                    }
                    let w = chans[c].as_mut().expect("just opened");
                    let mut rec = Vec::with_capacity(addr.len() + 2);
                    rec.push(b'T');
                    rec.extend_from_slice(&addr);
                    rec.push(0);
                    w.write_all(&rec)
                        .map_err(|_| Fail(format!("trouble writing to {}", chan_names[c])))?;
                }
                _ => return Err(Fail(format!("unknown record type in {}", flat_name("todo", id)))),
            }
        }

        // Not synced here: the batch is, together, before any of its todo/N goes
        // (qmail relied on synchronous metadata; ext4 and xfs also need the
        // directory fsync).
        let mut files = vec![(info_name, info)];
        let mut used = [false; 2];
        for c in 0..2 {
            if let Some(w) = chans[c].take() {
                let f = w
                    .into_inner()
                    .map_err(|_| Fail(format!("trouble writing to {}", chan_names[c])))?;
                used[c] = true;
                files.push((chan_names[c].clone(), f));
            }
        }
        Ok(Written { id, files, used })
    }
}

fn parent(name: &str) -> &str {
    name.rsplit_once('/').map_or(".", |(d, _)| d)
}

#[cfg(test)]
mod tests {
    use super::{commit, parent, Commit, Written};
    use std::collections::BTreeSet;
    use std::fs::File;
    use std::io::{self, Write};
    use std::path::{Path, PathBuf};

    #[test]
    fn scan() {
        assert_eq!(super::scan_ulong(b"1000\0"), 1000);
        assert_eq!(super::scan_ulong(b"12x"), 12);
        assert_eq!(super::scan_ulong(b""), 0);
        assert_eq!(parent("info/5/123"), "info/5");
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Fsync(String),
        FsyncDir(String),
        Clean(u64),
        Warn(String),
        Between,
    }

    /// Records what the durable and clean phases do, in order; fails the fsyncs
    /// of the names in `fail` and the clean requests of the ids in `refuse`.
    #[derive(Default)]
    struct Recorder {
        events: Vec<Ev>,
        fail: BTreeSet<String>,
        refuse: BTreeSet<u64>,
    }

    impl Commit for Recorder {
        fn fsync_file(&mut self, name: &str, f: &File) -> io::Result<()> {
            self.events.push(Ev::Fsync(name.to_string()));
            f.sync_all()?;
            if self.fail.contains(name) {
                return Err(io::ErrorKind::Other.into());
            }
            Ok(())
        }
        fn fsync_dir(&mut self, dir: &str) -> io::Result<()> {
            self.events.push(Ev::FsyncDir(dir.to_string()));
            if self.fail.contains(dir) {
                return Err(io::ErrorKind::Other.into());
            }
            super::sys::fsync_dir(Path::new(dir))
        }
        fn commit_warn(&mut self, text: &str) {
            self.events.push(Ev::Warn(text.to_string()));
        }
        fn clean_todos(&mut self, ids: &[u64]) -> Vec<bool> {
            self.events.extend(ids.iter().map(|&id| Ev::Clean(id)));
            ids.iter().map(|id| !self.refuse.contains(id)).collect()
        }
        fn between(&mut self) {
            self.events.push(Ev::Between);
        }
    }

    struct Tmp(PathBuf);

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("rqmail-todo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    fn name(root: &Path, dir: &str, id: u64) -> String {
        format!("{}/{dir}/{}/{id}", root.display(), id % 23)
    }

    /// Message `id` as the write phase leaves it: info and the channel files of
    /// `chans` (0 local, 1 remote) written, nothing synced.
    fn written(root: &Path, id: u64, chans: &[usize]) -> Written {
        let mut files = Vec::new();
        let mut used = [false; 2];
        let dirs = ["info", "local", "remote"];
        for (k, dir) in dirs.iter().enumerate() {
            if k > 0 && !chans.contains(&(k - 1)) {
                continue;
            }
            let n = name(root, dir, id);
            std::fs::create_dir_all(parent(&n)).unwrap();
            let mut f = File::create(&n).unwrap();
            f.write_all(if k == 0 { b"Fa@x.org\0" } else { b"Tb@y.org\0" }).unwrap();
            files.push((n, f));
            if k > 0 {
                used[k - 1] = true;
            }
        }
        Written { id, files, used }
    }

    /// 5, 28 and 51 share subdirectory 5; 7 is in 7.
    fn batch(root: &Path) -> Vec<Written> {
        vec![
            written(root, 5, &[0]),
            written(root, 28, &[0, 1]),
            written(root, 51, &[1]),
            written(root, 7, &[0]),
        ]
    }

    fn cleans(r: &Recorder) -> Vec<u64> {
        r.events
            .iter()
            .filter_map(|e| if let Ev::Clean(id) = e { Some(*id) } else { None })
            .collect()
    }

    #[test]
    fn no_clean_request_before_every_fsync_of_the_batch() {
        let t = tmp("order");
        let root = &t.0;
        let b = batch(root);
        let files: Vec<String> = b.iter().flat_map(|w| w.files.iter().map(|(n, _)| n.clone())).collect();
        let mut r = Recorder::default();
        let done = commit(b, &mut r);
        assert_eq!(
            done,
            vec![
                (5, [true, false]),
                (28, [true, true]),
                (51, [false, true]),
                (7, [true, false])
            ]
        );
        let first_clean = r.events.iter().position(|e| matches!(e, Ev::Clean(_))).unwrap();
        let last_sync = r
            .events
            .iter()
            .rposition(|e| matches!(e, Ev::Fsync(_) | Ev::FsyncDir(_)))
            .unwrap();
        assert!(last_sync < first_clean, "{:?}", r.events);
        assert_eq!(cleans(&r), vec![5, 28, 51, 7]);
        // Every file once, in batch order, deliveries serviced after each message.
        let synced: Vec<String> = r
            .events
            .iter()
            .filter_map(|e| if let Ev::Fsync(n) = e { Some(n.clone()) } else { None })
            .collect();
        assert_eq!(synced, files);
        assert_eq!(r.events.iter().filter(|e| **e == Ev::Between).count(), 4);
        // Every directory once per batch, not once per message, after the files.
        let dirs: Vec<String> = r
            .events
            .iter()
            .filter_map(|e| if let Ev::FsyncDir(d) = e { Some(d.clone()) } else { None })
            .collect();
        let want: BTreeSet<String> = files.iter().map(|n| parent(n).to_string()).collect();
        assert_eq!(dirs.len(), 5);
        assert_eq!(dirs.iter().cloned().collect::<BTreeSet<_>>(), want);
        let first_dir = r.events.iter().position(|e| matches!(e, Ev::FsyncDir(_))).unwrap();
        let last_file = r.events.iter().rposition(|e| matches!(e, Ev::Fsync(_))).unwrap();
        assert!(last_file < first_dir);
        assert!(!r.events.iter().any(|e| matches!(e, Ev::Warn(_))));
    }

    #[test]
    fn a_failed_fsync_keeps_its_todo_entries() {
        let t = tmp("fail");
        let root = &t.0;
        // A file: only that message stays in todo/; its directories are not needed.
        let mut r = Recorder::default();
        let bad = name(root, "local", 28);
        r.fail.insert(bad.clone());
        assert_eq!(
            commit(batch(root), &mut r),
            vec![(5, [true, false]), (51, [false, true]), (7, [true, false])]
        );
        assert!(r.events.contains(&Ev::Warn(format!("trouble fsyncing {bad}"))));
        // Its other files are not synced for nothing, and remote/5 is still synced for 51.
        assert!(!r.events.contains(&Ev::Fsync(name(root, "remote", 28))));
        assert!(r
            .events
            .contains(&Ev::FsyncDir(parent(&name(root, "remote", 51)).to_string())));

        // A directory: every message with a file in it stays.
        let mut r = Recorder::default();
        let bad = parent(&name(root, "local", 5)).to_string();
        r.fail.insert(bad.clone());
        r.refuse.insert(51);
        for d in ["info", "local", "remote"] {
            for id in [5, 28, 51, 7] {
                let _ = std::fs::remove_file(name(root, d, id));
            }
        }
        assert_eq!(commit(batch(root), &mut r), vec![(7, [true, false])]);
        assert!(r.events.contains(&Ev::Warn(format!("trouble fsyncing {bad}"))));
        // 51 (remote only) was asked for and refused; 5 and 28 were never asked for.
        assert_eq!(cleans(&r), vec![51, 7]);
    }
}
