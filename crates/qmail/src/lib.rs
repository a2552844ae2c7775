//! The shared core of rqmail: only what two or more programs need.
//!
//! rqmail is qmail's design in Rust: many tiny programs, each under its own user,
//! connected by pipes, descriptors and environment variables. This crate holds the
//! pieces those programs have in common, each small and used everywhere the same way:
//!
//! - [`io`]: a connection's lines and bytes with a deadline on every read and write;
//!   [`ucspitls`]: the application's side of a UCSPI-TLS engine (STARTTLS, STLS).
//! - [`getopt`]: classic POSIX option parsing with getopt's exact messages, because
//!   run scripts and their error logs depend on them.
//! - [`errstr`]: djb's short errno texts (`file does not exist`), which qmail's log
//!   lines and admins' log analysers expect instead of `strerror`'s.
//! - [`exit`]: the two kinds of failure, temporary (111) and permanent (100).
//! - [`env`]: an explicit environment for a child, and `execvp` with it; [`fd`]: poll
//!   with a deadline, pipes, a child's fixed descriptors.
//! - [`privs`]: dropping root (setgroups, setgid, setuid, then checking it stuck).
//! - [`cdb`]: constant databases read by pread, where damage is an error, never a match;
//!   [`checkpw`]: the descriptor-3 record of the checkpassword interface.
//! - [`rules`]: the ucspi-tcp rules CDB matcher that tcpserver and tcprulescheck use.
//! - [`passwd`]: /etc/passwd, shadow and group as files; [`rlimit`]: raising the soft
//!   memory limits for one step.
//! - [`home`], [`ids`], [`control`]: where an instance lives, its users' ids, its
//!   one-setting-per-file configuration.
//! - [`queuedir`], [`queueclient`]: the queue's file names, and the client side of
//!   qmail-queue that every program queueing mail uses.
//! - [`date822`]: qmail's UTC dates; [`secret`]: wiping password buffers; [`log`]:
//!   log fields that no outside byte can end; [`signals`]: the signal state a setuid
//!   program starts from.
//!
//! Design decisions a reader must know: every program is single-threaded and does
//! blocking IO, and must fit the seeds' `softlimit -m 2000000`, so nothing here keeps
//! large buffers or maps large files for longer than one lookup.

pub mod cdb;
pub mod checkpw;
pub mod control;
pub mod date822;
pub mod dotqmail;
pub mod env;
pub mod errstr;
pub mod exit;
pub mod fd;
pub mod getopt;
pub mod home;
pub mod ids;
pub mod io;
pub mod log;
pub mod passwd;
pub mod privs;
pub mod queueclient;
pub mod queuedir;
pub mod quote;
pub mod rewrite;
pub mod rlimit;
pub mod rules;
pub mod secret;
pub mod signals;
pub mod ucspitls;
pub mod userlookup;
