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

    #[test]
    fn raises_for_the_call_and_restores() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_DATA).unwrap();
        let inside = with_more_memory(1 << 20, || Ok(getrlimit(Resource::RLIMIT_DATA).unwrap().0)).unwrap();
        if soft != RLIM_INFINITY && hard == RLIM_INFINITY {
            assert_eq!(inside, soft + (1 << 20) + (1 << 16));
        }
        assert_eq!(getrlimit(Resource::RLIMIT_DATA).unwrap(), (soft, hard));
    }
}
