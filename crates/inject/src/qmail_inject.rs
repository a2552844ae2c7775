//! qmail-inject: completes a message's header and queues it (qmail-inject(8),
//! qmail-header(5)).
//!
//! The header is read whole (fields are rewritten and new ones go in front of it);
//! the body is streamed to qmail-queue. Addresses in sender and recipient fields are
//! rewritten with [`crate::rewrite::Rewriter`]; Bcc, Resent-Bcc, Return-Path and
//! Content-Length are removed; Date, Message-ID, From and `Cc: recipient list not
//! shown: ;` are added when missing, all as qmail-inject does.

use crate::rewrite::Rewriter;
use crate::rfc822::{addresses, quote, quote_address, quote_needed, tokenize, unparse, unquote, Tok};
use qmail::date822::Utc;
use qmail::exit::Failure;
use qmail::queueclient::Queue;
use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Which addresses get the message: `-a`, `-h`, `-A` (default) and `-H`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipients {
    Args,
    Header,
    Default,
    Both,
}

pub struct Options {
    pub recipients: Recipients,
    pub queue: bool,
    pub sender: Option<Vec<u8>>,
    pub args: Vec<Vec<u8>>,
}

/// The settings that come from the environment and control files.
pub struct Settings {
    rewriter: Rewriter,
    idhost: Vec<u8>,
    mailuser: Vec<u8>,
    mailhost: Option<Vec<u8>>,
    mailruser: Vec<u8>,
    mailrhost: Option<Vec<u8>>,
    fullname: Option<Vec<u8>>,
    name_comment: bool,
    delete_return_path: bool,
    delete_from: bool,
    delete_message_id: bool,
    verp_recipient: bool,
    verp_message: bool,
    mft: Option<HashSet<Vec<u8>>>,
    now: i64,
    pid: u32,
}

fn var(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(|v| v.into_encoded_bytes())
}

fn first_var(names: &[&str]) -> Option<Vec<u8>> {
    names.iter().find_map(|n| var(n))
}

impl Settings {
    pub fn load(home: &Path) -> Result<Settings, Failure> {
        let setting = |file: &str, env: &str| -> Result<Vec<u8>, Failure> {
            match var(env) {
                Some(v) => Ok(v),
                None => qmail::control::read_line_or(home, file, true, file).map_err(|_| Failure::temp("read error")),
            }
        };
        let flags = var("QMAILINJECT").unwrap_or_default();
        let mailhost = first_var(&["QMAILHOST", "MAILHOST"]);
        let mailuser = first_var(&["QMAILUSER", "MAILUSER", "USER", "LOGNAME"]).unwrap_or(b"anonymous".to_vec());
        let mft = match var("QMAILMFTFILE") {
            None => None,
            Some(f) => match std::fs::read(std::ffi::OsStr::from_bytes(&f)) {
                Ok(text) => Some(
                    text.split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| l.to_ascii_lowercase())
                        .collect(),
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(_) => return Err(Failure::temp("read error")),
            },
        };
        Ok(Settings {
            rewriter: Rewriter::new(
                &setting("defaulthost", "QMAILDEFAULTHOST")?,
                &setting("defaultdomain", "QMAILDEFAULTDOMAIN")?,
                &setting("plusdomain", "QMAILPLUSDOMAIN")?,
            ),
            idhost: setting("idhost", "QMAILIDHOST")?,
            mailruser: var("QMAILSUSER").unwrap_or_else(|| mailuser.clone()),
            mailrhost: var("QMAILSHOST").or_else(|| mailhost.clone()),
            mailuser,
            mailhost,
            fullname: first_var(&["QMAILNAME", "MAILNAME", "NAME"]),
            name_comment: flags.contains(&b'c'),
            delete_return_path: flags.contains(&b's'),
            delete_from: flags.contains(&b'f'),
            delete_message_id: flags.contains(&b'i'),
            verp_recipient: flags.contains(&b'r'),
            verp_message: flags.contains(&b'm'),
            mft,
            now: qmail::date822::now(),
            pid: std::process::id(),
        })
    }
}

/// The kinds of field qmail-inject treats specially.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Field {
    ToCc,
    HeaderRcpt,
    Resent,
    ReturnPath,
    Sender,
    Other,
}

