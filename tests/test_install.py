"""make install (etc/install) into a temporary QMAILHOME and PREFIX with test ids, and
make run (etc/run-local): the owners, modes and setuid bits an admin relies on, and a
working instance in one command."""

import os
import select
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, IS_ROOT, ROOT, TEST_GROUPS, TEST_USER_GIDS, TEST_USERS, need_root

QMAIL = TEST_GROUPS["qmail"]


@pytest.fixture
def installed(open_dir):
    need_root()
    ids = open_dir / "ids"
    ids.write_text("".join(f"{n}:{u}:{TEST_USER_GIDS.get(n, QMAIL)}\n" for n, u in TEST_USERS.items())
                   + "".join(f"{g}:{i}\n" for g, i in TEST_GROUPS.items()))
    home, prefix = open_dir / "var-qmail", open_dir / "usr-local"
    r = subprocess.run(["sh", str(ROOT / "etc/install")], capture_output=True, timeout=120,
                       env=dict(os.environ, QMAILHOME=str(home), PREFIX=str(prefix), IDS=str(ids)))
    assert r.returncode == 0, r.stderr
    return home, prefix


def mode(p):
    st = os.lstat(p)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_install_sets_owners_and_modes(installed):
    home, prefix = installed
    b = home / "bin"
    assert mode(b / "qmail-queue") == (TEST_USERS["qmailq"], QMAIL, 0o4711)
    assert mode(b / "qmail-qread") == (TEST_USERS["qmails"], QMAIL, 0o4750)
    assert mode(b / "qmail-qstat") == (0, QMAIL, 0o750)
    assert mode(b / "qmail-inject") == (0, QMAIL, 0o755) and mode(b / "sendmail") == (0, QMAIL, 0o755)
    assert os.readlink(b / "mailq") == "sendmail"
    assert mode(b / "checkpassword") == (0, QMAIL, 0o4711) and mode(b / "checkpassword-users") == (0, QMAIL, 0o700)
    assert os.readlink(b / "vchkpw") == os.readlink(b / "cmd5checkpw") == "checkpassword"
    assert mode(home / "users")[2] == 0o755
    assert mode(b / "ucspi-tlsd") == (0, QMAIL, 0o755) and mode(b / "ucspi-tlsc") == (0, QMAIL, 0o755)
    assert mode(b / "qmail-smtpd") == (0, QMAIL, 0o755)
    assert (prefix / "bin/tcpserver").read_bytes() == (BIN / "tcpserver").read_bytes()
    assert subprocess.run([str(BIN / "qmail-mkqueue"), "-c", str(home)]).returncode == 0
    # Installing again (an upgrade) keeps everything as it was.
    before = {p.name: mode(p) for p in b.iterdir()}
    r = subprocess.run(["sh", str(ROOT / "etc/install")], capture_output=True,
                       env=dict(os.environ, QMAILHOME=str(home), PREFIX=str(prefix), IDS=str(home / "control/ids")))
    assert r.returncode == 0 and before == {p.name: mode(p) for p in b.iterdir()}


def test_only_group_qmail_may_read_the_queue(installed):
    """Like Sendmail's restrictmailq: qmail-qread and qmail-qstat are for group qmail."""
    home, _ = installed
    env = dict(os.environ, QMAILHOME=str(home))
    for prog in ("qmail-qread", "qmail-qstat"):
        with pytest.raises(PermissionError):
            subprocess.run([str(home / "bin" / prog)], user=7799, group=7799, extra_groups=[], env=env)
    r = subprocess.run([str(home / "bin/qmail-qstat")], user=7799, group=7799, extra_groups=[QMAIL],
                       capture_output=True, env=env)
    assert r.stdout == b"messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n"


def test_install_refuses_without_root():
    as_user = {"user": 7799, "group": 7799, "extra_groups": []} if IS_ROOT else {}
    r = subprocess.run(["sh", str(ROOT / "etc/install")], capture_output=True, **as_user)
    assert r.returncode == 100 and b"must be run as root" in r.stderr


