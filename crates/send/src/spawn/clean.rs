//! qmail-clean (qmail-clean(8)): removes a message's files on qmail-send's request,
//! as qmailq, because qmail-send (qmails) may not delete from `mess/`, `intd/` or
//! `todo/`.
//!
//! One request at a time on descriptor 0, a NUL-terminated name of 7 to 100 bytes
//! (with the NUL), answered with one byte on descriptor 1:
//!
//! - `foop/N`: unlink `intd/N`, then `mess/(N mod 23)/N`;
//! - `todo/N`: unlink `intd/N`, then `todo/N`;
//!
//! `+` when done (a file already gone is no error), `!` when an unlink failed (the
//! request stops at that file), `x` for anything else. qmail's own digit check on N
//! never worked (`todo/12ab` was `todo/12`), and its `todo/` test compared four
//! bytes; here N is all digits and the prefix is exact. Before the first request and
//! then before every 31st, `pid/` files that qmail-queue left behind are removed
//! once their access time is 36 hours old (qmail's OSSIFIED, longer than
//! qmail-queue's 24-hour death alarm, so no live qmail-queue owns them).

use qmail::queuedir::{flat_name, split_name};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// qmail-send's OSSIFIED: 36 hours.
pub const OSSIFIED: i64 = 129600;
/// A request is at most this long, its NUL included.
const MAX: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A finished (or abandoned) message: its intd and mess files.
    Foop(u64),
    /// A preprocessed message: its intd and todo files.
    Todo(u64),
}

impl Request {
    /// A request without its NUL; `None` is answered `x`.
    pub fn parse(line: &[u8]) -> Option<Request> {
        if line.len() + 1 < 7 || line.len() + 1 > MAX {
            return None;
        }
        let (kind, n) = line.split_at(5);
        if !n.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(n).ok()?.parse().ok()?;
        match kind {
            b"foop/" => Some(Request::Foop(n)),
            b"todo/" => Some(Request::Todo(n)),
            _ => None,
        }
    }

    /// The files to unlink, in order, relative to the queue directory.
    pub fn files(self) -> [String; 2] {
        match self {
            Request::Foop(n) => [flat_name("intd", n), split_name("mess", n)],
            Request::Todo(n) => [flat_name("intd", n), flat_name("todo", n)],
        }
    }

    /// Carries the request out under `queue`: the answer byte.
    pub fn perform(self, queue: &Path) -> u8 {
        for f in self.files() {
            match std::fs::remove_file(queue.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return b'!',
            }
        }
        b'+'
    }
}

/// Unlinks the files of `queue/pid` whose access time is [`OSSIFIED`] old at `now`.
pub fn cleanup_pid(queue: &Path, now: i64) {
    let Ok(dir) = std::fs::read_dir(queue.join("pid")) else {
        return;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(m) if now >= m.atime() + OSSIFIED => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// Reads one NUL-terminated request: `Ok(None)` at end of input (a partial request
/// included), `Ok(Some(None))` for one longer than [`MAX`] (read to its NUL, not kept).
fn next(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<Option<()>>> {
    line.clear();
    let mut long = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        let (take, done) = match buf.iter().position(|&c| c == 0) {
            Some(p) => (p, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX {
            long = true;
        } else {
            line.extend_from_slice(&buf[..take]);
        }
        input.consume(take + usize::from(done));
        if done {
            return Ok(Some(if long { None } else { Some(()) }));
        }
    }
}

/// Serves requests from `input` until it ends; returns the exit code (0 at end of
/// input, 100 when an answer cannot be written).
pub fn serve(queue: &Path, mut input: impl BufRead, mut output: impl Write, now: impl Fn() -> i64) -> i32 {
    let mut countdown = 0;
    let mut line = Vec::with_capacity(MAX);
    loop {
        if countdown == 0 {
            cleanup_pid(queue, now());
            countdown = 30;
        } else {
            countdown -= 1;
        }
        let answer = match next(&mut input, &mut line) {
            Err(_) | Ok(None) => return 0,
            Ok(Some(None)) => b'x',
            Ok(Some(Some(()))) => Request::parse(&line).map_or(b'x', |r| r.perform(queue)),
        };
        if output.write_all(&[answer]).and_then(|()| output.flush()).is_err() {
            return 100;
        }
    }
}

/// qmail-clean's main: as qmailq, started by qmail-start.
pub fn main() -> i32 {
    qmail::signals::sanitize();
    super::spawner::ignore_sigpipe();
    let queue = qmail::home::home().join("queue");
    if std::env::set_current_dir(&queue).is_err() {
        return 111;
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    // SAFETY: descriptors 0 and 1 are qmail-send's pipes, ours for the process's life.
    let (input, output) = unsafe {
        use std::os::fd::FromRawFd;
        (std::fs::File::from_raw_fd(0), std::fs::File::from_raw_fd(1))
    };
    serve(Path::new("."), io::BufReader::with_capacity(256, input), output, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(Request::parse(b"foop/123"), Some(Request::Foop(123)));
        assert_eq!(Request::parse(b"todo/4"), Some(Request::Todo(4)));
        assert_eq!(Request::parse(b"todo/"), None);
        assert_eq!(Request::parse(b"todo/12ab"), None);
        assert_eq!(Request::parse(b"todoX12"), None);
        assert_eq!(Request::parse(b"mess/12"), None);
        assert_eq!(Request::parse(b"todo/-1"), None);
        let ok = format!("todo/{}", "1".repeat(14));
        assert!(Request::parse(ok.as_bytes()).is_some());
        assert_eq!(Request::parse(format!("todo/{}", "1".repeat(95)).as_bytes()), None);
        assert_eq!(
            Request::Foop(47).files(),
            ["intd/47".to_string(), "mess/1/47".to_string()]
        );
        assert_eq!(
            Request::Todo(47).files(),
            ["intd/47".to_string(), "todo/47".to_string()]
        );
    }

    #[test]
    fn serves_until_end_of_input() {
        let q = std::env::temp_dir().join(format!("rqmail-clean-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&q);
        for d in ["intd", "todo", "mess/1", "pid"] {
            std::fs::create_dir_all(q.join(d)).unwrap();
        }
        for f in ["intd/47", "mess/1/47", "todo/48"] {
            std::fs::write(q.join(f), b"").unwrap();
        }
        std::fs::create_dir(q.join("intd/49")).unwrap();
        std::fs::write(q.join("todo/49"), b"").unwrap();
        std::fs::write(q.join("pid/old"), b"").unwrap();
        let long = [&b"todo/"[..], &[b'1'; 200]].concat();
        let input = [&b"foop/47\0todo/48\0todo/49\0x\0"[..], &long, b"\0foop/1\0todo/5"].concat();
        let mut out = Vec::new();
        let far = || i64::MAX / 2;
        assert_eq!(serve(&q, &input[..], &mut out, far), 0);
        assert_eq!(out, b"++!xx+");
        assert!(!q.join("intd/47").exists() && !q.join("mess/1/47").exists() && !q.join("todo/48").exists());
        // An unlink that failed stops the request: todo/49 stays.
        assert!(q.join("todo/49").exists());
        assert!(!q.join("pid/old").exists());
        std::fs::remove_dir_all(&q).unwrap();
    }
}
