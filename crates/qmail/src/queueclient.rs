//! The client side of qmail-queue (qmail's qmail.c), for every program that queues
//! mail: qmail-inject, qmail-smtpd, qmail-local forwards, qmail-send bounces.
//!
//! The child is `$QMAILQUEUE` if set and non-empty, else `bin/qmail-queue`, started in
//! QMAILHOME with no PATH search, with the message pipe on fd 0, the envelope pipe on
//! fd 1 and an error pipe on fd 6 (and on `$ERROR_FD` if set), so qmail-qfilter, spam
//! and virus scanners written for netqmail or notqmail keep working. Its exit code
//! becomes qmail's text: `D…` for permanent, `Z…` for temporary (qmail-queue(8)).
//!
//! [`Envelope`] is the one encoder of envelope records. NUL ends a record, so an
//! address holding one would end its own record and start another (`bob\0Tevil@x`
//! is two recipients); such an address is never written, and the message is refused.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Queue {
    child: Child,
    message: Option<File>,
    envelope: Envelope,
    envelope_pipe: Option<File>,
    errors: File,
    /// A write to the child failed: it may have queued a truncated message.
    failed: bool,
}

/// Why the message was not queued, as qmail's client reports it: the text without
/// the leading D/Z, e.g. `qq write error or disk full (#4.3.0)`.
pub type Refusal = crate::exit::Failure;

impl Queue {
    /// Starts the queue program. The caller writes the message, then calls
    /// [`Queue::from`], [`Queue::to`] and [`Queue::close`].
    pub fn open(home: &Path) -> io::Result<Queue> {
        Queue::open_with(home, &[])
    }

    /// [`Queue::open`], with each (name, value) of `vars` set, or removed when the
    /// value is `None`, in the queue program's environment alone: qmail-smtpd's
    /// `RELAYCLIENT` and AUTH user reach qmail-queue and its filters without a change
    /// to this process's environment. A value holding NUL is removed, never set.
    pub fn open_with(home: &Path, vars: &[(&str, Option<&[u8]>)]) -> io::Result<Queue> {
        let program = match std::env::var_os("QMAILQUEUE") {
            Some(p) if !p.is_empty() => p,
            _ => "bin/qmail-queue".into(),
        };
        // execv, not execvp: a name without a slash is still relative to QMAILHOME.
        let program = if program.as_encoded_bytes().contains(&b'/') {
            program
        } else {
            let mut p = std::ffi::OsString::from("./");
            p.push(&program);
            p
        };
        let (msg_r, msg_w) = crate::fd::pipe()?;
        let (env_r, env_w) = crate::fd::pipe()?;
        let (err_r, err_w) = crate::fd::pipe()?;
        let err_fd = err_w.as_raw_fd();
        let extra_fd = std::env::var("ERROR_FD")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|&fd| fd > 2);
        let mut cmd = Command::new(&program);
        cmd.current_dir(home)
            .stdin(Stdio::from(msg_r))
            .stdout(Stdio::from(env_r));
        for &(name, value) in vars {
            match value {
                Some(v) if !v.contains(&0) => cmd.env(name, std::ffi::OsStr::from_bytes(v)),
                _ => cmd.env_remove(name),
            };
        }
        let fds: Vec<_> = std::iter::once(6)
            .chain(extra_fd)
            .map(|target| (err_fd, target))
            .collect();
        let child = crate::fd::spawn(&mut cmd, &fds)?;
        drop(err_w);
        Ok(Queue {
            child,
            message: Some(File::from(msg_w)),
            envelope: Envelope::default(),
            envelope_pipe: Some(File::from(env_w)),
            errors: File::from(err_r),
            failed: false,
        })
    }

    /// The pid of the queue program: qmail's `qp` in log lines.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Appends message bytes. A failure is remembered, not returned: qmail's clients
    /// go on and report it at close, as `qq read error`.
    pub fn put(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.message {
            if m.write_all(data).is_err() {
                self.failed = true;
                self.message = None;
            }
        }
    }

    /// Ends the message and records the envelope sender. An address holding NUL
    /// (here or in [`Queue::to`]) is not sent, and [`Queue::close`] refuses the message.
    pub fn from(&mut self, sender: &[u8]) {
        self.message = None;
        self.record(b'F', sender);
    }

    pub fn to(&mut self, recipient: &[u8]) {
        self.record(b'T', recipient);
    }

    fn record(&mut self, kind: u8, addr: &[u8]) {
        self.envelope.record(kind, addr);
        if self.envelope.bytes.len() >= 4096 {
            self.flush_envelope();
        }
    }

    fn flush_envelope(&mut self) {
        if let Some(p) = &mut self.envelope_pipe {
            if p.write_all(&self.envelope.bytes).is_err() {
                self.failed = true;
                self.envelope_pipe = None;
            }
        }
        self.envelope.bytes.clear();
    }

    /// Ends the envelope, waits for the queue program and says whether the message
    /// is queued.
    pub fn close(mut self) -> Result<(), Refusal> {
        if self.envelope.refused {
            // The envelope ends without its final NUL: the queue program sees a
            // premature EOF, removes what it wrote and queues nothing.
            self.abort();
            return Err(perm(NUL_TEXT));
        }
        self.message = None;
        self.envelope.end();
        self.flush_envelope();
        self.envelope_pipe = None;
        let mut text = Vec::new();
        let _ = (&mut self.errors).take(255).read_to_end(&mut text);
        let status = loop {
            match self.child.wait() {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(temp("qq waitpid surprise (#4.3.0)")),
            }
        };
        match status.code() {
            None if status.signal().is_some() => Err(temp("qq crashed (#4.3.0)")),
            None => Err(temp("qq waitpid surprise (#4.3.0)")),
            Some(0) if self.failed => Err(temp("qq read error (#4.3.0)")),
            Some(code) => refusal(code, &text).map_or(Ok(()), Err),
        }
    }
}