def test_make_run_serves_and_queues():
    """make run on a fresh tree: SMTP with STARTTLS and AUTH on the printed port, the
    test user it created logs in, and the message lands in run/home's queue."""
    import smtplib
    import ssl
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["sh", str(ROOT / "etc/run-local")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PORT=str(port)), start_new_session=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        assert ready and b"SMTP on 127.0.0.1:%d" % port in p.stdout.readline()
        hint = p.stdout.readline()
        assert b"swaks -s 127.0.0.1 -p %d --tls -a PLAIN -au test@example.com -ap test-password" % port in hint
        for _ in range(100):   # the banner comes just before tcpserver binds
            try:
                c = smtplib.SMTP("127.0.0.1", port, timeout=20)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        home = ROOT / "run/home"
        before = len(list((home / "queue/todo").iterdir()))
        c.ehlo()
        assert "starttls" in c.esmtp_features
        c.starttls(context=ssl._create_unverified_context())
        c.ehlo()
        c.login("test@example.com", "test-password")
        c.sendmail("test@example.com", ["you@example.org"], b"Subject: make run\r\n\r\nhello\r\n")
        c.quit()
        assert len(list((home / "queue/todo").iterdir())) == before + 1
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)


@pytest.mark.parametrize("run", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("etc/*/qmail-*/run")))
def test_run_scripts(run):
    """The daemontools and runit scripts: valid sh, the seeds' softlimit, TLS in front;
    qmail-send's as Life with qmail's (qmail-start with PATH and the default delivery)."""
    text = (ROOT / run).read_text()
    assert subprocess.run(["sh", "-n", str(ROOT / run)]).returncode == 0
    assert os.access(ROOT / run, os.X_OK) and os.access((ROOT / run).parent / "log/run", os.X_OK)
    if "/qmail-send/" in run:
        assert 'env - PATH="/var/qmail/bin:$PATH"' in text and "qmail-start" in text
        assert "control/defaultdelivery" in text and "./Maildir/" in text
        return
    assert "softlimit -m 2000000 /usr/local/bin/tcpserver" in text and "ucspi-tlsd" in text
    assert os.access(ROOT / run, os.X_OK) and os.access((ROOT / run).parent / "log/run", os.X_OK)
    assert ("SMTPAUTH=\"!\"" in text) == ("submission" in run) and ("-i -u" in text) == ("smtps" in run)
    # -u always with -g (issue 12 item 17); the engine's user comes from control/ids,
    # never a nobody fallback (item 18).
    assert all(" -g " in l for l in text.splitlines() if " -u " in l and ("tlsd" in l or "tcpserver" in l))
    assert "65534" not in text


def test_install_creates_qmailtls(open_dir):
    """Issue 12 item 18: make install creates the TLS engine's own user and group
    (etc/mkusers) and control/ids names it. Run in a private mount namespace whose /etc
    is an overlay and /var a tmpfs, so the system's own users are never touched."""
    need_root()
    up = open_dir / "overlay"
    for d in ("etc", "work"):
        (up / d).mkdir(parents=True)
    home, prefix = open_dir / "var-qmail", open_dir / "usr-local"
    host_passwd, host_group = Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()
    setup = (f"mount -t overlay o -o lowerdir=/etc,upperdir={up}/etc,workdir={up}/work /etc && "
             "mount -t tmpfs rqmail /var && exec sh etc/install")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", setup], capture_output=True,
                       timeout=120, cwd=ROOT, env=dict(os.environ, QMAILHOME=str(home), PREFIX=str(prefix)))
    assert r.returncode == 0, r.stderr
    passwd = {l.split(":")[0]: l.split(":") for l in (up / "etc/passwd").read_text().splitlines()}
    group = {l.split(":")[0]: l.split(":") for l in (up / "etc/group").read_text().splitlines()}
    tls = passwd["qmailtls"]
    assert tls[6] == "/usr/sbin/nologin" and tls[3] == group["qmailtls"][2]
    assert int(tls[2]) not in (0, 65534) and int(tls[3]) not in (0, 65534)
    # A group of its own: nothing of the queue's (group qmail) or qmaild's (nofiles).
    assert tls[3] not in (group["qmail"][2], group["nofiles"][2])
    ids = (home / "control/ids").read_text().splitlines()
    assert f"qmailtls:{tls[2]}:{tls[3]}" in ids
    assert Path("/etc/passwd").read_bytes() == host_passwd and Path("/etc/group").read_bytes() == host_group
