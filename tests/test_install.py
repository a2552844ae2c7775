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
                       env=dict(os.environ, QMAILHOME=str(home), PREFIX=str(prefix), IDS=str(ids),
                                FQDN="mail.example.com"))
    assert r.returncode == 0, r.stderr
    return home, prefix


# name -> (owner, mode) as qmail 1.03's hier.c installs them, group qmail; the
# exceptions are rqmail's own: qmail-qread and qmail-qstat for group qmail only
# (README), checkpassword setuid root, and the programs qmail has no counterpart for.
PROGRAMS = {
    "qmail-queue": ("qmailq", 0o4711), "qmail-inject": ("root", 0o755), "sendmail": ("root", 0o755),
    "qmail-qread": ("qmails", 0o4750), "qmail-qstat": ("root", 0o750),
    "qmail-mkids": ("root", 0o700), "qmail-mkqueue": ("root", 0o700),
    "checkpassword": ("root", 0o4711), "checkpassword-users": ("root", 0o700),
    "ucspi-tlsd": ("root", 0o755), "ucspi-tlsc": ("root", 0o755), "qmail-smtpd": ("root", 0o755),
    "qmail-start": ("root", 0o700), "qmail-lspawn": ("root", 0o700), "qmail-send": ("root", 0o711),
    "qmail-rspawn": ("root", 0o711), "qmail-clean": ("root", 0o711), "qmail-local": ("root", 0o711),
    "qmail-newu": ("root", 0o700), "qmail-pw2u": ("root", 0o711),
    **{p: ("root", 0o755) for p in ("preline", "forward", "condredirect", "bouncesaying", "except",
                                     "maildirmake", "maildir2mbox")},
}


def mode(p):
    st = os.lstat(p)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_install_sets_owners_and_modes(installed):
    home, prefix = installed
    b = home / "bin"
    for name, (owner, m) in PROGRAMS.items():
        assert mode(b / name) == (TEST_USERS[owner], QMAIL, m), name
        assert (b / name).read_bytes() == (BIN / name).read_bytes(), name
    make = (ROOT / "Makefile").read_text()
    built = set(" ".join(l.split("=", 1)[1] for l in make.splitlines()
                         if l.startswith(("PROGRAMS_BASE =", "PROGRAMS_SEND =", "PROGRAMS_LOCAL ="))).split())
    assert built - {"tcpserver", "tcprules", "tcprulescheck"} == set(PROGRAMS)   # nothing built is left out
    assert os.readlink(b / "mailq") == "sendmail"
    assert os.readlink(b / "vchkpw") == os.readlink(b / "cmd5checkpw") == "checkpassword"
    assert mode(home / "users")[2] == 0o755
    assert (prefix / "bin/tcpserver").read_bytes() == (BIN / "tcpserver").read_bytes()
    assert subprocess.run([str(BIN / "qmail-mkqueue"), "-c", str(home)]).returncode == 0
    # Installing again (an upgrade) keeps everything as it was.
    before = {p.name: mode(p) for p in b.iterdir()}
    r = subprocess.run(["sh", str(ROOT / "etc/install")], capture_output=True,
                       env=dict(os.environ, QMAILHOME=str(home), PREFIX=str(prefix), IDS=str(home / "control/ids")))
    assert r.returncode == 0 and before == {p.name: mode(p) for p in b.iterdir()}


def test_install_writes_control_defaults_and_aliases(installed, open_dir):
    """A new instance gets qmail's config-fast files from the host name, the default
    delivery, and ~alias's three addresses (INSTALL.alias) delivering to ~alias/Maildir."""
    home, _ = installed
    c = home / "control"
    want = {"me": "mail.example.com", "defaultdomain": "example.com", "plusdomain": "example.com",
            "locals": "mail.example.com", "rcpthosts": "mail.example.com", "defaultdelivery": "./Maildir/"}
    for name, text in want.items():
        assert (c / name).read_text() == text + "\n", name
        assert mode(c / name) == (0, 0, 0o644), name
    a = home / "alias"
    assert mode(a) == (TEST_USERS["alias"], QMAIL, 0o2755)
    for name in ("postmaster", "mailer-daemon", "root"):
        assert (a / f".qmail-{name}").read_text() == "./Maildir/\n"
        assert mode(a / f".qmail-{name}") == (0, QMAIL, 0o644)   # the group of setgid ~alias
    for sub in ("", "tmp", "new", "cur"):
        st = os.stat(a / "Maildir" / sub)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == TEST_USERS["alias"] and st.st_mode & 0o777 == 0o700
    # qmail's sed: the first label goes only when three or more remain; plusdomain is the last two.
    other = open_dir / "other"
    ids = home / "control/ids"
    r = subprocess.run(["sh", str(ROOT / "etc/install")], capture_output=True, timeout=120,
                       env=dict(os.environ, QMAILHOME=str(other), PREFIX=str(open_dir / "usr-local"), IDS=str(ids),
                                FQDN="a.b.example.com"))
    assert r.returncode == 0, r.stderr
    got = {n: (other / "control" / n).read_text() for n in ("me", "defaultdomain", "plusdomain")}
    assert got == {"me": "a.b.example.com\n", "defaultdomain": "b.example.com\n", "plusdomain": "example.com\n"}


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


