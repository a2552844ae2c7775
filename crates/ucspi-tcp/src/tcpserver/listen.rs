//! The listening socket: `host` and `port` as 0.88 reads them, SO_REUSEADDR, and the
//! IPv6 patch's rule that `0` means `::`, dual stack.

use super::options::Options;
use super::services;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

/// A failure to start listening: exit 111 with this message.
pub type Fatal = String;

/// Binds and listens as the options say.
pub fn open(o: &Options) -> Result<TcpListener, Fatal> {
    let port = services::resolve(&o.port).ok_or_else(|| format!("unable to figure out port number for {}", o.port))?;
    let addrs = addresses(o)?;
    let mut last = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
    for ip in addrs {
        let scope = match (&o.interface, ip) {
            (Some(name), IpAddr::V6(_)) => nix::net::if_::if_nametoindex(name.as_str()).unwrap_or(0),
            _ => 0,
        };
        match bound(ip, port, scope, o.backlog) {
            Ok(l) => return Ok(l),
            // A kernel without IPv6 still serves the wildcard on IPv4.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => last = e,
            Err(e) => return Err(format!("unable to bind: {}", qmail::errstr::io_str(&e))),
        }
    }
    Err(format!("unable to bind: {}", qmail::errstr::io_str(&last)))
}

/// The addresses to try binding, in order.
fn addresses(o: &Options) -> Result<Vec<IpAddr>, Fatal> {
    if o.host.is_empty() || o.host == "0" {
        let v4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        return Ok(if o.ipv4_only {
            vec![v4]
        } else {
            vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED), v4]
        });
    }
    if let Ok(ip) = o.host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let r = dns::Resolver::from_env();
    let tmp = |e: dns::Temporary| format!("temporarily unable to figure out IP address for {}: {e}", o.host);
    let mut ips: Vec<IpAddr> = r.ip4(&o.host).map_err(tmp)?.into_iter().map(IpAddr::V4).collect();
    if ips.is_empty() && !o.ipv4_only {
        ips = r.ip6(&o.host).map_err(tmp)?.into_iter().map(IpAddr::V6).collect();
    }
    match ips.first() {
        Some(&ip) => Ok(vec![ip]),
        None => Err(format!("no IP address for {}", o.host)),
    }
}

/// A non-blocking, close-on-exec TCP socket of `ip`'s family.
pub(super) fn tcp_socket(ip: IpAddr) -> nix::Result<std::os::fd::OwnedFd> {
    let family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
}

fn bound(ip: IpAddr, port: u16, scope: u32, backlog: u64) -> io::Result<TcpListener> {
    let fd = tcp_socket(ip)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if ip.is_ipv6() {
        // `::` takes IPv4 clients too; a specific IPv6 address only its own family.
        setsockopt(&fd, sockopt::Ipv6V6Only, &!ip.is_unspecified())?;
    }
    let addr = match ip {
        IpAddr::V6(v6) => SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, scope)),
        IpAddr::V4(_) => SocketAddr::new(ip, port),
    };
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    let backlog = Backlog::new(backlog.min(i32::MAX as u64) as i32).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}
