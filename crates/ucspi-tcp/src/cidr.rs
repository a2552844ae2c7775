//! CIDR blocks in rules files, expanded at compile time into the keys that tcpserver
//! already looks up (exact addresses and prefixes ending in `.` or `:`), so that the
//! CDB works unchanged in Debian's tcpserver too.
//!
//! IPv4: the prefix length is rounded up to a whole octet and the block becomes that
//! many prefix keys (`192.168.0.0/22` → `192.168.0.` … `192.168.3.`). IPv6: tcpserver
//! matches on the compressed spelling (RFC 5952), so a block is expanded per 16-bit
//! group into the spellings its addresses can start with. A block where `::` could
//! stand for a zero run of unknown length inside the prefix has no exact prefix keys;
//! it is refused with a reason rather than compiled into a rule that matches too much.

use std::net::{Ipv4Addr, Ipv6Addr};

/// At most this many keys from one IPv6 block.
const MAX_KEYS: u32 = 4096;

/// The keys for `block` (`ADDRESS/LEN`), or why it cannot be expanded.
pub fn expand(block: &str) -> Result<Vec<Vec<u8>>, String> {
    let (addr, len) = block.split_once('/').ok_or_else(|| format!("bad CIDR block {block}"))?;
    let len: u32 = len.parse().map_err(|_| format!("bad prefix length in {block}"))?;
    if let Ok(v4) = addr.parse::<Ipv4Addr>() {
        return expand4(v4, len).map_err(|why| format!("{block}: {why}"));
    }
    if let Ok(v6) = addr.parse::<Ipv6Addr>() {
        return expand6(v6, len).map_err(|why| format!("{block}: {why}"));
    }
    Err(format!("bad address in CIDR block {block}"))
}

fn expand4(addr: Ipv4Addr, len: u32) -> Result<Vec<Vec<u8>>, String> {
    if len > 32 {
        return Err("prefix length over 32".into());
    }
    let base = u32::from(addr);
    if len < 32 && base & (u32::MAX >> len) != 0 {
        return Err("address has bits set after the prefix".into());
    }
    let octets = len.div_ceil(8).max(1); // /0 becomes the 256 first-octet prefixes
    let count = 1u32 << (octets * 8 - len);
    Ok((0..count)
        .map(|i| {
            let o = (base + (i << (32 - octets * 8))).to_be_bytes();
            let shown: Vec<String> = o[..octets as usize].iter().map(u8::to_string).collect();
            let dot = if octets < 4 { "." } else { "" };
            format!("{}{dot}", shown.join(".")).into_bytes()
        })
        .collect())
}

fn expand6(addr: Ipv6Addr, len: u32) -> Result<Vec<Vec<u8>>, String> {
    if len > 128 {
        return Err("prefix length over 128".into());
    }
    if len == 0 {
        return Err("a /0 block is everyone: use the empty address".into());
    }
    let base = u128::from(addr);
    if len < 128 && base & (u128::MAX >> len) != 0 {
        return Err("address has bits set after the prefix".into());
    }
    if len == 128 {
        return Ok(vec![addr.to_string().into_bytes()]);
    }
    let groups = len.div_ceil(16);
    let free = groups * 16 - len;
    if (1u32 << free) > MAX_KEYS {
        return Err(format!(
            "expands to more than {MAX_KEYS} keys; use a length nearer a multiple of 16"
        ));
    }
    let mut keys = Vec::new();
    for i in 0..(1u128 << free) {
        let net = (base + (i << (128 - groups * 16))).to_be_bytes();
        let g: Vec<u16> = net
            .chunks(2)
            .take(groups as usize)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        keys.extend(group_keys(&g)?);
    }
    Ok(keys)
}

