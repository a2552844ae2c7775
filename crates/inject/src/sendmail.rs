//! sendmail: the command line MUAs, cron and PHP expect, turned into qmail-inject's
//! (as qmail's sendmail does). `-bp` and `mailq` list the queue with qmail-qread,
//! `-bs` speaks SMTP on stdin/stdout through qmail-smtpd. Options that only tune
//! Sendmail's own delivery (`-i -oi -odi -oem -B8BITMIME -v` ...) are accepted and
//! ignored: qmail has one delivery mode, never treats a lone dot specially, and always
//! reports errors by bounce.

use qmail::exit::Failure;
use qmail::getopt::{Getopt, Opt};
use std::ffi::OsString;
use std::path::Path;

pub const USAGE: &str = "sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ arg ... ]";

/// What to exec, relative to QMAILHOME, with which variables set (None: unset).
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub program: &'static str,
    pub args: Vec<OsString>,
    pub env: Vec<(&'static str, Option<OsString>)>,
}

/// Why there is nothing to exec: a command line to refuse with the usage line, or a
/// failure of its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Usage(Opt),
    Fatal(Failure),
}

/// `argv0` is the name sendmail was called by (`mailq`, `newaliases` or any other).
pub fn plan(argv0: &str, args: Vec<OsString>, proto_set: bool) -> Result<Plan, Refused> {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    let qread = Plan {
        program: "bin/qmail-qread",
        args: vec![],
        env: vec![],
    };
    if name == "mailq" {
        return Ok(qread);
    }
    if name == "newaliases" {
        return Err(Refused::Fatal(Failure::perm(
            "please use fastforward/newaliases instead",
        )));
    }
    let mut g = Getopt::new(args, "vimte:f:p:o:B:F:EJxb:r:N:R:V:X:L:");
    let (mut headers, mut sender, mut env) = (false, None, Vec::new());
    for o in g.by_ref() {
        match o {
            Opt::Ok(b't', _) => headers = true,
            Opt::Ok(b'f' | b'r', Some(s)) => sender = Some(s),
            Opt::Ok(b'F', Some(name)) => env.push(("MAILNAME", Some(name))),
            Opt::Ok(b'b', Some(mode)) => match mode.as_encoded_bytes().first() {
                Some(b'm') => {}
                Some(b'p') => return Ok(qread),
                Some(b's') => return Ok(smtpd(proto_set)),
                _ => return Err(Refused::Usage(Opt::Ok(b'b', Some(mode)))),
            },
            Opt::Ok(..) => {}
            bad => return Err(Refused::Usage(bad)),
        }
    }
    let mut argv: Vec<OsString> = vec![if headers { "-H" } else { "-a" }.into()];
    if let Some(s) = sender {
        env.extend(sender_env(s.as_encoded_bytes()));
        argv.push("-f".into());
        argv.push(s);
    }
    argv.push("--".into());
    argv.extend(g.rest());
    Ok(Plan {
        program: "bin/qmail-inject",
        args: argv,
        env,
    })
}

/// Execs the plan's program under `home`; returns only when that failed.
pub fn exec(home: &Path, plan: Plan) -> Failure {
    let mut env = qmail::env::Env::inherited();
    for (name, value) in &plan.env {
        env.set_or_unset(name, value.as_ref());
    }
    let mut argv = vec![home.join(plan.program).into_os_string()];
    argv.extend(plan.args);
    let err = env.exec(&argv);
    let name = plan.program.trim_start_matches("bin/");
    Failure::io(format!("unable to run {name}"), &err)
}

/// With -f, the From field shows the sender's address and no name (qmail's do_sender).
/// Its bytes go on as they are: an 8-bit address is not rewritten to U+FFFD.
fn sender_env(s: &[u8]) -> Vec<(&'static str, Option<OsString>)> {
    use std::os::unix::ffi::OsStringExt;
    let os = |b: &[u8]| Some(OsString::from_vec(b.to_vec()));
    let mut env: Vec<(&'static str, Option<OsString>)> = ["QMAILNAME", "MAILNAME", "NAME", "QMAILHOST", "MAILHOST"]
        .iter()
        .map(|n| (*n, None))
        .collect();
    match s.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            env.push(("QMAILHOST", os(&s[at + 1..])));
            env.push(("QMAILUSER", os(&s[..at])));
        }
        None => env.push(("QMAILUSER", os(s))),
    }
    env
}