impl Queue {
    /// Gives up on the message: the queue program sees its input end without an
    /// envelope, removes what it wrote and exits; it is waited for, not left a zombie.
    pub fn abort(mut self) {
        self.message = None;
        self.envelope_pipe = None;
        let _ = self.child.wait();
    }
}

/// The envelope as qmail-queue reads it, record by record: `F` sender NUL, `T`
/// recipient NUL for each, a final NUL.
#[derive(Default)]
struct Envelope {
    /// Encoded records not yet written to the pipe.
    bytes: Vec<u8>,
    /// An address held NUL: it and everything after it are dropped, and the
    /// message must not be queued.
    refused: bool,
}

/// Why an envelope with a NUL in an address is refused; qmail-smtpd, qmail-inject
/// and sendmail all report it as a permanent failure.
const NUL_TEXT: &str = "envelope address contains NUL (#5.1.3)";

impl Envelope {
    fn record(&mut self, kind: u8, addr: &[u8]) {
        if self.refused || addr.contains(&0) {
            self.refused = true;
            self.bytes.clear();
            return;
        }
        self.bytes.push(kind);
        self.bytes.extend_from_slice(addr);
        self.bytes.push(0);
    }

    /// A refused envelope never gets its final NUL, so no queue program takes it.
    fn end(&mut self) {
        if !self.refused {
            self.bytes.push(0);
        }
    }
}

/// An unstartable queue program, as qmail's clients say it.
pub fn exec_failure() -> Refusal {
    temp("unable to exec qq (#4.3.0)")
}

fn temp(text: &str) -> Refusal {
    Refusal::temp(text)
}

fn perm(text: &str) -> Refusal {
    Refusal::perm(text)
}

