"""ucspi-tlsd and ucspi-tlsc, black-box, with real clients and servers: python's ssl and
`openssl s_client -starttls smtp` against the server engine in front of a line-protocol
application (tests/tls/app.py); the client engine against `openssl s_server` and against
our own server engine; bytes round-tripped both ways (10 MB each), bad clients and peers,
and the separation of the key from the application."""

import hashlib
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, PROBE, TEST_USERS, QHome, base_env, need_root

from netkit import free_port

APP = str(Path(__file__).parent / "tls" / "app.py")


@pytest.fixture(autouse=True)
def qmailhome(open_dir, monkeypatch):
    """The instance ucspi-tlsd reads: as root its engine drops to qmailtls from
    QMAILHOME/control/ids (the test user 7798)."""
    h = QHome(open_dir / "qmail")
    monkeypatch.setenv("QMAILHOME", str(h.path))
    return h


def tlsd(serve, pki, *opts, cert="ec", env=None, app=APP, tcp=()):
    e = base_env(CERTFILE=str(pki[cert]), **(env or {}))
    return serve("rqmail", ["-v", "-R", "-H", *tcp], prog=[str(BIN / "ucspi-tlsd"), *opts, app], env=e)


class Client:
    """A line-protocol client that can switch to TLS in the middle (STARTTLS)."""

    def __init__(self, port, implicit=False, ca=None, name="localhost"):
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
        self.name = name
        self.sock = self.ctx.wrap_socket(self.raw, server_hostname=name) if implicit else self.raw
        self.buf = b""
        assert self.line().startswith(b"220 tlsapp")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def starttls(self):
        assert self.cmd("STARTTLS") == b"220 go ahead"
        self.sock = self.ctx.wrap_socket(self.raw, server_hostname=self.name)

    def info(self):
        return dict(kv.split("=", 1) for kv in self.cmd("INFO").decode()[4:].split())

    def exactly(self, n):
        out = bytearray(self.buf[:n])
        self.buf = self.buf[n:]
        while len(out) < n:
            chunk = self.sock.recv(min(1 << 20, n - len(out)))
            if not chunk:
                raise EOFError(len(out))
            out += chunk
        return bytes(out)


# --- STARTTLS through the control socket ------------------------------------------------

@pytest.mark.parametrize("cert", ["ec", "rsa"])
def test_python_starttls_round_trip(serve, pki, cert):
    s = tlsd(serve, pki, cert=cert)
    c = Client(s.port, ca=pki["ca"])
    assert c.cmd("ENV UCSPITLS") == b"250 "           # TLS on offer
    assert c.cmd("ENV CERTFILE") == b"250 -"           # the key's path is not the application's
    c.starttls()
    assert c.sock.version() == "TLSv1.3"
    info = c.info()
    assert info["SSL_PROTOCOL"] == "TLSv1.3" and info["SSL_CIPHER"].startswith("TLS13_")
    assert info["SSL_TLS_SNI"] == "localhost"
    assert c.cmd("ECHO 5") == b"354 go"
    c.sock.sendall(b"hello")
    assert c.exactly(5) == b"hello" and c.line() == b"250 echoed"
    assert c.cmd("QUIT") == b"221 bye"


def test_openssl_s_client_starttls_smtp(serve, pki):
    s = tlsd(serve, pki)
    r = subprocess.run(["openssl", "s_client", "-quiet", "-starttls", "smtp", "-connect", f"127.0.0.1:{s.port}",
                        "-CAfile", str(pki["ca"]), "-verify_return_error", "-servername", "localhost"],
                       input=b"INFO\r\nECHO 3\r\nabcQUIT\r\n", capture_output=True, timeout=30)
    assert b"250 SSL_CIPHER=TLS13_" in r.stdout and b"354 go\r\nabc250 echoed\r\n221 bye" in r.stdout, r.stderr
    r = subprocess.run(["openssl", "s_client", "-quiet", "-tls1_2", "-starttls", "smtp", "-connect",
                        f"127.0.0.1:{s.port}"], input=b"INFO\r\nQUIT\r\n", capture_output=True, timeout=30)
    assert b"SSL_PROTOCOL=TLSv1.2" in r.stdout


