//! qmail-local: delivers one message to one local recipient, as qmail-local(8).
//!
//! `qmail-local [-nN] user homedir local dash ext domain sender defaultdelivery`, run
//! by qmail-lspawn under the recipient's uid with the message on fd 0 (a seekable file,
//! rewound before every instruction) and fd 1 and fd 2 on the report pipe. It reads
//! `homedir/.qmail{dash}{ext}` (or a `-default` file, dot-qmail(5)), or uses
//! `defaultdelivery`, and runs each line in order: Maildir, mbox, `|program`, and
//! forwards, which are collected and queued at the end in one qmail-queue run. Exit 0
//! with `did F+W+P` (and `qp N`) on stdout, or one line on stderr and exit 100
//! (permanent: bounce) or 111 (temporary: retry). Deliveries done before a failure are
//! not undone; they are repeated on the retry, as with qmail.
//!
//! The modules mirror qmail-local.c's parts: [`dotqmail`] finds the file and splits it
//! into instructions, [`message`] is fd 0 (and the Delivered-To loop check),
//! [`maildir`], [`mbox`], [`program`] and [`forward`] are the four deliveries. All
//! arguments stay bytes; nothing from the sender is ever part of a path except through
//! the `.qmail` name, where `.` becomes `:` so no `..` can be formed.

pub mod dotqmail;
pub mod forward;
pub mod maildir;
pub mod mbox;
pub mod message;
pub mod program;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qmail::env::Env;
use qmail::errstr::errno_str;
use qmail::exit::Failure;

use dotqmail::Line;
use message::Message;

/// qmail-local's usage line, written as is (no `prog: usage:` added).
pub const USAGE: &str = "qmail-local: usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty";

/// Mode bits that make a home directory or a `.qmail` file unsafe: qmail's conf-patrn,
/// 002. Only a world-writable one is refused; a group-writable one is accepted as
/// qmail does, since per-user groups (Debian's default) make that harmless.
pub use qmail::dotqmail::PATRN;

/// How long a `|program` may run before its process group is killed. qmail has no
/// limit; one day, the same as qmail-queue's own alarm and the Maildir writer's in
/// qmail, unless `control/timeoutlocal` says otherwise (seconds).
pub const DEFAULT_PROGRAM_TIMEOUT: u64 = 86400;

/// The command line, as qmail-lspawn builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// -N (the default) delivers; -n only says what would be done.
    pub deliver: bool,
    pub user: Vec<u8>,
    pub homedir: Vec<u8>,
    pub local: Vec<u8>,
    pub dash: Vec<u8>,
    pub ext: Vec<u8>,
    pub host: Vec<u8>,
    pub sender: Vec<u8>,
    pub default_delivery: Vec<u8>,
}

impl Invocation {
    /// argv without argv[0]; None is a usage error (qmail-local(8): exactly eight
    /// operands, an absolute homedir).
    pub fn parse(args: Vec<OsString>) -> Option<Invocation> {
        let mut deliver = true;
        let mut g = qmail::getopt::Getopt::new(args, "nN");
        for o in g.by_ref() {
            match o {
                qmail::getopt::Opt::Ok(b'n', _) => deliver = false,
                qmail::getopt::Opt::Ok(b'N', _) => deliver = true,
                _ => return None,
            }
        }
        let rest: Vec<Vec<u8>> = g.rest().into_iter().map(OsString::into_encoded_bytes).collect();
        let [user, homedir, local, dash, ext, host, sender, default_delivery]: [Vec<u8>; 8] = rest.try_into().ok()?;
        if homedir.first() != Some(&b'/') {
            return None;
        }
        Some(Invocation {
            deliver,
            user,
            homedir,
            local,
            dash,
            ext,
            host,
            sender,
            default_delivery,
        })
    }
}

/// What qmail-local needs besides its command line: where the instance is (for
/// forwards and control files) and the program timeout.
#[derive(Clone, Debug)]
pub struct Settings {
    pub qmailhome: PathBuf,
    pub program_timeout: Duration,
}

