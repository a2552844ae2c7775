//! Port names (`smtp`, `pop3`, `submission`) from /etc/services, read directly: the
//! binaries are static and use no NSS.

/// The TCP port named `name` in `services` (the text of /etc/services).
pub fn tcp_port(services: &str, name: &str) -> Option<u16> {
    services.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (service, port) = (words.next()?, words.next()?);
        let (number, proto) = port.split_once('/')?;
        (proto == "tcp" && (service == name || words.any(|alias| alias == name))).then(|| number.parse().ok())?
    })
}

/// `port` as tcpserver reads it: all digits is a number, anything else a service name.
pub fn resolve(port: &str) -> Option<u16> {
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return port.parse().ok();
    }
    tcp_port(&std::fs::read_to_string("/etc/services").unwrap_or_default(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        let s = "# x\nsmtp\t\t25/tcp\t\tmail\nsmtp 25/udp\nsubmission\t587/tcp # comment\npop3 110/tcp pop-3\n";
        assert_eq!(tcp_port(s, "smtp"), Some(25));
        assert_eq!(tcp_port(s, "mail"), Some(25));
        assert_eq!(tcp_port(s, "submission"), Some(587));
        assert_eq!(tcp_port(s, "pop-3"), Some(110));
        assert_eq!(tcp_port(s, "nope"), None);
        assert_eq!(resolve("2525"), Some(2525));
        assert_eq!(resolve("99999"), None);
    }
}
