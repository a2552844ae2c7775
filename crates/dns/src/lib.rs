//! The small synchronous stub resolver that tcpserver (and later rblsmtpd and
//! qmail-remote) use: PTR, A and AAAA, asked of a recursive server, with no NSS and
//! no threads.
//!
//! It behaves as djb's dns library does, because admins' setups depend on it: the
//! servers come from `$DNSCACHEIP`, else the `nameserver` lines of /etc/resolv.conf,
//! else 127.0.0.1; /etc/hosts is never read; each round tries every server with a
//! timeout of 1, 3, 11, then 45 seconds; a truncated UDP answer is asked again over
//! TCP. NXDOMAIN is a definite "no"; silence, SERVFAIL and REFUSED are temporary.
//! The wire format is the `simple-dns` crate's, not hand-written.

mod transport;

use transport::Verdict;

use simple_dns::{rdata::RData, Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A lookup that could not be answered now; try again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Temporary(pub String);

impl fmt::Display for Temporary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, Temporary>;

/// The servers to ask, and how long to wait for each in each round.
#[derive(Clone, Debug)]
pub struct Resolver {
    servers: Vec<IpAddr>,
    timeouts: Vec<Duration>,
    port: u16,
}

impl Resolver {
    /// Servers from `$DNSCACHEIP`, else /etc/resolv.conf, else 127.0.0.1.
    pub fn from_env() -> Resolver {
        let env = std::env::var("DNSCACHEIP").ok();
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Resolver::with_servers(servers_from(env.as_deref(), &conf))
    }

    pub fn with_servers(servers: Vec<IpAddr>) -> Resolver {
        let timeouts = [1, 3, 11, 45].iter().map(|&s| Duration::from_secs(s)).collect();
        Resolver {
            servers,
            timeouts,
            port: 53,
        }
    }

    /// The first PTR name of `ip`, or None if it has none.
    pub fn ptr(&self, ip: IpAddr) -> Result<Option<String>> {
        let reply = self.query(&reverse_name(ip), TYPE::PTR)?;
        let name = answers(&reply).find_map(|rd| match rd {
            RData::PTR(p) => Some(name_to_dot(&p.0)),
            _ => None,
        });
        Ok(name)
    }

    /// The A records of `name`.
    pub fn ip4(&self, name: &str) -> Result<Vec<Ipv4Addr>> {
        let reply = self.query(name, TYPE::A)?;
        let ips = answers(&reply)
            .filter_map(|rd| match rd {
                RData::A(a) => Some(Ipv4Addr::from(a.address)),
                _ => None,
            })
            .collect();
        Ok(ips)
    }

    /// The AAAA records of `name`.
    pub fn ip6(&self, name: &str) -> Result<Vec<Ipv6Addr>> {
        let reply = self.query(name, TYPE::AAAA)?;
        let ips = answers(&reply)
            .filter_map(|rd| match rd {
                RData::AAAA(a) => Some(Ipv6Addr::from(a.address)),
                _ => None,
            })
            .collect();
        Ok(ips)
    }

    /// Asks the servers for `name`/`qtype`, returns the raw answer packet: one whose
    /// rcode is NOERROR or NXDOMAIN.
    fn query(&self, name: &str, qtype: TYPE) -> Result<Vec<u8>> {
        let id = transport::random_id();
        let mut q = Packet::new_query(id);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        let qname = Name::new(name).map_err(|_| Temporary(format!("bad name {name}")))?;
        q.questions.push(Question::new(
            qname,
            QTYPE::TYPE(qtype),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let wire = q.build_bytes_vec().map_err(|e| Temporary(e.to_string()))?;
        let judge = |reply: &[u8]| -> Verdict {
            let Ok(p) = Packet::parse(reply) else {
                return Verdict::Ignore;
            };
            if p.id() != id || p.questions.len() != 1 || !same_question(&p.questions[0], name, qtype) {
                return Verdict::Ignore;
            }
            if p.has_flags(PacketFlag::TRUNCATION) {
                return Verdict::Truncated;
            }
            match p.rcode() {
                RCODE::NoError | RCODE::NameError => Verdict::Answer,
                _ => Verdict::ServerFailed,
            }
        };
        transport::exchange(&self.servers, self.port, &self.timeouts, &wire, judge)
            .ok_or_else(|| Temporary(format!("no answer for {name}")))
    }
}

fn same_question(q: &Question, name: &str, qtype: TYPE) -> bool {
    q.qtype == QTYPE::TYPE(qtype) && name_to_dot(&q.qname).eq_ignore_ascii_case(name.trim_end_matches('.'))
}

fn answers(reply: &[u8]) -> impl Iterator<Item = RData<'_>> {
    Packet::parse(reply)
        .map(|p| p.answers)
        .unwrap_or_default()
        .into_iter()
        .map(|rr| rr.rdata)
}

/// A name in dotted form as djb's `dns_domain_todot` writes it: lower case, and
/// bytes other than letters, digits, `-` and `_` as `\ooo`, so a hostile PTR can never
/// put a space, colon or control byte into an environment variable or a log line.
pub fn name_to_dot(name: &Name) -> String {
    let mut out = String::new();
    for label in name.as_bytes() {
        if !out.is_empty() {
            out.push('.');
        }
        for &b in label {
            let b = b.to_ascii_lowercase();
            if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03o}"));
            }
        }
    }
    out
}

