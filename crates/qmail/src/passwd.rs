//! /etc/passwd, /etc/shadow and /etc/group, read as files: a static binary has no
//! NSS. One line per account, fields separated by `:` (passwd(5), shadow(5), group(5)).

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

/// The parts of a shadow(5) entry that decide whether a password may log in. Days
/// count from 1970-01-01; an empty field (or glibc's `-1`) is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadow {
    pub hash: Vec<u8>,
    /// Field 3: the day of the last password change; 0 means "must change now".
    pub last_change: Option<i64>,
    /// Field 5: the most days a password may be used before it must be changed.
    pub max: Option<i64>,
    /// Field 7: the days after `max` during which the old password still opens
    /// a session in which it can be changed.
    pub inactive: Option<i64>,
    /// Field 8: the day the account expires.
    pub expires: Option<i64>,
}

/// What shadow(5)'s ageing fields say about a login today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ageing {
    Valid,
    /// Field 8 is today or past (pam_unix: PAM_ACCT_EXPIRED).
    Expired,
    /// Field 3 is 0, or the password is older than field 5 (PAM_NEW_AUTHTOK_REQD):
    /// only a session that can change the password could go on, and no mail login can.
    MustChange,
    /// Older than field 5 plus field 7 (PAM_AUTHTOK_EXPIRED): only the admin can help.
    Inactive,
}

impl Ageing {
    /// Why no password may log in, for a log line; `None` when one may.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            Ageing::Valid => None,
            Ageing::Expired => Some("account expired"),
            Ageing::MustChange => Some("password must be changed"),
            Ageing::Inactive => Some("password expired and account inactive"),
        }
    }
}

/// A day field: empty or `-1` is unset; anything else that is not a day count makes
/// the whole entry unreadable, as it does for glibc's getspnam.
fn day(field: Option<&&[u8]>) -> Result<Option<i64>, ()> {
    let Some(field) = field.filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    match std::str::from_utf8(field).ok().and_then(|s| s.parse::<i64>().ok()) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n)),
        _ => Err(()),
    }
}

impl Shadow {
    /// The entry for `name`; `None` when it is missing or any of fields 3 to 8 is
    /// not a number (so a damaged entry never logs in).
    pub fn find(text: &[u8], name: &[u8]) -> Option<Shadow> {
        let f = find_line(text, name)?;
        for i in 2..8 {
            day(f.get(i)).ok()?;
        }
        let get = |i: usize| day(f.get(i)).ok().flatten();
        Some(Shadow {
            hash: f[1].to_vec(),
            last_change: get(2),
            max: get(4),
            inactive: get(6),
            expires: get(7),
        })
    }

    /// The ageing verdict for `today` (days since 1970-01-01), in the order and with
    /// the comparisons of pam_unix's check_shadow_expiry. One difference: an empty
    /// field 3 turns ageing off, as shadow(5) says (pam_unix computes with -1 there).
    pub fn ageing(&self, today: i64) -> Ageing {
        if self.expires.is_some_and(|day| today >= day) {
            return Ageing::Expired;
        }
        let Some(changed) = self.last_change else {
            return Ageing::Valid;
        };
        if changed == 0 {
            return Ageing::MustChange;
        }
        if today < changed {
            return Ageing::Valid;
        }
        let age = today - changed;
        if let (Some(max), Some(inactive)) = (self.max, self.inactive) {
            if age > max && age > inactive && age > max + inactive {
                return Ageing::Inactive;
            }
        }
        if self.max.is_some_and(|max| age > max) {
            return Ageing::MustChange;
        }
        Ageing::Valid
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
        assert_eq!(s.ageing(19999), Ageing::Valid);
        assert_eq!(s.ageing(20000), Ageing::Expired);
        assert_eq!(Shadow::find(b"bob:!:1::::::\n", b"bob").unwrap().expires, None);
    }

    #[test]
    fn shadow_ageing_as_pam_unix() {
        let at = |fields: &str, today: i64| {
            let line = format!("u:$6$s$h:{fields}\n");
            Shadow::find(line.as_bytes(), b"u").map(|s| s.ageing(today))
        };
        use Ageing::*;
        assert_eq!(at("0:0:99999:7:::", 20000), Some(MustChange));
        assert_eq!(at("19900:0:30:7:10::", 20000), Some(Inactive));
        assert_eq!(at("19960:0:30:7:30::", 20000), Some(MustChange));
        assert_eq!(at("19960:0:30:7:::", 20000), Some(MustChange));
        assert_eq!(at("19970:0:30:7:0::", 20000), Some(Valid));
        assert_eq!(at("19969:0:30:7:0::", 20000), Some(Inactive));
        assert_eq!(at("19990:0:30:7:10::", 20000), Some(Valid));
        assert_eq!(at("20010:0:1:7:1::", 20000), Some(Valid));
        assert_eq!(at("::30:7:1::", 20000), Some(Valid));
        assert_eq!(at("-1:0:30:7:1::", 20000), Some(Valid));
        assert_eq!(at("19000:0:99999:7::20000:", 20000), Some(Expired));
        assert_eq!(at("19000:0:99999:7::20001:", 20000), Some(Valid));
        assert_eq!(at("19000:0:99999:7::0:", 20000), Some(Expired));
        assert_eq!(at("19000x:0:99999:7:::", 20000), None);
        assert_eq!(at("19000:0:99999:-7:::", 20000), None);
        assert_eq!(at("19000:0:99999:7::", 20000), Some(Valid));
        assert_eq!(
            Some(MustChange).and_then(Ageing::refusal),
            Some("password must be changed")
        );
        assert_eq!(Valid.refusal(), None);
    }

    #[test]
    fn groups() {
        assert_eq!(group_gid(b"qmail:x:7780:\nnofiles:x:7781:\n", b"nofiles"), Some(7781));
        assert_eq!(group_gid(b"qmail:x:7780:\n", b"nofiles"), None);
    }
}
