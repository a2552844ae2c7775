//! qmail-smtpd: qmail's SMTP server, never an open relay, with SMTP AUTH through a
//! checkpassword program and STARTTLS through a UCSPI-TLS engine.
//!
//! It runs under tcpserver as qmaild, one process per connection, and hands each
//! message to qmail-queue (or `$QMAILQUEUE`). The dialogue, replies and control files
//! are qmail-smtpd's (qmail-smtpd(8), RFC 4954 for AUTH); what rqmail adds:
//!
//! - a missing control/rcpthosts refuses every recipient that does not relay (qmail
//!   accepted them all);
//! - SIZE, ENHANCEDSTATUSCODES, limits on line length, recipients, header size and
//!   idle commands, each with its reply;
//! - AUTH (LOGIN, PLAIN, CRAM-MD5) with the argument forms of every patch family, 454
//!   when the verifier fails rather than 235 or 535; `SMTPAUTH=!` requires it
//!   (submission), `SMTPAUTH=-` turns it off;
//! - STARTTLS when `SSLCTLFD` is set (ucspi-tlsd, s6-ucspitlsd, sslserver -n),
//!   `UCSPITLS=!` to require it; implicit TLS when `SSL_PROTOCOL` is set; PLAIN and
//!   LOGIN only under TLS where TLS is on offer, unless `SMTPAUTHCLEAR` is set;
//! - with `control/rcptcheck`, unknown local recipients refused at RCPT (550), by
//!   the lookup delivery itself does ([`rcptcheck`]): no backscatter;
//! - log lines on stderr: accepted messages, refused recipients, AUTH results.
//!
//! Modules: [`origin`] (what tcpserver and the rules said), [`control`] (settings),
//! [`addr`] (addresses and ESMTP parameters), [`auth`] (checkers and their run),
//! [`data`] (the message and the Received line), [`smtp`] (the dialogue). The
//! connection is `qmail::io::Conn`, shared with the other protocol programs.

pub mod addr;
pub mod auth;
pub mod control;
pub mod data;
#[cfg(test)]
mod dialogue_tests;
pub mod origin;
pub mod rcptcheck;
pub mod smtp;

/// The whole program: chdir to QMAILHOME, read the settings, serve the session.
pub fn main(args: Vec<std::ffi::OsString>) -> ! {
    // SAFETY: setting a signal disposition before anything else runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // A panic's message may quote the data it failed on (an AUTH line, a password):
    // the log gets where it happened, never what.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        qmail::log::line(&format!("qmail-smtpd: internal error{at}"));
    }));
    let home = qmail::home::home();
    let fail = || -> ! {
        let _ = std::io::Write::write_all(
            &mut std::io::stdout(),
            b"421 4.3.0 unable to read controls (#4.3.0)\r\n",
        );
        std::process::exit(1)
    };
    if std::env::set_current_dir(&home).is_err() {
        fail()
    }
    let settings = control::Settings::load(&home).unwrap_or_else(|_| fail());
    let origin = origin::Origin::from_env();
    let checkers = auth::checkers(&args).unwrap_or_else(|e| {
        smtp::log(&format!("warning: AUTH not offered: {e}"));
        None
    });
    let conn = qmail::io::Conn::new(0, 1, std::time::Duration::from_secs(settings.timeout));
    std::process::exit(smtp::Session::new(home, settings, origin, checkers, conn).run())
}
