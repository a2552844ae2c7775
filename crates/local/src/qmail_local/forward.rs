//! Forwards: every forward line of the file in one qmail-queue run at the end, as
//! qmail-local(8). The message is `Delivered-To:` + the original (no Return-Path);
//! the envelope is `$NEWSENDER` and the addresses as written. The queue program is
//! `$QMAILQUEUE` or QMAILHOME's `bin/qmail-queue`, run as the recipient, and sees
//! qmail-local's variables, as qmail's does (it inherits them).

use std::path::Path;

use qmail::exit::Failure;
use qmail::queueclient::Queue;

use super::err_text;
use super::message::{Message, CHUNK};

/// Queues the message for `recipients`; the queue program's pid (qmail's `qp`).
pub fn forward(
    qmailhome: &Path,
    vars: &[(&str, Option<&[u8]>)],
    msg: &mut Message,
    dtline: &[u8],
    sender: &[u8],
    recipients: &[Vec<u8>],
) -> Result<u32, Failure> {
    msg.rewind()?;
    let mut q = Queue::open_with(qmailhome, vars)
        .map_err(|e| Failure::temp(format!("Unable to fork: {}. (#4.3.0)", err_text(&e))))?;
    let qp = q.pid();
    q.put(dtline);
    let mut buf = vec![0; CHUNK];
    loop {
        match msg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => q.put(&buf[..n]),
            Err(e) => {
                q.abort();
                return Err(Failure::temp(format!(
                    "Unable to read message: {}. (#4.3.0)",
                    err_text(&e)
                )));
            }
        }
    }
    q.from(sender);
    for r in recipients {
        q.to(r);
    }
    match q.close() {
        Ok(()) => Ok(qp),
        Err(refusal) => Err(Failure {
            permanent: refusal.permanent,
            text: format!("Unable to forward message: {}.", refusal.text),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::message;
    use super::*;

    #[test]
    fn message_and_envelope_reach_the_queue_program() {
        if std::env::var_os("QMAILQUEUE").is_some() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let home = std::env::temp_dir().join(format!("rqmail-forward-{}", std::process::id()));
        std::fs::create_dir_all(home.join("bin")).unwrap();
        let qq = home.join("bin/qmail-queue");
        std::fs::write(
            &qq,
            "#!/bin/sh\ncat > msg\ncat <&1 > env\necho \"$RECIPIENT\" > var\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&qq, std::fs::Permissions::from_mode(0o755)).unwrap();
        let vars: &[(&str, Option<&[u8]>)] = &[("RECIPIENT", Some(b"joe@example.org"))];
        let qp = forward(
            &home,
            vars,
            &mut message(b"Subject: x\n\nbody\n"),
            b"Delivered-To: joe@example.org\n",
            b"bob@example.com",
            &[b"a@b".to_vec(), b"c".to_vec()],
        )
        .unwrap();
        assert!(qp > 0);
        assert_eq!(
            std::fs::read(home.join("msg")).unwrap(),
            b"Delivered-To: joe@example.org\nSubject: x\n\nbody\n"
        );
        assert_eq!(
            std::fs::read(home.join("env")).unwrap(),
            b"Fbob@example.com\0Ta@b\0Tc\0\0"
        );
        assert_eq!(std::fs::read(home.join("var")).unwrap(), b"joe@example.org\n");

        std::fs::write(&qq, "#!/bin/sh\ncat >/dev/null\nexit 31\n").unwrap();
        let f = forward(&home, &[], &mut message(b"x\n"), b"D\n", b"", &[b"a@b".to_vec()]).unwrap_err();
        assert_eq!(
            f,
            Failure::perm("Unable to forward message: mail server permanently rejected message (#5.3.0).")
        );
        std::fs::write(&qq, "#!/bin/sh\ncat >/dev/null\nexit 53\n").unwrap();
        let f = forward(&home, &[], &mut message(b"x\n"), b"D\n", b"", &[b"a@b".to_vec()]).unwrap_err();
        assert_eq!(
            f,
            Failure::temp("Unable to forward message: qq write error or disk full (#4.3.0).")
        );
        std::fs::remove_dir_all(&home).unwrap();
    }
}