def test_make_run_serves_and_delivers():
    """make run on a fresh tree: SMTP with STARTTLS and AUTH on the printed port, the
    test user it created logs in, and the message reaches the Maildir it names through
    qmail-send, qmail-lspawn and qmail-local; SIGTERM stops the whole instance."""
    import fcntl
    import smtplib
    import ssl
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["sh", str(ROOT / "etc/run-local")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PORT=str(port)), start_new_session=True)
    home = ROOT / "run/home"
    maildir = home / "users/test/Maildir"
    try:
        ready, _, _ = select.select([p.stdout], [], [], 120)
        assert ready and b"SMTP on 127.0.0.1:%d" % port in p.stdout.readline()
        hint = p.stdout.readline()
        assert b"swaks -s 127.0.0.1 -p %d --tls -a PLAIN -au test@example.com -ap test-password " \
               b"-t test@example.com" % port in hint
        assert b"the message lands in %s/new/" % bytes(maildir) in p.stdout.readline()
        for _ in range(100):   # the banner comes just before tcpserver binds
            try:
                c = smtplib.SMTP("127.0.0.1", port, timeout=20)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        before = set(os.listdir(maildir / "new"))
        c.ehlo()
        assert "starttls" in c.esmtp_features
        c.starttls(context=ssl._create_unverified_context())
        c.ehlo()
        c.login("test@example.com", "test-password")
        tag = f"make run {os.getpid()} {time.time()}"
        c.sendmail("test@example.com", ["test@example.com"], f"Subject: {tag}\r\n\r\nhello\r\n".encode())
        c.quit()
        deadline = time.time() + 30
        new = set()
        while time.time() < deadline and not new:
            new = set(os.listdir(maildir / "new")) - before
            time.sleep(0.1)
        if not new and not IS_ROOT:
            fcntl.fcntl(p.stderr, fcntl.F_SETFL, os.O_NONBLOCK)
            if b"qmail-start exited at once" in (p.stderr.read() or b""):
                pytest.xfail("qmail-start cannot run as a non-root user (setgroups needs CAP_SETGID)")
        [name] = new
        got = (maildir / "new" / name).read_bytes()
        assert got.startswith(b"Return-Path: <test@example.com>\nDelivered-To: test@example.com\n")
        assert f"Subject: {tag}\n\nhello\n".encode() in got
        assert os.stat(maildir / "new" / name).st_uid != 0      # delivered as the test user, never root
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        assert p.wait(30) == 143
    # qmail-send (in a session of its own) was stopped by the script, not left behind:
    # nobody holds its lock any more.
    with open(home / "queue/lock/sendmutex") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


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


def in_namespace(open_dir, script, **env):
    """Runs `script` (sh, in the source tree) as root in a private mount namespace whose
    /etc is an overlay (users made there land in open_dir/overlay) and /var a tmpfs with
    open_dir/var-qmail bound on /var/qmail: an install at the real paths, setuid
    programs (which ignore QMAILHOME) included, without touching the system's own."""
    up = open_dir / "overlay"
    for d in ("etc", "work"):
        (up / d).mkdir(parents=True, exist_ok=True)
    home = open_dir / "var-qmail"
    home.mkdir(exist_ok=True)
    setup = (f"mount -t overlay o -o lowerdir=/etc,upperdir={up}/etc,workdir={up}/work /etc && "
             f"mount -t tmpfs rqmail /var && mkdir /var/qmail && mount --bind {home} /var/qmail && {script}")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", setup], capture_output=True,
                       timeout=120, cwd=ROOT,
                       env=dict(os.environ, QMAILHOME="/var/qmail", PREFIX=str(open_dir / "usr-local"), **env))
    assert r.returncode == 0, r.stderr
    return r


