//! The delivery side of the queue: the programs that run as, or for, qmail-send.
//!
//! qmail-send, qmail-clean, qmail-lspawn and qmail-rspawn will live here; today the
//! crate holds what reads the queue and what builds it:
//!
//! - [`qstat`] (qmail-qstat) and [`qread`] (qmail-qread) count and list the queue.
//!   They read `mess/`, `info/`, `local/`, `remote/` and `todo/`, which only the qmail
//!   users and group may read: qmail-qread is installed setuid qmails and executable
//!   by group qmail only, as Sendmail's restrictmailq keeps `mailq` from other users.
//! - [`mkids`] (qmail-mkids) and [`mkqueue`] (qmail-mkqueue) run as root at install
//!   time (or as the one user of a `make run` instance): the first resolves qmail's
//!   users and groups once into `control/ids`, the second creates, repairs or checks
//!   the queue's tree with qmail's owners and modes from those ids.
//!
//! The decisions a reader must know:
//!
//! - The ids of qmail's users are resolved once, at install time, from passwd and group
//!   files parsed directly (no NSS in a static binary); every other program reads
//!   `control/ids` and does no user lookups, and tests use numeric ids that exist in
//!   no system file.
//! - The queue's layout is notqmail's: `mess/`, `info/`, `local/`, `remote/` split 23
//!   ways, flat `intd/` and `todo/`, the message number is the inode number of its
//!   `mess/` file. A big-todo tree is refused, not silently left undelivered, and the
//!   listing shows messages still in `todo/`, so a stopped qmail-send hides nothing.

pub mod mkids;
pub mod mkqueue;
pub mod qmail_send;
pub mod qread;
pub mod qstat;
pub mod spawn;
