//! Maildir delivery, as maildir(5): write `tmp/NAME`, fsync it, link it to
//! `new/NAME`, unlink the tmp name, and fsync `new/` so the new entry survives a
//! crash before success is reported (qmail syncs only the file). qmail-local never
//! creates a Maildir; maildirmake does.
//!
//! Done in-process, relative to a descriptor of the Maildir (qmail forks a child to
//! chdir there); the texts and exit codes are qmail's. Every failure is temporary: a
//! full disk is a retry, never a bounce, and leaves nothing in `new/` (the tmp file
//! is removed on every failure path).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use qmail::exit::Failure;

use super::message::{Message, CHUNK};
use super::{is_temp, Fields};

fn temporary() -> Failure {
    Failure::temp("Temporary error on maildir delivery. (#4.3.0)")
}

/// Unique file names, as maildir(5) asks: `SECONDS.MmicrosecondsPpidQn.HOST`. The
/// counter makes two deliveries of one process in the same microsecond differ; `/`
/// and `:` in the host name are written `\057` and `\072`, so the name is one path
/// component and `:` stays the info separator.
pub struct Unique {
    host: String,
    pid: u32,
    count: u64,
}

impl Unique {
    pub fn new() -> Unique {
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length; gethostname NUL-terminates on success.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let raw = if ok {
            &buf[..buf.iter().position(|&c| c == 0).unwrap_or(buf.len())]
        } else {
            &b""[..]
        };
        Unique::with_host(raw, std::process::id())
    }

    pub fn with_host(raw: &[u8], pid: u32) -> Unique {
        let mut host = String::new();
        for &c in raw {
            match c {
                b'/' => host.push_str("\\057"),
                b':' => host.push_str("\\072"),
                c if c.is_ascii_graphic() => host.push(c as char),
                c => host.push_str(&format!("\\{c:03o}")),
            }
        }
        if host.is_empty() {
            host.push_str("localhost");
        }
        Unique { host, pid, count: 0 }
    }

    pub fn name(&mut self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.count += 1;
        format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            self.pid,
            self.count,
            self.host
        )
    }
}

impl Default for Unique {
    fn default() -> Self {
        Unique::new()
    }
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn last_error<T>(r: libc::c_int, ok: T) -> io::Result<T> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ok)
    }
}

fn openat(dir: &OwnedFd, name: &str, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
    let n = cstr(name.as_bytes())?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), n.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    // SAFETY: a descriptor openat just returned is ours alone.
    last_error(fd, ()).map(|_| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlinkat(dir: &OwnedFd, name: &str) {
    if let Ok(n) = cstr(name.as_bytes()) {
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), 0) };
    }
}

fn linkat(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from.as_bytes())?, cstr(to.as_bytes())?);
    // SAFETY: valid descriptors and NUL-terminated names; no flags.
    last_error(
        unsafe { libc::linkat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr(), 0) },
        (),
    )
}

/// Closes `fd` and says whether the close worked (NFS reports write errors there).
fn close(fd: OwnedFd) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: we own the descriptor and give it up here.
    last_error(unsafe { libc::close(fd.into_raw_fd()) }, ())
}

/// Removes `tmp/NAME` unless the delivery got to `new/`.
struct TmpFile<'a> {
    dir: &'a OwnedFd,
    name: String,
    armed: bool,
}

impl Drop for TmpFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            unlinkat(self.dir, &self.name);
        }
    }
}

enum Stop {
    Read,
    Write,
}

