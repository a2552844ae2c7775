//! qmail-mkqueue: creates, repairs or checks the directories of an instance with the
//! owners and modes qmail 1.03's `hier.c` gives them, from the ids in `control/ids`.
//!
//! `make install` and `make run` call it; running it again is harmless and puts right
//! any owner or mode that drifted. With `-c` it changes nothing and reports.

use qmail::exit::Failure;
use qmail::ids::Ids;
use qmail::queuedir::{SPLIT, SPLIT_DIRS};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Fifo,
}

/// One thing the tree must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The tree, in creation order (parents first).
pub fn tree(ids: &Ids) -> Vec<Entry> {
    let qmail = ids.gid("qmail");
    let e = |path: &str, kind, user: &str, mode| Entry {
        path: path.to_string(),
        kind,
        uid: ids.uid(user),
        gid: qmail,
        mode,
    };
    let mut t = vec![
        e(".", Kind::Dir, "root", 0o755),
        e("alias", Kind::Dir, "alias", 0o2755),
        e("bin", Kind::Dir, "root", 0o755),
        e("control", Kind::Dir, "root", 0o755),
        e("users", Kind::Dir, "root", 0o755),
        e("queue", Kind::Dir, "qmailq", 0o750),
        e("queue/pid", Kind::Dir, "qmailq", 0o700),
        e("queue/intd", Kind::Dir, "qmailq", 0o700),
        e("queue/todo", Kind::Dir, "qmailq", 0o750),
        e("queue/bounce", Kind::Dir, "qmails", 0o700),
        e("queue/lock", Kind::Dir, "qmailq", 0o750),
        e("queue/lock/sendmutex", Kind::File, "qmails", 0o600),
        e("queue/lock/tcpto", Kind::File, "qmailr", 0o644),
        e("queue/lock/trigger", Kind::Fifo, "qmails", 0o622),
    ];
    for dir in SPLIT_DIRS {
        let (user, mode) = if dir == "mess" {
            ("qmailq", 0o750)
        } else {
            ("qmails", 0o700)
        };
        t.push(e(&format!("queue/{dir}"), Kind::Dir, user, mode));
        for s in 0..SPLIT {
            t.push(e(&format!("queue/{dir}/{s}"), Kind::Dir, user, mode));
        }
    }
    t
}

/// What is wrong with one entry, or None.
pub fn check(home: &Path, e: &Entry) -> Option<String> {
    let meta = match std::fs::symlink_metadata(home.join(&e.path)) {
        Ok(m) => m,
        Err(err) => return Some(format!("{}: {}", e.path, qmail::errstr::io_str(&err))),
    };
    let ft = meta.file_type();
    let kind_ok = match e.kind {
        Kind::Dir => ft.is_dir(),
        Kind::File => ft.is_file(),
        Kind::Fifo => ft.is_fifo(),
    };
    let mode = meta.mode() & 0o7777;
    if kind_ok && meta.uid() == e.uid && meta.gid() == e.gid && mode == e.mode {
        return None;
    }
    let kind = if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "file"
    };
    Some(format!(
        "{}: {kind} {}:{} {:04o}, want {:?} {}:{} {:04o}",
        e.path,
        meta.uid(),
        meta.gid(),
        mode,
        e.kind,
        e.uid,
        e.gid,
        e.mode
    ))
}

/// Creates what is missing and sets every owner and mode.
pub fn make(home: &Path, e: &Entry) -> io::Result<()> {
    let path: PathBuf = home.join(&e.path);
    let exists = std::fs::symlink_metadata(&path).is_ok();
    if !exists {
        match e.kind {
            Kind::Dir => std::fs::create_dir(&path)?,
            Kind::File => {
                // tcpto is qmail-remote's table of hosts that timed out: 1024 zero
                // bytes, as qmail's hier.c makes it.
                let size = if e.path.ends_with("tcpto") { 1024 } else { 0 };
                std::fs::write(&path, vec![0u8; size])?
            }
            Kind::Fifo => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|err| io::Error::from_raw_os_error(err as i32))?,
        }
    }
    // chown before chmod: chown clears the setgid bit of alias/.
    std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
}

/// True if `queue/todo` is split (big-todo), a layout rqmail does not read.
pub fn big_todo(home: &Path) -> bool {
    home.join("queue/todo/0").is_dir()
}

/// The ids the tree is made with, from `home/control/ids`.
pub fn load_ids(home: &Path) -> Result<Ids, Failure> {
    Ids::load(home).map_err(|e| {
        Failure::io(
            format_args!("unable to read {}", home.join(qmail::ids::FILE).display()),
            &e,
        )
    })
}

/// Makes (or with `check_only`, checks) the whole tree; returns the problems found by a
/// check. A big-todo tree is refused before anything is made: rqmail would never
/// deliver what is in it.
pub fn run(home: &Path, ids: &Ids, check_only: bool) -> Result<Vec<String>, Failure> {
    if big_todo(home) {
        return Err(Failure::perm(
            "queue/todo is split (big-todo); rqmail reads a flat todo/ only",
        ));
    }
    let mut wrong = Vec::new();
    for entry in tree(ids) {
        if check_only {
            wrong.extend(check(home, &entry));
        } else {
            make(home, &entry)
                .map_err(|e| Failure::io(format_args!("unable to make {}", home.join(&entry.path).display()), &e))?;
        }
    }
    Ok(wrong)
}
