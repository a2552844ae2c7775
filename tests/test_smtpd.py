"""qmail-smtpd, black-box, behind rqmail's tcpserver with a real rules CDB: the relay
matrix, the seeds' run line verbatim, AUTH with right and wrong passwords and a verifier
that is down, STARTTLS and SMTPS through ucspi-tlsd with python's smtplib and swaks,
and the edge cases as dialog files (tests/smtp/*.dialog) run by one runner.

As root every server runs in a private mount namespace whose /var/qmail is the test's
QMAILHOME: qmail-smtpd as the test qmaild (7791, -u/-g as in the seeds' line),
qmail-queue and checkpassword setuid as make install leaves them, all under
`softlimit -m 2000000`. Without root the same servers run as the caller."""

import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, IS_ROOT, NO_DNS, QHome, TEST_GROUPS, TEST_USERS, need, need_root
from netkit import free_port, wait_port


DIALOGS = sorted((Path(__file__).parent / "smtp").glob("*.dialog"))
QMAILD, NOFILES = TEST_USERS["qmaild"], TEST_GROUPS["nofiles"]


class Mta:
    """A QMAILHOME with a queue, rcpthosts example.com, and bob@example.com (password
    bob-pw, CRAM-MD5 allowed) in checkpassword's database."""

    def __init__(self, path):
        self.h = QHome(path)
        self.path = self.h.path
        c = self.path / "control"
        (c / "me").write_text("mx.example.com\n")
        (c / "rcpthosts").write_text("example.com\n")
        (c / "checkpwdelay").write_text("0\n")
        b = self.path / "bin"
        for p in ("checkpassword", "qmail-queue"):
            (b / p).unlink(missing_ok=True)
            shutil.copy(BIN / p, b / p)
        if IS_ROOT:   # as make install leaves them
            os.chown(b / "qmail-queue", TEST_USERS["qmailq"], TEST_GROUPS["qmail"])
            (b / "qmail-queue").chmod(0o4711)
            (b / "checkpassword").chmod(0o4711)
        for name in ("vchkpw", "cmd5checkpw"):
            (b / name).symlink_to("checkpassword")
        r = subprocess.run([str(BIN / "checkpassword-users"), "add", "-c", "-u", "7790", "-g", "7791", "-d", "/nonexistent",
                            "bob@example.com"], input=b"bob-pw\n", env=self.env(), capture_output=True)
        assert r.returncode == 0, r.stderr
        # The qmail home as the programs see it.
        self.home = "/var/qmail" if IS_ROOT else str(self.path)
        self.checkpw = f"{self.home}/bin/checkpassword"
        self.servers = []

    def env(self, **extra):
        return self.h.env(DNSCACHEIP=NO_DNS, **extra)

    def rules(self, text):
        cdb = self.path / "tcp.smtp.cdb"
        r = subprocess.run([str(BIN / "tcprules"), str(cdb), str(cdb) + ".tmp"], input=text.encode(), capture_output=True)
        assert r.returncode == 0, r.stderr
        return cdb

    def start(self, args=None, rules='127.0.0.1:allow\n', env=None, tls=None, limit=True, line=None):
        """Starts tcpserver -> [ucspi-tlsd] -> qmail-smtpd ARGS; returns its port."""
        cdb = self.rules(rules)
        args = [self.checkpw, "/bin/true"] if args is None else args
        ids = ["-u", str(QMAILD), "-g", str(NOFILES)] if IS_ROOT else []
        # With TLS, tcpserver stays root and ucspi-tlsd drops the application (INSTALL).
        front = [str(BIN / "ucspi-tlsd"), *ids, *tls] if tls is not None else []
        cmd = line or [str(BIN / "tcpserver"), "-1", "-v", "-R", "-H", "-l", "0", "-x", str(cdb),
                       *([] if front else ids), "127.0.0.1", "0", *front, str(BIN / "qmail-smtpd"), *args]
        if limit:
            cmd = ["softlimit", "-m", "2000000", *cmd]
        cmd = self.inside(cmd)
        e = self.env(QMAILHOME=self.home, **(env or {}))
        log = open(self.path / f"smtpd{len(self.servers)}.log", "wb")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=e, start_new_session=True)
        line = p.stdout.readline()
        self.servers.append((p, log))
        assert line.strip().isdigit(), (self.path / f"smtpd{len(self.servers) - 1}.log").read_text()
        return int(line)

    def inside(self, cmd):
        """As root: `cmd` in a private mount namespace whose /var/qmail is this home."""
        if not IS_ROOT:
            return cmd
        setup = 'mount -t tmpfs rqmail /var && mkdir /var/qmail && mount --bind "$0" /var/qmail && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", setup, str(self.path), *cmd]

    def log(self, i=-1):
        return (self.path / f"smtpd{len(self.servers) - 1 if i == -1 else i}.log").read_text(errors="replace")

    def stop(self):
        for p, log in self.servers:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
            log.close()

    def queued(self):
        """{number: (F and T records, message)}; as root the u record must be qmaild's."""
        out = {}
        for n, (env, msg) in self.h.todo().items():
            if IS_ROOT:
                assert env[0] == f"u{QMAILD}".encode(), env[:2]
            out[n] = ([r for r in env if r[:1] in (b"F", b"T")], msg)
        return out


