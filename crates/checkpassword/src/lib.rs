//! The checkpassword verifier and its user database.
//!
//! One program, `checkpassword`, is a drop-in for DJB's checkpassword 0.90 and, when
//! installed under those names, for vpopmail's `vchkpw` and for `cmd5checkpw`
//! (the interface: <https://cr.yp.to/checkpwd/interface.html>; vchkpw: vpopmail's
//! `vchkpw.c`; cmd5checkpw(8)). qmail-popup, qmail-smtpd's AUTH and Dovecot
//! all call it the same way: the login and password (or a challenge response) on
//! descriptor 3, the program to run on success as arguments.
//!
//! - [`input`]: descriptor 3, at most 512 bytes, wiped after use.
//! - [`login`]: `user@domain`, `user%domain`, `user/domain`, case-insensitive.
//! - [`sources`]: rqmail's database, then system accounts (`control/checkpwsources`).
//! - [`userdb`]: the database, a CDB managed by `checkpassword-users` ([`users`]).
//! - [`hash`]: crypt hashes by well-kept crates; yescrypt's 16 MiB under a 2 MB limit.
//! - [`challenge`]: CRAM-MD5 in both callers' field orders, and APOP.
//! - [`trust`]: who may use a setuid run, and who may give challenge proofs.
//! - [`verify`]: the run itself, and what each caller expects after success.
//!
//! Design decisions a reader must know: the program often runs setuid root (the seeds
//! install vchkpw so), so no path comes from the environment of a setuid run, only
//! the callers that need the privilege get it (root, the qmail users, a group the
//! admin names; everyone else is refused before anything is looked up), a run that
//! does not become the user gives the privilege back before exec, and no password
//! reaches a log line. Exit codes are the interface's own: 1 is "no", 111 is
//! "try again", and vchkpw's codes under that name.

pub mod challenge;
pub mod hash;
pub mod input;
pub mod login;
pub mod sources;
pub mod trust;
pub mod userdb;
pub mod users;
pub mod verify;
