//! Sending one query to a list of servers: UDP first, TCP when the answer is
//! truncated, every wait bounded by the round's timeout.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What a received packet means for the query under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a reply to this query (wrong id or question): keep waiting.
    Ignore,
    /// A final answer (NOERROR or NXDOMAIN).
    Answer,
    /// Truncated: ask the same server over TCP.
    Truncated,
    /// SERVFAIL, REFUSED and the like: try the next server.
    ServerFailed,
}

/// Tries each server in each round; returns the first packet judged an answer.
pub fn exchange(
    servers: &[IpAddr],
    port: u16,
    timeouts: &[Duration],
    query: &[u8],
    judge: impl Fn(&[u8]) -> Verdict,
) -> Option<Vec<u8>> {
    for &timeout in timeouts {
        for &ip in servers {
            let server = SocketAddr::new(ip, port);
            let deadline = Instant::now() + timeout;
            match udp(server, deadline, query, &judge) {
                Some((reply, Verdict::Answer)) => return Some(reply),
                Some((_, Verdict::Truncated)) => {
                    if let Some(reply) = tcp(server, deadline, query) {
                        if judge(&reply) == Verdict::Answer {
                            return Some(reply);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn udp(
    server: SocketAddr,
    deadline: Instant,
    query: &[u8],
    judge: &impl Fn(&[u8]) -> Verdict,
) -> Option<(Vec<u8>, Verdict)> {
    let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
    let sock = UdpSocket::bind(local).ok()?;
    sock.connect(server).ok()?;
    sock.send(query).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        qmail::fd::wait(sock.as_raw_fd(), libc::POLLIN, deadline)
            .ok()?
            .then_some(())?;
        let n = sock.recv(&mut buf).ok()?; // ECONNREFUSED: nobody there, next server
        match judge(&buf[..n]) {
            Verdict::Ignore => continue,
            v => return Some((buf[..n].to_vec(), v)),
        }
    }
}

fn tcp(server: SocketAddr, deadline: Instant, query: &[u8]) -> Option<Vec<u8>> {
    let left = deadline.checked_duration_since(Instant::now())?;
    let mut s = TcpStream::connect_timeout(&server, left).ok()?;
    let mut msg = (query.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(query);
    s.set_write_timeout(Some(left)).ok()?;
    s.write_all(&msg).ok()?;
    let mut read_exact = |buf: &mut [u8]| -> Option<()> {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
        s.read_exact(buf).ok()
    };
    let mut len = [0u8; 2];
    read_exact(&mut len)?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    read_exact(&mut reply)?;
    Some(reply)
}

/// A query id that an off-path attacker cannot guess.
pub fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 2 {
        u16::from_ne_bytes(b)
    } else {
        (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16)
    }
}
