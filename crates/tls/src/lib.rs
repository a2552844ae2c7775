//! The UCSPI-TLS engines: the only crate in rqmail that links a TLS library.
//!
//! qmail-smtpd, qmail-popup and qmail-remote never see a key or a TLS record. They
//! speak plaintext over pipes to one small engine process, which does the
//! cryptography under its own uid (the UCSPI-TLS protocol, ucspi-tls(2)):
//!
//! - [`server`]: `ucspi-tlsd`, in front of an application under tcpserver; STARTTLS and
//!   STLS through the control socket (`SSLCTLFD`, `Y`/`y`), or implicit TLS (`-i`) for
//!   SMTPS and POP3S.
//! - [`client`]: `ucspi-tlsc`, which takes over a connected socket after the plaintext
//!   STARTTLS exchange, verifies the server, and gives its caller a plaintext pipe pair.
//! - [`relay`]: the handshake with a deadline, then the blocking, poll-driven relay with
//!   close_notify handled both ways; [`fdio`]: the descriptors under it.
//! - [`config`]: rustls with ring, TLS 1.2 and 1.3 only; certificates and keys from PEM;
//!   the session variables (mod_ssl's names) the application is told.
//!
//! Design decisions a reader must know: one process per session, no threads, no async;
//! the engine forks off its application rather than the reverse, as s6-ucspitlsd does,
//! so the application stays tcpserver's child and is logged as before.

pub mod client;
pub mod config;
pub mod fdio;
pub mod relay;
pub mod server;