/// `4.3.2.1.in-addr.arpa`, or the nibble form under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s + "ip6.arpa"
        }
    }
}

/// djb's server list: `$DNSCACHEIP` (addresses separated by commas or spaces), else
/// the resolv.conf `nameserver` lines, else 127.0.0.1.
pub fn servers_from(dnscacheip: Option<&str>, resolv_conf: &str) -> Vec<IpAddr> {
    let parse = |s: &str| s.parse::<IpAddr>().ok();
    let mut servers: Vec<IpAddr> = match dnscacheip {
        Some(list) => list.split([',', ' ']).filter_map(parse).collect(),
        None => resolv_conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|rest| parse(rest.trim()))
            .collect(),
    };
    servers.truncate(16);
    if servers.is_empty() {
        servers.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("127.0.0.2".parse().unwrap()), "2.0.0.127.in-addr.arpa");
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."));
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert_eq!(v6.len(), 32 * 2 + "ip6.arpa".len());
    }

    #[test]
    fn server_list() {
        let conf = "search x\nnameserver 10.0.0.1\n nameserver ::1\nnameserver bad\n";
        assert_eq!(
            servers_from(None, conf),
            ["10.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        assert_eq!(
            servers_from(Some("127.0.0.53"), conf),
            ["127.0.0.53".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(servers_from(None, ""), [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }

    #[test]
    fn hostile_names_are_escaped() {
        let n = Name::new_unchecked("Mail.EXAMPLE.test");
        assert_eq!(name_to_dot(&n), "mail.example.test");
        let labels = [simple_dns::Label::new_unchecked(&b"a b:c"[..])];
        assert_eq!(name_to_dot(&Name::new_with_labels(&labels)), "a\\040b\\072c");
    }

    /// A fake server on loopback answers one PTR query; checks the whole round trip.
    #[test]
    fn ptr_round_trip_against_a_fake_server() {
        use std::net::UdpSocket;
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let q = Packet::parse(&buf[..n]).unwrap();
            let mut r = q.clone().into_reply();
            r.answers.push(simple_dns::ResourceRecord::new(
                q.questions[0].qname.clone(),
                CLASS::IN,
                60,
                RData::PTR(simple_dns::rdata::PTR(Name::new_unchecked("Host1.TEST"))),
            ));
            server.send_to(&r.build_bytes_vec().unwrap(), from).unwrap();
        });
        let mut r = Resolver::with_servers(vec!["127.0.0.1".parse().unwrap()]);
        r.timeouts = vec![Duration::from_secs(5)];
        r.port = port;
        let got = r.ptr("127.0.0.1".parse().unwrap());
        t.join().unwrap();
        assert_eq!(got, Ok(Some("host1.test".to_string())));
    }
}