def test_data_right_after_the_handshake(serve, pki):
    """A client's first command can arrive with its Finished message, in one read; it
    must reach the application (8 of 20 runs hung before this was fixed)."""
    s = tlsd(serve, pki)
    for _ in range(20):
        r = subprocess.run(["openssl", "s_client", "-quiet", "-starttls", "smtp", "-connect", f"127.0.0.1:{s.port}"],
                           input=b"INFO\r\nQUIT\r\n", capture_output=True, timeout=10)
        assert b"SSL_PROTOCOL=TLSv1.3" in r.stdout and b"221 bye" in r.stdout


def test_ten_megabytes_each_way(serve, pki):
    """openssl s_client (one process, select-driven, so both directions flow at once):
    10 MB up, echoed back down by the application, byte for byte."""
    s = tlsd(serve, pki)
    data = os.urandom(10 << 20)
    p = subprocess.Popen(["openssl", "s_client", "-quiet", "-ign_eof", "-starttls", "smtp", "-connect",
                          f"127.0.0.1:{s.port}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    writer = threading.Thread(target=lambda: (p.stdin.write(f"ECHO {len(data)}\r\n".encode() + data + b"QUIT\r\n"),
                                              p.stdin.close()))
    writer.start()
    out = p.stdout.read()
    writer.join()
    assert p.wait(30) == 0
    head = out.index(b"354 go\r\n") + len(b"354 go\r\n")
    assert hashlib.sha256(out[head:head + len(data)]).digest() == hashlib.sha256(data).digest()
    assert out[head + len(data):] == b"250 echoed\r\n221 bye\r\n"


