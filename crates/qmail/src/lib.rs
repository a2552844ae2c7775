//! The shared core of rqmail: only what two or more programs need.
//!
//! rqmail is qmail's design in Rust: many tiny programs, each under its own user,
//! connected by pipes, descriptors and environment variables. This crate holds the
//! pieces those programs have in common, each small and used everywhere the same way:
//!
//! - [`getopt`]: classic POSIX option parsing with getopt's exact messages, because
//!   run scripts and their error logs depend on them.
//! - [`errstr`]: djb's short errno texts (`file does not exist`), which qmail's log
//!   lines and admins' log analysers expect instead of `strerror`'s.
//! - [`exit`]: the two kinds of failure, temporary (111) and permanent (100).
//! - [`env`]: an explicit environment for a child, and `execvp` with it.
//! - [`privs`]: dropping root (setgroups, setgid, setuid, then checking it stuck).
//! - [`rules`]: the ucspi-tcp rules CDB matcher that tcpserver and tcprulescheck use.
//!
//! Design decisions a reader must know: every program is single-threaded and does
//! blocking IO, and must fit the seeds' `softlimit -m 2000000`, so nothing here keeps
//! large buffers or maps large files for longer than one lookup.

pub mod env;
pub mod errstr;
pub mod exit;
pub mod getopt;
pub mod privs;
pub mod rules;
