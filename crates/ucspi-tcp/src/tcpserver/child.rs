//! One connection, in its own process: find out who the client is (addresses, names,
//! ident), apply the rules, log `ok` or `deny`, then exec the program with the
//! connection on fd 0 and fd 1 and the `TCP*` variables in its environment.

use super::ident;
use super::log::{field, Log};
use super::options::Options;
use qmail::env::Env;
use qmail::errstr::io_str;
use qmail::rules::{self, Client, Rule};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What tcpserver learnt about one end of the connection.
struct End {
    ip: String,
    port: u16,
    host: Option<String>,
}

/// An address as the child sees it: IPv4 (also IPv4-mapped, unless `-6`) as a dotted
/// quad, IPv6 compressed.
fn show(ip: IpAddr, ipv6_form: bool) -> (String, bool) {
    match ip {
        IpAddr::V6(v6) if !ipv6_form => match v6.to_ipv4_mapped() {
            Some(v4) => (v4.to_string(), false),
            None => (v6.to_string(), true),
        },
        IpAddr::V6(v6) => (v6.to_string(), true),
        IpAddr::V4(v4) if ipv6_form => (v4.to_ipv6_mapped().to_string(), true),
        IpAddr::V4(v4) => (v4.to_string(), false),
    }
}

fn real(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn run(o: &Options, conn: TcpStream, peer: SocketAddr, resolver: &dns::Resolver, log: Log) -> ! {
    let (remote_ip, _) = show(peer.ip(), o.ipv6_form);
    log.info(&format!("pid {} from {remote_ip}", std::process::id()));
    let fatal = |what: String| -> ! {
        log.warning(&format!("dropping connection, {what}"));
        std::process::exit(qmail::exit::TEMPORARY)
    };
    if !o.keep_ip_options && real(peer.ip()).is_ipv4() {
        // SAFETY: a null option buffer of length 0 clears the socket's IP options.
        unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_OPTIONS,
                std::ptr::null(),
                0,
            )
        };
    }
    if o.nodelay {
        let _ = conn.set_nodelay(true);
    }
    if let Some(banner) = &o.banner {
        if let Err(e) = (&conn).write_all(banner) {
            fatal(format!("unable to print banner: {}", io_str(&e)));
        }
    }
    let local = conn
        .local_addr()
        .unwrap_or_else(|e| fatal(format!("unable to get local address: {}", io_str(&e))));

    let (local_ip, v6) = show(local.ip(), o.ipv6_form);
    let ptr = |ip: IpAddr| resolver.ptr(real(ip)).ok().flatten();
    let local_end = End {
        host: o.local_name.clone().or_else(|| ptr(local.ip())),
        ip: local_ip,
        port: local.port(),
    };
    let remote_host = if o.remote_host {
        ptr(peer.ip()).filter(|name| !o.paranoid || forward_confirms(resolver, name, peer.ip()))
    } else {
        None
    };
    let remote = End {
        ip: remote_ip,
        port: peer.port(),
        host: remote_host,
    };
    let info = if o.ident {
        ident::query(local, peer, Duration::from_secs(o.ident_timeout))
    } else {
        None
    };

    let mut env = Env::inherited();
    env.set("PROTO", if v6 { "TCP6" } else { "TCP" });
    let prefixes: &[&str] = if v6 { &["TCP", "TCP6"] } else { &["TCP"] };
    for p in prefixes {
        env.set(format!("{p}LOCALIP"), &local_end.ip);
        env.set(format!("{p}LOCALPORT"), local_end.port.to_string());
        env.set_or_unset(&format!("{p}LOCALHOST"), local_end.host.as_deref());
        env.set(format!("{p}REMOTEIP"), &remote.ip);
        env.set(format!("{p}REMOTEPORT"), remote.port.to_string());
        env.set_or_unset(&format!("{p}REMOTEHOST"), remote.host.as_deref());
        env.set_or_unset(&format!("{p}REMOTEINFO"), info.as_deref());
    }

    let rule = match &o.rules {
        None => None,
        Some(path) => {
            let client = Client {
                ip: &remote.ip,
                host: remote.host.as_deref(),
                info: info.as_deref(),
            };
            match rules::lookup(path, &client) {
                Ok(r) => r,
                Err(e) if o.rules_optional && e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => fatal(format!("unable to read {}: {}", path.display(), io_str(&e))),
            }
        }
    };
    let denied = rule.as_ref().is_some_and(Rule::denies);
    for (name, value) in rule.iter().flat_map(Rule::vars) {
        use std::os::unix::ffi::OsStrExt;
        env.set(std::ffi::OsStr::from_bytes(name), std::ffi::OsStr::from_bytes(value));
    }

    // The log shows what tcpserver found, not what the rules overrode.
    let ip_field = |ip: &str| if v6 { ip.to_string() } else { field(Some(ip)) };
    log.info(&format!(
        "{} {} {}:{}:{} {}:{}:{}:{}",
        if denied { "deny" } else { "ok" },
        std::process::id(),
        field(local_end.host.as_deref()),
        ip_field(&local_end.ip),
        local_end.port,
        field(remote.host.as_deref()),
        ip_field(&remote.ip),
        field(info.as_deref()),
        remote.port
    ));
    if denied {
        std::process::exit(qmail::exit::PERMANENT);
    }

    let fd = conn.as_raw_fd();
    for target in [0, 1] {
        if let Err(e) = qmail::fd::place(fd, target) {
            fatal(format!("unable to set up descriptors: {}", io_str(&e)));
        }
    }
    drop(conn);
    reset_signals();
    let e = env.exec(&o.program);
    fatal(format!(
        "unable to run {}: {}",
        o.program[0].to_string_lossy(),
        io_str(&e)
    ))
}

/// `-p`: the PTR name counts only if one of its addresses is the client's.
fn forward_confirms(resolver: &dns::Resolver, name: &str, ip: IpAddr) -> bool {
    match real(ip) {
        IpAddr::V4(v4) => resolver.ip4(name).is_ok_and(|ips| ips.contains(&v4)),
        IpAddr::V6(v6) => resolver.ip6(name).is_ok_and(|ips| ips.contains(&v6)),
    }
}

/// The program starts with default SIGPIPE, SIGCHLD and SIGTERM and nothing blocked.
fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGPIPE, Signal::SIGCHLD, Signal::SIGTERM] {
        // SAFETY: installing the default disposition has no handler to be unsafe.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    let _ = SigSet::all().thread_unblock();
}