const KNOWN: [&str; 28] = [
    "sender",
    "from",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "date",
    "message-id",
    "subject",
    "resent-sender",
    "resent-from",
    "resent-reply-to",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-date",
    "resent-message-id",
    "return-receipt-to",
    "errors-to",
    "apparently-to",
    "received",
    "return-path",
    "delivered-to",
    "content-length",
    "content-type",
    "content-transfer-encoding",
    "notice-requested-upon-delivery-to",
    "mail-followup-to",
];

/// The field's lower-cased name if it is a valid header line (qmail's hfield_valid:
/// printable name, optional blanks, colon).
fn field_name(line: &[u8]) -> Option<Vec<u8>> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii_end();
    if name.is_empty() || name.iter().any(|&c| c <= 32 || c >= 127) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

fn kind(name: &[u8]) -> Field {
    match name {
        b"to" | b"cc" => Field::ToCc,
        b"bcc" | b"apparently-to" => Field::HeaderRcpt,
        b"resent-to" | b"resent-cc" | b"resent-bcc" => Field::Resent,
        b"return-path" => Field::ReturnPath,
        b"sender" | b"from" | b"reply-to" | b"return-receipt-to" | b"errors-to" | b"resent-sender" | b"resent-from"
        | b"resent-reply-to" => Field::Sender,
        _ => Field::Other,
    }
}

/// Where the finished message goes: qmail-queue, or stdout with `-n`.
enum Out {
    Queue(Queue),
    Print(io::BufWriter<io::Stdout>),
}

impl Out {
    fn put(&mut self, data: &[u8]) {
        match self {
            Out::Queue(q) => q.put(data),
            Out::Print(w) => {
                let _ = w.write_all(data);
            }
        }
    }
}

struct Inject<'a> {
    s: &'a Settings,
    sender: Option<Vec<u8>>,
    seen: HashSet<Vec<u8>>,
    saved: Vec<Vec<u8>>,
    header_rcpts: Vec<Vec<u8>>,
    resent_rcpts: Vec<Vec<u8>>,
    tocc: Vec<Vec<u8>>,
}

