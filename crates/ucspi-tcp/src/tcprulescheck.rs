//! tcprulescheck: which rule tcpserver would apply to the client described by
//! `$TCPREMOTEIP`, `$TCPREMOTEHOST` and `$TCPREMOTEINFO`, printed as ucspi-tcp does.

use qmail::rules::{self, Client, Item};
use std::io;
use std::path::Path;

/// The report for `client`: `rule KEY:` (or `default:`), the variables set, and
/// `allow connection` or `deny connection`. Like 0.88 it stops at the deny item.
pub fn report(cdb: &Path, client: &Client) -> io::Result<String> {
    let Some(rule) = rules::lookup(cdb, client)? else {
        return Ok("default:\nallow connection\n".into());
    };
    let mut out = format!("rule {}:\n", String::from_utf8_lossy(&rule.key));
    for item in &rule.items {
        match item {
            Item::Deny => return Ok(out + "deny connection\n"),
            Item::Set(n, v) => {
                out += &format!(
                    "set environment variable {}={}\n",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(v)
                )
            }
        }
    }
    Ok(out + "allow connection\n")
}