/// qmail's table of exit codes (qmail-queue(8), qmail.c); `custom` is what the program wrote on
/// its error descriptor, used for 82 and 88 when it says D… or Z….
pub fn refusal(code: i32, custom: &[u8]) -> Option<Refusal> {
    Some(match code {
        0 => return None,
        82 | 88 if custom.len() > 2 && matches!(custom[0], b'D' | b'Z') => {
            let text = String::from_utf8_lossy(&custom[1..]);
            let text = text.trim_end_matches(['\n', '\r', '\0']).to_string();
            Refusal {
                permanent: custom[0] == b'D',
                text,
            }
        }
        11 | 115 => perm("envelope address too long for qq (#5.1.3)"),
        31 => perm("mail server permanently rejected message (#5.3.0)"),
        51 => temp("qq out of memory (#4.3.0)"),
        52 => temp("qq timeout (#4.3.0)"),
        53 => temp("qq write error or disk full (#4.3.0)"),
        54 => temp("qq read error (#4.3.0)"),
        55 => temp("qq unable to read configuration (#4.3.0)"),
        56 => temp("qq trouble making network connection (#4.3.0)"),
        61 => temp("qq trouble in home directory (#4.3.0)"),
        62..=66 => temp("qq trouble creating files in queue (#4.3.0)"),
        71 => temp("mail server temporarily rejected message (#4.3.0)"),
        72 => temp("connection to mail server timed out (#4.4.1)"),
        73 => temp("connection to mail server rejected (#4.4.1)"),
        74 => temp("communication with mail server failed (#4.4.2)"),
        81 | 91 => temp("qq internal bug (#4.3.0)"),
        120 => exec_failure(),
        11..=40 => perm("qq permanent problem (#5.3.0)"),
        _ => temp("qq temporary problem (#4.3.0)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_qmails_texts() {
        assert_eq!(refusal(0, b""), None);
        assert_eq!(
            refusal(11, b"").unwrap(),
            perm("envelope address too long for qq (#5.1.3)")
        );
        assert!(refusal(31, b"").unwrap().permanent);
        assert_eq!(refusal(25, b"").unwrap(), perm("qq permanent problem (#5.3.0)"));
        assert_eq!(refusal(75, b"").unwrap(), temp("qq temporary problem (#4.3.0)"));
        assert_eq!(refusal(91, b"").unwrap(), temp("qq internal bug (#4.3.0)"));
        assert_eq!(
            refusal(64, b"").unwrap(),
            temp("qq trouble creating files in queue (#4.3.0)")
        );
    }

    fn encode(records: &[(u8, &[u8])]) -> Envelope {
        let mut e = Envelope::default();
        for &(kind, addr) in records {
            e.record(kind, addr);
        }
        e.end();
        e
    }

    #[test]
    fn envelope_records() {
        let e = encode(&[(b'F', b"a@b"), (b'T', b"c@d"), (b'T', b"")]);
        assert!(!e.refused);
        assert_eq!(e.bytes, b"Fa@b\0Tc@d\0T\0\0");
        assert_eq!(encode(&[(b'F', b"")]).bytes, b"F\0\0");
        // Bytes other than NUL are the address's own, CR and LF included.
        assert_eq!(encode(&[(b'F', b"a\r\n\xff")]).bytes, b"Fa\r\n\xff\0\0");
    }

    #[test]
    fn nul_in_an_address_is_never_encoded() {
        for records in [
            &[
                (b'F', b"a@b".as_slice()),
                (b'T', b"alice@x"),
                (b'T', b"bob\0Tinjected@evil.org"),
            ][..],
            &[(b'F', b"a\0Tinjected@evil.org"), (b'T', b"alice@x")],
            &[(b'F', b"a@b"), (b'T', b"\0"), (b'T', b"after@x")],
        ] {
            let e = encode(records);
            assert!(e.refused);
            // Nothing from the bad record or after it, and no end.
            assert_eq!(e.bytes, b"");
        }
    }

    /// A home whose bin/qmail-queue keeps what reaches it.
    fn fake_queue(name: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let home = std::env::temp_dir().join(format!("rqmail-qc-{}-{name}", std::process::id()));
        std::fs::create_dir_all(home.join("bin")).unwrap();
        let qq = home.join("bin/qmail-queue");
        std::fs::write(&qq, "#!/bin/sh\ncat > msg\ncat <&1 > env\nexit 0\n").unwrap();
        std::fs::set_permissions(&qq, std::fs::Permissions::from_mode(0o755)).unwrap();
        home
    }

    #[test]
    fn a_nul_address_refuses_the_message_and_sends_no_envelope() {
        if std::env::var_os("QMAILQUEUE").is_some() {
            return; // the fake below would not be the program started
        }
        let home = fake_queue("ok");
        let mut q = Queue::open(&home).unwrap();
        q.put(b"x\n");
        q.from(b"a@b");
        q.to(b"c@d");
        assert_eq!(q.close(), Ok(()));
        assert_eq!(std::fs::read(home.join("env")).unwrap(), b"Fa@b\0Tc@d\0\0");

        let home2 = fake_queue("nul");
        let mut q = Queue::open(&home2).unwrap();
        q.put(b"x\n");
        q.from(b"a@b");
        q.to(b"alice@x");
        q.to(b"bob\0Tinjected@evil.org");
        q.to(b"carol@x");
        // The queue program exits 0, having read an envelope that never ended.
        assert_eq!(q.close(), Err(perm("envelope address contains NUL (#5.1.3)")));
        assert_eq!(std::fs::read(home2.join("env")).unwrap(), b"");
        assert_eq!(std::fs::read(home2.join("msg")).unwrap(), b"x\n");

        // After the first records went out: the envelope stops at a record's end,
        // with no final NUL, which qmail-queue takes for a premature EOF (54).
        let home3 = fake_queue("late");
        let mut q = Queue::open(&home3).unwrap();
        q.from(b"a@b");
        for i in 0..300 {
            q.to(format!("recipient{i:04}@example.org").as_bytes());
        }
        q.to(b"bob\0Tinjected@evil.org");
        assert!(q.close().unwrap_err().permanent);
        let env = std::fs::read(home3.join("env")).unwrap();
        assert!(env.len() >= 4096 && env.starts_with(b"Fa@b\0Trecipient0000@example.org\0"));
        assert!(env.ends_with(b".org\0") && !env.ends_with(b"\0\0"));
        assert!(!env.windows(8).any(|w| w == b"injected"));
        for h in [home, home2, home3] {
            std::fs::remove_dir_all(h).unwrap();
        }
    }

    #[test]
    fn custom_texts_on_82_and_88() {
        assert_eq!(
            refusal(82, b"DVirus found (#5.7.1)\n").unwrap(),
            perm("Virus found (#5.7.1)")
        );
        assert_eq!(
            refusal(88, b"Zgreylisted (#4.7.1)").unwrap(),
            temp("greylisted (#4.7.1)")
        );
        // Too short or without D/Z: the generic text.
        assert_eq!(refusal(82, b"D").unwrap(), temp("qq temporary problem (#4.3.0)"));
        assert_eq!(refusal(82, b"Virus").unwrap(), temp("qq temporary problem (#4.3.0)"));
    }
}
