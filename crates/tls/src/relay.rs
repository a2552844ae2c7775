//! The engine's two phases on one rustls connection: the handshake, bounded by a
//! deadline, and the relay, which moves plaintext between the application's pipes and
//! TLS records on the network until either side closes.
//!
//! Closing, both ways: when the application closes its pipe, a close_notify goes to
//! the peer and the engine ends; when the peer sends close_notify (or just goes away),
//! the application's read pipe is closed after the last plaintext, so it sees EOF.
//! Only what is already decrypted is buffered: the network is read only when the
//! application has taken the previous plaintext, so memory stays a few records.

use crate::fdio::{self, Fd};
use rustls::Connection;
use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

const IN: i16 = libc::POLLIN;
const OUT: i16 = libc::POLLOUT;

/// Why a session ended badly; the text goes to the log.
#[derive(Debug)]
pub enum Failure {
    Timeout,
    /// The peer closed the connection during the handshake.
    Eof,
    /// The peer closed the connection without close_notify.
    Truncated,
    Tls(rustls::Error),
    Io(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Eof => f.write_str("connection closed by peer"),
            Failure::Truncated => f.write_str("peer closed without close_notify"),
            Failure::Tls(e) => write!(f, "{e}"),
            Failure::Io(e) => f.write_str(&qmail::errstr::io_str(e)),
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// Sends what rustls has queued; returns false if the network would block.
fn flush_tls(conn: &mut Connection, net_w: &mut Fd) -> Result<bool, Failure> {
    while conn.wants_write() {
        match conn.write_tls(net_w) {
            Ok(_) => {}
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(Failure::Io(e)),
        }
    }
    Ok(true)
}

/// Runs the handshake on the network descriptors until it completes or `deadline`.
pub fn handshake(conn: &mut Connection, mut net_r: Fd, mut net_w: Fd, deadline: Instant) -> Result<(), Failure> {
    while conn.is_handshaking() || conn.wants_write() {
        if !flush_tls(conn, &mut net_w)? {
            if qmail::fd::poll(&[(net_w.fd, OUT)], Some(deadline)).map_err(Failure::Io)?[0] == 0 {
                return Err(Failure::Timeout);
            }
            continue;
        }
        if !conn.is_handshaking() {
            break;
        }
        if qmail::fd::poll(&[(net_r.fd, IN)], Some(deadline)).map_err(Failure::Io)?[0] == 0 {
            return Err(Failure::Timeout);
        }
        match conn.read_tls(&mut net_r) {
            Ok(0) => return Err(Failure::Eof),
            Ok(_) => {}
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(Failure::Io(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            let _ = flush_tls(conn, &mut net_w); // the alert, if it can go
            return Err(Failure::Tls(e));
        }
    }
    Ok(())
}

/// Moves data until the session is over. `app_r` carries the application's plaintext
/// to send; `app_w` receives the peer's plaintext (closed when the peer is done).
pub fn relay(conn: &mut Connection, mut net_r: Fd, mut net_w: Fd, mut app_r: Fd, app_w: Fd) -> Result<(), Failure> {
    let mut app_w = Some(app_w);
    let mut app_open = true; // the application may still send
    let mut peer_open = true; // the peer may still send
    let mut pending: Vec<u8> = Vec::new(); // plaintext for the application
    let mut pos = 0;
    let mut chunk = vec![0u8; 16384];
    // The handshake's last read may have brought application data along.
    take_plaintext(conn, &mut pending, &mut peer_open, &mut app_w)?;
    loop {
        let flushed = flush_tls(conn, &mut net_w)?;
        if !app_open && flushed {
            return Ok(()); // close_notify sent: the application is done
        }
        if !peer_open && pos == pending.len() {
            if let Some(w) = app_w.take() {
                fdio::close(w.fd);
            }
        }
        let want_net = peer_open && pos == pending.len() && app_w.is_some();
        let want_app = app_open && flushed;
        let fds = [
            (if want_net { net_r.fd } else { -1 }, IN),
            (if !flushed { net_w.fd } else { -1 }, OUT),
            (if want_app { app_r.fd } else { -1 }, IN),
            (
                match &app_w {
                    Some(w) if pos < pending.len() => w.fd,
                    _ => -1,
                },
                OUT,
            ),
        ];
        if fds.iter().all(|&(fd, _)| fd < 0) {
            return Ok(());
        }
        let ready = qmail::fd::poll(&fds, None).map_err(Failure::Io)?;
        if ready[0] != 0 {
            pending.clear();
            pos = 0;
            // Several records per wakeup: rustls reads at most 4 KB at a time.
            while peer_open && pending.len() < 65536 {
                match conn.read_tls(&mut net_r) {
                    Ok(0) => peer_open = false,
                    Ok(_) => {}
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(Failure::Io(e)),
                }
                if let Err(e) = conn.process_new_packets() {
                    let _ = flush_tls(conn, &mut net_w);
                    return Err(Failure::Tls(e));
                }
                take_plaintext(conn, &mut pending, &mut peer_open, &mut app_w)?;
            }
        }
        if ready[3] != 0 {
            let w = app_w.as_mut().expect("polled only while open");
            match w.write(&pending[pos..]) {
                Ok(n) => pos += n,
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    // The application stopped reading: nothing more for it.
                    fdio::close(w.fd);
                    app_w = None;
                    peer_open = false;
                    pos = pending.len();
                }
            }
        }
        if ready[2] != 0 {
            match app_r.read(&mut chunk) {
                Ok(n) if n > 0 => conn.writer().write_all(&chunk[..n]).map_err(Failure::Io)?,
                Err(e) if would_block(&e) => {}
                _ => {
                    app_open = false; // EOF: the application is done sending
                    conn.send_close_notify();
                }
            }
        }
    }
}

/// Moves the plaintext rustls has decrypted into `pending`; notes a close_notify.
/// A peer gone without close_notify ends the session after its last bytes are passed on.
fn take_plaintext(
    conn: &mut Connection,
    pending: &mut Vec<u8>,
    peer_open: &mut bool,
    app_w: &mut Option<Fd>,
) -> Result<(), Failure> {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.reader().read(&mut chunk) {
            Ok(0) => {
                *peer_open = false; // close_notify
                return Ok(());
            }
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                if let Some(w) = app_w.take() {
                    let _ = fdio::write_all(w.fd, pending);
                    fdio::close(w.fd);
                }
                return Err(Failure::Truncated);
            }
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}
