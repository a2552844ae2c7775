//! rqmail's ucspi-tcp: `tcpserver`, `tcprules` and `tcprulescheck`, drop-in for
//! Debian's ucspi-tcp 0.88 (and its IPv6 patch) in run scripts, rules files, CDBs and
//! log analysers.
//!
//! - [`tcpserver`] accepts TCP connections and runs a program for each, with the
//!   connection on fd 0/1 and the `TCP*` environment; per connection it reads the
//!   rules CDB (so a recompiled CDB takes effect at once) through `qmail::rules`.
//! - [`tcprules`] compiles a rules file ([`rulefile`], [`cidr`]) into a CDB that is
//!   byte-for-byte what Debian's tcprules writes, atomically.
//! - [`tcprulescheck`] says which rule applies to a client.
//!
//! Each per-connection process is single-threaded, static and small: tcpserver and
//! its children run under the seeds' `softlimit -m 2000000`.

pub mod cidr;
pub mod rulefile;
pub mod tcprules;
pub mod tcprulescheck;
pub mod tcpserver;