/// The spellings that addresses starting with groups `g` can start with.
fn group_keys(g: &[u16]) -> Result<Vec<Vec<u8>>, String> {
    let k = g.len();
    let trailing = g.iter().rev().take_while(|&&x| x == 0).count();
    // A run of two or more zero groups that ends inside the prefix could be written
    // `::`, and `::` does not say how many groups it stands for.
    let mut run = 0;
    for &x in &g[..k - trailing] {
        if x == 0 {
            run += 1;
        } else {
            if run >= 2 {
                return Err("'::' inside the prefix is ambiguous; no prefix keys express it".into());
            }
            run = 0;
        }
    }
    if trailing >= 3 {
        return Err("three or more zero groups at the end of the prefix cannot be told apart from two".into());
    }
    let hex = |s: &[u16]| s.iter().map(|x| format!("{x:x}:")).collect::<String>();
    let mut keys = vec![hex(g).into_bytes()];
    if trailing > 0 {
        let start = k - trailing;
        let mut compressed = hex(&g[..start]);
        compressed.push(':');
        if start == 0 {
            compressed.insert(0, ':');
        }
        keys.push(compressed.into_bytes());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmail::rules::{candidate_keys, Client};
    use std::collections::HashSet;

    fn strs(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter().map(|k| String::from_utf8(k).unwrap()).collect()
    }

    #[test]
    fn ipv4_blocks() {
        assert_eq!(
            strs(expand("192.168.0.0/22").unwrap()),
            ["192.168.0.", "192.168.1.", "192.168.2.", "192.168.3."]
        );
        assert_eq!(strs(expand("10.0.0.0/8").unwrap()), ["10."]);
        assert_eq!(strs(expand("10.1.2.3/32").unwrap()), ["10.1.2.3"]);
        assert_eq!(expand("10.1.2.64/26").unwrap().len(), 64);
        assert_eq!(expand("0.0.0.0/0").unwrap().len(), 256);
        assert!(expand("10.1.2.3/24").unwrap_err().contains("bits set"));
        assert!(expand("10.1.2.0/33").is_err());
        assert!(expand("10.1.2/24").is_err());
    }

    #[test]
    fn ipv6_blocks() {
        assert_eq!(strs(expand("2001:db8::/32").unwrap()), ["2001:db8:"]);
        assert_eq!(strs(expand("2001:db8::/48").unwrap()), ["2001:db8:0:", "2001:db8::"]);
        assert_eq!(strs(expand("2001:db8::/64").unwrap()), ["2001:db8:0:0:", "2001:db8::"]);
        assert_eq!(strs(expand("::1/128").unwrap()), ["::1"]);
        assert_eq!(expand("2001:db8::/30").unwrap().len(), 4);
        assert!(expand("2001:db8::/80").is_err());
        assert!(expand("2001:0:0:5::/64").is_err());
        assert!(expand("2001:db8::/17").is_err());
    }

    /// Whatever keys a block compiles to must match exactly the addresses inside it,
    /// as tcpserver looks them up (compressed spelling, prefixes at `:`).
    #[test]
    fn ipv6_keys_match_exactly_the_block() {
        let blocks = [
            "2001:db8::/32",
            "2001:db8::/48",
            "2001:db8:0:5::/64",
            "2001:db8::/64",
            "::/32",
            "fd00::/8",
            "2001:db8:ab00::/40",
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for block in blocks {
            let keys: HashSet<Vec<u8>> = expand(block).unwrap().into_iter().collect();
            let (net, len) = block.split_once('/').unwrap();
            let (net, len): (u128, u32) = (net.parse::<Ipv6Addr>().unwrap().into(), len.parse().unwrap());
            for n in 0..20000 {
                // Half inside the block, half anywhere; many zero groups, to hit `::`.
                let mut a = (u128::from(rand()) << 64) | u128::from(rand());
                for gi in 0..8 {
                    if rand() % 2 == 0 {
                        a &= !(0xffffu128 << (gi * 16));
                    }
                }
                if n % 2 == 0 {
                    a = net | (a & (u128::MAX >> len));
                }
                let inside = (a ^ net) >> (128 - len) == 0;
                let ip = Ipv6Addr::from(a).to_string();
                let hit = candidate_keys(&Client {
                    ip: &ip,
                    host: None,
                    info: None,
                })
                .iter()
                .any(|k| keys.contains(k));
                assert_eq!(hit, inside, "{block} {ip}");
            }
        }
    }
}
