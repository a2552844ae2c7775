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

from conftest import BIN, IS_ROOT, ROOT, TEST_GROUPS, TEST_USERS, need_root

QMAIL = TEST_GROUPS["qmail"]


@pytest.fixture
def installed(open_dir):
    need_root()
    ids = open_dir / "ids"
    ids.write_text("".join(f"{n}:{u}:{QMAIL}\n" for n, u in TEST_USERS.items())
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["sh", str(ROOT / "etc/run-local")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PORT=str(port)), start_new_session=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 30)
        assert ready and b"serving on 127.0.0.1:%d" % port in p.stdout.readline()
        for _ in range(100):   # the banner comes just before tcpserver binds
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        with c:
            seen = b"".join(iter(lambda: c.recv(4096), b""))
        assert b"TCPREMOTEIP=127.0.0.1" in seen and b'RELAYCLIENT=' in seen
        home = ROOT / "run/home"
        env = dict(os.environ, QMAILHOME=str(home), USER="tester")
        before = len(list((home / "queue/todo").iterdir()))
        r = subprocess.run([str(home / "bin/sendmail"), "you@example.org"], input=b"Subject: hi\n\nx\n",
                           capture_output=True, env=env)
        assert r.returncode == 0, r.stderr
        assert len(list((home / "queue/todo").iterdir())) == before + 1
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)