def test_server_sends_ten_megabytes(serve, pki):
    s = tlsd(serve, pki)
    c = Client(s.port)
    c.starttls()
    n = 10 << 20
    c.sock.sendall(f"SEND {n}\r\n".encode())
    got = c.exactly(n)
    assert got == (bytes(range(256)) * 256 * (n // 65536 + 1))[:n]
    assert c.line() == b"250 sent"


def test_no_starttls_costs_nothing_more(serve, pki):
    """The application never asks: the engine leaves when the application does."""
    s = tlsd(serve, pki)
    c = Client(s.port)
    assert c.cmd("ECHO 2") == b"354 go"
    c.sock.sendall(b"ok")
    assert c.exactly(2) == b"ok" and c.line() == b"250 echoed"
    assert c.cmd("QUIT") == b"221 bye"
    assert c.sock.recv(10) == b""     # no engine keeps the connection open
    s.wait_log(lambda t: " status 0" in t)


def test_bad_certificate_still_serves_plaintext(serve, pki, open_dir):
    bad = open_dir / "bad.pem"
    bad.write_text("not a certificate\n")
    s = serve("rqmail", ["-v", "-R", "-H"], prog=[str(BIN / "ucspi-tlsd"), APP], env=base_env(CERTFILE=str(bad)))
    c = Client(s.port)
    assert c.cmd("STARTTLS") == b"454 TLS not available"
    assert c.cmd("QUIT") == b"221 bye"
    assert "TLS not offered" in s.log()


def test_servercert_pem_in_qmailhome(serve, pki, qmailhome):
    home = qmailhome.path
    (home / "control/servercert.pem").write_bytes(pki["rsa"].read_bytes())
    s = serve("rqmail", ["-v", "-R", "-H"], prog=[str(BIN / "ucspi-tlsd"), APP], env=base_env(QMAILHOME=str(home)))
    c = Client(s.port, ca=pki["ca"])
    c.starttls()
    assert c.sock.getpeercert()["subject"] == ((("commonName", "localhost"),),)


def test_separate_key_file(serve, pki):
    s = tlsd(serve, pki, cert="ec.crt", env={"KEYFILE": str(pki["ec.key"])})
    c = Client(s.port, ca=pki["ca"])
    c.starttls()
    assert c.cmd("ENV KEYFILE") == b"250 -"


# --- implicit TLS ---------------------------------------------------------------------

def test_implicit_python_and_openssl(serve, pki):
    s = tlsd(serve, pki, "-i")
    c = Client(s.port, implicit=True, ca=pki["ca"])
    info = c.info()
    assert info["SSL_PROTOCOL"] == "TLSv1.3" and info["SSL_TLS_SNI"] == "localhost"
    assert c.cmd("ENV SSLCTLFD") == b"250 -" and c.cmd("STARTTLS") == b"454 TLS not available"
    assert c.cmd("QUIT") == b"221 bye"
    r = subprocess.run(["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{s.port}", "-CAfile",
                        str(pki["ca"]), "-verify_return_error"], input=b"INFO\r\nQUIT\r\n", capture_output=True,
                       timeout=30)
    assert b"220 tlsapp ready" in r.stdout and b"SSL_PROTOCOL=TLSv1.3" in r.stdout and b"221 bye" in r.stdout


def test_only_tls12_and_13(serve, pki):
    """A client that offers only TLS 1.1 or 1.0 (OpenSSL's security level lowered so
    that it really tries) is refused in the handshake."""
    s = tlsd(serve, pki, "-i")
    for old in ("-tls1_1", "-tls1"):
        r = subprocess.run(["openssl", "s_client", "-quiet", old, "-cipher", "DEFAULT@SECLEVEL=0", "-connect",
                            f"127.0.0.1:{s.port}"], input=b"QUIT\r\n", capture_output=True, timeout=30)
        assert b"220 tlsapp" not in r.stdout and b"alert" in r.stderr
    s.wait_log(lambda t: t.count("handshake failed: peer is incompatible") == 2)


# --- bad input --------------------------------------------------------------------------

def test_plaintext_client_after_starttls(serve, pki):
    s = tlsd(serve, pki)
    c = Client(s.port)
    assert c.cmd("STARTTLS") == b"220 go ahead"
    c.raw.sendall(b"EHLO i do not speak tls\r\n")
    c.raw.settimeout(10)
    rest = b""
    while chunk := c.raw.recv(4096):
        rest += chunk
    assert b"250" not in rest               # the application never saw the plaintext
    s.wait_log(lambda t: "handshake failed" in t)


def test_truncated_client_hello(serve, pki):
    s = tlsd(serve, pki, "-i")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        raw.sendall(bytes.fromhex("160301020001000200"))  # a record header promising more
        raw.shutdown(socket.SHUT_WR)
        raw.recv(100)
    s.wait_log(lambda t: "handshake failed" in t and " status " in t.split("handshake failed")[1])


def test_stalled_handshake_times_out(serve, pki):
    s = tlsd(serve, pki, "-i", "-t", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        t = time.monotonic()
        assert raw.recv(100) == b""
        assert 0.8 < time.monotonic() - t < 8
    s.wait_log(lambda t: "handshake failed: timed out" in t)


def test_garbage_costs_one_process_and_a_line(serve, pki):
    s = tlsd(serve, pki, "-i")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            raw.recv(100)
    log = s.wait_log(lambda t: t.count("handshake failed") == 5 and t.count(" end ") == 5)
    assert log.count("ucspi-tlsd: warning: handshake failed") == 5


def test_application_exits_mid_session(serve, pki):
    s = tlsd(serve, pki)
    c = Client(s.port)
    c.starttls()
    c.sock.sendall(b"EXIT\r\n")
    assert c.sock.recv(100) == b""     # a clean close_notify: no ssl error raised


def test_peer_vanishes(serve, pki):
    s = tlsd(serve, pki)
    c = Client(s.port)
    c.starttls()
    socket.socket(fileno=os.dup(c.sock.fileno())).shutdown(socket.SHUT_RDWR)   # no close_notify
    c.sock.close()
    s.wait_log(lambda t: "without close_notify" in t and " status " in t)


def test_client_close_notify_ends_the_application(serve, pki):
    s = tlsd(serve, pki)
    c = Client(s.port)
    c.starttls()
    c.sock = c.sock.unwrap()           # sends close_notify, waits for ours
    s.wait_log(lambda t: " status 0" in t)


# --- the key stays with the engine --------------------------------------------------------

def engine_ids(uid):
    """(uid, gid) of each ucspi-tlsd process running under uid."""
    pids = subprocess.run(["pgrep", "-u", str(uid), "-f", "ucspi-tlsd"], capture_output=True, text=True).stdout.split()
    out = []
    for pid in pids:
        status = dict(l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines())
        out.append((int(status["Uid"].split()[0]), int(status["Gid"].split()[0])))
    return out


# The engine's ids: qmailtls from control/ids (issue 12 item 18: not 65534, which every
# nobody daemon shares and could signal it), or $TLS_UID/$TLS_GID.
@pytest.mark.parametrize("env,engine", [({}, (TEST_USERS["qmailtls"], TEST_USERS["qmailtls"])),
                                        ({"TLS_UID": "7796", "TLS_GID": "7799"}, (7796, 7799))])
def test_application_cannot_read_the_key(serve, pki, env, engine):
    need_root()
    os.chown(pki["ec"], 0, 0)
    pki["ec"].chmod(0o600)
    s = tlsd(serve, pki, "-u", "7791", "-g", "7791", env=env)
    c = Client(s.port)
    assert c.cmd("WHOAMI") == b"250 7791 7791"
    assert c.cmd(f"KEYCHECK {pki['ec']}") == b"250 denied closed"
    c.starttls()
    assert c.cmd(f"KEYCHECK {pki['ec']}") == b"250 denied closed"
    assert c.cmd("WHOAMI") == b"250 7791 7791"
    # The engine runs as qmailtls (or TLS_UID), not as root and not as the application.
    assert set(engine_ids(engine[0])) == {engine}
    assert c.cmd("QUIT") == b"221 bye"


def test_no_qmailtls_in_control_ids_is_fatal(pki, qmailhome):
    """Without a qmailtls entry (an instance set up before it existed) the engine has no
    uid of its own: ucspi-tlsd refuses to run, and the application does not start."""
    need_root()
    ids = qmailhome.path / "control/ids"
    ids.write_text("".join(l + "\n" for l in ids.read_text().splitlines() if not l.startswith("qmailtls:")))
    run = [str(BIN / "ucspi-tlsd"), PROBE]
    r = subprocess.run(run, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                       env=base_env(CERTFILE=str(pki["ec"])))
    assert (r.returncode, r.stdout) == (111, b"")
    assert r.stderr == f"ucspi-tlsd: fatal: no user qmailtls in {ids}: create it and run qmail-mkids " \
                       "(INSTALL step 7), or set $TLS_UID and $TLS_GID\n".encode()
    ids.unlink()
    r = subprocess.run(run, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                       env=base_env(CERTFILE=str(pki["ec"])))
    assert (r.returncode, r.stdout) == (111, b"")
    assert r.stderr == f"ucspi-tlsd: fatal: unable to read {ids}: file does not exist\n".encode()
    # Both overrides together work without control/ids; one alone is refused.
    r = subprocess.run(run, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                       env=base_env(CERTFILE=str(pki["ec"]), TLS_UID="7796"))
    assert (r.returncode, r.stdout) == (111, b"")
    assert r.stderr == b"ucspi-tlsd: fatal: $TLS_UID without $TLS_GID\n"
    r = subprocess.run(run, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                       env=base_env(CERTFILE=str(pki["ec"]), TLS_UID="7796", TLS_GID="7796"))
    assert r.returncode == 0 and b"END" in r.stdout


@pytest.mark.parametrize("opts", [["-u", "7791"], ["-i", "-u", "7791"]])
def test_uid_without_gid_is_refused(pki, opts):
    """Issue 12 item 17: -u without -g would run the application with gid 0 and root's
    groups; ucspi-tlsd refuses it as a usage error, as tcpserver does."""
    r = subprocess.run([str(BIN / "ucspi-tlsd"), *opts, PROBE], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10, env=base_env(CERTFILE=str(pki["ec"])))
    assert (r.returncode, r.stdout) == (100, b"")
    assert r.stderr.startswith(b"ucspi-tlsd: fatal: -u without -g ") and b"\nucspi-tlsd: usage: ucspi-tlsd " in r.stderr


@pytest.mark.parametrize("cert", ["ec", "rsa"])
def test_under_the_seeds_softlimit(serve, pki, cert):
    """The engine, and the static application behind it, under softlimit -m 2000000."""
    s = serve("rqmail", ["-v", "-R", "-H"], prog=["softlimit", "-m", "2000000", str(BIN / "ucspi-tlsd"), "-i",
                                                   str(Path(__file__).parent.parent / "target/test-bin/envprobe")],
              env=base_env(CERTFILE=str(pki[cert])))
    ctx = ssl._create_unverified_context()
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=10)) as t:
        out = b""
        while chunk := t.recv(65536):
            out += chunk
    assert b"ENV SSL_PROTOCOL=TLSv1.3" in out and b"LIMIT_AS 2000000" in out and out.endswith(b"END\n")
    s.wait_log(lambda t: " status 0" in t)


# --- ucspi-tlsc ---------------------------------------------------------------------------

def tlsc(port, *opts):
    """Connects to port, hands the socket to ucspi-tlsc; returns (proc, to_engine, from_engine, notif)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    note_r, note_w = os.pipe()
    for fd in (to_r, from_w, note_w):
        os.set_inheritable(fd, True)
    p = subprocess.Popen([str(BIN / "ucspi-tlsc"), "-d", str(note_w), *opts, str(to_r), str(from_w)],
                         stdin=sock.fileno(), stdout=sock.fileno(), stderr=subprocess.PIPE,
                         pass_fds=(to_r, from_w, note_w))
    sock.close()
    for fd in (to_r, from_w, note_w):
        os.close(fd)
    return p, to_w, from_r, note_r


def read_all(fd):
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out


@pytest.mark.parametrize("cert, opts, code, why", [
    ("ec", ["-n", "localhost"], 0, ""),
    ("rsa", ["-n", "127.0.0.1"], 0, ""),
    ("wrongname", ["-n", "localhost"], 100, b"not valid for name"),
    ("expired", ["-n", "localhost"], 100, b"certificate expired"),
    ("selfsigned", ["-n", "localhost"], 100, b"UnknownIssuer"),
    ("selfsigned", ["-n", "localhost", "-k"], 0, ""),
    ("expired", ["-n", "localhost", "-k"], 0, ""),
])
def test_client_against_openssl_s_server(pki, cert, opts, code, why):
    """s_server -rev answers each line reversed; -naccept 1 serves one connection, so
    readiness is its ACCEPT line rather than a probe connection."""
    port = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-rev", "-accept", f"127.0.0.1:{port}",
                            "-cert", str(pki[cert + ".crt"]), "-key", str(pki[cert + ".key"]), "-naccept", "1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while b"ACCEPT" not in srv.stdout.readline():
            assert srv.poll() is None, "s_server did not start"
        p, to_w, from_r, note_r = tlsc(port, "-c", str(pki["ca"]), *opts)
        note = read_all(note_r)
        if code == 0:
            assert note.startswith(b"SSL_PROTOCOL=TLSv1.3\0SSL_CIPHER=TLS13_") and note.endswith(b"\0\0")
            os.write(to_w, b"hello world\n")
            got = b""
            while b"dlrow olleh" not in got:
                got += os.read(from_r, 4096)
        os.close(to_w)
        read_all(from_r)
        os.close(from_r)
        assert p.wait(20) == code, p.stderr.read()
        if code:
            assert note == b"" and why in p.stderr.read()
    finally:
        srv.kill()
        srv.wait()


def test_client_against_our_server_both_ways(serve, pki):
    """ucspi-tlsc to ucspi-tlsd -i: the whole chain of ours, verified, 1 MB each way."""
    s = tlsd(serve, pki, "-i")
    p, to_w, from_r, note_r = tlsc(s.port, "-n", "localhost", "-c", str(pki["ca"]))
    assert read_all(note_r).startswith(b"SSL_PROTOCOL=TLSv1.3")
    data = os.urandom(1 << 20)
    msg = f"ECHO {len(data)}\r\n".encode() + data + b"QUIT\r\n"
    writer = threading.Thread(target=lambda: [os.write(to_w, msg[i:i + 65536]) for i in range(0, len(msg), 65536)])
    writer.start()
    got = read_all(from_r)
    writer.join()
    os.close(to_w)
    assert got.startswith(b"220 tlsapp ready\r\n354 go\r\n")
    body = got[len(b"220 tlsapp ready\r\n354 go\r\n"):]
    assert body[:len(data)] == data and body[len(data):] == b"250 echoed\r\n221 bye\r\n"
    assert p.wait(20) == 0


def test_client_refuses_plaintext_server(pki):
    """A server that answers in plaintext: 111, nothing reaches the caller, no fallback."""
    port = free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    p, to_w, from_r, note_r = tlsc(port, "-n", "localhost")
    conn, _ = srv.accept()
    conn.sendall(b"220 plaintext here\r\n" * 10)
    conn.close()
    assert read_all(note_r) == b"" and read_all(from_r) == b""
    assert p.wait(20) == 111 and b"handshake" in p.stderr.read()
    srv.close()