@pytest.fixture
def mta(open_dir):
    need(shutil.which("softlimit"), "daemontools' softlimit")
    m = Mta(open_dir / "qmail")
    yield m
    m.stop()


def smtp(port, **kw):
    return smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.net", timeout=20, **kw)


def cram(user, password, challenge_b64):
    challenge = base64.b64decode(challenge_b64)
    return base64.b64encode(user + b" " + hmac.new(password, challenge, hashlib.md5).hexdigest().encode()).decode()


# --- the relay matrix -------------------------------------------------------------------------

DOWN = Path(__file__).parent / "smtp" / "checker-down"


@pytest.mark.parametrize("relay", [True, False])
@pytest.mark.parametrize("auth", ["none", "ok", "wrong", "down"])
@pytest.mark.parametrize("domain", ["example.com", "elsewhere.org"])
def test_relay_matrix(mta, relay, auth, domain):
    checker = [str(DOWN), "/bin/true"] if auth == "down" else None
    rules = '127.0.0.1:allow,RELAYCLIENT=""\n' if relay else "127.0.0.1:allow\n"
    # The verifier that is down is a shell script: no softlimit for that server.
    port = mta.start(args=checker, rules=rules, limit=auth != "down")
    before = len(mta.queued())
    s = smtp(port)
    s.ehlo()
    assert "PLAIN" in s.esmtp_features["auth"]
    if auth != "none":
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0bob@example.com\0" + (b"bob-pw" if auth in ("ok", "down") else b"bob-pW")).decode())
        assert code == {"ok": 235, "wrong": 535, "down": 454}[auth]
    assert s.mail("sender@example.net")[0] == 250
    code, _ = s.rcpt(f"rcpt@{domain}")
    allowed = relay or domain == "example.com" or auth == "ok"
    assert code == (250 if allowed else 553)
    if allowed:
        assert s.data(b"Subject: matrix\r\n\r\nbody\r\n")[0] == 250
    s.quit()
    queued = mta.queued()
    assert len(queued) == before + (1 if allowed else 0)
    if allowed:
        (env, msg), = queued.values()
        assert env == [b"Fsender@example.net", f"Trcpt@{domain}".encode()]
        assert b"body\n" in msg
        if auth == "ok":
            # tcpserver -l 0 sets TCPLOCALHOST=0, which qmail-smtpd names as itself.
            assert b"(HELO client.example.net) (bob@example.com@127.0.0.1)\n  by 0 with ESMTPA;" in msg
    if not allowed:
        assert f"rejected rcpt <rcpt@{domain}>: relaying denied" in mta.log()


# --- the seeds' run line, verbatim ---------------------------------------------------------------

SEED = ("softlimit -m 2000000 tcpserver -H -R -l 0 -t 1 -v -p -x /etc/tcp.smtp.cdb "
        "-u $QMAILDUID -g $NOFILESGID 0 smtp "
        "qmail-smtpd /home/vpopmail/bin/vchkpw /bin/true /bin/cmd5checkpw /bin/true 2>&1")


