//! qmail-start (qmail-start(8)): builds qmail-send's process tree and becomes
//! qmail-send.
//!
//! ```text
//! qmail-start [ defaultdelivery [ logger arg ... ] ]
//! ```
//!
//! The sequence is qmail-start.c's: `chdir /`, `umask 077`, groups and gid `qmail`
//! for everyone; descriptor 0 copied onto 2 .. the highest descriptor qmail-send
//! gets, so that every pipe made next lands above them; the logger (as
//! qmaill:nofiles, reading qmail-send's log) if one is named; then one pipe per
//! [`Link`], one child per [`Daemon`], each under its own uid from `control/ids`
//! with its pipe ends on its fixed descriptors and nothing else below them; last,
//! this process becomes qmails and execs qmail-send, so the pid a supervisor watches
//! is qmail-send's. All programs are found through PATH (which must contain
//! QMAILHOME/bin). Nothing is printed; every failure is exit 111.
//!
//! The tree is data: [`layout`] lists the daemons and the pipes between them, so
//! another helper is another entry. When `QMAILHOME/bin/qmail-todo` exists it is
//! started as the ext-todo patch's qmail-start does: qmail-todo as qmails, reading
//! qmail-send's descriptor 7 on its 0 and writing its 1 to qmail-send's 8, with a
//! qmail-clean of its own on its descriptors 2 (requests) and 3 (answers).

use qmail::ids::Ids;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// One program of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    pub argv: Vec<OsString>,
    /// The qmail user it becomes (group `qmail`); `None`: it stays root.
    pub user: Option<&'static str>,
}

/// A pipe: `(daemon, descriptor)` of the end that writes, and of the end that reads.
/// Daemon 0 is qmail-send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub writer: (usize, RawFd),
    pub reader: (usize, RawFd),
}

pub struct Layout {
    pub daemons: Vec<Daemon>,
    pub links: Vec<Link>,
}

const SEND: usize = 0;

/// qmail's tree: qmail-send, qmail-lspawn (root, with `defaultdelivery`),
/// qmail-rspawn (qmailr), qmail-clean (qmailq); with `todo`, qmail-todo (qmails)
/// and its own qmail-clean.
pub fn layout(defaultdelivery: OsString, todo: bool) -> Layout {
    let d = |argv: &[&str], user| Daemon {
        argv: argv.iter().map(OsString::from).collect(),
        user,
    };
    let mut lspawn = d(&["qmail-lspawn"], None);
    lspawn.argv.push(defaultdelivery);
    let mut daemons = vec![
        d(&["qmail-send"], Some("qmails")),
        lspawn,
        d(&["qmail-rspawn"], Some("qmailr")),
        d(&["qmail-clean"], Some("qmailq")),
    ];
    let link = |writer, reader| Link { writer, reader };
    // qmail-send's 1/2 talk to qmail-lspawn, 3/4 to qmail-rspawn, 5/6 to qmail-clean.
    let mut links = vec![
        link((SEND, 1), (1, 0)),
        link((1, 1), (SEND, 2)),
        link((SEND, 3), (2, 0)),
        link((2, 1), (SEND, 4)),
        link((SEND, 5), (3, 0)),
        link((3, 1), (SEND, 6)),
    ];
    if todo {
        daemons.push(d(&["qmail-todo"], Some("qmails")));
        daemons.push(d(&["qmail-clean"], Some("qmailq")));
        links.extend([
            link((SEND, 7), (4, 0)),
            link((4, 1), (SEND, 8)),
            link((4, 2), (5, 0)),
            link((5, 1), (4, 3)),
        ]);
    }
    Layout { daemons, links }
}

impl Layout {
    /// The highest descriptor qmail-send is given.
    fn top(&self) -> RawFd {
        self.links
            .iter()
            .flat_map(|l| [l.writer, l.reader])
            .filter(|e| e.0 == SEND)
            .map(|e| e.1)
            .max()
            .unwrap_or(1)
    }

    /// (pipe index, write end?, target descriptor) for daemon `d`.
    fn ends(&self, d: usize) -> Vec<(usize, bool, RawFd)> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            if l.writer.0 == d {
                out.push((i, true, l.writer.1));
            }
            if l.reader.0 == d {
                out.push((i, false, l.reader.1));
            }
        }
        out
    }
}

fn fail<T>(r: Result<T, impl Sized>) -> Result<T, i32> {
    r.map_err(|_| 111)
}

/// Becomes `user` of `ids` with `group` as gid and only group (`None`: stays root).
fn become_user(ids: &Ids, user: Option<&str>, group: &str) -> io::Result<()> {
    qmail::privs::drop_to(user.map(|u| ids.uid(u)), Some(ids.gid(group)))
}

