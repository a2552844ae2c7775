//! qmail-lspawn (qmail-lspawn(8)): runs qmail-local as the user who controls each
//! local address.
//!
//! Per delivery, in a child as qmail-lspawn.c does it: the local part (before the
//! last `@`) is looked up with [`qmail::userlookup`] (users/cdb as root, the passwd
//! rules in a grandchild as qmailp:nofiles, as qmail-getpw ran), then the child
//! becomes the user (setgroups to the primary gid only, setgid, setuid; never
//! root), and execs `bin/qmail-local -- user homedir local dash ext domain sender
//! defaultdelivery` from QMAILHOME with the message on descriptor 0 and the report
//! pipe on 1 and 2. Its exit code becomes the report through [`report`].

use super::spawner::{self, Delivery, Spawn, Started, Status};
use qmail::ids::Ids;
use qmail::userlookup::{self, User};
use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// qmail's qlx.h: the exit codes of the delivery child that are not qmail-local's.
pub mod qlx {
    pub const USAGE: i32 = 112;
    pub const ROOT: i32 = 113;
    pub const SYS: i32 = 118;
    pub const EXECSOFT: i32 = 120;
    pub const EXECHARD: i32 = 126;
}

/// The reports that replace the child's output, by exit code (qmail-lspawn.c).
const FIXED: [(i32, &[u8]); 10] = [
    (117, b"ZTrouble reading users/cdb in qmail-lspawn.\n"),
    (119, b"ZOut of memory in qmail-lspawn.\n"),
    (118, b"ZTemporary failure in qmail-lspawn.\n"),
    (116, b"ZUnable to find alias user!\n"),
    (113, b"ZNot allowed to perform deliveries as root.\n"),
    (112, b"ZInternal qmail-lspawn bug.\n"),
    (115, b"ZNFS failure in qmail-local.\n"),
    (126, b"DUnable to run qmail-local.\n"),
    (120, b"ZUnable to run qmail-local.\n"),
    (121, b"ZUnable to run qmail-getpw.\n"),
];

/// The report for a child that ended with `status` after writing `output`: a fixed
/// text for the codes of [`FIXED`] and for a crash, else `K` (0), `Z` (111, 71, 74,
/// 75) or `D` (100 and every other code) and the output up to its first NUL.
pub fn report(status: Status, output: &[u8], out: &mut Vec<u8>) {
    let code = match status {
        Status::Killed(_) => return out.extend_from_slice(b"Zqmail-local crashed.\n"),
        Status::Exited(c) => c,
    };
    if let Some((_, text)) = FIXED.iter().find(|(c, _)| *c == code) {
        return out.extend_from_slice(text);
    }
    out.push(match code {
        0 => b'K',
        111 | 71 | 74 | 75 => b'Z',
        _ => b'D',
    });
    out.extend(output.iter().take_while(|&&c| c != 0));
}

/// What qmail-lspawn reads once at start.
pub struct Lspawn {
    pub home: PathBuf,
    pub defaultdelivery: OsString,
    /// qmail-getpw's user and group.
    pub qmailp: u32,
    pub nofiles: u32,
    pub passwd: PathBuf,
}

impl Spawn for Lspawn {
    fn truncreport(&self) -> Option<usize> {
        Some(3000)
    }

    fn start(&mut self, d: &Delivery) -> io::Result<Started> {
        spawner::fork(|| self.child(d)).map(Started::Child)
    }

    fn report(&self, status: Status, output: &[u8], out: &mut Vec<u8>) {
        report(status, output, out)
    }
}