@pytest.fixture
def seed(mta, open_dir):
    """The seeds' line in a private mount namespace: vchkpw (setuid root) at
    /home/vpopmail/bin, cmd5checkpw at /bin (an overlay on /usr/bin), the rules at
    /etc/tcp.smtp.cdb (an overlay on /etc), the instance at /var/qmail. Only `0 smtp`
    becomes 127.0.0.1 and a free port, so that the test owns what it listens on."""
    need_root("mount namespace, setuid vchkpw, -u qmaild")
    cdb = mta.rules('127.0.0.1:allow\n')
    up = open_dir / "overlay"
    for d in ("usr-bin", "etc", "w1", "w2", "home/vpopmail/bin"):
        (up / d).mkdir(parents=True)
    for dest in (up / "usr-bin/cmd5checkpw", up / "home/vpopmail/bin/vchkpw"):
        shutil.copy(BIN / "checkpassword", dest)
        dest.chmod(0o4711)
    shutil.copy(cdb, up / "etc/tcp.smtp.cdb")
    port = free_port()
    line = SEED.replace("0 smtp", f"127.0.0.1 {port}")
    setup = (f"mount -t tmpfs rqmail /var && mkdir /var/qmail && mount --bind {mta.path} /var/qmail && "
             f"mount --bind {up}/home /home && "
             f"mount -t overlay o -o lowerdir=/usr/bin,upperdir={up}/usr-bin,workdir={up}/w1 /usr/bin && "
             f"mount -t overlay o -o lowerdir=/etc,upperdir={up}/etc,workdir={up}/w2 /etc && "
             f"exec {line}")
    env = mta.env(QMAILDUID=str(QMAILD), NOFILESGID=str(NOFILES), PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("QMAILHOME")
    log = open(open_dir / "seed.log", "wb")
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", setup], stdout=log,
                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
    wait_port(port)
    yield port, open_dir / "seed.log"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)
    log.close()


