//! Local delivery: what runs as the recipient.
//!
//! qmail-lspawn (crates/send) becomes the recipient's uid and execs qmail-local, which
//! reads the recipient's `.qmail` file and delivers to Maildirs, mbox files, programs
//! and forwards. The tools that `.qmail` files and admins call live here too.
//!
//! - [`qmail_local`], qmail-local itself.
//! - [`tools`], qmail-newu, qmail-pw2u, preline, forward, condredirect, bouncesaying,
//!   except, maildirmake, maildir2mbox.

pub mod qmail_local;
pub mod tools;
