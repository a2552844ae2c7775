//! Login names as vchkpw reads them (vpopmail's `parse_email` with `ATCHARS "@%/"`):
//! case-insensitive, the domain after the first `@`, else after the first `%`, else
//! after the first `/`.

/// A login, lower-cased, split into its local part and domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// As typed, for the system accounts (their names are case-sensitive).
    pub typed: Vec<u8>,
    pub local: Vec<u8>,
    pub domain: Option<Vec<u8>>,
}

/// A login that no source could hold: empty, control bytes, spaces, `:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

impl Login {
    pub fn parse(typed: &[u8]) -> Result<Login, Invalid> {
        if typed.iter().any(|&b| b <= b' ' || b == 0x7f || b == b':') {
            return Err(Invalid);
        }
        let lower = typed.to_ascii_lowercase();
        let at = [b'@', b'%', b'/']
            .iter()
            .find_map(|s| lower.iter().position(|b| b == s));
        let (local, domain) = match at {
            Some(i) => (lower[..i].to_vec(), Some(lower[i + 1..].to_vec())),
            None => (lower, None),
        };
        if local.is_empty() || domain.as_ref().is_some_and(|d| d.is_empty()) {
            return Err(Invalid);
        }
        Ok(Login {
            typed: typed.to_vec(),
            local,
            domain,
        })
    }

    /// The key in the user database: `local@domain`, or `local`.
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.local.clone();
        if let Some(d) = &self.domain {
            k.push(b'@');
            k.extend_from_slice(d);
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_case() {
        for typed in ["Alice@Example.COM", "alice%example.com", "alice/example.com"] {
            let l = Login::parse(typed.as_bytes()).unwrap();
            assert_eq!(l.key(), b"alice@example.com", "{typed}");
            assert_eq!(l.local, b"alice");
        }
        assert_eq!(Login::parse(b"a%b@c").unwrap().key(), b"a%b@c");
        let plain = Login::parse(b"Bob").unwrap();
        assert_eq!((plain.key(), plain.typed), (b"bob".to_vec(), b"Bob".to_vec()));
        for bad in [&b""[..], b"a b", b"a:b", b"a\tb", b"a\x7f", b"@example.com", b"alice@"] {
            assert_eq!(Login::parse(bad), Err(Invalid), "{bad:?}");
        }
    }
}