def db(open_dir, name):
    """The overlay's passwd or group file: {name: fields}."""
    return {l.split(":")[0]: l.split(":") for l in (open_dir / "overlay/etc" / name).read_text().splitlines()}


def test_install_creates_qmailtls(open_dir):
    """Issue 12 item 18: make install creates the TLS engine's own user and group
    (etc/mkusers) and control/ids names it, in a namespace (in_namespace), so the
    system's own users are never touched."""
    need_root()
    home = open_dir / "var-qmail"
    host_passwd, host_group = Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()
    in_namespace(open_dir, "exec sh etc/install")
    passwd, group = db(open_dir, "passwd"), db(open_dir, "group")
    tls = passwd["qmailtls"]
    assert tls[6] == "/usr/sbin/nologin" and tls[3] == group["qmailtls"][2]
    assert int(tls[2]) not in (0, 65534) and int(tls[3]) not in (0, 65534)
    # A group of its own: nothing of the queue's (group qmail) or qmaild's (nofiles).
    assert tls[3] not in (group["qmail"][2], group["nofiles"][2])
    ids = (home / "control/ids").read_text().splitlines()
    assert f"qmailtls:{tls[2]}:{tls[3]}" in ids
    assert Path("/etc/passwd").read_bytes() == host_passwd and Path("/etc/group").read_bytes() == host_group


def snapshot(home, subdirs):
    """Every entry under home/SUBDIR: kind, owner, group, mode, inode (a queue file's
    name is its inode), mtime (info/'s is the message's birth, local/'s and remote/'s
    the next retry) and bytes."""
    out = {}
    for sub in subdirs:
        for p in [home / sub, *sorted((home / sub).rglob("*"))]:
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            body = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(home))] = (kind, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_ino,
                                             None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns, body)
    return out


def test_upgrade_keeps_queue_controls_users_and_aliases(open_dir):
    """make install over an rqmail install: a message queued through the installed
    setuid qmail-queue, the admin's control files, users/ and ~alias come out
    byte-identical (same inodes, owners, modes, times); the programs are replaced."""
    need_root()
    home = open_dir / "var-qmail"
    in_namespace(open_dir, "sh etc/install", FQDN="mail.example.com")
    in_namespace(open_dir, "printf 'Subject: kept\\n\\nhello\\n' | "
                 "/var/qmail/bin/qmail-inject -f a@example.org test@mail.example.com")
    [queued] = list((home / "queue/todo").iterdir())
    assert b"Subject: kept" in (home / "queue/mess" / str(int(queued.name) % 23) / queued.name).read_bytes()
    (home / "control/me").write_text("mx.example.net\n")
    (home / "control/concurrencylocal").write_text("3\n")
    (home / "control/defaultdelivery").write_text("./Mailbox\n")
    (home / "control/plusdomain").unlink()      # removed on purpose: must not come back
    (home / "users/assign").write_text("=joe:joe:1234:1234:/home/joe:::\n.\n")
    (home / "alias/.qmail-root").write_text("&admin@example.net\n")
    (home / "alias/.qmail-postmaster").unlink()
    before = snapshot(home, ["queue", "control", "users", "alias"])
    (home / "bin/qmail-send").write_bytes(b"old")
    in_namespace(open_dir, "sh etc/install", FQDN="other.example.org")
    after = snapshot(home, ["queue", "control", "users", "alias"])
    # control/ids is resolved again (qmail-mkids), to the same text.
    assert after.pop("control/ids")[2:][-1] == before.pop("control/ids")[2:][-1]
    assert after == before
    assert (home / "bin/qmail-send").read_bytes() == (BIN / "qmail-send").read_bytes()
    assert subprocess.run([str(BIN / "qmail-mkqueue"), "-c", str(home)]).returncode == 0