/// Delivers to the Maildir `path` (relative to the home directory, which is the
/// current directory): Return-Path, Delivered-To, then the message as it is.
pub fn deliver(path: &[u8], msg: &mut Message, fields: &Fields, unique: &mut Unique) -> Result<(), Failure> {
    msg.rewind()?;
    let dir = cstr(path).map_err(|_| temporary())?;
    // SAFETY: a NUL-terminated path; O_PATH needs no permission on the directory
    // itself, as chdir needs only search permission.
    let fd = unsafe { libc::open(dir.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(if is_temp(e.raw_os_error().unwrap_or(0)) {
            temporary()
        } else {
            Failure::temp("Unable to chdir to maildir. (#4.2.1)")
        });
    }
    // SAFETY: a descriptor open just returned is ours alone.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };

    let mut attempt = 0;
    let (name, file) = loop {
        let name = unique.name();
        let tmp = format!("tmp/{name}");
        match openat(&dir, &tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644) {
            Ok(f) => break (name, f),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && attempt < 2 => attempt += 1,
            Err(_) => return Err(temporary()),
        }
    };
    let mut tmp = TmpFile {
        dir: &dir,
        name: format!("tmp/{name}"),
        armed: true,
    };
    let mut file = File::from(file);

    let copied = (|| {
        file.write_all(&[fields.rpline.as_slice(), fields.dtline.as_slice()].concat())
            .map_err(|_| Stop::Write)?;
        let mut buf = vec![0; CHUNK];
        loop {
            let n = msg.read(&mut buf).map_err(|_| Stop::Read)?;
            if n == 0 {
                return Ok(());
            }
            file.write_all(&buf[..n]).map_err(|_| Stop::Write)?;
        }
    })();
    match copied {
        Ok(()) => {}
        Err(Stop::Read) => return Err(Failure::temp("Unable to read message. (#4.3.0)")),
        Err(Stop::Write) => return Err(temporary()),
    }
    file.sync_all().map_err(|_| temporary())?;
    close(OwnedFd::from(file)).map_err(|_| temporary())?;

    let new = format!("new/{name}");
    linkat(&dir, &tmp.name, &new).map_err(|_| temporary())?;
    unlinkat(&dir, &tmp.name);
    tmp.armed = false;

    // The directory entry in new/ is what makes the message delivered: sync it
    // before saying so. If that fails the message may not survive a crash, so it is
    // taken back and the delivery retried.
    let synced = openat(&dir, "new", libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .map(File::from)
        .and_then(|d| d.sync_all());
    if synced.is_err() {
        unlinkat(&dir, &new);
        return Err(temporary());
    }
    Ok(())
}

/// `path` as bytes of an OsStr (tests).
#[cfg(test)]
fn b(p: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::message::message;
    use super::*;

    fn fields() -> Fields {
        Fields {
            dtline: b"Delivered-To: joe@example.org\n".to_vec(),
            rpline: b"Return-Path: <bob@example.com>\n".to_vec(),
            ufline: b"From bob@example.com Thu Jan 01 00:00:00 1970\n".to_vec(),
        }
    }

    fn maildir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rqmail-maildir-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        d
    }

    fn names(d: &std::path::Path, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn unique_names_are_one_component() {
        let mut u = Unique::with_host(b"a/b:c\n", 42);
        let (x, y) = (u.name(), u.name());
        assert_ne!(x, y);
        assert!(x.ends_with("P42Q1.a\\057b\\072c\\012"), "{x}");
        assert!(!x.contains('/') && !x.contains(':'));
        assert!(Unique::with_host(b"", 1).name().ends_with(".localhost"));
    }

    #[test]
    fn writes_new_file_with_the_two_header_lines() {
        let d = maildir("ok");
        let mut u = Unique::new();
        let body = b"Subject: hi\n\nFrom me\nno newline at end";
        deliver(b(&d), &mut message(body), &fields(), &mut u).unwrap();
        deliver(b(&d), &mut message(body), &fields(), &mut u).unwrap();
        let new = names(&d, "new");
        assert_eq!(new.len(), 2);
        assert_eq!(names(&d, "tmp"), Vec::<String>::new());
        let got = std::fs::read(d.join("new").join(&new[0])).unwrap();
        assert_eq!(
            got,
            [
                &b"Return-Path: <bob@example.com>\nDelivered-To: joe@example.org\n"[..],
                body
            ]
            .concat()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_maildir_or_tmp() {
        let d = maildir("missing");
        let mut u = Unique::new();
        assert_eq!(
            deliver(b(&d.join("nope")), &mut message(b"x\n"), &fields(), &mut u).unwrap_err(),
            Failure::temp("Unable to chdir to maildir. (#4.2.1)")
        );
        std::fs::remove_dir(d.join("tmp")).unwrap();
        assert_eq!(
            deliver(b(&d), &mut message(b"x\n"), &fields(), &mut u).unwrap_err(),
            temporary()
        );
        // No new/: the tmp file is removed again.
        std::fs::create_dir(d.join("tmp")).unwrap();
        std::fs::remove_dir(d.join("new")).unwrap();
        assert_eq!(
            deliver(b(&d), &mut message(b"x\n"), &fields(), &mut u).unwrap_err(),
            temporary()
        );
        assert_eq!(names(&d, "tmp"), Vec::<String>::new());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
