//! Whole sessions in-process: the client's bytes go in through one pipe, the replies
//! come back through another, and a stand-in qmail-queue and checker (shell scripts in
//! a temporary QMAILHOME) record what was handed to them.

use crate::auth;
use crate::control::Settings;
use crate::origin::Origin;
use crate::smtp::Session;
use qmail::io::Conn;
use qmail::ucspitls::Engine;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Home(PathBuf);

impl Home {
    /// rcpthosts example.com; bin/qmail-queue keeps message, envelope and environment;
    /// `checker` says yes to bob@example.com / bob-pw and keeps its fd 3.
    fn new(name: &str) -> Home {
        let d = std::env::temp_dir().join(format!("rqmail-dialogue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for sub in ["control", "bin"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("control/me"), "mx.example.com\n").unwrap();
        std::fs::write(d.join("control/rcpthosts"), "example.com\n").unwrap();
        let script = |path: &Path, text: &str| {
            std::fs::write(path, text).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            &d.join("bin/qmail-queue"),
            "#!/bin/sh\ncat > msg\ncat <&1 > envelope\nenv > queue-env\n",
        );
        script(
            &d.join("checker"),
            "#!/bin/sh\ncat <&3 > \"$(dirname \"$0\")/fd3\"\n\
             [ \"$(tr '\\0' : < \"$(dirname \"$0\")/fd3\")\" = 'bob@example.com:bob-pw::' ]\n",
        );
        Home(d)
    }

    fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.join(name)).ok()
    }

