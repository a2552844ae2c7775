//! qmail-send's control files (qmail-send(8), qmail-control(5)) and what it does
//! with them: the VERP sender a delivery is given. The local/remote decision and
//! address rewriting of preprocessing, and the prepend a bounce strips again, are
//! `qmail::rewrite`, which qmail-smtpd shares to know a local recipient.

pub use qmail::rewrite::{read_list, Addresses, Channel};
use std::io;
use std::path::Path;

/// Everything qmail-send reads from `control/` at start (`locals` and
/// `virtualdomains` again on SIGHUP).
#[derive(Clone, Debug)]
pub struct Controls {
    pub lifetime: i64,
    /// Before clamping to what the spawns can take: local, remote.
    pub concurrency: [u32; 2],
    pub bouncefrom: Vec<u8>,
    pub bouncehost: Vec<u8>,
    /// `doublebounceto@doublebouncehost`.
    pub doublebounceto: Vec<u8>,
    /// locals, virtualdomains, percenthack, envnoathost: what rewrite() needs.
    pub addresses: Addresses,
    /// `control/me` as read at start: what a missing `locals` means, also on SIGHUP.
    pub me: Option<Vec<u8>>,
}

pub fn read_int(path: &Path, default: i64) -> io::Result<i64> {
    let Some(line) = qmail::control::read_line(path)? else {
        return Ok(default);
    };
    let digits: Vec<u8> = line.iter().copied().take_while(u8::is_ascii_digit).collect();
    if digits.is_empty() {
        return Ok(default);
    }
    Ok(std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(i64::MAX))
}

impl Controls {
    /// Reads every setting from `home/control`; an error is qmail's `unable to read
    /// controls`, as is having neither `locals` nor `me`.
    pub fn load(home: &Path) -> io::Result<Controls> {
        let c = home.join("control");
        let me = qmail::control::read_line(&c.join("me"))?;
        let rldef = |name: &str, flagme: bool, def: &str| -> io::Result<Vec<u8>> {
            if let Some(v) = qmail::control::read_line(&c.join(name))? {
                return Ok(v);
            }
            match (&me, flagme) {
                (Some(m), true) => Ok(m.clone()),
                _ => Ok(def.as_bytes().to_vec()),
            }
        };
        let lifetime = read_int(&c.join("queuelifetime"), 604800)?;
        let local = read_int(&c.join("concurrencylocal"), 10)?;
        let remote = read_int(&c.join("concurrencyremote"), 20)?;
        let bouncefrom = rldef("bouncefrom", false, "MAILER-DAEMON")?;
        let bouncehost = rldef("bouncehost", true, "bouncehost")?;
        let doublebouncehost = rldef("doublebouncehost", true, "doublebouncehost")?;
        let mut doublebounceto = rldef("doublebounceto", false, "postmaster")?;
        doublebounceto.push(b'@');
        doublebounceto.extend_from_slice(&doublebouncehost);
        let addresses = Addresses::load(home, me.as_deref())?;
        Ok(Controls {
            lifetime,
            concurrency: [clamp_u32(local), clamp_u32(remote)],
            bouncefrom,
            bouncehost,
            doublebounceto,
            addresses,
            me,
        })
    }
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

/// The sender handed to a spawn: a VERP sender `PREFIX@HOST-@[]` becomes
/// `PREFIXBOX=RHOST@HOST` for recipient `BOX@RHOST` (qmail-send's senderadd);
/// anything else goes unchanged.
pub fn verp_sender(sender: &[u8], recip: &[u8]) -> Vec<u8> {
    let i = sender.len();
    if i >= 4 && sender.ends_with(b"-@[]") {
        let j = sender[..i - 4].iter().rposition(|&b| b == b'@').unwrap_or(i - 4);
        if let Some(k) = recip.iter().rposition(|&b| b == b'@') {
            if j + 5 <= i {
                let mut out = sender[..j].to_vec();
                out.extend_from_slice(&recip[..k]);
                out.push(b'=');
                out.extend_from_slice(&recip[k + 1..]);
                out.push(b'@');
                out.extend_from_slice(&sender[j + 1..i - 4]);
                return out;
            }
        }
    }
    sender.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verp() {
        let v = |s: &str, r: &str| String::from_utf8(verp_sender(s.as_bytes(), r.as_bytes())).unwrap();
        assert_eq!(
            v("owner-@list.example-@[]", "joe@x.org"),
            "owner-joe=x.org@list.example"
        );
        assert_eq!(v("owner-@list.example-@[]", "nohost"), "owner-@list.example-@[]");
        assert_eq!(v("a@b", "joe@x.org"), "a@b");
        assert_eq!(v("", "joe@x.org"), "");
        assert_eq!(v("#@[]", "joe@x.org"), "#@[]");
        // No @ before the marker: qmail's j is then the marker's position.
        assert_eq!(v("x-@[]", "joe@x.org"), "x-@[]");
    }

    #[test]
    fn control_files() {
        let d = std::env::temp_dir().join(format!("rqmail-send-ctl-{}", std::process::id()));
        let c = d.join("control");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("me"), "mx.example\n").unwrap();
        std::fs::write(c.join("concurrencylocal"), "3junk\n").unwrap();
        std::fs::write(c.join("concurrencyremote"), "junk\n").unwrap();
        std::fs::write(c.join("virtualdomains"), "# comment\n\nv.example:pre \t\n").unwrap();
        let ctl = Controls::load(&d).unwrap();
        assert_eq!(ctl.concurrency, [3, 20]);
        assert_eq!(ctl.lifetime, 604800);
        assert_eq!(ctl.bouncehost, b"mx.example");
        assert_eq!(ctl.bouncefrom, b"MAILER-DAEMON");
        assert_eq!(ctl.doublebounceto, b"postmaster@mx.example");
        assert!(ctl.addresses.locals.get(b"MX.example").is_some());
        assert_eq!(ctl.addresses.vdoms.get(b"v.example"), Some(&b"pre"[..]));
        std::fs::remove_file(c.join("me")).unwrap();
        assert!(Controls::load(&d).is_err());
        std::fs::write(c.join("locals"), "a.example\n").unwrap();
        let ctl = Controls::load(&d).unwrap();
        assert_eq!(ctl.bouncehost, b"bouncehost");
        assert_eq!(ctl.addresses.envnoathost, b"envnoathost");
        assert_eq!(ctl.doublebounceto, b"postmaster@doublebouncehost");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
