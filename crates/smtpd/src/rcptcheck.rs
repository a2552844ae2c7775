//! Unknown local recipients refused at RCPT (opt-in: `control/rcptcheck`), so that
//! mail qmail would accept and then bounce to a forged sender (backscatter) is never
//! accepted. Stock qmail accepts every local recipient and bounces later.
//!
//! The answer is the one delivery would give, from the same code: qmail-send's
//! rewrite (`qmail::rewrite`: locals, virtualdomains) says whether the address is
//! local; qmail-lspawn's lookup (`qmail::userlookup`: users/cdb, then the passwd
//! file, then `~alias`) finds the user; qmail-local's selection (`qmail::dotqmail`)
//! finds the `.qmail` file of an extension address. Only "no such `.qmail`" means
//! no mailbox. What qmail-smtpd cannot see (a home it may not search) is taken for
//! a mailbox, so a valid recipient is never refused; what would make delivery defer
//! (users/cdb damaged, no alias user) is a 451 here.

use qmail::dotqmail::{self, Unusable};
use qmail::rewrite::{Addresses, Channel};
use qmail::userlookup;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A mailbox (or nothing for us to judge: a remote address).
    Mailbox,
    /// Delivery would bounce it: "Sorry, no mailbox here by that name."
    NoMailbox,
    /// Delivery would defer it.
    Temporary,
}

pub struct RcptCheck {
    home: PathBuf,
    passwd: PathBuf,
    addresses: Addresses,
}

impl RcptCheck {
    /// The check, if `control/rcptcheck` says `1`; a missing file, empty or `0`, is
    /// qmail's behaviour.
    pub fn load(home: &Path) -> io::Result<Option<RcptCheck>> {
        let c = home.join("control");
        let on = qmail::control::read_line(&c.join("rcptcheck"))?;
        if on.is_none_or(|v| v.trim_ascii() != b"1") {
            return Ok(None);
        }
        let me = qmail::control::read_line(&c.join("me"))?;
        Ok(Some(RcptCheck {
            home: home.to_path_buf(),
            passwd: userlookup::passwd_path(),
            addresses: Addresses::load(home, me.as_deref())?,
        }))
    }

    pub fn check(&self, addr: &[u8]) -> Answer {
        let (channel, local_addr) = self.addresses.rewrite(addr);
        if channel == Channel::Remote {
            return Answer::Mailbox;
        }
        let at = local_addr.iter().rposition(|&b| b == b'@').unwrap_or(local_addr.len());
        let local = &local_addr[..at];
        if local.is_empty() {
            return Answer::Mailbox; // qmail's trash address
        }
        let user = match userlookup::lookup_in(&self.home, &self.passwd, local) {
            Ok(u) => u,
            Err(_) => return Answer::Temporary,
        };
        if user.dash.is_empty() {
            return Answer::Mailbox; // `.qmail`, or the default delivery
        }
        let home = Path::new(std::ffi::OsStr::from_bytes(&user.home));
        match dotqmail::search(home, &user.dash, &dotqmail::safe_ext(&user.ext)) {
            Ok(Some(_)) => Answer::Mailbox,
            Ok(None) => Answer::NoMailbox,
            // Not ours to see, or qmail-local would defer and its owner fix it.
            Err(Unusable::Writable) => Answer::Mailbox,
            Err(Unusable::Open(_, e)) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                Answer::Mailbox
            }
            Err(Unusable::Open(..)) => Answer::Temporary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_answer_delivery_would_give() {
        let d = std::env::temp_dir().join(format!("rqmail-rcptcheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (bob, alias) = (d.join("bob"), d.join("alias"));
        for dir in [d.join("control"), bob.clone(), alias.clone()] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let c = d.join("control");
        std::fs::write(c.join("me"), "mx.example\n").unwrap();
        std::fs::write(c.join("locals"), "example.com\n").unwrap();
        std::fs::write(c.join("virtualdomains"), "virt.example:bob\n").unwrap();
        std::fs::write(c.join("rcptcheck"), "0\n").unwrap();
        assert!(RcptCheck::load(&d).unwrap().is_none());
        std::fs::write(c.join("rcptcheck"), "1\n").unwrap();
        // The passwd file names the accounts; their homes must be theirs, and not
        // root's (qmail-getpw skips uid 0): as root, a uid of no system account.
        let mut uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&d).unwrap());
        if uid == 0 {
            uid = 7790;
            for dir in [&bob, &alias] {
                std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
            }
        }
        let passwd = d.join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "bob:x:{uid}:{uid}::{}:/bin/sh\nalias:x:{uid}:{uid}::{}:/bin/sh\n",
                bob.display(),
                alias.display()
            ),
        )
        .unwrap();
        let mut check = RcptCheck::load(&d).unwrap().unwrap();
        check.passwd = passwd;
        for f in [".qmail-list", ".qmail-shop-default"] {
            std::fs::write(bob.join(f), "./Maildir/\n").unwrap();
        }
        std::fs::write(alias.join(".qmail-postmaster"), "&bob\n").unwrap();
        let a = |addr: &str| check.check(addr.as_bytes());
        assert_eq!(a("bob@example.com"), Answer::Mailbox);
        assert_eq!(a("BOB@EXAMPLE.COM"), Answer::Mailbox);
        assert_eq!(a("bob-list@example.com"), Answer::Mailbox);
        assert_eq!(a("bob-shop-books@example.com"), Answer::Mailbox);
        assert_eq!(a("bob-nothing@example.com"), Answer::NoMailbox);
        assert_eq!(a("postmaster@example.com"), Answer::Mailbox);
        assert_eq!(a("nobody@example.com"), Answer::NoMailbox);
        assert_eq!(a("list@virt.example"), Answer::Mailbox);
        assert_eq!(a("other@virt.example"), Answer::NoMailbox);
        assert_eq!(a("anyone@elsewhere.org"), Answer::Mailbox);
        // ~alias catching everything (fastforward's .qmail-default).
        std::fs::write(alias.join(".qmail-default"), "| fastforward -d aliases.cdb\n").unwrap();
        assert_eq!(a("nobody@example.com"), Answer::Mailbox);
        // A world-writable .qmail would defer delivery: not a refusal.
        std::fs::write(bob.join(".qmail-open"), "./Maildir/\n").unwrap();
        std::fs::set_permissions(bob.join(".qmail-open"), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(a("bob-open@example.com"), Answer::Mailbox);
        // A damaged users/cdb defers delivery, so it is a 451 here, never "no mailbox".
        std::fs::create_dir_all(d.join("users")).unwrap();
        std::fs::write(d.join("users/cdb"), vec![0x5a; 3000]).unwrap();
        assert_eq!(a("nobody-else@example.com"), Answer::Temporary);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