impl Settings {
    /// Reads `control/timeoutlocal` (seconds; missing: [`DEFAULT_PROGRAM_TIMEOUT`]).
    pub fn load(qmailhome: PathBuf) -> Result<Settings, Failure> {
        let path = qmailhome.join("control/timeoutlocal");
        let bad = |why: String| Failure::temp(format!("Unable to read {}: {why}. (#4.3.0)", path.display()));
        let secs = match qmail::control::read_line(&path) {
            Ok(None) => DEFAULT_PROGRAM_TIMEOUT,
            Ok(Some(v)) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("not a positive number of seconds".into()))?,
            Err(e) => return Err(bad(qmail::errstr::io_str(&e))),
        };
        Ok(Settings {
            qmailhome,
            program_timeout: Duration::from_secs(secs),
        })
    }
}

/// A successful run: qmail-local's `did F+W+P` and, after a forward, `qp N`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub files: u64,
    pub forwards: u64,
    pub programs: u64,
    pub qp: Option<u32>,
}

impl Report {
    pub fn text(&self) -> String {
        let mut s = format!("did {}+{}+{}\n", self.files, self.forwards, self.programs);
        if let Some(qp) = self.qp {
            s.push_str(&format!("qp {qp}\n"));
        }
        s
    }
}

/// djb's error_temp: the errnos that may go away by themselves.
pub use qmail::errstr::is_temporary as is_temp;

fn err_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_str(n),
        None => qmail::errstr::io_str(e),
    }
}

/// `text` on one line: qmail's messages are a fixed text, sometimes with a file name
/// or an error inside, always temporary unless said otherwise.
fn temp(text: impl Into<String>) -> Failure {
    Failure::temp(text)
}

fn perm(text: impl Into<String>) -> Failure {
    Failure::perm(text)
}

/// The header lines and addresses qmail-local derives from its arguments, exported
/// to programs as qmail-command(8) lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    /// `Delivered-To: local@domain\n`, any LF inside changed to `_`.
    pub dtline: Vec<u8>,
    /// `Return-Path: <sender>\n`, the local part quoted as RFC 822 wants.
    pub rpline: Vec<u8>,
    /// `From sender Www Mmm DD HH:MM:SS YYYY\n`, the mbox separator.
    pub ufline: Vec<u8>,
}

impl Fields {
    pub fn new(inv: &Invocation, now: i64) -> Fields {
        let mut dtline = b"Delivered-To: ".to_vec();
        dtline.extend_from_slice(&recipient(inv));
        lf_to_underscore(&mut dtline);
        dtline.push(b'\n');

        let mut rpline = b"Return-Path: <".to_vec();
        rpline.extend_from_slice(&quote2(&inv.sender));
        lf_to_underscore(&mut rpline);
        rpline.extend_from_slice(b">\n");

        let mut ufline = b"From ".to_vec();
        if inv.sender.is_empty() {
            ufline.extend_from_slice(b"MAILER-DAEMON");
        } else {
            ufline.extend(
                inv.sender
                    .iter()
                    .map(|&c| if matches!(c, b' ' | b'\t' | b'\n') { b'-' } else { c }),
            );
        }
        ufline.push(b' ');
        ufline.extend_from_slice(qmail::date822::myctime(now).as_bytes());
        Fields { dtline, rpline, ufline }
    }
}

fn recipient(inv: &Invocation) -> Vec<u8> {
    let mut r = inv.local.clone();
    r.push(b'@');
    r.extend_from_slice(&inv.host);
    r
}

fn lf_to_underscore(s: &mut [u8]) {
    for c in s.iter_mut().filter(|c| **c == b'\n') {
        *c = b'_';
    }
}

pub use qmail::quote::quote2;

/// EXT2..EXT4: what follows the 1st, 2nd, 3rd `-` of EXT (empty when there are fewer).
pub fn ext_parts(ext: &[u8]) -> [&[u8]; 3] {
    let mut x = ext;
    let mut out: [&[u8]; 3] = [b""; 3];
    for slot in out.iter_mut() {
        x = match x.iter().position(|&c| c == b'-') {
            Some(i) => &x[i + 1..],
            None => &x[x.len()..],
        };
        *slot = x;
    }
    out
}

