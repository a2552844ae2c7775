//! Password hashes in crypt(3)'s formats, by well-kept crates (no hand-written crypto):
//! yescrypt `$y$` (what Debian writes today), sha512-crypt `$6$`, sha256-crypt `$5$`
//! and md5-crypt `$1$`.
//!
//! yescrypt needs memory by design: Debian's `$y$j9T$` takes 16 MiB, eight times what
//! the seeds' `softlimit -m 2000000` allows. The parameters in the hash say exactly how
//! much, so the soft limits are raised by that amount for the key derivation only
//! (qmail::rlimit), up to [`YESCRYPT_MAX`]; a hash that wants more, or a hard limit
//! that leaves no room, is a temporary failure, never a crash and never a match.

use std::str::FromStr;

/// The most memory a yescrypt hash may ask for.
pub const YESCRYPT_MAX: u64 = 256 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Match,
    NoMatch,
    /// Empty, or starting with `!` or `*`: no password can log in.
    Locked,
    /// A scheme this program does not verify (DES, bcrypt...).
    Unsupported,
    /// Could not be checked now (memory); the text says why, without the password.
    Temporary(String),
}

/// Checks `password` against the stored `hash`.
pub fn verify(password: &[u8], hash: &[u8]) -> Check {
    let Ok(hash) = std::str::from_utf8(hash) else {
        return Check::Unsupported;
    };
    if hash.is_empty() || hash.starts_with('!') || hash.starts_with('*') {
        return Check::Locked;
    }
    let matched = if hash.starts_with("$y$") {
        return yescrypt(password, hash);
    } else if hash.starts_with("$6$") || hash.starts_with("$5$") {
        use sha_crypt::PasswordVerifier;
        match sha_crypt::PasswordHashRef::new(hash) {
            Ok(h) => sha_crypt::ShaCrypt::default().verify_password(password, h).is_ok(),
            Err(_) => return Check::Unsupported,
        }
    } else if let Some(rest) = hash.strip_prefix("$1$") {
        let salt = rest.split('$').next().unwrap_or("");
        crate::challenge::same(&md5crypt::md5crypt(password, salt.as_bytes()), hash.as_bytes())
    } else {
        return Check::Unsupported;
    };
    if matched {
        Check::Match
    } else {
        Check::NoMatch
    }
}

fn yescrypt(password: &[u8], hash: &str) -> Check {
    use yescrypt::{PasswordHashRef, PasswordVerifier, Yescrypt};
    let params = hash.split('$').nth(2).and_then(|p| yescrypt::Params::from_str(p).ok());
    let (Some(params), Ok(h)) = (params, PasswordHashRef::new(hash)) else {
        return Check::Unsupported;
    };
    // The V array is 128·r·N bytes per lane; the rest (pwxform S-boxes, the pre-hash at
    // N/64) fits in the slack below.
    let need = 128u64
        .saturating_mul(u64::from(params.r()))
        .saturating_mul(params.n())
        .saturating_mul(u64::from(params.p()));
    if need > YESCRYPT_MAX {
        return Check::Temporary(format!("yescrypt hash needs {} MiB, more than allowed", need >> 20));
    }
    let need = need + (1 << 20);
    let verified = qmail::rlimit::with_more_memory(need, || {
        if !qmail::rlimit::can_allocate(need as usize) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(Yescrypt::default().verify_password(password, h).is_ok())
    });
    match verified {
        Ok(true) => Check::Match,
        Ok(false) => Check::NoMatch,
        Err(e) => Check::Temporary(format!(
            "no memory for yescrypt ({} MiB): {}",
            need >> 20,
            qmail::errstr::io_str(&e)
        )),
    }
}

/// The schemes `checkpassword-users` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sha512,
    Yescrypt,
}

/// A new hash of `password` with a random salt. sha512-crypt gets 12 random bytes, the
/// 16 salt characters that crypt(3) reads (a longer salt would be cut there by libc
/// and the hash would not verify elsewhere).
pub fn make(password: &[u8], scheme: Scheme) -> Result<String, String> {
    let mut salt = [0u8; 16];
    // SAFETY: getrandom writes at most `salt.len()` bytes into `salt`.
    let got = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    if got != salt.len() as isize {
        return Err("unable to get random bytes for a salt".into());
    }
    match scheme {
        Scheme::Sha512 => {
            use sha_crypt::PasswordHasher;
            sha_crypt::ShaCrypt::default()
                .hash_password_with_salt(password, &salt[..12])
                .map(|h| h.to_string())
        }
        Scheme::Yescrypt => {
            use yescrypt::PasswordHasher;
            yescrypt::Yescrypt::default()
                .hash_password_with_salt(password, &salt)
                .map(|h| h.to_string())
        }
    }
    .map_err(|e| format!("unable to hash: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by Debian's libxcrypt (python3 crypt.crypt), password "secret".
    const Y: &str = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0";
    const S6: &str =
        "$6$viDHPOS1BFhKofEo$NY34Pu175KGRy7UsFE3Zdz2a.7b1rzC7oBJedB5wcsE6bm02BfdgFIbExzp3H3IP9YbHjyQUjnaXaOxRYqvyj.";
    const S5: &str = "$5$JalhC4.tBAWEJGvA$.Sd9Fp01sOtqPzLgq.5tastMTpJW9Uw4ogQcn7wEmS0";
    const M1: &str = "$1$y9QwT7ux$WdlPZGxvPRIS3cr2GZna4.";

    #[test]
    fn debian_hashes() {
        for h in [Y, S6, S5, M1] {
            assert_eq!(verify(b"secret", h.as_bytes()), Check::Match, "{h}");
            assert_eq!(verify(b"Secret", h.as_bytes()), Check::NoMatch, "{h}");
            assert_eq!(verify(b"", h.as_bytes()), Check::NoMatch, "{h}");
        }
    }

    #[test]
    fn locked_and_unknown() {
        for h in ["", "!", "*", "!$6$x$y", "!!"] {
            assert_eq!(verify(b"secret", h.as_bytes()), Check::Locked, "{h}");
        }
        for h in [
            "abJnggxhB/yWI",
            "$2b$05$abcdefghijklmnopqrstuu",
            "$6$",
            "$y$zzz$a$b",
            "\u{ff}",
        ] {
            assert_eq!(verify(b"secret", h.as_bytes()), Check::Unsupported, "{h}");
        }
    }

    #[test]
    fn made_hashes_verify() {
        for s in [Scheme::Sha512, Scheme::Yescrypt] {
            let h = make(b"p@ss word", s).unwrap();
            assert_eq!(verify(b"p@ss word", h.as_bytes()), Check::Match);
            assert_eq!(verify(b"p@ss", h.as_bytes()), Check::NoMatch);
        }
    }

    #[test]
    fn greedy_yescrypt_is_temporary() {
        // N = 2^30, r = 32: 4 TiB.
        let h = "$y$jRT$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0";
        assert!(
            matches!(verify(b"secret", h.as_bytes()), Check::Temporary(_)),
            "{:?}",
            verify(b"secret", h.as_bytes())
        );
    }
}