@pytest.mark.parametrize("mech", ["LOGIN", "PLAIN", "CRAM-MD5"])
def test_seed_line_right_and_wrong_passwords(mta, seed, mech):
    port, log = seed
    before = len(mta.queued())
    for password, code in ((b"bob-pw", 235), (b"wrong", 535), (b"", 535)):
        s = smtp(port)
        s.ehlo()
        assert set(s.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN", "CRAM-MD5"}
        if mech == "LOGIN":
            s.docmd("AUTH", "LOGIN")
            s.docmd(base64.b64encode(b"bob@example.com").decode())
            got = s.docmd(base64.b64encode(password).decode() if password else "=")[0]
        elif mech == "PLAIN":
            got = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob@example.com\0" + password).decode())[0]
        else:
            _, challenge = s.docmd("AUTH", "CRAM-MD5")
            got = s.docmd(cram(b"bob@example.com", password or b"x", challenge))[0]
        assert got == (code if password else 501 if mech != "CRAM-MD5" else 535), (mech, password)
        rcpt = s.mail("a@example.net") and s.rcpt("someone@elsewhere.org")[0]
        assert rcpt == (250 if got == 235 else 553)
        s.quit()
    # Only the authenticated session relayed; the server ran as qmaild under the limit.
    assert len(mta.queued()) == before
    text = log.read_text()
    assert "auth-success" in text and "auth-failed" in text


def test_seed_line_with_true_everywhere_is_no_open_relay(mta, open_dir):
    """`qmail-smtpd /bin/true /bin/true /bin/true /bin/true`: brush 0.31 read this as an
    open relay; here /bin/true is never a verifier that says yes."""
    port = mta.start(args=["/bin/true", "/bin/true", "/bin/true", "/bin/true"], limit=False)
    s = smtp(port)
    s.ehlo()
    assert "auth" not in s.esmtp_features       # /bin/true is no verifier: AUTH is off
    code = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0mallory\0whatever").decode())[0]
    assert code == 503
    assert "AUTH not offered: checker /bin/true cannot verify passwords" in mta.log()
    assert s.mail("a@example.net")[0] == 250 and s.rcpt("victim@elsewhere.org")[0] == 553


# --- real clients, TLS -------------------------------------------------------------------------

def test_smtplib_starttls_login_send(mta, pki):
    port = mta.start(tls=[], env={"CERTFILE": str(pki["ec"])})
    s = smtp(port)
    s.ehlo()
    assert "starttls" in s.esmtp_features and set(s.esmtp_features["auth"].split()) == {"CRAM-MD5"}
    code = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob@example.com\0bob-pw").decode())[0]
    assert code == 538                      # no PLAIN in the clear where TLS is on offer
    s.starttls(context=ssl.create_default_context(cafile=str(pki["ca"])))
    s.ehlo()
    assert "starttls" not in s.esmtp_features and "PLAIN" in s.esmtp_features["auth"]
    s.login("bob@example.com", "bob-pw")
    from email.message import EmailMessage
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "bob@example.com", "friend@elsewhere.org", "tls"
    m.set_content("over TLS\n" + ("x" * 70 + "\n") * 70)
    s.send_message(m)
    s.quit()
    (env, msg), = mta.queued().values()
    assert env == [b"Fbob@example.com", b"Tfriend@elsewhere.org"]
    assert b"with ESMTPSA;" in msg and b"over TLS\n" + (b"x" * 70 + b"\n") * 70 in msg


def test_tls_required_by_rule(mta, pki):
    port = mta.start(tls=[], env={"CERTFILE": str(pki["ec"])}, rules='127.0.0.1:allow,UCSPITLS="!"\n')
    s = smtp(port)
    s.ehlo()
    assert s.mail("a@example.net")[0] == 530
    assert s.docmd("AUTH", "CRAM-MD5")[0] == 530
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    assert s.mail("a@example.net")[0] == 250


def test_submission_requires_auth(mta):
    port = mta.start(env={"SMTPAUTH": "!"})
    s = smtp(port)
    s.ehlo()
    assert s.mail("a@example.net")[0] == 530
    s.login("bob@example.com", "bob-pw")
    assert s.mail("bob@example.com")[0] == 250 and s.rcpt("x@elsewhere.org")[0] == 250


def test_smtps_implicit(mta, pki):
    port = mta.start(tls=["-i"], env={"CERTFILE": str(pki["rsa"])})
    s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="c.example.net", timeout=20,
                         context=ssl.create_default_context(cafile=str(pki["ca"])))
    s.ehlo()
    assert "starttls" not in s.esmtp_features and "PLAIN" in s.esmtp_features["auth"]
    s.login("bob@example.com", "bob-pw")
    s.sendmail("bob@example.com", ["x@elsewhere.org"], b"Subject: smtps\r\n\r\nhi\r\n")
    s.quit()
    (env, msg), = mta.queued().values()
    assert b"with ESMTPSA;" in msg


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("tls", ["--tls", "--tlsc", None])
def test_swaks(mta, pki, mech, tls):
    need(shutil.which("swaks"), "swaks")
    port = mta.start(tls=(["-i"] if tls == "--tlsc" else []) if tls else None,
                     env={"CERTFILE": str(pki["ec"])} if tls else None)
    base = ["swaks", "-s", "127.0.0.1", "-p", str(port), "-t", "friend@elsewhere.org", "-f", "bob@example.com",
            "--h-Subject", f"swaks {mech}", "-a", mech, "-au", "bob@example.com"] + ([tls] if tls else [])
    r = subprocess.run(base + ["-ap", "bob-pw"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode()[-2000:]
    assert b"<~  235 2.7.0" in r.stdout or b"<-  235 2.7.0" in r.stdout
    (env, msg), = mta.queued().values()
    assert env[1] == b"Tfriend@elsewhere.org" and f"Subject: swaks {mech}".encode() in msg
    r = subprocess.run(base + ["-ap", "nope"], capture_output=True, timeout=60)
    assert r.returncode != 0 and b"535 5.7.8" in r.stdout
    assert len(mta.queued()) == 1


# --- edge cases as dialog files -------------------------------------------------------------------

def run_dialog(mta, port, path):
    r"""Runs one dialog file against the server on `port` of `mta`. One step a line
    (blank lines and `#` comments skipped), `KIND: TEXT`:

      c: TEXT      sends TEXT and CRLF
      C: TEXT      sends TEXT with python escapes (\r, \n, \x00), nothing added
      s: TEXT      the next reply line starts with TEXT
      s=: TEXT     the next reply line is exactly TEXT (CRLF not written)
      s$: TEXT     the last line of the next (multi-line) reply starts with TEXT
      s$=: TEXT    ... is exactly TEXT
      c*N: TEXT    any of the above done N times: `c*3: NOOP` is three NOOP lines,
                   `C*1822: a` is 1822 bytes `a`, `s*3: 250` three replies
      queued: F<sender> T<rcpt> ...
                   one message not yet matched has reached the queue (todo/) with exactly
                   this envelope (`F<>`: the null sender); it is now matched
      body: TEXT   that message contains TEXT (python escapes; as qmail-queue stored it)
      queued: 0    no message reached the queue that a `queued:` line has not matched
      close        the server closes the connection

    Every message the dialog queued must be matched: at the end `queued: 0` holds."""
    seen = set(mta.queued())
    last = None
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        f = sock.makefile("rb")
        for n, raw in enumerate(path.read_text().splitlines(), 1):
            if not raw or raw.startswith("#"):
                continue
            where = f"{path.name}:{n}: {raw[:200]}"
            if raw == "close":
                assert f.readline() == b"", where
                continue
            kind, sep, text = raw.partition(": ")
            m = re.fullmatch(r"(c|C|s\$?=?|queued|body)(?:\*(\d+))?", kind)
            assert sep and m, f"bad dialog line {where}"
            kind, times = m.group(1), int(m.group(2) or 1)
            for _ in range(times):
                if kind == "c":
                    sock.sendall(text.encode() + b"\r\n")
                elif kind == "C":
                    sock.sendall(unescape(text))
                elif kind.startswith("s"):
                    got = f.readline()
                    while kind.startswith("s$") and got[3:4] == b"-":
                        got = f.readline()
                    ok = got == text.encode() + b"\r\n" if kind.endswith("=") else got.startswith(text.encode())
                    assert ok, f"{where}\n got {got!r}"
                elif kind == "queued":
                    new = {k: v for k, v in mta.queued().items() if k not in seen}
                    if text == "0":
                        assert not new, f"{where}\n queued {[e for e, _ in new.values()]}"
                        continue
                    assert all(re.fullmatch(r"[FT]<[^<>]*>", r) for r in text.split()), f"bad envelope {where}"
                    want = [r[0].encode() + r[2:-1].encode() for r in text.split()]
                    hit = [k for k, (env, _) in new.items() if env == want]
                    assert hit, f"{where}\n queued {[e for e, _ in new.values()]}"
                    seen.add(hit[0])
                    last = new[hit[0]][1]
                elif kind == "body":
                    assert last is not None, f"body without queued: {where}"
                    assert unescape(text) in last, f"{where}\n message {last[:2000]!r}"
    new = [env for k, (env, _) in mta.queued().items() if k not in seen]
    assert not new, f"{path.name}: queued and not matched by a `queued:` line: {new}"


def unescape(text):
    return text.encode().decode("unicode_escape").encode("latin-1")


@pytest.mark.parametrize("dialog", DIALOGS, ids=[d.stem for d in DIALOGS])
def test_dialog(mta, dialog):
    (mta.path / "control/databytes").write_text("10000\n")
    port = mta.start()
    run_dialog(mta, port, dialog)


def test_thousand_recipients(mta):
    port = mta.start(rules='127.0.0.1:allow,RELAYCLIENT=""\n')
    s = smtp(port)
    s.ehlo()
    s.mail("a@example.net")
    for i in range(1000):
        assert s.rcpt(f"r{i}@example.com")[0] == 250
    assert s.rcpt("one-too-many@example.com")[0] == 452
    assert s.data(b"Subject: many\r\n\r\nx\r\n")[0] == 250
    s.quit()
    (env, _), = mta.queued().values()
    assert len(env) == 1001 and env[-1] == b"Tr999@example.com"


def test_disconnect_mid_data_queues_nothing(mta):
    port = mta.start()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n")
        f = sock.makefile("rb")
        while not f.readline().startswith(b"354"):
            pass
        sock.sendall(b"Subject: cut\r\n\r\n" + b"x" * 100000)
        f.close()
        sock.shutdown(socket.SHUT_RDWR)   # the client is gone mid-DATA
    assert mta.queued() == {}
    for _ in range(100):   # qmail-queue sees the input end without an envelope and cleans up
        if mta.h.files("mess") == [] and mta.h.files("intd") == [] and mta.h.files("pid") == []:
            break
        time.sleep(0.1)
    assert mta.h.files("mess") == [] and mta.h.files("intd") == [] and mta.queued() == {}


def test_idle_client_hits_timeoutsmtpd(mta):
    (mta.path / "control/timeoutsmtpd").write_text("1\n")
    port = mta.start()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        t = time.monotonic()
        assert f.readline() == b"451 4.4.2 timeout (#4.4.2)\r\n"
        assert f.readline() == b"" and 0.8 < time.monotonic() - t < 10


def test_missing_rcpthosts_is_no_open_relay(mta):
    (mta.path / "control/rcpthosts").unlink()
    port = mta.start()
    s = smtp(port)
    s.ehlo()
    s.mail("a@example.net")
    assert s.rcpt("u@example.com")[0] == 553 and s.rcpt("u@elsewhere.org")[0] == 553
    assert "control/rcpthosts is missing" in mta.log()


def test_queue_exit_codes_become_replies(mta, open_dir):
    for code, reply in ((31, b"554 5.3.0 mail server permanently rejected message (#5.3.0)"),
                        (71, b"451 4.3.0 mail server temporarily rejected message (#4.3.0)")):
        q = open_dir / f"qq{code}"
        q.write_text(f"#!/bin/sh\ncat >/dev/null\nexit {code}\n")
        q.chmod(0o755)
        port = mta.start(env={"QMAILQUEUE": str(q)}, limit=False)
        s = smtp(port)
        s.ehlo()
        s.mail("a@b.c")
        s.rcpt("u@example.com")
        code_, text = s.data(b"x\r\n")
        assert f"{code_} ".encode() + text == reply


def test_auth_environment_reaches_the_queue(mta, open_dir):
    """After AUTH, qmail-queue (and a $QMAILQUEUE filter) sees who logged in."""
    dump = open_dir / "dump"
    dump.mkdir()
    dump.chmod(0o777)
    q = open_dir / "qq-env"
    q.write_text(f"#!/bin/sh\nenv > {dump}/env\nexec {mta.home}/bin/qmail-queue\n")
    q.chmod(0o755)
    port = mta.start(env={"QMAILQUEUE": str(q)}, limit=False)
    s = smtp(port)
    s.ehlo()
    s.login("bob@example.com", "bob-pw")
    s.sendmail("bob@example.com", ["x@elsewhere.org"], b"Subject: env\r\n\r\nx\r\n")
    s.quit()
    env = dict(l.split("=", 1) for l in (dump / "env").read_text().splitlines() if "=" in l)
    assert (env["RELAYCLIENT"], env["TCPREMOTEINFO"], env["SMTPAUTHUSER"], env["SMTP_AUTH_USER"],
            env["SMTPAUTHMETHOD"]) == ("", "bob@example.com", "bob@example.com", "bob@example.com", "cram-md5")
    assert len(mta.queued()) == 1


def test_random_input_never_crashes(mta):
    """300 sessions of random bytes and mangled commands straight into qmail-smtpd
    (stdin/stdout, no tcpserver): it always ends by exit 0 or 1, never by a signal (a
    panic would abort), and never queues a message it did not answer 250 for."""
    import random
    rnd = random.Random(7)
    words = [b"HELO x", b"EHLO x", b"MAIL FROM:<a@b>", b"RCPT TO:<u@example.com>", b"DATA", b"AUTH PLAIN",
             b"AUTH LOGIN", b"AUTH CRAM-MD5", b"STARTTLS", b"RSET", b"NOOP", b".", b"*", b"=", b"\x00", b"\r", b"\n",
             b"RCPT TO:<" + b"x" * 2000, b"AUTH PLAIN " + base64.b64encode(b"\0bob@example.com\0bob-pw")]
    accepted = 0
    for i in range(300):
        parts = [rnd.choice(words) if rnd.random() < 0.7 else bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))
                 for _ in range(rnd.randrange(1, 30))]
        data = b"".join(p + rnd.choice([b"\r\n", b"\n", b"", b"\r"]) for p in parts)
        if rnd.random() < 0.4:   # into DATA, random bytes as the message, maybe ended
            data = b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n" + data
            if rnd.random() < 0.5:
                data += b"\r\n.\r\n"
        as_qmaild = ["setpriv", f"--reuid={QMAILD}", f"--regid={NOFILES}", "--clear-groups"] if IS_ROOT else []
        r = subprocess.run(mta.inside([*as_qmaild, "softlimit", "-m", "2000000", str(BIN / "qmail-smtpd"),
                                       mta.checkpw, "/bin/true"]), input=data, capture_output=True, timeout=30,
                           env=mta.env(TCPREMOTEIP="127.0.0.1", TCPLOCALIP="127.0.0.1", QMAILHOME=mta.home))
        assert r.returncode in (0, 1), (i, r.returncode, data[:200], r.stderr[-300:])
        accepted += r.stdout.count(b"\r\n250 2.0.0 ok ")
    assert len(mta.queued()) == accepted and accepted > 0
