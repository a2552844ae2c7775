//! The SMTP dialogue: one session, a command table, qmail-smtpd's replies with
//! RFC 3463 enhanced codes in front of qmail's texts (which keep their `(#x.y.z)`).
//!
//! Protocol bytes stay bytes from the socket to qmail-queue: an 8-bit local part
//! arrives as it was sent. What the session knows comes from two places, kept apart:
//! [`Origin`], what tcpserver and its rules said about the client before it spoke,
//! and [`Learned`], what the client said or proved; STARTTLS forgets all of the
//! second (RFC 3207 §4.2). The environment qmail-queue sees is made from both for
//! each message, in that child alone, so no AUTH variable outlives what set it.
//!
//! The dialogue reads no environment and exits nowhere: [`Session::run`] returns the
//! exit code, and every handler returns a [`Step`], so tests drive a whole session
//! in-process through two pipes.

use crate::addr;
use crate::auth::{self, Checkers, Order, Verdict};
use crate::control::Settings;
use crate::data::{self, Stop};
use crate::origin::Origin;
use crate::rcptcheck::Answer;
use qmail::io::{Conn, End, Line};
use qmail::log::bracketed;
use qmail::queueclient::Queue;
use qmail::secret::Secret;
use std::path::PathBuf;

/// Command lines longer than this get 500 (RFC 5321 §4.5.3.1.4: 512 with CRLF; we
/// allow the 1000 of a text line, as many clients send long MAIL parameters).
const MAX_LINE: usize = 1000;
/// AUTH lines (RFC 4954 §4: at least 12288).
const MAX_AUTH_LINE: usize = 12288;
/// Commands without an accepted message before the session is closed.
const MAX_IDLE_COMMANDS: usize = 100;
/// Header bytes in one message.
const MAX_HEADER: u64 = 256 << 10;
/// Envelope bytes kept for one message: the recipients live in memory.
const MAX_ENVELOPE: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mech {
    Login,
    Plain,
    CramMd5,
}

impl Mech {
    fn parse(name: &[u8]) -> Option<Mech> {
        [
            (b"LOGIN".as_slice(), Mech::Login),
            (b"PLAIN", Mech::Plain),
            (b"CRAM-MD5", Mech::CramMd5),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, m)| m)
    }

    /// The name in log lines and in `$SMTPAUTHMETHOD`.
    fn name(self) -> &'static str {
        match self {
            Mech::Login => "login",
            Mech::Plain => "plain",
            Mech::CramMd5 => "cram-md5",
        }
    }
}

/// What the client said or proved in this session; STARTTLS resets it whole.
#[derive(Default)]
struct Learned {
    helo: Option<Vec<u8>>,
    esmtp: bool,
    mailfrom: Option<Vec<u8>>,
    badmailfrom: bool,
    rcpts: Vec<Vec<u8>>,
    envelope: usize,
    auth: Option<(Vec<u8>, Mech)>,
}

/// What an AUTH exchange gave: the user, the password or CRAM-MD5 digest, and the
/// challenge this session issued (empty but for CRAM-MD5).
struct Proof {
    user: Vec<u8>,
    secret: Secret,
    challenge: Vec<u8>,
}

/// The end of the session, with the exit code; handlers return it with `?`.
#[derive(Debug, PartialEq, Eq)]
pub struct Close(pub i32);

/// What a handler returns: go on, or close the session.
pub type Step = Result<(), Close>;

pub struct Session {
    conn: Conn,
    s: Settings,
    home: PathBuf,
    pid: u32,
    origin: Origin,
    l: Learned,
    tls: bool,
    checkers: Option<Checkers>,
    idle: usize,
}

/// The `(#x.y.z)` at the end of a queue program's text, or the class's default.
fn enhanced(text: &str, permanent: bool) -> &str {
    text.rfind("(#")
        .and_then(|i| text.get(i + 2..)?.split(')').next())
        .unwrap_or(if permanent { "5.0.0" } else { "4.0.0" })
}

