//! The delivery side of the queue: the programs that run as, or for, qmail-send.
//!
//! - [`qmail_send`] (qmail-send, as qmails): todo preprocessing, the local/remote
//!   channels, retries, bounces and the log; it interleaves preprocessing with
//!   deliveries so a burst into `todo/` never starves them (its module doc says how).
//! - [`spawn`]: qmail-start (root: sets up the tree below, each daemon under its own
//!   user from `control/ids`, then execs qmail-send), qmail-lspawn (root: finds the
//!   user, becomes it, runs qmail-local), qmail-rspawn (qmailr: qmail-remote) and
//!   qmail-clean (qmailq: removes finished messages).
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
//!   `control/ids` and does no user lookups for them, and tests use numeric ids that
//!   exist in no system file. Recipients are looked up by qmail-lspawn alone
//!   (`qmail::userlookup`: users/cdb, then the passwd file).
//! - The queue's layout is notqmail's: `mess/`, `info/`, `local/`, `remote/` split 23
//!   ways, flat `intd/` and `todo/`, the message number is the inode number of its
//!   `mess/` file. A big-todo tree is refused, not silently left undelivered, and the
//!   listing shows messages still in `todo/`, so a stopped qmail-send hides nothing.
//! - The processes talk over qmail's own pipe protocols (qmail-start(8),
//!   qmail-send(8), qmail's INTERNALS), so qmail's pieces and ours interchange.

pub mod mkids;
pub mod mkqueue;
pub mod qmail_send;
pub mod qread;
pub mod qstat;
pub mod spawn;