/// Places `fds` (descriptor, target) and closes the other descriptors from 2 to `top`.
fn wire(fds: &[(RawFd, RawFd)], top: RawFd) -> io::Result<()> {
    for &(fd, target) in fds {
        qmail::fd::place(fd, target)?;
    }
    for fd in 2..=top {
        if !fds.iter().any(|&(_, t)| t == fd) {
            // SAFETY: closing a descriptor that this child does not pass on.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Execs `argv` through PATH; returns only on failure.
fn exec(argv: &[OsString]) -> io::Error {
    qmail::env::Env::inherited().exec(argv)
}

/// Starts the tree and execs qmail-send; returns only on failure (the exit code).
pub fn start(args: &[OsString], ids: &Ids, layout: &Layout) -> i32 {
    match build(args, ids, layout) {
        Ok(never) => match never {},
        Err(code) => code,
    }
}

fn build(args: &[OsString], ids: &Ids, layout: &Layout) -> Result<std::convert::Infallible, i32> {
    fail(std::env::set_current_dir("/"))?;
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    fail(become_user(ids, None, "qmail"))?;
    let top = layout.top();
    for fd in 2..=top {
        fail(qmail::fd::place(0, fd))?;
    }
    if let Some(logger) = args.get(2..).filter(|l| !l.is_empty()) {
        let (r, w) = fail(qmail::fd::pipe())?;
        let child = super::spawner::fork(|| {
            if become_user(ids, Some("qmaill"), "nofiles").is_err() || wire(&[(r.as_raw_fd(), 0)], top).is_err() {
                return 111;
            }
            exec(logger);
            111
        });
        fail(child)?;
        drop(r);
        fail(qmail::fd::place(w.as_raw_fd(), 1))?;
    }
    let pipes: Vec<(OwnedFd, OwnedFd)> = fail(layout.links.iter().map(|_| qmail::fd::pipe()).collect())?;
    let fds_of = |d: usize| -> Vec<(RawFd, RawFd)> {
        layout
            .ends(d)
            .into_iter()
            .map(|(i, write, target)| {
                let (r, w) = &pipes[i];
                (if write { w.as_raw_fd() } else { r.as_raw_fd() }, target)
            })
            .collect()
    };
    for (d, daemon) in layout.daemons.iter().enumerate().skip(1) {
        let fds = fds_of(d);
        let child = super::spawner::fork(|| {
            if become_user(ids, daemon.user, "qmail").is_err() || wire(&fds, top).is_err() {
                return 111;
            }
            exec(&daemon.argv);
            111
        });
        fail(child)?;
    }
    let send = &layout.daemons[SEND];
    fail(become_user(ids, send.user, "qmail"))?;
    // The log (our descriptor 1: the supervisor's pipe, or the logger's) becomes 0.
    fail(qmail::fd::place(1, 0))?;
    fail(wire(&fds_of(SEND), top))?;
    exec(&send.argv);
    Err(111)
}

/// qmail-start's main.
pub fn main(args: &[OsString]) -> i32 {
    qmail::signals::sanitize();
    let home = qmail::home::home();
    let Ok(ids) = Ids::load(&home) else { return 111 };
    let defaultdelivery = args.get(1).cloned().unwrap_or_else(|| "./Mailbox".into());
    let todo = home.join("bin/qmail-todo").exists();
    start(args, &ids, &layout(defaultdelivery, todo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_send_gets_0_to_6_and_each_helper_0_and_1() {
        let l = layout("./Maildir/".into(), false);
        assert_eq!(l.top(), 6);
        assert_eq!(l.daemons[1].argv, ["qmail-lspawn", "./Maildir/"]);
        let users: Vec<_> = l.daemons.iter().map(|d| d.user).collect();
        assert_eq!(users, [Some("qmails"), None, Some("qmailr"), Some("qmailq")]);
        let send: Vec<(bool, RawFd)> = l.ends(SEND).iter().map(|e| (e.1, e.2)).collect();
        assert_eq!(
            send,
            [(true, 1), (false, 2), (true, 3), (false, 4), (true, 5), (false, 6)]
        );
        for d in 1..4 {
            let ends: Vec<(bool, RawFd)> = l.ends(d).iter().map(|e| (e.1, e.2)).collect();
            assert_eq!(ends, [(false, 0), (true, 1)]);
        }
    }

    #[test]
    fn ext_todo_is_two_more_entries() {
        let l = layout("./Mailbox".into(), true);
        assert_eq!(l.top(), 8);
        assert_eq!(l.daemons[4].argv, ["qmail-todo"]);
        assert_eq!((l.daemons[4].user, l.daemons[5].user), (Some("qmails"), Some("qmailq")));
        let todo: Vec<(bool, RawFd)> = l.ends(4).iter().map(|e| (e.1, e.2)).collect();
        assert_eq!(todo, [(false, 0), (true, 1), (true, 2), (false, 3)]);
        let send: Vec<RawFd> = l.ends(SEND).iter().map(|e| e.2).collect();
        assert_eq!(send, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
