//! The RFC 1413 ident query behind `$TCPREMOTEINFO` (`-r`), as 0.88's remoteinfo.c
//! makes it: from the local address to the client's port 113, the whole exchange
//! bounded by `-t` seconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The user id the client's identd reports; `Some("")` when it answered with fewer
/// than three colons (an error reply), None when it could not be asked.
pub fn query(local: SocketAddr, remote: SocketAddr, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect_from(local, SocketAddr::new(remote.ip(), 113), timeout)?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("{} , {}\r\n", remote.port(), local.port()).as_bytes())
        .ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 128];
    while !reply.contains(&b'\n') && reply.len() < 512 {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(parse_reply(&reply))
}

/// Everything after the third colon of the first line, spaces, tabs and CRs
/// dropped, at most 256 bytes.
pub fn parse_reply(reply: &[u8]) -> String {
    let line = reply.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut colons = 0;
    let mut out = Vec::new();
    for &b in line {
        if matches!(b, b' ' | b'\t' | b'\r') {
            continue;
        }
        if colons < 3 {
            colons += usize::from(b == b':');
        } else if out.len() < 256 {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn connect_from(local: SocketAddr, remote: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    use nix::sys::socket::{bind, connect, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let fd = super::listen::tcp_socket(local.ip()).ok()?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(local.ip(), 0))).ok()?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(remote)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(_) => return None,
    }
    let stream = TcpStream::from(fd);
    let deadline = std::time::Instant::now() + timeout;
    if !qmail::fd::wait(stream.as_raw_fd(), libc::POLLOUT, deadline).ok()? || stream.take_error().ok()?.is_some() {
        return None;
    }
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_as_0_88_reads_them() {
        assert_eq!(parse_reply(b"6191, 23 : USERID : UNIX : joe\r\n"), "joe");
        assert_eq!(parse_reply(b"1 , 2 : USERID : UNIX , UTF-8 :  j o:e \r\n"), "jo:e");
        assert_eq!(parse_reply(b"1 , 2 : ERROR : NO-USER\r\n"), "");
        assert_eq!(
            parse_reply(&[b"1,2:USERID:UNIX:".as_slice(), &[b'x'; 400]].concat()).len(),
            256
        );
    }
}
