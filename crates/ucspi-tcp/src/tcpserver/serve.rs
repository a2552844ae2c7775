//! The parent: accept while fewer than `-c` children run, fork a child per
//! connection, reap children and log `status`/`end`.
//!
//! SIGCHLD is blocked except while waiting (in ppoll or sigsuspend), so a child's end
//! is never missed and never interrupts anything else. At the limit the parent stops
//! calling accept(); new clients wait in the kernel's backlog, as with 0.88.

use super::child;
use super::log::Log;
use super::options::Options;
use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::net::TcpListener;
use std::os::fd::AsFd;

extern "C" fn on_child(_: libc::c_int) {}

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. Running children are left to finish.
    unsafe { libc::_exit(0) }
}

fn handle(sig: Signal, handler: SigHandler) {
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers only return or call _exit, both async-signal-safe.
    let _ = unsafe { sigaction(sig, &action) };
}

/// Serves forever (SIGTERM ends it).
pub fn run(o: &Options, listener: TcpListener, log: Log) -> ! {
    handle(Signal::SIGPIPE, SigHandler::SigIgn);
    handle(Signal::SIGCHLD, SigHandler::Handler(on_child));
    handle(Signal::SIGTERM, SigHandler::Handler(on_term));
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = chld.thread_block();

    let resolver = dns::Resolver::from_env();
    let mut children: u64 = 0;
    let status = |n: u64| log.info(&format!("status: {n}/{}", o.limit));
    status(children);
    loop {
        while let Ok(w) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            let (pid, raw) = match w {
                WaitStatus::Exited(pid, code) => (pid, code << 8),
                WaitStatus::Signaled(pid, sig, core) => (pid, sig as i32 | if core { 0x80 } else { 0 }),
                _ => break,
            };
            children = children.saturating_sub(1);
            log.info(&format!("end {pid} status {raw}"));
            status(children);
        }
        if children >= o.limit {
            let _ = SigSet::empty().suspend();
            continue;
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, None, Some(SigSet::empty())) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => log.fatal(
                111,
                &format!("unable to wait for connections: {}", qmail::errstr::errno_str(e as i32)),
            ),
        }
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(_) => continue, // the client left before accept; EAGAIN, ECONNABORTED
        };
        children += 1;
        status(children);
        // SAFETY: single-threaded, so the child may do anything the parent could.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let _ = chld.thread_unblock();
                drop(listener);
                child::run(o, conn, peer, &resolver, log)
            }
            Ok(ForkResult::Parent { .. }) => drop(conn),
            Err(e) => {
                log.warning(&format!(
                    "dropping connection, unable to fork: {}",
                    qmail::errstr::errno_str(e as i32)
                ));
                children -= 1;
                status(children);
            }
        }
    }
}
