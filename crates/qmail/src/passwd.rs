//! /etc/passwd, /etc/shadow and /etc/group, read as files (ARCHITECTURE rule 2: no
//! NSS in a static binary). One line per account, fields separated by `:`.

/// The fields of the first line of `text` whose first field is `name`.
pub fn find_line<'a>(text: &'a [u8], name: &[u8]) -> Option<Vec<&'a [u8]>> {
    text.split(|&b| b == b'\n')
        .map(|line| line.split(|&b| b == b':').collect::<Vec<_>>())
        .find(|f| f.len() > 1 && f[0] == name)
}

fn number(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// One passwd(5) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: Vec<u8>,
    /// The password field: a crypt hash, or `x` when the hash is in shadow.
    pub passwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub dir: Vec<u8>,
    pub shell: Vec<u8>,
}

impl Passwd {
    /// The entry for `name`; `None` when it is missing or malformed.
    pub fn find(text: &[u8], name: &[u8]) -> Option<Passwd> {
        let f = find_line(text, name)?;
        if f.len() != 7 {
            return None;
        }
        Some(Passwd {
            name: f[0].to_vec(),
            passwd: f[1].to_vec(),
            uid: number(f[2])?,
            gid: number(f[3])?,
            dir: f[5].to_vec(),
            shell: f[6].to_vec(),
        })
    }
}

/// The parts of a shadow(5) entry that decide whether a password may log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadow {
    pub hash: Vec<u8>,
    /// Field 8: the day (since 1970-01-01) the account expires, if set.
    pub expires: Option<u64>,
}

impl Shadow {
    pub fn find(text: &[u8], name: &[u8]) -> Option<Shadow> {
        let f = find_line(text, name)?;
        Some(Shadow {
            hash: f[1].to_vec(),
            expires: f.get(7).and_then(|e| std::str::from_utf8(e).ok()?.parse().ok()),
        })
    }

    /// True when the account has expired by `today` (days since 1970-01-01).
    pub fn expired(&self, today: u64) -> bool {
        self.expires.is_some_and(|day| day <= today)
    }
}

/// The gid of group `name` in group(5) text.
pub fn group_gid(text: &[u8], name: &[u8]) -> Option<u32> {
    number(find_line(text, name)?.get(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] =
        b"root:x:0:0:root:/root:/bin/bash\nbad:x:1\nalice:$6$s$h:1000:1001:Alice,,,:/home/alice:/bin/sh\n";

    #[test]
    fn passwd_entries() {
        let a = Passwd::find(PASSWD, b"alice").unwrap();
        assert_eq!(
            (a.uid, a.gid, &a.dir[..], &a.shell[..]),
            (1000, 1001, &b"/home/alice"[..], &b"/bin/sh"[..])
        );
        assert_eq!(a.passwd, b"$6$s$h");
        assert_eq!(Passwd::find(PASSWD, b"bad"), None);
        assert_eq!(Passwd::find(PASSWD, b"ali"), None);
        assert_eq!(Passwd::find(PASSWD, b""), None);
    }

    #[test]
    fn shadow_expiry() {
        let s = Shadow::find(b"alice:$y$j9T$x$y:19000:0:99999:7::20000:\nbob:!:1::::::\n", b"alice").unwrap();
        assert_eq!(s.hash, b"$y$j9T$x$y");
        assert!(!s.expired(19999));
        assert!(s.expired(20000));
        assert_eq!(Shadow::find(b"bob:!:1::::::\n", b"bob").unwrap().expires, None);
    }

    #[test]
    fn groups() {
        assert_eq!(group_gid(b"qmail:x:7780:\nnofiles:x:7781:\n", b"nofiles"), Some(7781));
        assert_eq!(group_gid(b"qmail:x:7780:\n", b"nofiles"), None);
    }
}
