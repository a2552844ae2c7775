//! Room to breathe under `softlimit -m`.
//!
//! The seeds run every connection program under `softlimit -m 2000000`, which sets soft
//! limits only. A program that knows it needs more for one step (mapping a large CDB,
//! a yescrypt key derivation) raises its own soft limits by that much, never past the
//! hard limits, and puts them back before anything else runs, so the program it execs
//! gets exactly the room the admin gave.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use std::io;

/// The limits `softlimit -m` sets that a mapping or an allocation counts against.
const MEMORY: [Resource; 2] = [Resource::RLIMIT_AS, Resource::RLIMIT_DATA];

/// Runs `f` with the soft RLIMIT_AS and RLIMIT_DATA raised by `extra` bytes (plus a
/// little slack), never past the hard limits.
pub fn with_more_memory<T>(extra: u64, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let extra = extra.saturating_add(SLACK);
    let mut saved = Vec::with_capacity(MEMORY.len());
    for r in MEMORY {
        let (soft, hard) = getrlimit(r).map_err(io::Error::from)?;
        if soft == RLIM_INFINITY {
            continue;
        }
        if let Err(e) = setrlimit(r, soft.saturating_add(extra).min(hard), hard) {
            restore(&saved);
            return Err(e.into());
        }
        saved.push((r, soft, hard));
    }
    let result = f();
    restore(&saved);
    result
}

/// True when `bytes` more can be allocated now: a step that would otherwise meet an
/// allocation failure (which aborts) asks first, by mapping and unmapping that much.
pub fn can_allocate(bytes: usize) -> bool {
    // SAFETY: an anonymous private mapping of fresh pages, unmapped at once.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(p, bytes);
    }
    true
}

const SLACK: u64 = 1 << 16;

fn restore(saved: &[(Resource, u64, u64)]) {
    for &(r, soft, hard) in saved {
        // Lowering a soft limit cannot fail.
        let _ = setrlimit(r, soft, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_probe() {
        assert!(can_allocate(1 << 20));
        assert!(!can_allocate(usize::MAX >> 1));
    }

    /// Set in the child that `raises_for_the_call_and_restores` starts.
    const CHILD: &str = "RQMAIL_RLIMIT_TEST_CHILD";

    /// The default limits are infinite, which `with_more_memory` leaves alone, so the
    /// check runs in a fresh copy of this test binary whose limits it may lower for good:
    /// cargo runs the other tests on threads of this process.
    #[test]
    fn raises_for_the_call_and_restores() {
        if std::env::var_os(CHILD).is_some() {
            return raise_and_restore_under_finite_limits();
        }
        let name = "rlimit::tests::raises_for_the_call_and_restores";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "child run:\n{text}");
    }

    fn raise_and_restore_under_finite_limits() {
        const MIB: u64 = 1 << 20;
        // Far above what this process uses, so lowering them breaks nothing here.
        let data = 1 << 34;
        let addr = 1 << 40;
        let (_, hard_data) = getrlimit(Resource::RLIMIT_DATA).unwrap();
        let (_, hard_addr) = getrlimit(Resource::RLIMIT_AS).unwrap();
        setrlimit(Resource::RLIMIT_DATA, data, hard_data).unwrap();
        setrlimit(Resource::RLIMIT_AS, addr, hard_addr).unwrap();
        let get = |r| getrlimit(r).unwrap();

        let inside = with_more_memory(MIB, || Ok((get(Resource::RLIMIT_DATA), get(Resource::RLIMIT_AS)))).unwrap();
        assert_eq!(inside.0, ((data + MIB + SLACK).min(hard_data), hard_data));
        assert_eq!(inside.1, ((addr + MIB + SLACK).min(hard_addr), hard_addr));
        assert_eq!(get(Resource::RLIMIT_DATA), (data, hard_data));
        assert_eq!(get(Resource::RLIMIT_AS), (addr, hard_addr));

        // Restored on an error from `f` too.
        let err = with_more_memory(MIB, || -> io::Result<()> {
            assert_eq!(get(Resource::RLIMIT_DATA).0, data + MIB + SLACK);
            Err(io::ErrorKind::Other.into())
        });
        assert!(err.is_err());
        assert_eq!(get(Resource::RLIMIT_DATA), (data, hard_data));

        // Never past the hard limit (lowering it cannot be undone: this child only).
        let hard = data + 4096;
        setrlimit(Resource::RLIMIT_DATA, data, hard).unwrap();
        let inside = with_more_memory(MIB, || Ok(get(Resource::RLIMIT_DATA))).unwrap();
        assert_eq!(inside, (hard, hard));
        assert_eq!(get(Resource::RLIMIT_DATA), (data, hard));
    }
}
