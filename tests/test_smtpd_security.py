"""qmail-smtpd under attack, each case a defect an adversarial pass once found: replayed
CRAM-MD5 exchanges and fields smuggled into checkpassword's descriptor 3, damaged
CDBs, what STARTTLS must forget, forged log lines, a clear password in CRAM-MD5's
place, a NUL that reached a panic, 8-bit addresses rewritten, passwords left in
memory. Same servers as test_smtpd: tcpserver -> [ucspi-tlsd] -> qmail-smtpd as the
test qmaild, setuid checkpassword, under softlimit -m 2000000."""

import base64
import os
import random
import re
import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

from conftest import BIN, need, need_root
from test_smtpd import cram, mta, smtp  # noqa: F401  (mta is a fixture)


def b64(data):
    return base64.b64encode(data).decode()


def forms(m):
    """Every argument form of the checkers (crates/smtpd/src/auth.rs): Hoffmann's (one
    checker), brush's (a host name first), and the seeds' four words."""
    cp = m.checkpw
    return {
        "hoffmann": [cp, "/bin/true"],
        "brush": ["mail.example.com", cp, "/bin/true"],
        "seed": [f"{m.home}/bin/vchkpw", "/bin/true", f"{m.home}/bin/cmd5checkpw", "/bin/true"],
    }


# --- 1. a recorded CRAM-MD5 exchange, replayed -------------------------------------------------

@pytest.mark.parametrize("form", ["hoffmann", "brush", "seed"])
def test_replayed_cram_md5_exchange_never_authenticates(mta, form):
    port = mta.start(args=forms(mta)[form])
    # The victim's session, as a sniffer records it.
    s = smtp(port)
    s.ehlo()
    code, challenge = s.docmd("AUTH", "CRAM-MD5")
    assert code == 334
    answer = cram(b"bob@example.com", b"bob-pw", challenge)
    assert s.docmd(answer)[0] == 235
    s.quit()
    old_challenge = base64.b64decode(challenge)
    digest = base64.b64decode(answer).split(b" ")[1]
    # The attacker's sessions: the answer as it was, then with the old challenge as an
    # extra field, through CRAM-MD5, LOGIN and PLAIN.
    attempts = [
        ("CRAM-MD5", [answer], 535),
        ("CRAM-MD5", [b64(b"bob@example.com " + digest + b"\0" + old_challenge)], 501),
        ("CRAM-MD5", [b64(b"bob@example.com\0" + old_challenge + b"\0" + digest + b" " + digest)], 501),
        ("LOGIN", [b64(b"bob@example.com"), b64(digest + b"\0" + old_challenge)], 501),
        ("LOGIN", [b64(b"bob@example.com\0" + digest + b"\0" + old_challenge), b64(b"x")], 501),
        ("PLAIN", [b64(b"\0bob@example.com\0" + digest + b"\0" + old_challenge)], 501),
    ]
    for mech, lines, want in attempts:
        s = smtp(port)
        s.ehlo()
        code, _ = s.docmd("AUTH", mech)
        for line in lines:
            assert code == 334, (mech, code)
            code, _ = s.docmd(line)
        assert code == want, (form, mech, lines)
        assert s.mail("a@example.net")[0] == 250 and s.rcpt("victim@elsewhere.org")[0] == 553
        s.quit()
    assert mta.queued() == {}


def test_challenges_are_never_reused(mta):
    port = mta.start()
    seen = set()
    for _ in range(20):
        s = smtp(port)
        s.ehlo()
        code, challenge = s.docmd("AUTH", "CRAM-MD5")
        assert code == 334
        c = base64.b64decode(challenge)
        assert re.fullmatch(rb"<\d+\.\d+\.[0-9a-f]{16}@mx\.example\.com>", c), c
        seen.add(c)
        s.docmd("*")
        s.quit()
    assert len(seen) == 20


# --- 2. damaged CDBs are temporary failures, never a match --------------------------------------

def junk(n=3000, seed=1):
    return bytes(random.Random(seed).randrange(256) for _ in range(n))


def test_damaged_morercpthosts_is_421_not_an_open_relay(mta, open_dir):
    need(shutil.which("cdb"), "tinycdb's cdb")
    control = mta.path / "control"
    src = open_dir / "more.txt"
    src.write_bytes(b"+13,0:other.example->\n\n")
    subprocess.run(["cdb", "-c", str(control / "morercpthosts.cdb"), str(src)], check=True)
    good = (control / "morercpthosts.cdb").read_bytes()
    port = mta.start()
    s = smtp(port)
    s.ehlo()
    s.mail("a@example.net")
    assert s.rcpt("u@other.example")[0] == 250 and s.rcpt("u@elsewhere.org")[0] == 553
    s.quit()
    for damage in (junk(), good[: len(good) - 12], good[:2048] + junk(40)):
        (control / "morercpthosts.cdb").write_bytes(damage)
        s = smtp(port)
        s.ehlo()
        s.mail("a@example.net")
        assert s.rcpt("u@example.com")[0] == 250          # control/rcpthosts still answers
        code, text = s.rcpt("u@elsewhere.org")
        assert (code, text) == (421, b"4.3.0 unable to read controls (#4.3.0)")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
    assert "unable to read controls: morercpthosts.cdb" in mta.log()
    assert mta.queued() == {}


