//! qmail-send: the scheduler (qmail-send(8)). It runs as qmails in
//! `QMAILHOME/queue` with the descriptors qmail-start gives it: 0 the log (it
//! writes its lines there), 1/2 commands to and reports from qmail-lspawn, 3/4
//! the same for qmail-rspawn, 5/6 requests to and answers from qmail-clean.
//!
//! It preprocesses `todo/` ([`todo`]: info, local and remote files; locals,
//! virtualdomains, percenthack by [`config`]'s rewrite rules), hands each
//! recipient to a spawn, one delivery per recipient, within concurrencylocal and
//! concurrencyremote ([`daemon`]), retries deferrals by qmail's schedule
//! ([`sched`]) until queuelifetime, collects permanent failures into one QSBMF
//! bounce per message ([`bounce`]), and has qmail-clean remove what is finished
//! ([`proto`] for every pipe). Its log lines ([`logfmt`]) are qmail's byte for
//! byte, for qmailanalog and friends. SIGALRM makes every waiting retry due now,
//! SIGHUP rereads locals and virtualdomains, SIGTERM stops new work, waits for
//! every delivery in flight, saves each retry time in its file's mtime and exits 0.
//! The queue layout is notqmail's, so a queue that notqmail left is delivered.
//!
//! One process, one thread, one poll loop; no async runtime.
//!
//! # No silly qmail syndrome
//!
//! qmail's qmail-send starves deliveries during a burst into `todo/` because of
//! two limits in its loop: each turn it starts at most **one** delivery per
//! channel (it keeps at most one unwritten command per spawn), and each turn it
//! also preprocesses one todo entry, which costs several fsyncs. So while todo/ is
//! full the delivery start rate is tied to the fsync rate of preprocessing, and the
//! queue's existing mail crawls. The ext-todo patch moved preprocessing into a
//! separate qmail-todo process; that needs a qmail-start that is not qmail's, a
//! second qmail-clean and a protocol between the two, and a queue that a stock
//! qmail-start cannot run.
//!
//! rqmail keeps qmail-start's process tree and removes both limits instead:
//!
//! - Deliveries are **serviced between every two todo entries**: pending commands
//!   are written, every report that has arrived is read, and every free slot of
//!   both channels is filled (as many deliveries as the slots allow, not one per
//!   turn; commands are buffered per spawn and written without blocking). That
//!   goes on while a batch is written and between its messages' fsyncs, so a
//!   delivery never waits longer than one message's writes, one file's fsync or
//!   the batch's directory fsyncs (which come after its journal commit and are
//!   cheap), however long `todo/` is, and the delivery rate is set by the
//!   concurrency limits and the spawns, not by the todo rate.
//! - Preprocessing **group-commits** ([`todo`]): a loop turn writes at most
//!   [`daemon::BATCH`] todo entries (or for at most [`daemon::BATCH_WRITE_TIME`]),
//!   makes their files and directory entries durable together (one journal
//!   commit for the batch instead of about four per message), then has qmail-clean
//!   remove them in one round trip, and goes back to poll, so signals, the
//!   trigger and the timers are seen within one batch as well, and a new message
//!   waits at most one batch for its first delivery.
//! - A newly preprocessed message is due at once and ordered by due time with the
//!   retries that are due, so a burst neither jumps ahead of due retries nor
//!   keeps them waiting for the rest of the burst.
//!
//! That suffices because what preprocessing costs is waiting for the disk, which a
//! second process would wait for just the same; what qmail lost was the ability
//! to use its free delivery slots meanwhile, and that is what the interleaving
//! gives back.

pub mod bounce;
pub mod config;
pub mod daemon;
pub mod logfmt;
pub mod proto;
pub mod sched;
mod sys;
mod todo;

/// qmail-send's whole run: start-up checks, the loop, the exit code.
pub fn main() -> i32 {
    qmail::signals::sanitize();
    let home = qmail::home::home();
    daemon::run(&home)
}