impl Inject<'_> {
    /// One whole field (with its continuation lines and final newline).
    fn field(&mut self, line: Vec<u8>) -> Result<(), Failure> {
        let name = field_name(&line).ok_or_else(|| Failure::perm(format!("invalid header field: {}", lossy(&line))))?;
        let s = self.s;
        if (s.delete_from && name == b"from")
            || (s.delete_message_id && name == b"message-id")
            || (s.delete_return_path && name == b"return-path")
        {
            return Ok(());
        }
        let k = kind(&name);
        if KNOWN.contains(&std::str::from_utf8(&name).unwrap_or("")) {
            self.seen.insert(name.clone());
        }
        let line = if k == Field::Other {
            line
        } else {
            self.rewrite_field(line, k)?
        };
        if matches!(&name[..], b"bcc" | b"resent-bcc" | b"return-path" | b"content-length") {
            return Ok(());
        }
        self.saved.push(line);
        Ok(())
    }

    /// Rewrites every address of an address-list field, collecting recipients.
    fn rewrite_field(&mut self, line: Vec<u8>, k: Field) -> Result<Vec<u8>, Failure> {
        let colon = line.iter().position(|&b| b == b':').expect("a field has a colon") + 1;
        let body = &line[colon..];
        let may_fail = matches!(k, Field::ToCc | Field::HeaderRcpt | Field::Resent);
        let Some(toks) = tokenize(body) else {
            if may_fail {
                return Ok(line);
            }
            return Err(Failure::perm(format!("unable to parse this line:\n{}", lossy(&line))));
        };
        let mut out = line[..colon].to_vec();
        let mut at = 0;
        for idx in addresses(&toks) {
            let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
                continue;
            };
            let mut addr: Vec<Tok> = idx.iter().map(|&i| toks[i].0.clone()).collect();
            self.s.rewriter.rewrite(&mut addr);
            let plain = unquote(&addr);
            match k {
                Field::ToCc => {
                    self.header_rcpts.push(plain.clone());
                    self.tocc.push(plain);
                }
                Field::HeaderRcpt => self.header_rcpts.push(plain),
                Field::Resent => self.resent_rcpts.push(plain),
                Field::ReturnPath if self.sender.is_none() => {
                    let mut sender = plain;
                    if self.s.verp_recipient {
                        sender.extend_from_slice(b"-@[]");
                    }
                    self.sender = Some(sender);
                }
                _ => {}
            }
            let span = toks[first].1.start..toks[last].1.end;
            out.extend_from_slice(&body[at..span.start]);
            out.extend_from_slice(&unparse(&addr));
            at = span.end;
        }
        out.extend_from_slice(&body[at..]);
        Ok(out)
    }

    fn rewritten(&self, text: &[u8]) -> Vec<Tok> {
        let mut a: Vec<Tok> = tokenize(text).unwrap_or_default().into_iter().map(|(t, _)| t).collect();
        self.s.rewriter.rewrite(&mut a);
        a
    }

    /// The From field qmail-inject makes from the user's name and address.
    fn default_from(&self) -> Vec<u8> {
        let s = self.s;
        let mut addr = if quote_needed(&s.mailuser) {
            quote(&s.mailuser)
        } else {
            s.mailuser.clone()
        };
        if let Some(h) = &s.mailhost {
            addr.push(b'@');
            addr.extend_from_slice(h);
        }
        let addr = unparse(&self.rewritten(&addr));
        let mut f = b"From: ".to_vec();
        match &s.fullname {
            Some(name) if s.name_comment => {
                f.extend_from_slice(&addr);
                f.extend_from_slice(b" (");
                f.extend_from_slice(name);
                f.push(b')');
            }
            Some(name) => {
                f.extend_from_slice(&quote(name));
                f.extend_from_slice(b" <");
                f.extend_from_slice(&addr);
                f.push(b'>');
            }
            None => f.extend_from_slice(&addr),
        }
        f.push(b'\n');
        f
    }

    /// The envelope sender when neither -f nor Return-Path gave one, with the VERP
    /// letters of QMAILINJECT.
    fn default_sender(&self) -> Vec<u8> {
        let s = self.s;
        let mut user = s.mailruser.clone();
        if s.verp_message {
            user.extend_from_slice(format!("-{}.{}", s.now, s.pid).as_bytes());
        }
        if s.verp_recipient {
            user.push(b'-');
        }
        let mut addr = quote(&user);
        if let Some(h) = &s.mailrhost {
            addr.push(b'@');
            addr.extend_from_slice(h);
        }
        let mut sender = unquote(&self.rewritten(&addr));
        if s.verp_recipient {
            sender.extend_from_slice(b"-@[]");
        }
        sender
    }

    /// A message is resent if it has any Resent- field (qmail-header(5)).
    fn resent(&self) -> bool {
        self.seen.iter().any(|n| n.starts_with(b"resent-"))
    }

    fn seen(&self, name: &str) -> bool {
        self.seen.contains(name.as_bytes())
    }

    /// The fields qmail-inject adds, in its order, before the saved header.
    fn new_fields(&self) -> Vec<u8> {
        let s = self.s;
        let when = Utc::from_unix(s.now);
        let resent = self.resent();
        let p = if resent { "Resent-" } else { "" };
        let has = |n: &str| self.seen(&format!("{}{n}", p.to_ascii_lowercase()));
        let mut out = Vec::new();
        if !has("date") {
            out.extend_from_slice(format!("{p}Date: {}\n", when.rfc822()).as_bytes());
        }
        if !has("message-id") {
            out.extend_from_slice(format!("{p}Message-ID: <{}.{}.qmail@", when.compact(), s.pid).as_bytes());
            out.extend_from_slice(&s.idhost);
            out.extend_from_slice(b">\n");
        }
        if !has("from") {
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(&self.default_from());
        }
        if !has("to") && !has("cc") {
            out.extend_from_slice(format!("{p}Cc: recipient list not shown: ;\n").as_bytes());
        }
        if !resent {
            out.extend_from_slice(&self.followup_to());
        }
        out
    }

    /// Mail-Followup-To with all To and Cc addresses, when one of them is a list in
    /// $QMAILMFTFILE and the message has none yet.
    fn followup_to(&self) -> Vec<u8> {
        let Some(lists) = &self.s.mft else { return Vec::new() };
        if self.seen("mail-followup-to") || !self.tocc.iter().any(|a| lists.contains(&a.to_ascii_lowercase())) {
            return Vec::new();
        }
        let quoted: Vec<Vec<u8>> = self.tocc.iter().rev().map(|a| quote_address(a)).collect();
        [
            b"Mail-Followup-To: ".to_vec(),
            quoted.join(&b",\n  "[..]),
            b"\n".to_vec(),
        ]
        .concat()
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One line with its newline; a last line without one gets one, as in qmail.
fn line(input: &mut impl BufRead) -> Result<Option<Vec<u8>>, Failure> {
    let mut l = Vec::new();
    match input.read_until(b'\n', &mut l) {
        Ok(0) => Ok(None),
        Ok(_) => {
            if l.last() != Some(&b'\n') {
                l.push(b'\n');
            }
            Ok(Some(l))
        }
        Err(_) => Err(Failure::temp("read error")),
    }
}

/// Parses an address from the command line (a recipient or -f) and rewrites it.
pub fn command_line_address(s: &Settings, arg: &[u8]) -> Result<Vec<u8>, Failure> {
    let toks = tokenize(&quote_address(arg))
        .ok_or_else(|| Failure::perm(format!("unable to parse address: {}", lossy(arg))))?;
    let mut a: Vec<Tok> = toks
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| *t != Tok::Comment)
        .collect();
    s.rewriter.rewrite(&mut a);
    Ok(unquote(&a))
}