    fn checkers(&self) -> Option<auth::Checkers> {
        let args = [self.0.join("checker").into_os_string(), "/bin/true".into()];
        auth::checkers(&args).unwrap()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn origin() -> Origin {
    Origin {
        remoteip: "127.0.0.1".into(),
        remotehost: b"unknown".to_vec(),
        local: b"mx.example.com".to_vec(),
        localip: b"127.0.0.1".to_vec(),
        ..Origin::default()
    }
}

/// Runs one session over `input` (then EOF); the exit code and every byte replied.
fn session(home: &Home, origin: Origin, input: &[u8]) -> (i32, String) {
    let (client_r, client_w) = qmail::fd::pipe().unwrap();
    let (reply_r, reply_w) = qmail::fd::pipe().unwrap();
    std::fs::File::from(client_w).write_all(input).unwrap();
    let conn = Conn::new(client_r.as_raw_fd(), reply_w.as_raw_fd(), Duration::from_secs(5));
    let settings = Settings::load(&home.0).unwrap();
    let code = Session::new(home.0.clone(), settings, origin, home.checkers(), conn).run();
    drop(reply_w);
    let mut out = String::new();
    std::fs::File::from(reply_r).read_to_string(&mut out).unwrap();
    (code, out)
}

fn b64(data: &[u8]) -> String {
    auth::encode(data)
}

#[test]
fn a_message_is_handed_to_the_queue_exactly() {
    let h = Home::new("plain");
    let (code, out) = session(
        &h,
        origin(),
        b"EHLO client.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<u@example.com>\r\n\
          RCPT TO:<u@elsewhere.org>\r\nDATA\r\nSubject: t\r\n\r\n..dot\r\nhi\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(code, 0);
    let replies: Vec<&str> = out.lines().map(|l| l.get(..4).unwrap_or(l)).collect();
    assert_eq!(
        replies,
        [
            "220 ", "250-", "250-", "250-", "250-", "250-", "250-", "250 ", "250 ", "250 ", "553 ", "354 ", "250 ",
            "221 "
        ]
    );
    assert!(out.contains("553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n"));
    assert_eq!(h.read("envelope").unwrap(), b"Fa@example.net\0Tu@example.com\0\0");
    let msg = String::from_utf8(h.read("msg").unwrap()).unwrap();
    assert!(
        msg.starts_with("Received: from unknown (HELO client.example) (127.0.0.1)\n  by mx.example.com with ESMTP; ")
    );
    assert!(msg.ends_with("\nSubject: t\n\n.dot\nhi\n"));
    let env = String::from_utf8(h.read("queue-env").unwrap()).unwrap();
    assert!(!env.contains("RELAYCLIENT=") && !env.contains("SMTPAUTHUSER="));
}

#[test]
fn eof_mid_message_queues_nothing_and_exits_1() {
    let h = Home::new("eof");
    let (code, out) = session(
        &h,
        origin(),
        b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nhalf",
    );
    assert_eq!(code, 1);
    assert!(out.ends_with("354 go ahead\r\n"));
    assert_eq!(h.read("envelope").unwrap_or_default(), b"");
}

#[test]
fn auth_hands_the_checker_one_record_and_the_queue_the_user() {
    let h = Home::new("auth");
    let plain = b64(b"\0bob@example.com\0bob-pw");
    let input = format!(
        "EHLO x\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<friend@elsewhere.org>\r\nDATA\r\n\
         x\r\n.\r\nQUIT\r\n"
    );
    let (code, out) = session(&h, origin(), input.as_bytes());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\r\n235 2.7.0 ok, go ahead (#2.0.0)\r\n"), "{out}");
    assert_eq!(h.read("fd3").unwrap(), b"bob@example.com\0bob-pw\0\0");
    assert_eq!(
        h.read("envelope").unwrap(),
        b"Fbob@example.com\0Tfriend@elsewhere.org\0\0"
    );
    let env = String::from_utf8(h.read("queue-env").unwrap()).unwrap();
    for var in [
        "RELAYCLIENT=\n",
        "SMTPAUTHUSER=bob@example.com\n",
        "SMTPAUTHMETHOD=plain\n",
        "TCPREMOTEINFO=bob@example.com\n",
    ] {
        assert!(env.contains(var), "{var}");
    }
    assert!(
        std::env::var_os("SMTPAUTHUSER").is_none(),
        "our own environment is unchanged"
    );
}

#[test]
fn nul_in_auth_data_is_501_and_the_checker_never_runs() {
    let h = Home::new("nul");
    let smuggled = b64(b"bob@example.com b913a602c7eda7a495b4e6e7334d3890\0<1.2@old>");
    let input = format!(
        "EHLO x\r\nAUTH LOGIN {}\r\n{}\r\nAUTH CRAM-MD5\r\n{smuggled}\r\nAUTH CRAM-MD5\r\n{}\r\nQUIT\r\n",
        b64(b"bob@example.com"),
        b64(b"bob-pw\0<1.2@old>"),
        b64(b"bob@example.com bob-pw"),
    );
    let (code, out) = session(&h, origin(), input.as_bytes());
    assert_eq!(code, 0);
    assert_eq!(
        out.matches("501 5.5.2 malformed auth input (#5.5.4)\r\n").count(),
        3,
        "{out}"
    );
    assert_eq!(h.read("fd3"), None);
}

#[test]
fn starttls_forgets_auth_and_what_was_pipelined() {
    let h = Home::new("tls");
    // The engine: its answer to `Y` is waiting on the control socket, the client's
    // commands after the handshake in the plaintext pipe.
    let (ctl, engine_side) = std::os::unix::net::UnixStream::pair().unwrap();
    (&engine_side).write_all(b"SSL_PROTOCOL=TLSv1.3\0\0").unwrap();
    let (tls_r, tls_w) = qmail::fd::pipe().unwrap();
    let (app_r, app_w) = qmail::fd::pipe().unwrap();
    std::fs::File::from(tls_w)
        .write_all(b"EHLO y\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<friend@elsewhere.org>\r\nQUIT\r\n")
        .unwrap();
    let o = Origin {
        engine: Some(Engine {
            ctl: ctl.as_raw_fd(),
            read: tls_r.as_raw_fd(),
            write: app_w.as_raw_fd(),
        }),
        auth_clear: true, // SMTPAUTHCLEAR: PLAIN before STARTTLS
        ..origin()
    };
    let plain = b64(b"\0bob@example.com\0bob-pw");
    let (code, before) = session(
        &h,
        o,
        // AUTH in the clear succeeds; a RCPT pipelined after STARTTLS is dropped.
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\nSTARTTLS\r\nRCPT TO:<smuggled@elsewhere.org>\r\n").as_bytes(),
    );
    drop(app_w);
    let mut after = String::new();
    std::fs::File::from(app_r).read_to_string(&mut after).unwrap();
    assert_eq!(code, 0);
    assert!(before.contains("250-STARTTLS\r\n"), "{before}");
    assert!(
        before.contains("235 2.7.0") && before.ends_with("220 2.0.0 ready to start TLS\r\n"),
        "{before}"
    );
    assert!(
        after.contains("250 AUTH=LOGIN PLAIN CRAM-MD5\r\n") && !after.contains("STARTTLS"),
        "{after}"
    );
    assert!(after.contains("553 5.7.1 sorry, that domain"), "{after}");
    let mut y = [0u8; 1];
    (&engine_side).read_exact(&mut y).unwrap();
    assert_eq!(&y, b"Y");
}