/// HOST2..HOST4: HOST cut before its last, second-to-last, third-to-last `.` (byte_rchr
/// semantics: with too few dots, the shortest prefix, possibly HOST itself).
pub fn host_parts(host: &[u8]) -> [&[u8]; 3] {
    let mut i = host.len();
    let mut out: [&[u8]; 3] = [b""; 3];
    for slot in out.iter_mut() {
        // byte_rchr returns the length when there is no dot.
        i = host[..i].iter().rposition(|&c| c == b'.').unwrap_or(i);
        *slot = &host[..i];
    }
    out
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// What a program and the queue program see besides the inherited environment.
struct Vars {
    list: Vec<(&'static str, Vec<u8>)>,
}

impl Vars {
    fn set(&mut self, name: &'static str, value: &[u8]) {
        match self.list.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value.to_vec(),
            None => self.list.push((name, value.to_vec())),
        }
    }

    fn env(&self) -> Env {
        let mut env = Env::inherited();
        for (n, v) in &self.list {
            env.set(n, os(v));
        }
        env
    }
}

/// Delivers the message on `msg` as `inv` says. Lines of `-n` go to `out`; so do
/// nothing else: programs write straight to the inherited fd 1 and fd 2.
pub fn run(inv: &Invocation, settings: &Settings, msg: &mut Message, out: &mut dyn Write) -> Result<Report, Failure> {
    let home = os(&inv.homedir);
    if let Err(e) = std::env::set_current_dir(home) {
        return Err(temp(format!(
            "Unable to switch to {}: {}. (#4.3.0)",
            String::from_utf8_lossy(&inv.homedir),
            err_text(&e)
        )));
    }
    check_home(inv.deliver)?;

    let mut vars = Vars { list: Vec::new() };
    vars.set("HOST", &inv.host);
    vars.set("HOME", &inv.homedir);
    vars.set("USER", &inv.user);
    vars.set("LOCAL", &inv.local);
    vars.set("RECIPIENT", &recipient(inv));
    let fields = Fields::new(inv, qmail::date822::now());
    vars.set("DTLINE", &fields.dtline);

    if inv.deliver && msg.header_has_line(&fields.dtline)? {
        return Err(perm(
            "This message is looping: it already has my Delivered-To line. (#5.4.6)",
        ));
    }

    vars.set("SENDER", &inv.sender);
    vars.set("RPLINE", &fields.rpline);
    vars.set("UFLINE", &fields.ufline);
    vars.set("EXT", &inv.ext);
    let [e2, e3, e4] = ext_parts(&inv.ext);
    vars.set("EXT2", e2);
    vars.set("EXT3", e3);
    vars.set("EXT4", e4);
    let [h2, h3, h4] = host_parts(&inv.host);
    vars.set("HOST2", h2);
    vars.set("HOST3", h3);
    vars.set("HOST4", h4);

    let safeext = dotqmail::safe_ext(&inv.ext);
    let found = dotqmail::search(Path::new("."), &inv.dash, &safeext)?;
    if let Some(f) = &found {
        if let Some(i) = f.default_at {
            if i <= inv.ext.len() {
                vars.set("DEFAULT", &inv.ext[i..]);
            }
        }
    }
    if found.is_none() && !inv.dash.is_empty() {
        return Err(perm("Sorry, no mailbox here by that name. (#5.1.1)"));
    }

    let newsender = dotqmail::new_sender(Path::new("."), inv, &safeext)?;
    vars.set("NEWSENDER", &newsender);

    let (mut text, mut forward_only) = match found {
        Some(f) => {
            let forward_only = f.forward_only;
            (dotqmail::read(f)?, forward_only)
        }
        None => (Vec::new(), false),
    };
    if text.is_empty() {
        text = inv.default_delivery.clone();
        forward_only = false;
    }

    let env = vars.env();
    let say = |out: &mut dyn Write, what: &str, arg: &[u8]| {
        let mut line = what.as_bytes().to_vec();
        line.extend_from_slice(arg);
        line.push(b'\n');
        out.write_all(&line)
            .and_then(|_| out.flush())
            .map_err(|e| temp(format!("Unable to write output: {}. (#4.3.0)", err_text(&e))))
    };

    let mut report = Report::default();
    let mut recips: Vec<Vec<u8>> = Vec::new();
    let mut unique = maildir::Unique::new();
    for (n, line) in dotqmail::lines(&text).enumerate() {
        match line {
            Line::Blank if n == 0 => {
                return Err(temp("Uh-oh: first line of .qmail file is blank. (#4.2.1)"));
            }
            Line::Blank | Line::Comment | Line::Other => {}
            Line::ForwardOnly => forward_only = true,
            Line::Maildir(path) | Line::Mbox(path) => {
                report.files += 1;
                if forward_only {
                    return Err(temp("Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)"));
                }
                let maildir = matches!(line, Line::Maildir(_));
                match (inv.deliver, maildir) {
                    (false, true) => say(out, "maildir ", path)?,
                    (false, false) => say(out, "mbox ", path)?,
                    (true, true) => maildir::deliver(path, msg, &fields, &mut unique)?,
                    (true, false) => mbox::deliver(path, msg, &fields)?,
                }
            }
            Line::Program(cmd) => {
                report.programs += 1;
                if forward_only {
                    return Err(temp("Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)"));
                }
                if !inv.deliver {
                    say(out, "program ", cmd)?;
                } else if program::deliver(cmd, msg, &env, settings.program_timeout)? == program::Outcome::Stop {
                    break;
                }
            }
            Line::Forward(addr) => {
                report.forwards += 1;
                if inv.deliver {
                    recips.push(addr.to_vec());
                } else {
                    say(out, "forward ", addr)?;
                }
            }
        }
    }

    if inv.deliver && !recips.is_empty() {
        let queue_vars: Vec<(&str, Option<&[u8]>)> = vars.list.iter().map(|(n, v)| (*n, Some(v.as_slice()))).collect();
        report.qp = Some(forward::forward(
            &settings.qmailhome,
            &queue_vars,
            msg,
            &fields.dtline,
            &newsender,
            &recips,
        )?);
    }
    Ok(report)
}

/// The home directory's own checks: world-writable is refused (conf-patrn), sticky
/// means "the user is editing .qmail, come back later".
fn check_home(deliver: bool) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(".")
        .map_err(|e| temp(format!("Unable to stat home directory: {}. (#4.3.0)", err_text(&e))))?;
    let mode = meta.permissions().mode();
    if mode & PATRN != 0 {
        return Err(temp("Uh-oh: home directory is writable. (#4.7.0)"));
    }
    if mode & 0o1000 != 0 {
        if deliver {
            return Err(temp(
                "Home directory is sticky: user is editing his .qmail file. (#4.2.1)",
            ));
        }
        let _ = std::io::stderr().write_all(b"Warning: home directory is sticky.\n");
    }
    Ok(())
}

