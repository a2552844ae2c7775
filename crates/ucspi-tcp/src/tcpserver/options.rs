//! tcpserver's command line: ucspi-tcp 0.88's options with their meanings and
//! defaults, plus the IPv6 patch's `-4`, `-6` and `-I`.

use qmail::getopt::{Getopt, Opt};
use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "usage: tcpserver [ -1UXpPhHrRoOdDqQv ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] host port program";

/// Why `-u` (or `$UID`) without a gid is refused.
pub const NO_GID: &str = "-u without -g would keep root's group and groups: give -g gid";

const SPEC: &str = "46dDvqQhHrR1UXx:t:u:g:l:b:B:c:pPoOI:";

#[derive(Debug, Clone)]
pub struct Options {
    /// 0 (`-q`), 1 (`-Q`, default) or 2 (`-v`).
    pub verbosity: u8,
    pub limit: u64,
    pub rules: Option<PathBuf>,
    /// `-X`: a missing rules CDB means no rules.
    pub rules_optional: bool,
    pub banner: Option<Vec<u8>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub print_port: bool,
    pub backlog: u64,
    pub keep_ip_options: bool,
    pub nodelay: bool,
    pub remote_host: bool,
    pub paranoid: bool,
    pub local_name: Option<String>,
    pub ident: bool,
    pub ident_timeout: u64,
    /// `-6`: report IPv4 clients in IPv6 form; `-4`: listen on IPv4 only.
    pub ipv6_form: bool,
    pub ipv4_only: bool,
    pub interface: Option<String>,
    pub host: String,
    pub port: String,
    pub program: Vec<OsString>,
}

/// Why the command line was refused: getopt's complaint (if any) and a fatal message
/// (if any); either way tcpserver prints the usage line and exits 100.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub complaint: Option<String>,
    pub fatal: Option<String>,
}

/// djb's `scan_ulong`: the leading digits, 0 if there are none.
fn scan_ulong(s: &OsString) -> u64 {
    s.to_string_lossy()
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
}

/// A uid or gid must be all digits: 0.88 silently ran as root on `-u nobody` or on an
/// empty `$QMAILDUID`; we refuse to start instead. 0 means "leave it", as in 0.88.
fn numeric_id(what: &str, s: &str) -> Result<Option<u32>, Refused> {
    match s.parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(n) if !s.starts_with('+') => Ok(Some(n)),
        _ => Err(Refused {
            complaint: None,
            fatal: Some(format!("{what} must be a number, not '{s}'")),
        }),
    }
}

