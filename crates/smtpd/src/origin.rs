//! What qmail-smtpd is told before the client says anything: tcpserver's variables,
//! those the rules set (RELAYCLIENT, SMTPAUTH, UCSPITLS ...), and the TLS engine in
//! front of it. Read from the environment once, by [`Origin::from_env`]; the dialogue
//! itself never looks at the environment, so tests build an `Origin` by hand.

use qmail::ucspitls::Engine;
use std::os::unix::ffi::OsStrExt;

#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// `$TCPREMOTEIP` as it may appear in a log line, or `unknown`.
    pub remoteip: String,
    pub remotehost: Vec<u8>,
    pub remoteinfo: Option<Vec<u8>>,
    /// `$TCPLOCALHOST`, else `$TCPLOCALIP`: the `by` of the Received line.
    pub local: Vec<u8>,
    pub localip: Vec<u8>,
    /// `$RELAYCLIENT` as the rules set it.
    pub relayclient: Option<Vec<u8>>,
    /// The engine for STARTTLS (`SSLCTLFD` ...), unless `UCSPITLS=-` or `DISABLETLS`.
    pub engine: Option<Engine>,
    /// The session is under TLS already (`SSL_PROTOCOL` without an engine: SMTPS).
    pub tls: bool,
    /// `UCSPITLS=!`: no MAIL or AUTH before STARTTLS.
    pub tls_required: bool,
    /// `SMTPAUTH=!`: no MAIL before AUTH (submission); `SMTPAUTH=-`: no AUTH.
    pub auth_required: bool,
    pub auth_off: bool,
    /// `SMTPAUTHCLEAR`: PLAIN and LOGIN before STARTTLS, where TLS is on offer.
    pub auth_clear: bool,
}

impl Origin {
    pub fn from_env() -> Origin {
        let env = |name: &str| std::env::var_os(name).map(|v| v.as_bytes().to_vec());
        let is = |name: &str, value: &[u8]| env(name).as_deref() == Some(value);
        let engine = Engine::from_vars(env).filter(|_| !is("UCSPITLS", b"-") && env("DISABLETLS").is_none());
        let localip = env("TCPLOCALIP").unwrap_or_default();
        Origin {
            remoteip: env("TCPREMOTEIP")
                .filter(|ip| !ip.is_empty())
                .map_or_else(|| "unknown".into(), |ip| qmail::log::field(&ip, 100, b"")),
            remotehost: env("TCPREMOTEHOST").unwrap_or_else(|| b"unknown".to_vec()),
            remoteinfo: env("TCPREMOTEINFO"),
            local: env("TCPLOCALHOST")
                .or_else(|| Some(localip.clone()).filter(|ip| !ip.is_empty()))
                .unwrap_or_else(|| b"unknown".to_vec()),
            localip,
            relayclient: env("RELAYCLIENT"),
            tls: env("SSL_PROTOCOL").is_some() && engine.is_none(),
            engine,
            tls_required: is("UCSPITLS", b"!"),
            auth_required: is("SMTPAUTH", b"!"),
            auth_off: is("SMTPAUTH", b"-"),
            auth_clear: env("SMTPAUTHCLEAR").is_some(),
        }
    }
}