/// The whole program after argv: prints the report or the failure and gives the exit
/// code (0, 100, 111).
pub fn main(args: Vec<OsString>) -> i32 {
    // SAFETY: umask has no preconditions. Files qmail-local creates are the user's alone.
    unsafe { libc::umask(0o077) };
    let Some(inv) = Invocation::parse(args) else {
        let _ = std::io::stderr().write_all(format!("{USAGE}\n").as_bytes());
        return qmail::exit::PERMANENT;
    };
    // qmail-local changes to the user's home before it queues a forward.
    let qmailhome = qmail::home::home();
    let qmailhome = match std::env::current_dir() {
        Ok(cwd) if qmailhome.is_relative() => cwd.join(qmailhome),
        _ => qmailhome,
    };
    let result = Settings::load(qmailhome).and_then(|settings| {
        let mut msg = Message::stdin();
        let mut out = std::io::stdout().lock();
        run(&inv, &settings, &mut msg, &mut out)
    });
    match result {
        Ok(report) => {
            let _ = std::io::stdout().lock().write_all(report.text().as_bytes());
            0
        }
        Err(f) => {
            // A program's own bounce or retry has no text of qmail-local's: what it
            // printed is the report.
            if !f.text.is_empty() {
                let _ = std::io::stderr().write_all(format!("{}\n", f.text).as_bytes());
            }
            f.code()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// joe-list@example.org from bob@example.com, as qmail-lspawn would start it.
    pub fn invocation() -> super::Invocation {
        super::Invocation {
            deliver: true,
            user: b"joe".to_vec(),
            homedir: b"/home/joe".to_vec(),
            local: b"joe-list".to_vec(),
            dash: b"-".to_vec(),
            ext: b"list".to_vec(),
            host: b"example.org".to_vec(),
            sender: b"bob@example.com".to_vec(),
            default_delivery: b"./Maildir/\n".to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(local: &str, host: &str, ext: &str, sender: &str) -> Invocation {
        Invocation {
            deliver: true,
            user: b"joe".to_vec(),
            homedir: b"/home/joe".to_vec(),
            local: local.into(),
            dash: b"-".to_vec(),
            ext: ext.into(),
            host: host.into(),
            sender: sender.into(),
            default_delivery: b"./Maildir/\n".to_vec(),
        }
    }

    #[test]
    fn argv_is_eight_operands_and_an_absolute_home() {
        let a = |v: &[&str]| Invocation::parse(v.iter().map(OsString::from).collect());
        let ok = a(&[
            "--",
            "joe",
            "/home/joe",
            "joe-x",
            "-",
            "x",
            "example.org",
            "s@x",
            "./Maildir/",
        ])
        .unwrap();
        assert!(ok.deliver);
        assert_eq!(ok.ext, b"x");
        assert!(!a(&["-n", "joe", "/h", "joe", "", "", "d", "", "./M"]).unwrap().deliver);
        assert!(a(&["-nN", "joe", "/h", "joe", "", "", "d", "", "./M"]).unwrap().deliver);
        assert_eq!(a(&["joe", "home/joe", "joe", "", "", "d", "", "./M"]), None);
        assert_eq!(a(&["joe", "/h", "joe", "", "", "d", ""]), None);
        assert_eq!(a(&["joe", "/h", "joe", "", "", "d", "", "./M", "extra"]), None);
        assert_eq!(a(&["-x", "joe", "/h", "joe", "", "", "d", "", "./M"]), None);
    }

    #[test]
    fn header_lines_as_qmail_writes_them() {
        let f = Fields::new(&inv("joe-x", "example.org", "x", "bob@example.com"), 0);
        assert_eq!(f.dtline, b"Delivered-To: joe-x@example.org\n");
        assert_eq!(f.rpline, b"Return-Path: <bob@example.com>\n");
        assert_eq!(f.ufline, b"From bob@example.com Thu Jan 01 00:00:00 1970\n");
        let f = Fields::new(&inv("a\nb", "h", "", ""), 1_706_951_107);
        assert_eq!(f.dtline, b"Delivered-To: a_b@h\n");
        assert_eq!(f.rpline, b"Return-Path: <>\n");
        assert_eq!(f.ufline, b"From MAILER-DAEMON Sat Feb 03 09:05:07 2024\n");
        let f = Fields::new(&inv("j", "h", "", "a b\tc\nd@x"), 0);
        assert_eq!(f.ufline, b"From a-b-c-d@x Thu Jan 01 00:00:00 1970\n");
        // The LF inside a quoted local part is escaped, then changed to _.
        assert_eq!(f.rpline, b"Return-Path: <\"a b\tc\\_d\"@x>\n");
    }

    #[test]
    fn myctime_pads_the_day_with_zero() {
        assert_eq!(qmail::date822::myctime(0), "Thu Jan 01 00:00:00 1970\n");
        assert_eq!(qmail::date822::myctime(951_782_400), "Tue Feb 29 00:00:00 2000\n");
    }

    #[test]
    fn ext_and_host_parts() {
        assert_eq!(ext_parts(b"Foo-Bar.x-y"), [&b"Bar.x-y"[..], b"y", b""]);
        assert_eq!(ext_parts(b""), [&b""[..], b"", b""]);
        assert_eq!(ext_parts(b"a-b-c-d-e"), [&b"b-c-d-e"[..], b"c-d-e", b"d-e"]);
        assert_eq!(
            host_parts(b"mail.sub.example.com"),
            [&b"mail.sub.example"[..], b"mail.sub", b"mail"]
        );
        assert_eq!(host_parts(b"example.com"), [&b"example"[..], b"example", b"example"]);
        assert_eq!(
            host_parts(b"localhost"),
            [&b"localhost"[..], b"localhost", b"localhost"]
        );
    }

    #[test]
    fn report_text() {
        assert_eq!(
            Report {
                files: 1,
                ..Default::default()
            }
            .text(),
            "did 1+0+0\n"
        );
        let r = Report {
            files: 0,
            forwards: 2,
            programs: 1,
            qp: Some(42),
        };
        assert_eq!(r.text(), "did 0+2+1\nqp 42\n");
    }

    #[test]
    fn timeout_setting() {
        let d = std::env::temp_dir().join(format!("rqmail-local-settings-{}", std::process::id()));
        std::fs::create_dir_all(d.join("control")).unwrap();
        assert_eq!(
            Settings::load(d.clone()).unwrap().program_timeout,
            Duration::from_secs(86400)
        );
        std::fs::write(d.join("control/timeoutlocal"), "30\n").unwrap();
        assert_eq!(
            Settings::load(d.clone()).unwrap().program_timeout,
            Duration::from_secs(30)
        );
        std::fs::write(d.join("control/timeoutlocal"), "soon\n").unwrap();
        assert!(!Settings::load(d.clone()).unwrap_err().permanent);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