impl Options {
    pub fn parse(args: Vec<OsString>, env: impl Fn(&str) -> Option<String>) -> Result<Options, Refused> {
        let mut o = Options {
            verbosity: 1,
            limit: 40,
            rules: None,
            rules_optional: false,
            banner: None,
            uid: None,
            gid: None,
            print_port: false,
            backlog: 20,
            keep_ip_options: false,
            nodelay: false,
            remote_host: true,
            paranoid: false,
            local_name: None,
            ident: true,
            ident_timeout: 26,
            ipv6_form: false,
            ipv4_only: false,
            interface: None,
            host: String::new(),
            port: String::new(),
            program: Vec::new(),
        };
        let mut g = Getopt::new(args, SPEC);
        for opt in g.by_ref() {
            let (c, arg) = match opt {
                Opt::Ok(c, arg) => (c, arg.unwrap_or_default()),
                bad => {
                    return Err(Refused {
                        complaint: bad.complaint(),
                        fatal: None,
                    })
                }
            };
            let text = arg.to_string_lossy().into_owned();
            match c {
                b'q' => o.verbosity = 0,
                b'Q' => o.verbosity = 1,
                b'v' => o.verbosity = 2,
                b'c' => o.limit = scan_ulong(&arg),
                b'x' => o.rules = Some(PathBuf::from(arg)),
                b'X' => o.rules_optional = true,
                b'B' => o.banner = Some(std::os::unix::ffi::OsStringExt::into_vec(arg)),
                b'g' => o.gid = numeric_id("-g gid", &text)?,
                b'u' => o.uid = numeric_id("-u uid", &text)?,
                b'U' => {
                    if let Some(g) = env("GID") {
                        o.gid = numeric_id("$GID", &g)?;
                    }
                    if let Some(u) = env("UID") {
                        o.uid = numeric_id("$UID", &u)?;
                    }
                }
                b'1' => o.print_port = true,
                b'b' => o.backlog = scan_ulong(&arg),
                b'o' => o.keep_ip_options = true,
                b'O' => o.keep_ip_options = false,
                b'd' => o.nodelay = false,
                b'D' => o.nodelay = true,
                b'h' => o.remote_host = true,
                b'H' => o.remote_host = false,
                b'p' => o.paranoid = true,
                b'P' => o.paranoid = false,
                b'l' => o.local_name = Some(text),
                b'r' => o.ident = true,
                b'R' => o.ident = false,
                b't' => o.ident_timeout = scan_ulong(&arg),
                b'4' => o.ipv4_only = true,
                b'6' => o.ipv6_form = true,
                b'I' => o.interface = Some(text),
                _ => unreachable!("getopt returns only letters of SPEC"),
            }
        }
        if o.uid.is_some() && o.gid.is_none() {
            // 0.88 would run the program with gid 0 and root's supplementary groups.
            return Err(Refused {
                complaint: None,
                fatal: Some(NO_GID.into()),
            });
        }
        let mut rest = g.rest().into_iter();
        let (Some(host), Some(port)) = (rest.next(), rest.next()) else {
            return Err(Refused {
                complaint: None,
                fatal: None,
            });
        };
        o.host = host.to_string_lossy().into_owned();
        o.port = port.to_string_lossy().into_owned();
        o.program = rest.collect();
        if o.program.is_empty() {
            return Err(Refused {
                complaint: None,
                fatal: None,
            });
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<Options, Refused> {
        Options::parse(words.split(' ').map(OsString::from).collect(), |n| match n {
            "UID" => Some("1001".into()),
            "GID" => Some("1002".into()),
            _ => None,
        })
    }

    #[test]
    fn the_seed_line() {
        let o = parse("-H -R -l 0 -t 1 -v -p -x /etc/tcp.smtp.cdb -u 1005 -g 1006 0 smtp qmail-smtpd a b").unwrap();
        assert!(!o.remote_host && !o.ident && o.paranoid);
        assert_eq!(
            (o.verbosity, o.ident_timeout, o.local_name.as_deref()),
            (2, 1, Some("0"))
        );
        assert_eq!((o.uid, o.gid), (Some(1005), Some(1006)));
        assert_eq!((o.host.as_str(), o.port.as_str(), o.program.len()), ("0", "smtp", 3));
        assert_eq!(o.rules.unwrap(), PathBuf::from("/etc/tcp.smtp.cdb"));
    }

    #[test]
    fn defaults_and_overrides() {
        let o = parse("-h -H -c 5x -U 0 25 prog").unwrap();
        assert!(!o.remote_host && o.ident && !o.paranoid);
        assert_eq!((o.limit, o.backlog, o.verbosity), (5, 20, 1));
        assert_eq!((o.uid, o.gid), (Some(1001), Some(1002)));
        assert_eq!(parse("-c x 0 25 prog").unwrap().limit, 0);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse("-Z 0 25 prog").unwrap_err().complaint.unwrap(),
            "illegal option -- Z"
        );
        assert_eq!(
            parse("0 25").unwrap_err(),
            Refused {
                complaint: None,
                fatal: None
            }
        );
        assert!(parse("-u nobody 0 25 prog")
            .unwrap_err()
            .fatal
            .unwrap()
            .contains("nobody"));
        assert!(parse("-u  0 25 prog").is_err());
        assert_eq!(parse("-u 0 0 25 prog").unwrap().uid, None);
        for no_gid in ["-u 5 0 25 prog", "-u 5 -g 0 0 25 prog"] {
            assert_eq!(parse(no_gid).unwrap_err().fatal.as_deref(), Some(NO_GID), "{no_gid}");
        }
        assert_eq!(parse("-g 5 0 25 prog").unwrap().gid, Some(5));
    }
}
