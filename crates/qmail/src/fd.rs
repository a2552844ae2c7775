//! Descriptors, the way every program here uses them: waiting with a deadline (a
//! signal is no reason to give up early), close-on-exec pipes, and handing a child its
//! fixed descriptors (qmail-queue's 0, 1 and 6, checkpassword's 3).

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Instant;

/// Waits until one of `fds` (descriptor, events) is ready or `deadline` passes, and
/// returns the revents in the same order: all zero when the deadline passed. A
/// negative descriptor is ignored, as poll(2) does. EINTR is retried.
pub fn poll(fds: &[(RawFd, i16)], deadline: Option<Instant>) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 })
        .collect();
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
        };
        // SAFETY: p is a valid array of p.len() pollfd structures.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            return Ok(p.iter().map(|x| x.revents).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// True when `fd` is ready for `events` (or has an error or hang-up to report) before
/// `deadline`; false when the deadline passed first.
pub fn wait(fd: RawFd, events: i16, deadline: Instant) -> io::Result<bool> {
    Ok(poll(&[(fd, events)], Some(deadline))?[0] != 0)
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Makes `fd` the descriptor `target` of this process and of the programs it execs
/// (dup2, or clearing close-on-exec when it already is `target`). Async-signal-safe,
/// so it may run between fork and exec.
pub fn place(fd: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: fcntl and dup2 on descriptors; neither touches memory.
    let r = unsafe {
        if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Starts `cmd` with each (descriptor, target) of `fds` placed at its target in the
/// child. The caller keeps its own descriptors and closes them when it likes.
pub fn spawn(cmd: &mut Command, fds: &[(RawFd, RawFd)]) -> io::Result<Child> {
    let fds = fds.to_vec();
    // SAFETY: only dup2 and fcntl between fork and exec, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &(fd, target) in &fds {
                place(fd, target)?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn wait_pipe_and_spawn_with_fixed_descriptors() {
        let (r, w) = pipe().unwrap();
        let soon = || Instant::now() + Duration::from_millis(50);
        assert!(!wait(r.as_raw_fd(), libc::POLLIN, soon()).unwrap());
        let (mut r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
        w.write_all(b"x").unwrap();
        assert!(wait(r.as_raw_fd(), libc::POLLIN, soon()).unwrap());
        let mut b = [0];
        r.read_exact(&mut b).unwrap();
        // The child reads its descriptor 3 and says what it found on descriptor 6.
        let (r3, w3) = pipe().unwrap();
        let (r6, w6) = pipe().unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "cat <&3 >&6"]);
        let mut child = spawn(&mut cmd, &[(r3.as_raw_fd(), 3), (w6.as_raw_fd(), 6)]).unwrap();
        drop((r3, w6));
        std::fs::File::from(w3).write_all(b"fd three").unwrap();
        let mut out = String::new();
        std::fs::File::from(r6).read_to_string(&mut out).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "fd three");
    }
}