/// `sendmail -bs`: qmail-smtpd on stdin/stdout, as a trusted local client unless a
/// tcpserver already set the scene.
fn smtpd(proto_set: bool) -> Plan {
    let env = if proto_set {
        vec![]
    } else {
        [
            ("RELAYCLIENT", ""),
            ("DATABYTES", "0"),
            ("PROTO", "TCP"),
            ("TCPLOCALIP", "127.0.0.1"),
            ("TCPLOCALHOST", "localhost"),
            ("TCPREMOTEIP", "127.0.0.1"),
            ("TCPREMOTEHOST", "localhost"),
            ("TCPREMOTEINFO", "sendmail-bs"),
        ]
        .iter()
        .map(|(k, v)| (*k, Some(OsString::from(v))))
        .collect()
    };
    Plan {
        program: "bin/qmail-smtpd",
        args: vec![],
        env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn cron_php_and_muas() {
        // Debian's cron, PHP's mail(), mutt.
        let p = plan("sendmail", args("-FCronDaemon -i -B8BITMIME -oem root"), false).unwrap();
        assert_eq!(p.program, "bin/qmail-inject");
        assert_eq!(p.args, args("-a -- root"));
        assert_eq!(p.env, vec![("MAILNAME", Some("CronDaemon".into()))]);
        let p = plan("/usr/sbin/sendmail", args("-t -i"), false).unwrap();
        assert_eq!(p.args, args("-H --"));
        let p = plan("sendmail", args("-oi -f bob@example.org -- a@b"), false).unwrap();
        assert_eq!(p.args, args("-a -f bob@example.org -- a@b"));
        assert!(p.env.contains(&("QMAILUSER", Some("bob".into()))));
        assert!(p.env.contains(&("QMAILHOST", Some("example.org".into()))));
        assert!(p.env.contains(&("NAME", None)));
        let p = plan("sendmail", args("-odi -N never -v x@y"), false).unwrap();
        assert_eq!(p.args, args("-a -- x@y"));
    }

    #[test]
    fn an_8bit_sender_keeps_its_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let p = plan(
            "sendmail",
            vec!["-f".into(), OsString::from_vec(b"j\xf6rg@b\xe4r.example".to_vec())],
            false,
        )
        .unwrap();
        assert!(p
            .env
            .contains(&("QMAILUSER", Some(OsString::from_vec(b"j\xf6rg".to_vec())))));
        assert!(p
            .env
            .contains(&("QMAILHOST", Some(OsString::from_vec(b"b\xe4r.example".to_vec())))));
    }

    #[test]
    fn modes() {
        assert_eq!(plan("sendmail", args("-bp"), false).unwrap().program, "bin/qmail-qread");
        assert_eq!(
            plan("/usr/bin/mailq", args("-v"), false).unwrap().program,
            "bin/qmail-qread"
        );
        let s = plan("sendmail", args("-bs"), false).unwrap();
        assert_eq!(s.program, "bin/qmail-smtpd");
        assert!(s.env.contains(&("TCPREMOTEINFO", Some("sendmail-bs".into()))));
        assert!(plan("sendmail", args("-bs"), true).unwrap().env.is_empty());
        assert_eq!(
            plan("newaliases", args(""), false),
            Err(Refused::Fatal(Failure::perm(
                "please use fastforward/newaliases instead"
            )))
        );
        assert_eq!(
            plan("sendmail", args("-bd"), false),
            Err(Refused::Usage(Opt::Ok(b'b', Some("d".into()))))
        );
        assert_eq!(
            plan("sendmail", args("-q"), false),
            Err(Refused::Usage(Opt::Illegal(b'q')))
        );
    }
}