impl Lspawn {
    /// The delivery child: returns its exit code if it does not exec qmail-local.
    fn child(&self, d: &Delivery) -> i32 {
        let local = &d.recipient[..d.at];
        if local.is_empty() {
            return 0; // the trash address
        }
        if std::env::set_current_dir(&self.home).is_err() {
            return qlx::USAGE;
        }
        if spawner::child_descriptors(d.message.as_raw_fd(), d.out.as_raw_fd()).is_err() {
            return qlx::SYS;
        }
        let user = match userlookup::from_users_cdb(&self.home, local) {
            Ok(Some(u)) => u,
            Ok(None) => match self.getpw(local) {
                Ok(u) => u,
                Err(code) => return code,
            },
            Err(f) => return f.code(),
        };
        let args: Vec<&[u8]> = vec![
            b"bin/qmail-local",
            b"--",
            &user.name,
            &user.home,
            local,
            &user.dash,
            &user.ext,
            &d.recipient[d.at + 1..],
            d.sender,
            self.defaultdelivery.as_bytes(),
        ];
        if qmail::privs::drop_to(Some(user.uid), Some(user.gid)).is_err() {
            return qlx::USAGE;
        }
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            return qlx::ROOT;
        }
        spawner::unblock_signals();
        let e = execv(&args);
        match e.raw_os_error() {
            Some(n) if qmail::errstr::is_temporary(n) => qlx::EXECSOFT,
            _ => qlx::EXECHARD,
        }
    }

    /// qmail-getpw's part, in a grandchild as qmailp:nofiles that writes the six
    /// fields on a pipe; its exit code is the lookup's failure.
    fn getpw(&self, local: &[u8]) -> Result<User, i32> {
        let (r, w) = qmail::fd::pipe().map_err(|_| qlx::SYS)?;
        let (r, w) = (std::fs::File::from(r), std::fs::File::from(w));
        let pid = spawner::fork(|| {
            // SAFETY: the message is for qmail-local, not for the passwd reader.
            unsafe { libc::close(0) };
            if qmail::privs::drop_to(Some(self.qmailp), Some(self.nofiles)).is_err() {
                return qlx::USAGE;
            }
            match userlookup::from_passwd_file(&self.passwd, local) {
                Ok(u) => {
                    let _ = (&w).write_all(&u.encode());
                    0
                }
                Err(f) => f.code(),
            }
        })
        .map_err(|_| qlx::SYS)?;
        drop(w);
        let mut out = Vec::new();
        let read = (&r).read_to_end(&mut out);
        let mut wstat = 0;
        // SAFETY: wstat is a valid int for the status.
        if unsafe { libc::waitpid(pid, &mut wstat, 0) } == pid {
            match Status::from_wait(wstat) {
                Status::Killed(_) => return Err(qlx::SYS),
                Status::Exited(0) => {}
                Status::Exited(c) => return Err(c),
            }
        }
        read.map_err(|_| qlx::SYS)?;
        User::decode(&out).ok_or(qlx::USAGE)
    }
}

/// execv: no PATH search (the program is relative to QMAILHOME); returns the error.
fn execv(args: &[&[u8]]) -> io::Error {
    let Ok(c) = args.iter().map(|a| CString::new(*a)).collect::<Result<Vec<_>, _>>() else {
        return io::Error::from_raw_os_error(libc::EINVAL);
    };
    let mut ptrs: Vec<*const libc::c_char> = c.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: a NUL-terminated array of NUL-terminated strings that outlive the call.
    unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// qmail-lspawn's main: `qmail-lspawn defaultdelivery`, as root, started by
/// qmail-start with qmail-send's command pipe on 0 and its report pipe on 1.
pub fn main(args: &[OsString]) -> i32 {
    qmail::signals::sanitize();
    let home = qmail::home::home();
    let ids = Ids::load(&home);
    let home = match std::fs::canonicalize(&home) {
        Ok(h) => h,
        Err(_) => return 111,
    };
    if std::env::set_current_dir(home.join("queue/mess")).is_err() {
        return 111;
    }
    let Some(defaultdelivery) = args.get(1).cloned() else {
        return 100;
    };
    let Ok(ids) = ids else { return 111 };
    let mut l = Lspawn {
        home,
        defaultdelivery,
        qmailp: ids.uid("qmailp"),
        nofiles: ids.gid("nofiles"),
        passwd: userlookup::passwd_path(),
    };
    spawner::run(&mut l, ids.uid("qmailq"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(status: Status, output: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        report(status, output, &mut out);
        out
    }

    #[test]
    fn reports_from_exit_statuses() {
        let said = b"did 1+0+0\n\0ignored after NUL";
        assert_eq!(rep(Status::Exited(0), said), b"Kdid 1+0+0\n");
        for code in [111, 71, 74, 75] {
            assert_eq!(rep(Status::Exited(code), b"later\n"), b"Zlater\n");
        }
        // 100, 99, 1, 101 (QLX_BUG) and anything unlisted bounce.
        for code in [100, 99, 1, 101, 114, 127, 255] {
            assert_eq!(rep(Status::Exited(code), b"no\n"), b"Dno\n");
        }
        assert_eq!(rep(Status::Killed(9), b"half"), b"Zqmail-local crashed.\n");
        assert_eq!(
            rep(Status::Exited(113), b"x"),
            b"ZNot allowed to perform deliveries as root.\n"
        );
        assert_eq!(rep(Status::Exited(126), b"x"), b"DUnable to run qmail-local.\n");
        assert_eq!(rep(Status::Exited(121), b""), b"ZUnable to run qmail-getpw.\n");
        assert_eq!(FIXED.iter().filter(|(_, t)| t[0] == b'D').count(), 1);
        assert_eq!(rep(Status::Exited(0), b""), b"K");
    }
}