def test_damaged_rules_cdb_drops_the_client(mta):
    port = mta.start()
    cdb = mta.path / "tcp.smtp.cdb"
    cdb.write_bytes(junk(seed=2))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert sock.makefile("rb").readline() == b""     # no qmail-smtpd, no banner
    assert "unable to read" in mta.log()


def test_damaged_user_database_is_454(mta):
    port = mta.start()
    db = mta.path / "users/checkpassword.cdb"
    good = db.read_bytes()
    for damage in (junk(seed=3), good[:2048] + good[2048:2060]):
        db.write_bytes(damage)
        s = smtp(port)
        s.ehlo()
        assert s.docmd("AUTH", "PLAIN " + b64(b"\0bob@example.com\0bob-pw"))[0] == 454
        assert s.mail("a@example.net")[0] == 250 and s.rcpt("x@elsewhere.org")[0] == 553
        s.quit()


# --- 6. STARTTLS forgets what came before it ------------------------------------------------------

def env_dumper(m, open_dir):
    dump = open_dir / "dump"
    dump.mkdir(exist_ok=True)
    dump.chmod(0o777)
    q = open_dir / "qq-env"
    q.write_text(f"#!/bin/sh\nenv > {dump}/env\nexec {m.home}/bin/qmail-queue\n")
    q.chmod(0o755)
    return q, dump / "env"


def test_starttls_discards_auth_and_its_relay_right(mta, pki, open_dir):
    q, dumped = env_dumper(mta, open_dir)
    port = mta.start(tls=[], env={"CERTFILE": str(pki["ec"]), "QMAILQUEUE": str(q)}, limit=False)
    s = smtp(port)
    s.ehlo()
    code, challenge = s.docmd("AUTH", "CRAM-MD5")   # offered in the clear
    assert s.docmd(cram(b"bob@example.com", b"bob-pw", challenge))[0] == 235
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    assert "PLAIN" in s.esmtp_features["auth"]       # AUTH is offered again: nobody is logged in
    assert s.mail("bob@example.com")[0] == 250
    assert s.rcpt("friend@elsewhere.org")[0] == 553
    assert s.rcpt("local@example.com")[0] == 250
    assert s.data(b"Subject: after tls\r\n\r\nx\r\n")[0] == 250
    s.quit()
    env = dict(l.split("=", 1) for l in dumped.read_text().splitlines() if "=" in l)
    for name in ("RELAYCLIENT", "SMTPAUTHUSER", "SMTP_AUTH_USER", "SMTPAUTHMETHOD"):
        assert name not in env, name
    assert env.get("TCPREMOTEINFO") is None
    (envelope, msg), = mta.queued().values()
    assert envelope == [b"Fbob@example.com", b"Tlocal@example.com"]
    assert b"with ESMTPS;" in msg and b"bob@example.com@" not in msg


def test_starttls_keeps_the_relay_right_of_the_rules(mta, pki, open_dir):
    """RELAYCLIENT from tcprules is not something the client said: it stays."""
    port = mta.start(tls=[], env={"CERTFILE": str(pki["ec"])}, rules='127.0.0.1:allow,RELAYCLIENT=""\n')
    s = smtp(port)
    s.ehlo()
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    assert s.mail("a@example.net")[0] == 250 and s.rcpt("friend@elsewhere.org")[0] == 250


# --- 7. no client byte forges a log line ----------------------------------------------------------

def test_hostile_bytes_cannot_forge_log_lines(mta):
    port = mta.start()
    forged = b"qmail-smtpd: [1]: auth: auth-success type=plain user=<postmaster@example.com> ip=10.9.8.7"
    s = smtp(port)
    s.ehlo()
    for user in (b"x\n" + forged, b"x\r" + forged, b"x\xe9> ip=10.9.8.7 " + forged):
        assert s.docmd("AUTH", "PLAIN " + b64(b"\0" + user + b"\0pw"))[0] == 535
    s.mail("a@example.net")
    for rcpt in (b"<v\r" + forged.replace(b">", b"") + b"@elsewhere.org>", b"<\xff\xfe\\> ip=10.9.8.7@elsewhere.org>"):
        s.sock.sendall(b"RCPT TO:" + rcpt + b"\r\n")
        assert s.getreply()[0] == 553
    s.quit()
    log = (mta.path / "smtpd0.log").read_bytes()
    lines = log.split(b"\n")
    assert not any(l.startswith(b"qmail-smtpd: [1]") for l in lines)
    assert b"ip=10.9.8.7" not in log.replace(b"?ip=10.9.8.7", b"")
    assert not any(b in log for b in (b"\r", b"\xe9", b"\xff"))
    assert sum(b"auth-failed" in l for l in lines) == 3
    assert sum(b"relaying denied" in l for l in lines) == 2