impl Session {
    /// A session over `conn`, with everything it needs already read.
    pub fn new(home: PathBuf, s: Settings, origin: Origin, checkers: Option<Checkers>, conn: Conn) -> Session {
        Session {
            conn,
            pid: std::process::id(),
            tls: origin.tls,
            checkers: checkers.filter(|_| !origin.auth_off),
            l: Learned::default(),
            origin,
            idle: 0,
            home,
            s,
        }
    }

    /// One reply line; the session goes on.
    fn say(&mut self, line: impl AsRef<[u8]>) -> Step {
        self.conn.reply(line.as_ref());
        Ok(())
    }

    fn logline(&self, what: &str) {
        log(&format!("pid {} from {}: {what}", self.pid, self.origin.remoteip));
    }

    /// Says `last`, if anything, and closes with `code`.
    fn close(&mut self, last: Option<&str>, code: i32) -> Close {
        if let Some(line) = last {
            self.conn.reply(line.as_bytes());
        }
        let _ = self.conn.flush();
        Close(code)
    }

    /// The end on a read or write failure: a timeout gets qmail's 451.
    fn end(&mut self, e: End) -> Close {
        let last = matches!(e, End::Timeout).then_some("451 4.4.2 timeout (#4.4.2)");
        self.close(last, 1)
    }

    /// qmail's answer when a control file cannot be read mid-session.
    fn die_control(&mut self, what: &str, e: &std::io::Error) -> Close {
        self.logline(&format!(
            "unable to read controls: {what}: {}",
            qmail::errstr::io_str(e)
        ));
        self.close(Some("421 4.3.0 unable to read controls (#4.3.0)"), 1)
    }

    /// The whole session; the exit code.
    pub fn run(mut self) -> i32 {
        match self.serve() {
            Ok(()) => 0,
            Err(Close(code)) => code,
        }
    }

