//! qmail-queue: the one program that writes a message into the queue.
//!
//! Every program that queues mail (qmail-smtpd, qmail-inject, sendmail through
//! qmail-inject, qmail-send for bounces later) execs `bin/qmail-queue` with the message
//! on fd 0 and the envelope on fd 1, as qmail-queue(8) says. It is installed setuid
//! qmailq, the only user that may write `queue/pid`, `mess`, `intd` and `todo`, so it
//! is a crate of its own: nothing else here runs with its rights, and nothing else
//! links into it but the shared core.
//!
//! The decisions a reader must know:
//!
//! - Exit 0 is the promise that the message survives a crash. The message and the
//!   envelope are fsynced, and so are the `mess/N` and `todo/` directories that hold
//!   their names (qmail relied on synchronous directory updates, which ext4 and xfs do
//!   not give by default). Linking `intd/N` into `todo/N` is the commit: before it, a
//!   failure removes every file made and a kill leaves only files qmail-send never
//!   looks at; after it, nothing is removed. See [`qmail_queue`].
//! - The exit codes are qmail-queue(8)'s table (11 address too long, 5x resources,
//!   6x files, 81 bug, 91 envelope format), and each fault maps to exactly one of them;
//!   the callers turn them into SMTP replies and exit codes through
//!   `qmail::queueclient`.
//! - It starts from a clean signal state and arms qmail's 24-hour death alarm, so a
//!   caller can neither switch the alarm off nor kill it with a file-size limit.
//! - It reads the ids of qmail's users from `control/ids` (for the `invoked from
//!   network` / `for bounce` / `by alias` words of its Received line), never from NSS.

pub mod qmail_queue;
