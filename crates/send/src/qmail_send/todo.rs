//! Preprocessing (qmail's INTERNALS: a message moves from `todo/` to `info/`,
//! `local/` and `remote/`): the sender record goes to `info/S/N`, each recipient,
//! rewritten, to its channel's file, and only when those are durable does
//! qmail-clean remove `todo/N`. Until then a crash just means doing it again: the
//! partial files of a failed attempt are removed first.

use super::config::Channel;
use super::daemon::{number, State, BATCH, SLEEP_TODO};
use super::logfmt;
use qmail::queuedir::{flat_name, split_name};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What went wrong: the warning to log, and the message stays in `todo/`.
struct Fail(String);

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
    /// Takes on up to [`BATCH`] entries of `todo/`, servicing deliveries after
    /// each one. A scan starts when the trigger was pulled or [`SLEEP_TODO`]
    /// passed, and goes on over the following turns until the directory ends.
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
        for _ in 0..BATCH {
            let entry = match self.todo_dir.as_mut().and_then(Iterator::next) {
                None => {
                    self.todo_dir = None;
                    return;
                }
                Some(e) => e,
            };
            let Some(id) = entry.ok().and_then(|e| number(&e.file_name())) else {
                continue;
            };
            self.preprocess(id);
            self.service();
            if self.exitasap {
                return;
            }
        }
    }

    /// Preprocesses message `id`; on any failure it stays in `todo/` for the next
    /// scan, after a warning.
    fn preprocess(&mut self, id: u64) {
        let todo = flat_name("todo", id);
        let data = match std::fs::read(&todo) {
            Ok(d) => d,
            Err(_) => return self.warn(&format!("unable to open {todo}")),
        };
        match self.preprocess_records(id, &data) {
            Ok(Some(channels)) => self.schedule_new(id, channels),
            Ok(None) => {}
            Err(Fail(w)) => self.warn(&w),
        }
    }

    /// Ok(Some(channels used)) when done and `todo/N` is gone; Ok(None) when
    /// qmail-clean could not remove it (already logged).
    fn preprocess_records(&mut self, id: u64, data: &[u8]) -> Result<Option<[bool; 2]>, Fail> {
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

        // Each fsync is what lets qmail-clean remove todo/N safely: the files and
        // their directory entries must survive a crash first (qmail relied on
        // synchronous metadata; ext4 and xfs need the directory fsync).
        info.sync_all()
            .map_err(|_| Fail(format!("trouble fsyncing {info_name}")))?;
        let mut used = [false; 2];
        let mut dirs = vec![parent(&info_name)];
        for c in 0..2 {
            if let Some(w) = chans[c].take() {
                let f = w
                    .into_inner()
                    .map_err(|_| Fail(format!("trouble writing to {}", chan_names[c])))?;
                f.sync_all()
                    .map_err(|_| Fail(format!("trouble fsyncing {}", chan_names[c])))?;
                used[c] = true;
                dirs.push(parent(&chan_names[c]));
            }
        }
        for d in dirs {
            super::sys::fsync_dir(Path::new(&d)).map_err(|_| Fail(format!("trouble fsyncing {d}")))?;
        }
        if !self.clean("todo", id) {
            return Ok(None);
        }
        Ok(Some(used))
    }
}

fn parent(name: &str) -> String {
    name.rsplit_once('/').map_or(".", |(d, _)| d).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn scan() {
        assert_eq!(super::scan_ulong(b"1000\0"), 1000);
        assert_eq!(super::scan_ulong(b"12x"), 12);
        assert_eq!(super::scan_ulong(b""), 0);
        assert_eq!(super::parent("info/5/123"), "info/5");
    }
}