    fn serve(&mut self) -> Step {
        if self.s.rcpthosts.is_none() {
            self.logline("warning: control/rcpthosts is missing: refusing every recipient that does not relay");
        }
        let greeting = self.s.greeting.clone();
        self.say([b"220 ", &greeting[..], b" ESMTP"].concat())?;
        loop {
            let mut line = match self.conn.line(MAX_LINE) {
                Ok(Line::Ok(l)) => l,
                Ok(Line::TooLong) => {
                    self.say("500 5.5.2 line too long")?;
                    continue;
                }
                Err(e) => return Err(self.end(e)),
            };
            let (verb, arg) = match line.iter().position(|&b| b == b' ') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (&line[..], &b""[..]),
            };
            let verb = verb.to_ascii_lowercase();
            // Recipients are bounded by maxrcpt; everything else counts towards the limit.
            if verb != b"rcpt" {
                self.idle += 1;
            }
            if self.idle > MAX_IDLE_COMMANDS {
                return Err(self.close(Some("421 4.7.0 too many commands without a message, closing"), 1));
            }
            if line.contains(&0) {
                self.say("500 5.5.2 NUL in command")?;
                continue;
            }
            let step = match &verb[..] {
                b"helo" => self.helo(arg, false),
                b"ehlo" => self.helo(arg, true),
                b"mail" => self.mail(arg),
                b"rcpt" => self.rcpt(arg),
                b"data" => self.data(),
                b"rset" => {
                    self.reset();
                    self.say("250 2.0.0 flushed")
                }
                b"noop" => self.say("250 2.0.0 ok"),
                b"vrfy" => self.say("252 2.5.2 send some mail, i'll try my best"),
                b"help" => self.say("214 2.0.0 rqmail: qmail's design, see https://cr.yp.to/qmail.html"),
                b"starttls" => self.starttls(arg),
                b"auth" => self.auth(arg),
                b"quit" => {
                    self.say([b"221 2.0.0 ", &greeting[..]].concat())?;
                    Err(self.close(None, 0))
                }
                _ => self.say("502 5.5.1 unimplemented (#5.5.1)"),
            };
            if verb == b"auth" {
                // An initial response is a password in base64.
                self.conn.wipe_consumed();
                qmail::secret::wipe(&mut line);
            }
            step?;
        }
    }

    /// Ends the mail transaction (RSET, HELO, a new MAIL).
    fn reset(&mut self) {
        self.l.mailfrom = None;
        self.l.rcpts.clear();
        self.l.envelope = 0;
    }

    /// `$RELAYCLIENT` as it applies now: the rules' value, else empty after AUTH.
    fn relayclient(&self) -> Option<&[u8]> {
        self.origin
            .relayclient
            .as_deref()
            .or(self.l.auth.as_ref().map(|_| &b""[..]))
    }

    /// The environment of the queue program (and its filters), from what is known
    /// now; Hoffmann's names for the AUTH user too.
    fn queue_env(&self) -> [(&'static str, Option<&[u8]>); 5] {
        let user = self.l.auth.as_ref().map(|(u, _)| &u[..]);
        [
            ("RELAYCLIENT", self.relayclient()),
            ("TCPREMOTEINFO", user.or(self.origin.remoteinfo.as_deref())),
            ("SMTPAUTHUSER", user),
            ("SMTP_AUTH_USER", user),
            ("SMTPAUTHMETHOD", self.l.auth.as_ref().map(|(_, m)| m.name().as_bytes())),
        ]
    }

    fn starttls_offered(&self) -> bool {
        self.origin.engine.is_some() && !self.tls
    }

    /// PLAIN and LOGIN are offered in the clear only where TLS is not on offer at all
    /// (the seeds' line), or when the admin says so.
    fn plain_offered(&self) -> bool {
        self.tls || !self.starttls_offered() || self.origin.auth_clear
    }

    fn mechanisms(&self) -> &'static str {
        if self.checkers.is_none() || self.l.auth.is_some() {
            ""
        } else if self.plain_offered() {
            "LOGIN PLAIN CRAM-MD5"
        } else {
            "CRAM-MD5"
        }
    }

    fn helo(&mut self, arg: &[u8], esmtp: bool) -> Step {
        self.reset();
        self.l.esmtp = esmtp;
        self.l.helo = Some(arg.to_vec()).filter(|h| !h.eq_ignore_ascii_case(&self.origin.remotehost));
        let g = self.s.greeting.clone();
        if !esmtp {
            return self.say([b"250 ", &g[..]].concat());
        }
        let mut lines = vec![
            g,
            b"PIPELINING".to_vec(),
            b"8BITMIME".to_vec(),
            format!("SIZE {}", self.s.databytes).into_bytes(),
            b"ENHANCEDSTATUSCODES".to_vec(),
        ];
        if self.starttls_offered() {
            lines.push(b"STARTTLS".to_vec());
        }
        let mechs = self.mechanisms();
        if !mechs.is_empty() {
            lines.push(format!("AUTH {mechs}").into_bytes());
            lines.push(format!("AUTH={mechs}").into_bytes());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep: &[u8] = if i == last { b"250 " } else { b"250-" };
            self.conn.reply(&[sep, l].concat());
        }
        Ok(())
    }

    /// Policy that applies before MAIL and AUTH; true when it answered.
    fn needs_tls(&mut self) -> bool {
        let needed = self.origin.tls_required && !self.tls;
        if needed {
            self.conn.reply(b"530 5.7.0 Must issue a STARTTLS command first");
        }
        needed
    }

    fn mail(&mut self, arg: &[u8]) -> Step {
        if self.needs_tls() {
            return Ok(());
        }
        if self.origin.auth_required && self.l.auth.is_none() {
            return self.say("530 5.7.0 authentication required (#5.7.1)");
        }
        let Some(p) = addr::parse(arg) else {
            return self.say("555 5.5.4 syntax error (#5.5.4)");
        };
        let size = p
            .params
            .iter()
            .find(|(k, _)| k == b"SIZE")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        if self.s.databytes > 0 && size.is_some_and(|n| n > self.s.databytes) {
            return self.say("552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)");
        }
        self.reset();
        self.l.badmailfrom = Settings::listed(&self.s.badmailfrom, &p.addr);
        self.l.mailfrom = Some(p.addr);
        self.say("250 2.1.0 ok")
    }

    fn rcpt(&mut self, arg: &[u8]) -> Step {
        if self.l.mailfrom.is_none() {
            return self.say("503 5.5.1 MAIL first (#5.5.1)");
        }
        let Some(mut p) = addr::parse(arg) else {
            return self.say("555 5.5.4 syntax error (#5.5.4)");
        };
        let shown = bracketed(&p.addr);
        if self.l.badmailfrom {
            self.logline(&format!("rejected rcpt <{shown}>: sender in badmailfrom"));
            return self.say("553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)");
        }
        if Settings::listed(&self.s.badrcptto, &p.addr) {
            self.logline(&format!("rejected rcpt <{shown}>: in badrcptto"));
            return self.say("553 5.7.1 sorry, that address is in my badrcptto list (#5.7.1)");
        }
        if let Some(lip) = &self.s.localiphost {
            let bracket = [b"@[", &self.origin.localip[..], b"]"].concat();
            if p.addr.to_ascii_lowercase().ends_with(&bracket) {
                p.addr.truncate(p.addr.len() - bracket.len() + 1);
                p.addr.extend_from_slice(lip);
            }
        }
        match self.relayclient() {
            Some(suffix) => p.addr.extend_from_slice(suffix),
            None => match self.s.rcpthost(&p.addr) {
                Ok(true) => {}
                Ok(false) => {
                    self.logline(&format!("rejected rcpt <{shown}>: relaying denied"));
                    return self.say("553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)");
                }
                Err(e) => return Err(self.die_control("morercpthosts.cdb", &e)),
            },
        }
        if let Some(check) = &self.s.rcptcheck {
            match check.check(&p.addr) {
                Answer::Mailbox => {}
                Answer::NoMailbox => {
                    self.logline(&format!("rejected rcpt <{shown}>: no mailbox"));
                    return self.say("550 5.1.1 sorry, no mailbox here by that name (#5.1.1)");
                }
                Answer::Temporary => {
                    self.logline(&format!("deferred rcpt <{shown}>: unable to look the mailbox up"));
                    return self.say("451 4.3.0 unable to check the recipient, try again later (#4.3.0)");
                }
            }
        }
        if self.l.rcpts.len() >= self.s.maxrcpt || self.l.envelope + p.addr.len() > MAX_ENVELOPE {
            return self.say("452 4.5.3 too many recipients");
        }
        self.l.envelope += p.addr.len() + 2;
        self.l.rcpts.push(p.addr);
        self.say("250 2.1.5 ok")
    }

    fn protocol(&self) -> String {
        if !self.l.esmtp {
            return "SMTP".into();
        }
        format!(
            "ESMTP{}{}",
            if self.tls { "S" } else { "" },
            if self.l.auth.is_some() { "A" } else { "" }
        )
    }

    fn data(&mut self) -> Step {
        let Some(from) = self.l.mailfrom.take() else {
            return self.say("503 5.5.1 MAIL first (#5.5.1)");
        };
        if self.l.rcpts.is_empty() {
            return self.say("503 5.5.1 RCPT first (#5.5.1)");
        }
        let rcpts = std::mem::take(&mut self.l.rcpts);
        self.l.envelope = 0;
        let mut q = match Queue::open_with(&self.home, &self.queue_env()) {
            Ok(q) => q,
            Err(_) => return self.say("451 4.3.0 qqt failure (#4.3.0)"),
        };
        let qp = q.pid();
        self.say("354 go ahead")?;
        let user = self.l.auth.as_ref().map(|(u, _)| &u[..]);
        let rcv = data::received(
            &self.origin.remotehost,
            self.l.helo.as_deref(),
            user.or(self.origin.remoteinfo.as_deref()),
            self.origin.remoteip.as_bytes(),
            &self.origin.local,
            &self.protocol(),
        );
        q.put(&rcv);
        let body = match data::blast(&mut self.conn, &mut q, self.s.databytes, MAX_HEADER) {
            Ok(b) => b,
            Err(Stop::BareLf) => {
                q.abort(); // without an envelope nothing is queued
                return Err(self.close(Some("451 See https://cr.yp.to/docs/smtplf.html."), 1));
            }
            Err(Stop::End(e)) => {
                q.abort();
                return Err(self.end(e));
            }
        };
        let refused = if body.hops >= data::MAXHOPS {
            Some(("554 5.4.6", "too many hops, this message is looping (#5.4.6)"))
        } else if body.too_big {
            Some((
                "552 5.3.4",
                "sorry, that message size exceeds my databytes limit (#5.3.4)",
            ))
        } else if body.header_too_big {
            Some(("552 5.3.4", "sorry, that message header is too large (#5.3.4)"))
        } else {
            None
        };
        if let Some((code, why)) = refused {
            q.abort(); // without an envelope nothing is queued
            self.logline(&format!("refused message: {why}"));
            return self.say(format!("{code} {why}"));
        }
        q.from(&from);
        for r in &rcpts {
            q.to(r);
        }
        match q.close() {
            Ok(()) => {
                self.idle = 0;
                let who = user.map_or(String::new(), |u| format!(" auth <{}>", bracketed(u)));
                self.logline(&format!(
                    "accepted message: qp {qp} bytes {} from <{}> rcpts {}{who}",
                    body.bytes,
                    bracketed(&from),
                    rcpts.len()
                ));
                self.say(format!("250 2.0.0 ok {} qp {qp}", qmail::date822::now()))?;
            }
            Err(r) => {
                // The text is a filter's own: it may hold anything but one reply line.
                let text = qmail::log::text(r.text.as_bytes(), 200);
                let code = if r.permanent { "554" } else { "451" };
                self.logline(&format!("queue refused message: {text}"));
                self.say(format!("{code} {} {text}", enhanced(&text, r.permanent)))?;
            }
        }
        Ok(())
    }

    fn starttls(&mut self, arg: &[u8]) -> Step {
        let Some(engine) = self.origin.engine.filter(|_| !self.tls) else {
            return self.say("502 5.5.1 unimplemented (#5.5.1)");
        };
        if !arg.is_empty() {
            return self.say("501 5.5.4 syntax error (#5.5.4)");
        }
        self.say("220 2.0.0 ready to start TLS")?;
        if let Err(e) = self.conn.flush() {
            return Err(self.end(e));
        }
        // The engine has its own handshake deadline; it closes the socket on failure
        // and logs why.
        if engine.start(self.conn.timeout).is_err() {
            return Err(Close(1));
        }
        // RFC 3207 §4.2: everything the client said before the handshake is gone
        // (HELO, AUTH and the relay right it gave, the transaction, pipelined input).
        self.conn.switch(engine.read, engine.write);
        self.tls = true;
        self.l = Learned::default();
        Ok(())
    }

    fn auth(&mut self, arg: &[u8]) -> Step {
        if self.needs_tls() {
            return Ok(());
        }
        let Some(checkers) = self.checkers.clone() else {
            return self.say("503 5.5.1 auth not available (#5.3.3)");
        };
        if self.l.auth.is_some() {
            return self.say("503 5.5.1 you're already authenticated (#5.5.0)");
        }
        if self.l.mailfrom.is_some() {
            return self.say("503 5.5.1 no auth during mail transaction (#5.5.0)");
        }
        let (mech, initial) = match arg.iter().position(|&b| b == b' ') {
            Some(i) => (&arg[..i], Some(arg[i + 1..].trim_ascii()).filter(|i| !i.is_empty())),
            None => (arg, None),
        };
        let Some(mech) = Mech::parse(mech) else {
            return self.say("504 5.5.4 auth type unimplemented (#5.5.1)");
        };
        if mech != Mech::CramMd5 && !self.plain_offered() {
            return self.say("538 5.7.11 encryption required for requested authentication mechanism");
        }
        let initial = initial.map(|i| Secret(i.to_vec()));
        let Some(Proof {
            user,
            secret,
            challenge,
        }) = self.exchange(mech, initial, &checkers)?
        else {
            return Ok(());
        };
        let (checker, fields): (_, [&[u8]; 3]) = match (mech, checkers.cram.order) {
            (Mech::CramMd5, Order::Brush) => (&checkers.cram, [&user, &challenge, &secret]),
            (Mech::CramMd5, Order::Hoffmann) => (&checkers.cram, [&user, &secret, &challenge]),
            _ => (&checkers.login, [&user, &secret, b""]),
        };
        let verdict = auth::check(checker, &fields);
        drop(secret);
        let (pid, ip) = (self.pid, &self.origin.remoteip);
        let shown = bracketed(&user);
        let line = |result: &str| format!("[{pid}]: auth: {result} type={} user=<{shown}> ip={ip}", mech.name());
        match verdict {
            Verdict::Ok => {
                log(&line("auth-success"));
                self.l.auth = Some((user, mech));
                self.say("235 2.7.0 ok, go ahead (#2.0.0)")?;
            }
            Verdict::Bad => {
                log(&line("auth-failed"));
                self.say("535 5.7.8 authentication failed (#5.7.0)")?;
            }
            Verdict::Temporary => {
                log(&line("auth-temporary-failure"));
                self.say("454 4.7.0 temporary authentication failure (#4.3.0)")?;
            }
        }
        Ok(())
    }

    /// The exchange of one mechanism: the user, the password or CRAM-MD5 digest, and
    /// the challenge this session issued (empty but for CRAM-MD5). `None`: it ended
    /// with a reply sent. Decoded data holding NUL is refused (501), so no client
    /// byte can become a field separator on the checker's descriptor 3.
    fn exchange(&mut self, mech: Mech, initial: Option<Secret>, checkers: &Checkers) -> Result<Option<Proof>, Close> {
        let malformed = |s: &mut Session| {
            s.say("501 5.5.2 malformed auth input (#5.5.4)")?;
            Ok(None)
        };
        match mech {
            Mech::Login => {
                let Some(user) = self.response(initial, "334 VXNlcm5hbWU6")? else {
                    return Ok(None);
                };
                let Some(pass) = self.response(None, "334 UGFzc3dvcmQ6")? else {
                    return Ok(None);
                };
                if user.is_empty() || pass.is_empty() || user.contains(&0) || pass.contains(&0) {
                    return malformed(self);
                }
                Ok(Some(Proof {
                    user: user.to_vec(),
                    secret: pass,
                    challenge: Vec::new(),
                }))
            }
            Mech::Plain => {
                let Some(msg) = self.response(initial, "334 ")? else {
                    return Ok(None);
                };
                let parts: Vec<&[u8]> = msg.split(|&b| b == 0).collect();
                let [authzid, authcid, pass] = parts[..] else {
                    return malformed(self);
                };
                if authcid.is_empty() || pass.is_empty() {
                    return malformed(self);
                }
                if !authzid.is_empty() && authzid != authcid {
                    self.logline("auth: auth-failed type=plain: authorization identity differs");
                    self.say("535 5.7.8 authentication failed (#5.7.0)")?;
                    return Ok(None);
                }
                Ok(Some(Proof {
                    user: authcid.to_vec(),
                    secret: Secret(pass.to_vec()),
                    challenge: Vec::new(),
                }))
            }
            Mech::CramMd5 => {
                let Some(challenge) = self.challenge(checkers) else {
                    self.say("454 4.7.0 temporary authentication failure (#4.3.0)")?;
                    return Ok(None);
                };
                let prompt = format!("334 {}", auth::encode(&challenge));
                let Some(resp) = self.response(None, &prompt)? else {
                    return Ok(None);
                };
                // RFC 2195: the user name, a space, the digest; the name may hold spaces.
                let Some(sp) = resp.iter().rposition(|&b| b == b' ') else {
                    return malformed(self);
                };
                let (user, digest) = (&resp[..sp], auth::digest(&resp[sp + 1..]));
                let Some(digest) = digest.filter(|_| !user.is_empty() && !user.contains(&0)) else {
                    return malformed(self);
                };
                Ok(Some(Proof {
                    user: user.to_vec(),
                    secret: Secret(digest),
                    challenge,
                }))
            }
        }
    }

    /// A CRAM-MD5 challenge no other session has issued or will issue: the pid, the
    /// time and 64 random bits, so a digest recorded elsewhere proves nothing here.
    fn challenge(&self, checkers: &Checkers) -> Option<Vec<u8>> {
        let mut nonce = [0u8; 8];
        // SAFETY: getrandom fills the local buffer.
        let n = unsafe { libc::getrandom(nonce.as_mut_ptr().cast(), nonce.len(), 0) };
        if n != nonce.len() as isize {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let host = checkers.hostname.as_deref().unwrap_or(&self.s.me);
        let mut c = format!("<{}.{now}.{:016x}@", self.pid, u64::from_be_bytes(nonce)).into_bytes();
        c.extend_from_slice(host);
        c.push(b'>');
        Some(c)
    }

    /// The client's answer to a 334 prompt (or the initial response), decoded.
    /// `None` means the exchange ended and the reply was sent. The line and what it
    /// decodes to are wiped when dropped.
    fn response(&mut self, initial: Option<Secret>, prompt: &str) -> Result<Option<Secret>, Close> {
        let line = match initial {
            Some(i) if &*i == b"=" => return Ok(Some(Secret::default())),
            Some(i) => i,
            None => {
                self.say(prompt)?;
                let line = self.conn.line(MAX_AUTH_LINE);
                self.conn.wipe_consumed();
                match line {
                    Ok(Line::Ok(l)) => Secret(l),
                    Ok(Line::TooLong) => {
                        self.say("500 5.5.6 authentication exchange line is too long")?;
                        return Ok(None);
                    }
                    Err(e) => return Err(self.end(e)),
                }
            }
        };
        if &*line == b"*" {
            self.say("501 5.7.0 auth exchange cancelled (#5.0.0)")?;
            return Ok(None);
        }
        let decoded = auth::decode(&line);
        if decoded.is_none() {
            self.say("501 5.5.2 malformed auth input (#5.5.4)")?;
        }
        Ok(decoded)
    }
}

/// A line on stderr for multilog; never a password. Outside bytes in it went through
/// [`qmail::log`] first.
pub fn log(line: &str) {
    let sep = if line.starts_with('[') { "" } else { ": " };
    qmail::log::line(&format!("qmail-smtpd{sep}{line}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_and_enhanced_codes() {
        assert_eq!(Mech::parse(b"cram-md5"), Some(Mech::CramMd5));
        assert_eq!(Mech::parse(b"LOGIN"), Some(Mech::Login));
        assert_eq!(Mech::parse(b"LOGINX"), None);
        assert_eq!(enhanced("spam found (#5.7.1)", true), "5.7.1");
        assert_eq!(enhanced("qq temporary problem", false), "4.0.0");
    }
}