def test_install_over_a_notqmail_queue(open_dir):
    """make install over a stopped notqmail: its users (INSTALL.ids), its queue as
    hier.c made it, with a message in todo/ and one preprocessed, its control files,
    ~alias and its other programs stay as they are; only the programs rqmail installs
    change, and the queue passes qmail-mkqueue -c."""
    need_root()
    home = open_dir / "var-qmail"
    in_namespace(open_dir, "sh etc/mkusers /var/qmail")   # the accounts qmail's INSTALL.ids makes
    passwd, group = db(open_dir, "passwd"), db(open_dir, "group")
    uid = {n: int(passwd[n][2]) for n in ("alias", "qmailq", "qmailr", "qmails")}
    uid["root"] = 0
    gid = int(group["qmail"][2])

    def mk(rel, owner, m, data=None, fifo=False):
        p = home / rel
        if fifo:
            os.mkfifo(p)
        elif data is None:
            p.mkdir()
        else:
            p.write_bytes(data)
        os.chown(p, uid[owner], gid)
        os.chmod(p, m)
        return p
    for d in ("control", "users", "bin"):
        mk(d, "root", 0o755)
    mk("alias", "alias", 0o2755)
    mk("queue", "qmailq", 0o750)
    for d, owner, m in [("pid", "qmailq", 0o700), ("intd", "qmailq", 0o700), ("todo", "qmailq", 0o750),
                        ("bounce", "qmails", 0o700), ("lock", "qmailq", 0o750)]:
        mk(f"queue/{d}", owner, m)
    for d, owner, m in [("mess", "qmailq", 0o750), ("info", "qmails", 0o700), ("local", "qmails", 0o700),
                        ("remote", "qmails", 0o700)]:
        mk(f"queue/{d}", owner, m)
        for i in range(23):
            mk(f"queue/{d}/{i}", owner, m)
    mk("queue/lock/tcpto", "qmailr", 0o644, bytes(1024))
    mk("queue/lock/sendmutex", "qmails", 0o600, b"")
    mk("queue/lock/trigger", "qmails", 0o622, fifo=True)

    def message(body):
        """A message file numbered by its inode, as qmail-queue makes it in pid/."""
        p = mk("queue/pid/1234.5678.1", "qmailq", 0o644, body)
        n = p.stat().st_ino
        os.rename(p, home / f"queue/mess/{n % 23}/{n}")
        return n
    a = message(b"Received: (qmail 1 invoked by uid 0); 1 Jan 2026 00:00:00 -0000\nSubject: todo\n\nwaiting\n")
    mk(f"queue/intd/{a}", "qmailq", 0o644, b"u0\0p1\0Fa@example.org\0Tjoe@old.example.net\0")
    os.link(home / f"queue/intd/{a}", home / f"queue/todo/{a}")
    b = message(b"Subject: preprocessed\n\nretrying\n")
    mk(f"queue/info/{b % 23}/{b}", "qmails", 0o600, b"Fa@example.org\0")
    mk(f"queue/remote/{b % 23}/{b}", "qmails", 0o600, b"Tyou@example.com\0")
    mk(f"queue/bounce/{b}", "qmails", 0o600, b"<gone@example.com>:\nSorry.\n\n")
    for name, text in [("me", "old.example.net"), ("rcpthosts", "old.example.net"), ("locals", "old.example.net"),
                       ("concurrencyremote", "40"), ("defaultdelivery", "./Mailbox")]:
        mk(f"control/{name}", "root", 0o644, text.encode() + b"\n")
    mk("users/assign", "root", 0o644, b"=joe:joe:1234:1234:/home/joe:::\n.\n")
    mk("users/cdb", "root", 0o644, b"notqmail's cdb")
    mk("alias/.qmail-postmaster", "root", 0o644, b"&admin@old.example.net\n")
    mk("alias/.qmail-default", "root", 0o644, b"| fastforward -d /etc/aliases.cdb\n")
    mk("bin/qmail-remote", "root", 0o711, b"notqmail's qmail-remote")
    mk("bin/qmail-send", "root", 0o711, b"notqmail's qmail-send")
    before = snapshot(home, ["queue", "control", "users", "alias"])
    in_namespace(open_dir, "sh etc/install", FQDN="new.example.com")
    after = snapshot(home, ["queue", "control", "users", "alias"])
    assert after.pop("control/ids")        # rqmail's one addition: the users resolved
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    # ~alias had .qmail files: none is added (and no ~alias/Maildir).
    assert sorted(p.name for p in (home / "alias").iterdir()) == [".qmail-default", ".qmail-postmaster"]
    assert (home / "bin/qmail-remote").read_bytes() == b"notqmail's qmail-remote"
    assert (home / "bin/qmail-send").read_bytes() == (BIN / "qmail-send").read_bytes()
    ids = {l.split(":")[0]: l.split(":")[1:] for l in (home / "control/ids").read_text().splitlines()
           if not l.startswith("#")}
    assert int(ids["qmailq"][0]) == uid["qmailq"] and int(ids["qmail"][0]) == gid
    assert subprocess.run([str(BIN / "qmail-mkqueue"), "-c", str(home)]).returncode == 0