# --- 10. CRAM-MD5 verifies digests only ---------------------------------------------------------------

@pytest.mark.parametrize("form", ["hoffmann", "brush", "seed"])
def test_cram_md5_refuses_a_clear_password(mta, pki, form):
    port = mta.start(args=forms(mta)[form], tls=[], env={"CERTFILE": str(pki["ec"])}, limit=form != "seed")
    s = smtp(port)
    s.ehlo()
    assert s.docmd("AUTH", "PLAIN " + b64(b"\0bob@example.com\0bob-pw"))[0] == 538   # not in the clear
    assert s.docmd("AUTH", "CRAM-MD5")[0] == 334
    assert s.docmd(b64(b"bob@example.com bob-pw"))[0] == 501
    assert s.docmd("AUTH", "CRAM-MD5")[0] == 334
    assert s.docmd(b64(b"bob@example.com " + b"bob-pw".ljust(32, b"0")))[0] == 501
    assert s.mail("a@example.net")[0] == 250 and s.rcpt("victim@elsewhere.org")[0] == 553


# --- 11. a NUL that reached a panic, and the password with it ------------------------------------------

def test_nul_in_a_user_name_is_501_and_no_panic(mta):
    port = mta.start()
    s = smtp(port)
    s.ehlo()
    # With the NUL passed on, the verifier read `bob@example.com` / `bob-pw`: 235, then a
    # panic (and the password in the log) setting $SMTPAUTHUSER.
    code, _ = s.docmd("AUTH", "LOGIN " + b64(b"bob@example.com\0bob-pw"))
    assert code == 334
    assert s.docmd(b64(b"anything"))[0] == 501
    assert s.noop()[0] == 250                          # the session goes on
    s.login("bob@example.com", "bob-pw")
    s.quit()
    log = mta.log()
    assert "bob-pw" not in log and "panicked" not in log and "internal error" not in log


# --- 14. protocol bytes stay bytes ------------------------------------------------------------------------

def test_8bit_addresses_arrive_byte_for_byte(mta):
    port = mta.start()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        f = sock.makefile("rb")
        sock.sendall(b"EHLO h\xe9lo\r\nMAIL FROM:<s\xe9nder@example.net>\r\nRCPT TO:<j\xf6rg@example.com>\r\n"
                     b"RCPT TO:<j\xc3\xb6rg@example.com>\r\nDATA\r\n")
        replies = [f.readline() for _ in range(4)]
        while not replies[-1].startswith((b"354", b"5", b"4")) and len(replies) < 20:
            replies.append(f.readline())
        assert replies[-1].startswith(b"354") and replies.count(b"250 2.1.5 ok\r\n") == 2, replies
        sock.sendall(b"Subject: 8bit\r\n\r\nx\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 2.0.0 ok")
    (envelope, msg), = mta.queued().values()
    assert envelope == [b"Fs\xe9nder@example.net", b"Tj\xf6rg@example.com", "Tjörg@example.com".encode()]
    assert b"(HELO h?lo)" in msg


# --- 15. passwords do not stay in memory -----------------------------------------------------------------

def smtpd_pids(server):
    """qmail-smtpd processes started by this server (same process group)."""
    pgid = os.getpgid(server.pid)
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if comm == "qmail-smtpd" and int(rest[2]) == pgid:
                out.append(int(d))
    return out


def memory(pid):
    data = b""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                data += mem.read(hi - lo)
            except OSError:
                pass
    return data


@pytest.mark.parametrize("mech", ["PLAIN-initial", "PLAIN", "LOGIN"])
def test_auth_buffers_are_wiped(mta, mech):
    need_root("to read another user's process memory")
    port = mta.start(limit=False)
    password = b"bob-pw"
    s = smtp(port)
    s.ehlo()
    if mech == "PLAIN-initial":
        assert s.docmd("AUTH", "PLAIN " + b64(b"\0bob@example.com\0" + password))[0] == 235
    elif mech == "PLAIN":
        assert s.docmd("AUTH", "PLAIN")[0] == 334
        assert s.docmd(b64(b"\0bob@example.com\0" + password))[0] == 235
    else:
        s.docmd("AUTH", "LOGIN")
        s.docmd(b64(b"bob@example.com"))
        assert s.docmd(b64(password))[0] == 235
    assert s.noop()[0] == 250
    pid, = smtpd_pids(mta.servers[-1][0])
    mem = memory(pid)
    s.quit()
    assert len(mem) > 10000
    for secret in (password, b64(b"\0bob@example.com\0" + password).encode(), b64(password).encode()):
        assert secret not in mem, secret
