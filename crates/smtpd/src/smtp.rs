//! The SMTP dialogue: one session, a command table, qmail-smtpd's replies with
//! RFC 3463 enhanced codes in front of qmail's texts (which keep their `(#x.y.z)`).

use crate::addr;
use crate::auth::{self, Checkers, Order, Verdict};
use crate::control::Settings;
use crate::data::{self, Stop};
use crate::io::{Conn, End, Line};
use qmail::queueclient::Queue;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

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

pub struct Session {
    conn: Conn,
    s: Settings,
    home: PathBuf,
    pid: u32,
    remoteip: String,
    remotehost: String,
    remoteinfo: Option<String>,
    local: String,
    relayclient: Option<String>,
    helo: Option<String>,
    esmtp: bool,
    mailfrom: Option<Vec<u8>>,
    badmailfrom: bool,
    rcpts: Vec<Vec<u8>>,
    envelope: usize,
    /// The TLS engine's control socket and pipes, while STARTTLS is still possible.
    ucspitls: Option<(RawFd, RawFd, RawFd)>,
    tls: bool,
    tls_required: bool,
    checkers: Option<Checkers>,
    auth_required: bool,
    auth_clear: bool,
    auth_user: Option<(String, &'static str)>,
    idle: usize,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn fd_env(name: &str) -> Option<RawFd> {
    env(name)?.parse().ok()
}

impl Session {
    pub fn new(home: PathBuf, s: Settings, args: &[OsString]) -> Session {
        let ucspitls = match (fd_env("SSLCTLFD"), fd_env("SSLREADFD"), fd_env("SSLWRITEFD")) {
            (Some(c), Some(r), Some(w)) if env("UCSPITLS").as_deref() != Some("-") && env("DISABLETLS").is_none() => {
                Some((c, r, w))
            }
            _ => None,
        };
        let smtpauth = env("SMTPAUTH").unwrap_or_default();
        let checkers = if smtpauth == "-" {
            None
        } else {
            auth::checkers(args).unwrap_or_else(|e| {
                log(&format!("warning: AUTH not offered: {e}"));
                None
            })
        };
        let remotehost = env("TCPREMOTEHOST").unwrap_or_else(|| "unknown".into());
        Session {
            conn: Conn::new(0, 1, Duration::from_secs(s.timeout)),
            pid: std::process::id(),
            remoteip: env("TCPREMOTEIP").unwrap_or_else(|| "unknown".into()),
            remoteinfo: env("TCPREMOTEINFO"),
            local: env("TCPLOCALHOST")
                .or_else(|| env("TCPLOCALIP"))
                .unwrap_or_else(|| "unknown".into()),
            relayclient: env("RELAYCLIENT"),
            helo: None,
            esmtp: false,
            mailfrom: None,
            badmailfrom: false,
            rcpts: Vec::new(),
            envelope: 0,
            tls: env("SSL_PROTOCOL").is_some() && ucspitls.is_none(),
            ucspitls,
            tls_required: env("UCSPITLS").as_deref() == Some("!"),
            checkers,
            auth_required: smtpauth == "!",
            auth_clear: env("SMTPAUTHCLEAR").is_some(),
            auth_user: None,
            idle: 0,
            remotehost,
            home,
            s,
        }
    }

    fn say(&mut self, line: &str) {
        self.conn.reply(line);
    }

    fn logline(&self, what: &str) {
        log(&format!("pid {} from {}: {what}", self.pid, self.remoteip));
    }

    /// Ends the session on a read failure: a timeout gets qmail's 451.
    fn end(&mut self, e: End) -> ! {
        if let End::Timeout = e {
            self.say("451 4.4.2 timeout (#4.4.2)");
            let _ = self.conn.flush();
        }
        std::process::exit(1)
    }

    pub fn run(mut self) -> ! {
        if self.s.rcpthosts.is_none() {
            self.logline("warning: control/rcpthosts is missing: refusing every recipient that does not relay");
        }
        let greeting = self.s.greeting.clone();
        self.say(&format!("220 {greeting} ESMTP"));
        loop {
            let line = match self.conn.line(MAX_LINE) {
                Ok(Line::Ok(l)) => l,
                Ok(Line::TooLong) => {
                    self.say("500 5.5.2 line too long");
                    continue;
                }
                Err(e) => self.end(e),
            };
            // Recipients are bounded by maxrcpt; everything else counts towards the limit.
            if !line.get(..4).is_some_and(|v| v.eq_ignore_ascii_case(b"rcpt")) {
                self.idle += 1;
            }
            if self.idle > MAX_IDLE_COMMANDS {
                self.say("421 4.7.0 too many commands without a message, closing");
                let _ = self.conn.flush();
                std::process::exit(1);
            }
            if line.contains(&0) {
                self.say("500 5.5.2 NUL in command");
                continue;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            match verb.to_ascii_lowercase().as_str() {
                "helo" => self.helo(arg, false),
                "ehlo" => self.helo(arg, true),
                "mail" => self.mail(arg),
                "rcpt" => self.rcpt(arg),
                "data" => self.data(),
                "rset" => {
                    self.reset();
                    self.say("250 2.0.0 flushed");
                }
                "noop" => self.say("250 2.0.0 ok"),
                "vrfy" => self.say("252 2.5.2 send some mail, i'll try my best"),
                "help" => self.say("214 2.0.0 rqmail: qmail's design, see https://cr.yp.to/qmail.html"),
                "starttls" => self.starttls(arg),
                "auth" => self.auth(arg),
                "quit" => {
                    self.say(&format!("221 2.0.0 {greeting}"));
                    let _ = self.conn.flush();
                    std::process::exit(0);
                }
                _ => self.say("502 5.5.1 unimplemented (#5.5.1)"),
            }
        }
    }

    fn reset(&mut self) {
        self.mailfrom = None;
        self.rcpts.clear();
        self.envelope = 0;
    }

    fn starttls_offered(&self) -> bool {
        self.ucspitls.is_some() && !self.tls
    }

    /// PLAIN and LOGIN are offered in the clear only where TLS is not on offer at all
    /// (the seeds' line), or when the admin says so.
    fn plain_offered(&self) -> bool {
        self.tls || !self.starttls_offered() || self.auth_clear
    }

    fn mechanisms(&self) -> String {
        if self.checkers.is_none() || self.auth_user.is_some() {
            return String::new();
        }
        if self.plain_offered() {
            "LOGIN PLAIN CRAM-MD5".into()
        } else {
            "CRAM-MD5".into()
        }
    }

    fn helo(&mut self, arg: &str, esmtp: bool) {
        self.reset();
        self.esmtp = esmtp;
        self.helo = Some(arg.to_string()).filter(|h| !h.eq_ignore_ascii_case(&self.remotehost));
        let g = self.s.greeting.clone();
        if !esmtp {
            return self.say(&format!("250 {g}"));
        }
        let mut lines = vec![
            g,
            "PIPELINING".into(),
            "8BITMIME".into(),
            format!("SIZE {}", self.s.databytes),
        ];
        lines.push("ENHANCEDSTATUSCODES".into());
        if self.starttls_offered() {
            lines.push("STARTTLS".into());
        }
        let mechs = self.mechanisms();
        if !mechs.is_empty() {
            lines.push(format!("AUTH {mechs}"));
            lines.push(format!("AUTH={mechs}"));
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            self.conn.reply(&format!("250{}{l}", if i == last { ' ' } else { '-' }));
        }
    }

    /// Policy that applies before MAIL and AUTH; true when it answered.
    fn needs_tls(&mut self) -> bool {
        if self.tls_required && !self.tls {
            self.say("530 5.7.0 Must issue a STARTTLS command first");
            return true;
        }
        false
    }

    fn mail(&mut self, arg: &str) {
        if self.needs_tls() {
            return;
        }
        if self.auth_required && self.auth_user.is_none() {
            return self.say("530 5.7.0 authentication required (#5.7.1)");
        }
        let Some(p) = addr::parse(arg.as_bytes()) else {
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
        self.badmailfrom = Settings::listed(&self.s.badmailfrom, &p.addr);
        self.mailfrom = Some(p.addr);
        self.say("250 2.1.0 ok");
    }

    fn rcpt(&mut self, arg: &str) {
        if self.mailfrom.is_none() {
            return self.say("503 5.5.1 MAIL first (#5.5.1)");
        }
        let Some(mut p) = addr::parse(arg.as_bytes()) else {
            return self.say("555 5.5.4 syntax error (#5.5.4)");
        };
        let shown = String::from_utf8_lossy(&p.addr).into_owned();
        if self.badmailfrom {
            self.logline(&format!("rejected rcpt <{shown}>: sender in badmailfrom"));
            return self.say("553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)");
        }
        if Settings::listed(&self.s.badrcptto, &p.addr) {
            self.logline(&format!("rejected rcpt <{shown}>: in badrcptto"));
            return self.say("553 5.7.1 sorry, that address is in my badrcptto list (#5.7.1)");
        }
        if let Some(lip) = &self.s.localiphost {
            let bracket = format!("@[{}]", env("TCPLOCALIP").unwrap_or_default());
            if p.addr.to_ascii_lowercase().ends_with(bracket.as_bytes()) {
                p.addr.truncate(p.addr.len() - bracket.len() + 1);
                p.addr.extend_from_slice(lip);
            }
        }
        match &self.relayclient {
            Some(suffix) => p.addr.extend_from_slice(suffix.as_bytes()),
            None if !self.s.rcpthost(&p.addr) => {
                self.logline(&format!("rejected rcpt <{shown}>: relaying denied"));
                return self.say("553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)");
            }
            None => {}
        }
        if self.rcpts.len() >= self.s.maxrcpt || self.envelope + p.addr.len() > MAX_ENVELOPE {
            return self.say("452 4.5.3 too many recipients");
        }
        self.envelope += p.addr.len() + 2;
        self.rcpts.push(p.addr);
        self.say("250 2.1.5 ok");
    }

    fn protocol(&self) -> String {
        if !self.esmtp {
            return "SMTP".into();
        }
        format!(
            "ESMTP{}{}",
            if self.tls { "S" } else { "" },
            if self.auth_user.is_some() { "A" } else { "" }
        )
    }

    fn data(&mut self) {
        let Some(from) = self.mailfrom.take() else {
            return self.say("503 5.5.1 MAIL first (#5.5.1)");
        };
        if self.rcpts.is_empty() {
            return self.say("503 5.5.1 RCPT first (#5.5.1)");
        }
        let rcpts = std::mem::take(&mut self.rcpts);
        self.envelope = 0;
        let mut q = match Queue::open(&self.home) {
            Ok(q) => q,
            Err(_) => return self.say("451 4.3.0 qqt failure (#4.3.0)"),
        };
        let qp = q.pid();
        self.say("354 go ahead");
        let info = self
            .auth_user
            .as_ref()
            .map(|(u, _)| u.clone())
            .or(self.remoteinfo.clone());
        let rcv = data::received(
            &self.remotehost,
            self.helo.as_deref(),
            info.as_deref(),
            &self.remoteip,
            &self.local,
            &self.protocol(),
        );
        q.put(rcv.as_bytes());
        let body = match data::blast(&mut self.conn, &mut q, self.s.databytes, MAX_HEADER) {
            Ok(b) => b,
            Err(Stop::BareLf) => {
                self.say("451 See https://cr.yp.to/docs/smtplf.html.");
                let _ = self.conn.flush();
                std::process::exit(1);
            }
            // The queue program sees its input end without an envelope: nothing is queued.
            Err(Stop::End(e)) => self.end(e),
        };
        if body.hops >= data::MAXHOPS || body.too_big || body.header_too_big {
            q.abort(); // without an envelope nothing is queued
            let why = if body.hops >= data::MAXHOPS {
                "554 5.4.6 too many hops, this message is looping (#5.4.6)"
            } else if body.too_big {
                "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
            } else {
                "552 5.3.4 sorry, that message header is too large (#5.3.4)"
            };
            self.logline(&format!("refused message: {}", &why[10..]));
            return self.say(why);
        }
        q.from(&from);
        for r in &rcpts {
            q.to(r);
        }
        match q.close() {
            Ok(()) => {
                self.idle = 0;
                let who = self
                    .auth_user
                    .as_ref()
                    .map_or(String::new(), |(u, _)| format!(" auth <{u}>"));
                self.logline(&format!(
                    "accepted message: qp {qp} bytes {} from <{}> rcpts {}{who}",
                    body.bytes,
                    String::from_utf8_lossy(&from),
                    rcpts.len()
                ));
                self.say(&format!("250 2.0.0 ok {} qp {qp}", qmail::date822::now()));
            }
            Err(r) => {
                let code = if r.permanent { "554" } else { "451" };
                let enhanced = r
                    .text
                    .rfind("(#")
                    .and_then(|i| r.text.get(i + 2..).and_then(|t| t.split(')').next()))
                    .unwrap_or(if r.permanent { "5.0.0" } else { "4.0.0" })
                    .to_string();
                self.logline(&format!("queue refused message: {}", r.text));
                self.say(&format!("{code} {enhanced} {}", r.text));
            }
        }
    }

    fn starttls(&mut self, arg: &str) {
        let Some((ctl, r, w)) = self.ucspitls.filter(|_| !self.tls) else {
            return self.say("502 5.5.1 unimplemented (#5.5.1)");
        };
        if !arg.is_empty() {
            return self.say("501 5.5.4 syntax error (#5.5.4)");
        }
        self.say("220 2.0.0 ready to start TLS");
        if let Err(e) = self.conn.flush() {
            self.end(e)
        }
        // SAFETY: one byte to the engine's control socket.
        if unsafe { libc::write(ctl, b"Y".as_ptr().cast(), 1) } != 1 {
            std::process::exit(1);
        }
        // The engine answers with the session's variables once the handshake is done,
        // or closes the socket when it failed.
        let mut info = Vec::new();
        let mut buf = [0u8; 256];
        while !info.ends_with(b"\0\0") {
            // SAFETY: reads into a local buffer.
            let n = unsafe { libc::read(ctl, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                std::process::exit(1);
            }
            info.extend_from_slice(&buf[..n as usize]);
        }
        self.conn.switch(r, w);
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.reset();
    }

    fn auth(&mut self, arg: &str) {
        if self.needs_tls() {
            return;
        }
        let Some(checkers) = self.checkers.clone() else {
            return self.say("503 5.5.1 auth not available (#5.3.3)");
        };
        if self.auth_user.is_some() {
            return self.say("503 5.5.1 you're already authenticated (#5.5.0)");
        }
        if self.mailfrom.is_some() {
            return self.say("503 5.5.1 no auth during mail transaction (#5.5.0)");
        }
        let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
        let mech = mech.to_ascii_uppercase();
        let initial = Some(initial.trim()).filter(|i| !i.is_empty());
        let plain_ok = self.plain_offered();
        let fields: Vec<Vec<u8>> = match mech.as_str() {
            "LOGIN" | "PLAIN" if !plain_ok => {
                return self.say("538 5.7.11 encryption required for requested authentication mechanism");
            }
            "LOGIN" => {
                let Some(user) = self.response(initial, "334 VXNlcm5hbWU6") else {
                    return;
                };
                let Some(pass) = self.response(None, "334 UGFzc3dvcmQ6") else {
                    return;
                };
                if user.is_empty() || pass.is_empty() {
                    return self.say("501 5.5.2 malformed auth input (#5.5.4)");
                }
                vec![user, pass, Vec::new()]
            }
            "PLAIN" => {
                let Some(msg) = self.response(initial, "334 ") else {
                    return;
                };
                let parts: Vec<&[u8]> = msg.split(|&b| b == 0).collect();
                let [authzid, authcid, pass] = parts[..] else {
                    return self.say("501 5.5.2 malformed auth input (#5.5.4)");
                };
                if authcid.is_empty() || pass.is_empty() {
                    return self.say("501 5.5.2 malformed auth input (#5.5.4)");
                }
                if !authzid.is_empty() && authzid != authcid {
                    self.logline("auth: auth-failed type=plain: authorization identity differs");
                    return self.say("535 5.7.8 authentication failed (#5.7.0)");
                }
                vec![authcid.to_vec(), pass.to_vec(), Vec::new()]
            }
            "CRAM-MD5" => {
                let host = checkers.hostname.clone().unwrap_or_else(|| self.s.me.clone());
                let challenge = format!("<{}.{}@{host}>", self.pid, qmail::date822::now());
                let prompt = format!("334 {}", auth::encode(challenge.as_bytes()));
                let Some(resp) = self.response(None, &prompt) else {
                    return;
                };
                let Some(sp) = resp.iter().position(|&b| b == b' ') else {
                    return self.say("501 5.5.2 malformed auth input (#5.5.4)");
                };
                let (user, digest) = (resp[..sp].to_vec(), resp[sp + 1..].to_vec());
                if user.is_empty() || digest.is_empty() {
                    return self.say("501 5.5.2 malformed auth input (#5.5.4)");
                }
                match checkers.cram.order {
                    Order::Brush => vec![user, challenge.into_bytes(), digest],
                    Order::Hoffmann => vec![user, digest, challenge.into_bytes()],
                }
            }
            _ => return self.say("504 5.5.4 auth type unimplemented (#5.5.1)"),
        };
        let checker = if mech == "CRAM-MD5" {
            &checkers.cram
        } else {
            &checkers.login
        };
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let verdict = auth::check(checker, &refs);
        let user = String::from_utf8_lossy(&fields[0]).into_owned();
        let mut fields = fields;
        for f in fields.iter_mut() {
            qmail::secret::wipe(f);
        }
        let kind = mech.to_ascii_lowercase();
        match verdict {
            Verdict::Ok => {
                log(&format!(
                    "[{}]: auth: auth-success type={kind} user=<{user}> ip={}",
                    self.pid, self.remoteip
                ));
                let method: &'static str = match mech.as_str() {
                    "LOGIN" => "login",
                    "PLAIN" => "plain",
                    _ => "cram-md5",
                };
                self.auth_user = Some((user.clone(), method));
                if self.relayclient.is_none() {
                    self.relayclient = Some(String::new());
                }
                // What qmail-queue and its filters see (Hoffmann's names too).
                // SAFETY: single-threaded; no other code reads the environment concurrently.
                unsafe {
                    std::env::set_var("RELAYCLIENT", self.relayclient.as_deref().unwrap_or(""));
                    std::env::set_var("TCPREMOTEINFO", &user);
                    std::env::set_var("SMTPAUTHUSER", &user);
                    std::env::set_var("SMTP_AUTH_USER", &user);
                    std::env::set_var("SMTPAUTHMETHOD", method);
                }
                self.say("235 2.7.0 ok, go ahead (#2.0.0)");
            }
            Verdict::Bad => {
                log(&format!(
                    "[{}]: auth: auth-failed type={kind} user=<{user}> ip={}",
                    self.pid, self.remoteip
                ));
                self.say("535 5.7.8 authentication failed (#5.7.0)");
            }
            Verdict::Temporary => {
                log(&format!(
                    "[{}]: auth: auth-temporary-failure type={kind} user=<{user}> ip={}",
                    self.pid, self.remoteip
                ));
                self.say("454 4.7.0 temporary authentication failure (#4.3.0)");
            }
        }
    }

    /// The client's answer to a 334 prompt (or the initial response), decoded.
    /// `None` means the exchange ended and the reply was sent.
    fn response(&mut self, initial: Option<&str>, prompt: &str) -> Option<Vec<u8>> {
        let line = match initial {
            Some("=") => return Some(Vec::new()),
            Some(i) => i.as_bytes().to_vec(),
            None => {
                self.say(prompt);
                match self.conn.line(MAX_AUTH_LINE) {
                    Ok(Line::Ok(l)) => l,
                    Ok(Line::TooLong) => {
                        self.say("500 5.5.6 authentication exchange line is too long");
                        return None;
                    }
                    Err(e) => self.end(e),
                }
            }
        };
        if line == b"*" {
            self.say("501 5.7.0 auth exchange cancelled (#5.0.0)");
            return None;
        }
        match auth::decode(&line) {
            Some(v) => Some(v),
            None => {
                self.say("501 5.5.2 malformed auth input (#5.5.4)");
                None
            }
        }
    }
}

/// A line on stderr for multilog; never a password.
pub fn log(line: &str) {
    let sep = if line.starts_with('[') { "" } else { ": " };
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("qmail-smtpd{sep}{line}\n").as_bytes());
}
