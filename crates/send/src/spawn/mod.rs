//! qmail-start, qmail-lspawn, qmail-rspawn, qmail-clean: qmail-send's process tree
//! and the helpers at the other end of its pipes (qmail-start(8), qmail-lspawn(8),
//! qmail-rspawn(8), qmail-clean(8), qmail's INTERNALS).
//!
//! - [`start`]: qmail-start builds the tree as root, one pipe pair per helper, each
//!   program under its own uid from `control/ids`, and becomes qmail-send.
//! - [`spawner`]: what the two spawns share: the slot-byte handshake, the delivery
//!   commands (`slot messid\0sender\0recipient\0`) and the reports
//!   (`slot letter text\0`), one child per delivery, up to 120 at once.
//! - [`lspawn`]: qmail-lspawn, root, finds the user of a local address
//!   ([`qmail::userlookup`]) and runs qmail-local as that user.
//! - [`rspawn`]: qmail-rspawn, qmailr, runs qmail-remote.
//! - [`clean`]: qmail-clean, qmailq, removes what qmail-send may not.
//!
//! Every one of them is single-threaded and waits in poll (or a blocking read), with
//! no async runtime; a delivery child is a plain fork, which is safe because there
//! is only one thread. The wire formats are qmail's byte for byte, so any of these
//! programs works with notqmail's qmail-send and the reverse.

pub mod clean;
pub mod lspawn;
pub mod rspawn;
pub mod spawner;
pub mod start;
