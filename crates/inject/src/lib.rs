//! qmail-inject and sendmail: how a local user's message reaches the queue.
//!
//! Any user runs these, with no privilege of their own: MUAs, cron, PHP's `mail()`
//! and scripts call `sendmail` (the Sendmail command line), which execs
//! `qmail-inject` with qmail's options, which completes the header and hands the
//! message to the setuid `qmail-queue` through `qmail::queueclient`. Because they
//! run as the caller, they are a crate apart from qmail-queue: nothing here needs or
//! gets the queue's rights, and a fault here can damage nothing but the caller's own
//! message.
//!
//! The decisions a reader must know:
//!
//! - [`qmail_inject`] does what qmail-inject(8) and qmail-header(5) say: the header is
//!   read whole, its addresses are rewritten ([`rewrite`], with [`rfc822`]'s
//!   tokenizer), and missing Date, Message-ID and From fields are added; the body is
//!   streamed. It rewrites only the addresses inside a field and keeps the rest as
//!   written, where qmail re-folded the whole field.
//! - [`sendmail`] only plans: it turns the Sendmail command line into an exec of
//!   qmail-inject (or qmail-qread for `-bp`/`mailq`, qmail-smtpd for `-bs`), with the
//!   environment qmail's sendmail sets, and the program execs it. Options that only
//!   tune Sendmail's own delivery are accepted and ignored.
//! - Every failure is temporary (exit 111) or permanent (exit 100) and says so in its
//!   type, `qmail::exit::Failure`; an address holding NUL never reaches the envelope.

pub mod qmail_inject;
pub mod rewrite;
pub mod rfc822;
pub mod sendmail;
