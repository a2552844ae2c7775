//! What feeds the queue and what inspects it: qmail-queue (setuid qmailq, the only
//! writer of `queue/mess`, `intd`, `todo`), qmail-inject and sendmail (run by any user,
//! they hand a message to qmail-queue through qmail's client), the queue tools
//! qmail-qstat and qmail-qread, and the install-time helpers qmail-mkids and
//! qmail-mkqueue.
//!
//! The one decision a reader must know: qmail-queue's exit 0 is the promise that the
//! message survives a crash, so every fsync of queue.md §4.1 is in its place, plus the
//! directory fsyncs qmail left to the filesystem; see [`qmail_queue`].

pub mod inject;
pub mod mkids;
pub mod mkqueue;
pub mod qmail_queue;
pub mod qread;
pub mod qstat;
pub mod sendmail;