/// qmail-inject's whole run: the settings, `-f`'s address (`from`, as given), then
/// the message on `input`.
pub fn run(home: &Path, mut opts: Options, from: Option<&[u8]>, input: &mut impl BufRead) -> Result<(), Failure> {
    let s = Settings::load(home)?;
    opts.sender = from.map(|f| command_line_address(&s, f)).transpose()?;
    inject(home, &s, &opts, input)
}

/// Runs qmail-inject on `input`.
pub fn inject(home: &Path, s: &Settings, opts: &Options, input: &mut impl BufRead) -> Result<(), Failure> {
    let strategy = match opts.recipients {
        Recipients::Default if opts.args.is_empty() => Recipients::Header,
        Recipients::Default => Recipients::Args,
        r => r,
    };
    let mut rcpts = Vec::new();
    if strategy != Recipients::Header {
        for a in &opts.args {
            rcpts.push(command_line_address(s, a)?);
        }
    }
    let mut inj = Inject {
        s,
        sender: opts.sender.clone(),
        seen: HashSet::new(),
        saved: Vec::new(),
        header_rcpts: Vec::new(),
        resent_rcpts: Vec::new(),
        tocc: Vec::new(),
    };

    // The header: fields (with continuation lines) until a blank line, or until a
    // line that cannot be a field, which starts the body after an inserted blank line.
    let mut pending: Option<Vec<u8>> = None;
    let mut body_start: Option<Vec<u8>> = None;
    while let Some(l) = line(input)? {
        if let Some(p) = pending.as_mut().filter(|_| l[0] == b' ' || l[0] == b'\t') {
            p.extend_from_slice(&l);
            continue;
        }
        if let Some(f) = pending.take() {
            inj.field(f)?;
        }
        if l == b"\n" {
            body_start = Some(l);
            break;
        }
        if l.starts_with(b"From ") {
            pending = Some([b"MBOX-Line: ".as_slice(), &l].concat());
        } else if field_name(&l).is_some() {
            pending = Some(l);
        } else {
            body_start = Some([b"\n".as_slice(), &l].concat());
            break;
        }
    }
    if let Some(f) = pending.take() {
        inj.field(f)?;
    }

    let sender = inj.sender.clone().unwrap_or_else(|| inj.default_sender());
    if strategy != Recipients::Args {
        rcpts.extend(if inj.resent() {
            inj.resent_rcpts.drain(..)
        } else {
            inj.header_rcpts.drain(..)
        });
    }
    if opts.queue && rcpts.is_empty() {
        return Err(Failure::perm("no recipients"));
    }
    let mut out = if opts.queue {
        Out::Queue(Queue::open(home).map_err(|_| qmail::queueclient::exec_failure())?)
    } else {
        Out::Print(io::BufWriter::new(io::stdout()))
    };
    if !opts.queue {
        out.put(&[b"Return-Path: <".as_slice(), &quote_address(&sender), b">\n"].concat());
    }
    out.put(&inj.new_fields());
    for f in &inj.saved {
        out.put(f);
    }
    if let Some(b) = body_start {
        out.put(&b);
        let mut buf = [0u8; 16384];
        let mut last = b'\n';
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    out.put(&buf[..k]);
                    last = buf[k - 1];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::temp("read error")),
            }
        }
        if last != b'\n' {
            out.put(b"\n");
        }
    }
    match out {
        Out::Print(mut w) => w.flush().map_err(|_| Failure::temp("unable to write output")),
        Out::Queue(mut q) => {
            q.from(&sender);
            for r in &rcpts {
                q.to(r);
            }
            q.close()
        }
    }
}
