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

/// True when the hard limits leave room for `extra` more bytes: a step that would
/// otherwise meet an allocation failure (which aborts) asks first.
pub fn has_room(extra: u64) -> bool {
    MEMORY.iter().all(|&r| match getrlimit(r) {
        Ok((soft, hard)) => soft == RLIM_INFINITY || soft.saturating_add(extra).saturating_add(SLACK) <= hard,
        Err(_) => false,
    })
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
    fn raises_for_the_call_and_restores() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_DATA).unwrap();
        let inside = with_more_memory(1 << 20, || Ok(getrlimit(Resource::RLIMIT_DATA).unwrap().0)).unwrap();
        if soft != RLIM_INFINITY && hard == RLIM_INFINITY {
            assert_eq!(inside, soft + (1 << 20) + (1 << 16));
        }
        assert_eq!(getrlimit(Resource::RLIMIT_DATA).unwrap(), (soft, hard));
    }
}
