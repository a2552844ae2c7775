"""qmail-local as qmail-lspawn runs it: as the recipient (the test uid 7790, in no
passwd file, when root), in a temporary home directory, with the message on a seekable
fd 0 and `-- user homedir local dash ext domain sender defaultdelivery`, its stdout and
stderr on one pipe (the report). Forwards go to a stand-in qmail-queue ($QMAILQUEUE)
that keeps the message and the envelope it got."""

import fcntl
import mailbox
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BIN, IS_ROOT, TEST_GROUPS, TEST_USERS, need, need_root

QL = str(BIN / "qmail-local")
UID = TEST_USERS["alias"] if IS_ROOT else os.getuid()
GID = TEST_GROUPS["nofiles"] if IS_ROOT else os.getgid()
MSG = b"From: bob@example.com\nSubject: hello\n\nbody line\nFrom the start\n>From quoted\n"
RP = b"Return-Path: <bob@example.com>\n"
DT = b"Delivered-To: joe@example.org\n"


def own(path):
    if IS_ROOT:
        os.lchown(path, UID, GID)


def as_user():
    return {"user": UID, "group": GID, "extra_groups": []} if IS_ROOT else {}


class Home:
    """A user's home directory with a Maildir, and a QMAILHOME beside it."""

    def __init__(self, base):
        self.base = base
        self.path = base / "joe"
        self.path.mkdir(mode=0o700)
        own(self.path)
        self.maildir("Maildir")
        self.qhome = base / "qhome"
        (self.qhome / "control").mkdir(parents=True)
        self.qhome.chmod(0o755)
        (self.qhome / "control").chmod(0o755)

    def maildir(self, name):
        d = self.path / name
        for sub in ("", "tmp", "new", "cur"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
            own(d / sub)
        return d

    def dotqmail(self, name, text, mode=0o644):
        p = self.path / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        p.chmod(mode)
        own(p)
        return p

    def new(self, md="Maildir"):
        return sorted((self.path / md / "new").iterdir())

    def tmp(self, md="Maildir"):
        return sorted((self.path / md / "tmp").iterdir())

    def argv(self, local="joe", dash="", ext="", domain="example.org", sender="bob@example.com",
             default="./Maildir/\n", opts=("--",), user="joe", home=None):
        return [QL, *opts, user, str(self.path) if home is None else home, local, dash, ext, domain, sender, default]

    def env(self, **extra):
        env = {"PATH": "/usr/bin:/bin", "QMAILHOME": str(self.qhome)}
        env.update(extra)
        return env

    def start(self, msg=MSG, env=None, cwd=None, **kw):
        f = tempfile.TemporaryFile()
        f.write(msg)
        f.seek(0)
        p = subprocess.Popen(self.argv(**kw), stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=env or self.env(), start_new_session=True, cwd=cwd, **as_user())
        f.close()
        return p

    def run(self, msg=MSG, env=None, timeout=60, cwd=None, **kw):
        p = self.start(msg, env, cwd, **kw)
        try:
            out, _ = p.communicate(timeout=timeout)
        finally:
            stop(p)
        return p.returncode, out


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


@pytest.fixture
def home(open_dir):
    return Home(open_dir)


@pytest.fixture
def capture(home):
    """A stand-in qmail-queue: keeps message, envelope and its exit code's choice."""
    d = home.base / "qq"
    d.mkdir(mode=0o777)
    d.chmod(0o777)
    script = home.base / "qq.sh"
    script.write_text(f"#!/bin/sh\ncat > {d}/msg\ncat <&1 > {d}/env\nexit $(cat {d}/code 2>/dev/null || echo 0)\n")
    script.chmod(0o755)
    return d, home.env(QMAILQUEUE=str(script))


# --- Maildir -------------------------------------------------------------------------

def test_maildir_byte_exact_with_return_path_and_delivered_to(home):
    rc, out = home.run()
    assert (rc, out) == (0, b"did 1+0+0\n")
    [f] = home.new()
    assert f.read_bytes() == RP + DT + MSG
    assert re.fullmatch(r"\d+\.M\d+P\d+Q1\.[^/:]+", f.name)
    st = f.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, UID)
    assert home.tmp() == []
    # A second one gets another name; a message without a final LF stays so.
    assert home.run(b"no newline")[0] == 0
    assert sorted(p.read_bytes() for p in home.new()) == sorted([RP + DT + MSG, RP + DT + b"no newline"])


def test_maildir_relative_and_absolute_paths_and_several_lines(home):
    other = home.maildir("Other")
    home.dotqmail(".qmail", f"./Maildir/\n{other}/\n")
    assert home.run() == (0, b"did 2+0+0\n")
    assert [p.read_bytes() for p in home.new() + home.new("Other")] == [RP + DT + MSG] * 2
    # Python's mailbox reads it as a Maildir message.
    [m] = mailbox.Maildir(str(other), factory=None)
    assert m["Subject"] == "hello" and m["Delivered-To"] == "joe@example.org"


def test_missing_maildir_is_temporary(home):
    assert home.run(default="./Nope/\n") == (111, b"Unable to chdir to maildir. (#4.2.1)\n")
    (home.path / "Maildir" / "tmp").rmdir()
    assert home.run() == (111, b"Temporary error on maildir delivery. (#4.3.0)\n")


# --- mbox ----------------------------------------------------------------------------

UFLINE = rb"From bob@example\.com (Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}\n"


def test_mbox_format(home):
    home.dotqmail(".qmail", "./Mailbox\n")
    assert home.run() == (0, b"did 1+0+0\n")
    assert home.run(b"Subject: 2\n\nlast line without newline") == (0, b"did 1+0+0\n")
    data = (home.path / "Mailbox").read_bytes()
    body1 = b"From: bob@example.com\nSubject: hello\n\nbody line\n>From the start\n>>From quoted\n\n"
    body2 = b"Subject: 2\n\nlast line without newline\n\n"
    assert re.fullmatch(UFLINE + re.escape(RP + DT + body1) + UFLINE + re.escape(RP + DT + body2), data), data
    st = (home.path / "Mailbox").stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, UID)
    assert not (home.path / "Mailbox.lock").exists()
    msgs = list(mailbox.mbox(str(home.path / "Mailbox")))
    assert [m["Subject"] for m in msgs] == ["hello", "2"]
    assert msgs[0].get_payload() == "body line\n>From the start\n>>From quoted\n"


def test_mbox_bounce_sender_is_mailer_daemon(home):
    home.dotqmail(".qmail", "./Mailbox\n")
    assert home.run(sender="")[0] == 0
    data = (home.path / "Mailbox").read_bytes()
    assert data.startswith(b"From MAILER-DAEMON ") and b"\nReturn-Path: <>\n" in data


def hold_fcntl_lock(path):
    """A reader in another process holding the fcntl lock mutt and Dovecot take."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            os.write(w, b"x")
            time.sleep(120)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    return pid


def release(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_mbox_waits_for_a_readers_fcntl_lock_holding_the_dotlock(home):
    home.dotqmail(".qmail", "./Mailbox\n")
    mbox = home.path / "Mailbox"
    mbox.write_bytes(b"")
    own(mbox)
    mbox.chmod(0o600)
    reader = hold_fcntl_lock(mbox)
    try:
        p = home.start()
        time.sleep(1.5)
        assert p.poll() is None
        assert mbox.read_bytes() == b""
        # Waiting for the fcntl lock, it already holds the dot-lock.
        assert (home.path / "Mailbox.lock").exists()
    finally:
        release(reader)
    out, _ = p.communicate(timeout=10)
    assert (p.returncode, out) == (0, b"did 1+0+0\n")
    assert mbox.read_bytes().endswith(RP + DT + b"From: bob@example.com\nSubject: hello\n\nbody line\n>From the start\n>>From quoted\n\n")
    assert not (home.path / "Mailbox.lock").exists()


def test_mbox_waits_for_a_dotlock(home):
    home.dotqmail(".qmail", "./Mailbox\n")
    lock = home.path / "Mailbox.lock"
    lock.write_bytes(b"1\n")
    p = home.start()
    try:
        time.sleep(1.5)
        assert p.poll() is None
        assert (home.path / "Mailbox").read_bytes() == b""
        lock.unlink()
        out, _ = p.communicate(timeout=10)
    finally:
        stop(p)
    assert (p.returncode, out) == (0, b"did 1+0+0\n")
    assert (home.path / "Mailbox").read_bytes().startswith(b"From bob@example.com ")


def test_mbox_in_a_spool_the_user_cannot_write_waits_for_a_readers_dotlock(home, open_dir):
    """A /var/mail-like directory (root's, 0755): the user can make no PATH.lock, but
    one that a setgid-mail reader made is waited for; fcntl is still taken."""
    need_root("a directory the user cannot write")
    spool = open_dir / "spool"
    spool.mkdir(mode=0o755)
    mbox = spool / "joe"
    mbox.write_bytes(b"")
    own(mbox)
    mbox.chmod(0o600)
    lock = spool / "joe.lock"
    lock.write_bytes(b"")
    p = home.start(default=f"{mbox}\n")
    try:
        time.sleep(1.5)
        assert p.poll() is None and mbox.read_bytes() == b""
        lock.unlink()
        out, _ = p.communicate(timeout=10)
    finally:
        stop(p)
    assert (p.returncode, out) == (0, b"did 1+0+0\n")
    assert mbox.read_bytes().startswith(b"From bob@example.com ")
    assert sorted(x.name for x in spool.iterdir()) == ["joe"]


def test_mbox_lock_held_30_seconds_is_temporary(home):
    home.dotqmail(".qmail", "./Mailbox\n")
    mbox = home.path / "Mailbox"
    mbox.write_bytes(b"old\n")
    own(mbox)
    reader = hold_fcntl_lock(mbox)
    try:
        t = time.time()
        rc, out = home.run(timeout=60)
        took = time.time() - t
    finally:
        release(reader)
    assert (rc, out) == (111, b"File has been locked for 30 seconds straight. (#4.3.0)\n")
    assert 29 <= took < 40
    assert mbox.read_bytes() == b"old\n"
    assert not (home.path / "Mailbox.lock").exists()


# --- programs ------------------------------------------------------------------------

@pytest.mark.parametrize("code,rc,out,delivered", [
    ("exit 0", 0, b"did 1+0+1\n", True),
    ("exit 99", 0, b"did 0+0+1\n", False),
    ("exit 100", 100, b"", False),
    ("exit 64", 100, b"", False),
    ("exit 112", 100, b"", False),
    ("exit 111", 111, b"", False),
    ("exit 1", 111, b"", False),
    ("exit 75", 111, b"", False),
    ("echo Sorry, over quota; exit 100", 100, b"Sorry, over quota\n", False),
    ("kill -9 $$", 111, b"Aack, child crashed. (#4.3.0)\n", False),
])
def test_program_exit_codes(home, code, rc, out, delivered):
    home.dotqmail(".qmail", f"|{code}\n./Maildir/\n")
    assert home.run() == (rc, out)
    assert len(home.new()) == (1 if delivered else 0)


def test_program_exit_99_still_sends_earlier_forwards(home, capture):
    d, env = capture
    home.dotqmail(".qmail", "&first@example.net\n|exit 99\n&second@example.net\n./Maildir/\n")
    rc, out = home.run(env=env)
    assert rc == 0 and re.fullmatch(rb"did 0\+1\+1\nqp \d+\n", out), out
    assert (d / "env").read_bytes() == b"Fbob@example.com\0Tfirst@example.net\0\0"
    assert home.new() == []


def test_program_environment_stdin_and_cwd(home):
    home.dotqmail(".qmail-foo-default", "|env -0 > envout; cat > stdin; pwd > cwd\n")
    rc, out = home.run(local="joe-Foo-Bar.x-y", dash="-", ext="Foo-Bar.x-y", domain="mail.sub.example.com")
    assert (rc, out) == (0, b"did 0+0+1\n")
    env = dict(kv.split(b"=", 1) for kv in (home.path / "envout").read_bytes().split(b"\0") if kv)
    assert {k: env[k] for k in (b"USER", b"HOME", b"LOCAL", b"HOST", b"RECIPIENT", b"SENDER", b"NEWSENDER", b"EXT",
                                 b"EXT2", b"EXT3", b"EXT4", b"HOST2", b"HOST3", b"HOST4", b"DEFAULT", b"DTLINE",
                                 b"RPLINE")} == {
        b"USER": b"joe", b"HOME": str(home.path).encode(), b"LOCAL": b"joe-Foo-Bar.x-y",
        b"HOST": b"mail.sub.example.com", b"RECIPIENT": b"joe-Foo-Bar.x-y@mail.sub.example.com",
        b"SENDER": b"bob@example.com", b"NEWSENDER": b"bob@example.com", b"EXT": b"Foo-Bar.x-y",
        b"EXT2": b"Bar.x-y", b"EXT3": b"y", b"EXT4": b"", b"HOST2": b"mail.sub.example", b"HOST3": b"mail.sub",
        b"HOST4": b"mail", b"DEFAULT": b"Bar.x-y",
        b"DTLINE": b"Delivered-To: joe-Foo-Bar.x-y@mail.sub.example.com\n", b"RPLINE": RP}
    assert re.fullmatch(UFLINE, env[b"UFLINE"])
    assert env[b"PATH"] == b"/usr/bin:/bin" and env[b"QMAILHOME"] == str(home.qhome).encode()
    # The message as it is: preline adds the header lines.
    assert (home.path / "stdin").read_bytes() == MSG
    assert (home.path / "cwd").read_bytes() == str(home.path).encode() + b"\n"
    assert (home.path / "stdin").stat().st_uid == UID


def test_program_with_preline_style_header_lines(home):
    home.dotqmail(".qmail", '|printf %s "$UFLINE$RPLINE$DTLINE" > out; cat >> out\n')
    assert home.run()[0] == 0
    assert re.fullmatch(UFLINE + re.escape(RP + DT + MSG), (home.path / "out").read_bytes())


def test_hanging_program_is_killed_with_its_group_at_the_timeout(home):
    (home.qhome / "control" / "timeoutlocal").write_text("2\n")
    home.dotqmail(".qmail", "|echo $$ > pid; (sleep 60; touch late) & echo $! > bg; sleep 60\n./Maildir/\n")
    t = time.time()
    rc, out = home.run(timeout=30)
    assert time.time() - t < 10
    assert (rc, out) == (111, b"Timeout on program delivery: killed after 2 seconds. (#4.3.0)\n")
    time.sleep(0.5)
    for name in ("pid", "bg"):
        pid = int((home.path / name).read_text())
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z"), name
    assert home.new() == [] and not (home.path / "late").exists()


def test_bad_timeout_setting_is_temporary(home):
    (home.qhome / "control" / "timeoutlocal").write_text("soon\n")
    rc, out = home.run()
    assert rc == 111 and b"timeoutlocal" in out and home.new() == []


# --- forwards ------------------------------------------------------------------------

def test_forward_envelope_and_message(home, capture):
    d, env = capture
    home.dotqmail(".qmail", "&one@example.net\ntwo@example.net\n# a comment\n")
    rc, out = home.run(env=env)
    assert rc == 0 and re.fullmatch(rb"did 0\+2\+0\nqp \d+\n", out), out
    assert (d / "msg").read_bytes() == DT + MSG
    assert (d / "env").read_bytes() == b"Fbob@example.com\0Tone@example.net\0Ttwo@example.net\0\0"


def test_forward_with_a_relative_qmailhome(home, capture):
    """bin/qmail-queue of a QMAILHOME named relative to where qmail-local started,
    though it has changed to the user's home by the time it forwards."""
    d, env = capture
    (home.qhome / "bin").mkdir(mode=0o755)
    os.symlink(env["QMAILQUEUE"], home.qhome / "bin" / "qmail-queue")
    home.dotqmail(".qmail", "&a@example.net\n")
    rc, out = home.run(env=home.env(QMAILHOME="qhome"), cwd=home.base)
    assert rc == 0 and out.startswith(b"did 0+1+0\nqp "), out
    assert (d / "env").read_bytes() == b"Fbob@example.com\0Ta@example.net\0\0"


def test_forward_sender_from_owner_files(home, capture):
    d, env = capture
    home.dotqmail(".qmail-list", "&a@example.net\n")
    home.dotqmail(".qmail-list-owner", "&owner@example.net\n")
    args = dict(local="joe-list", dash="-", ext="list", env=env)
    assert home.run(**args)[0] == 0
    assert (d / "env").read_bytes() == b"Fjoe-list-owner@example.org\0Ta@example.net\0\0"
    home.dotqmail(".qmail-list-owner-default", "&owner@example.net\n")
    assert home.run(**args)[0] == 0
    assert (d / "env").read_bytes() == b"Fjoe-list-owner-@example.org-@[]\0Ta@example.net\0\0"
    # A bounce keeps its empty sender.
    assert home.run(sender="", **args)[0] == 0
    assert (d / "env").read_bytes() == b"F\0Ta@example.net\0\0"
    assert (d / "msg").read_bytes() == b"Delivered-To: joe-list@example.org\n" + MSG


def test_forward_failures(home, capture):
    d, env = capture
    home.dotqmail(".qmail", "&a@example.net\n")
    (d / "code").write_text("31\n")
    assert home.run(env=env) == (100, b"Unable to forward message: mail server permanently rejected message (#5.3.0).\n")
    (d / "code").write_text("53\n")
    assert home.run(env=env) == (111, b"Unable to forward message: qq write error or disk full (#4.3.0).\n")


def test_forward_through_the_real_queue(qhome, open_dir):
    """Through bin/qmail-queue of a real instance, setuid qmailq as make install leaves it;
    in a private mount namespace whose /var/qmail is the instance, since a setuid
    qmail-queue ignores QMAILHOME."""
    need_root("a setuid qmail-queue")
    import shutil
    (open_dir / "u").mkdir()
    h = Home(open_dir / "u")
    qq = qhome.path / "bin" / "qmail-queue"
    qq.unlink()
    shutil.copy(BIN / "qmail-queue", qq)
    os.chown(qq, qhome.users["qmailq"], TEST_GROUPS["qmail"])
    qq.chmod(0o4711)
    h.dotqmail(".qmail", "&fwd@example.net\n")
    setup = 'mount -t tmpfs rqmail /var && mkdir /var/qmail && mount --bind "$0" /var/qmail && exec "$@"'
    f = tempfile.TemporaryFile()
    f.write(MSG)
    f.seek(0)
    r = subprocess.run(["unshare", "-m", "sh", "-c", setup, str(qhome.path), "setpriv", f"--reuid={UID}",
                        f"--regid={GID}", "--clear-groups", *h.argv()], stdin=f, capture_output=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "QMAILHOME": "/var/qmail"})
    assert r.returncode == 0 and re.fullmatch(rb"did 0\+1\+0\nqp \d+\n", r.stdout), r
    [(env, msg)] = qhome.todo().values()
    # qmail-queue records the invoking uid (u) and pid (p) before the envelope.
    assert env[0] == f"u{UID}".encode() and env[1].startswith(b"p")
    assert env[2:] == [b"Fbob@example.com", b"Tfwd@example.net"]
    # qmail-queue's Received line names the alias user (7790) as qmail's does.
    assert re.fullmatch(rb"Received: \(qmail \d+ invoked by alias\); [^\n]+ -0000\n" + re.escape(DT + MSG), msg), msg


# --- .qmail selection ----------------------------------------------------------------

def test_extension_addresses_and_defaults(home):
    for md in ("Foo", "FooBar", "Def", "Top"):
        home.maildir(md)
    home.dotqmail(".qmail-foo", "./Foo/\n")
    home.dotqmail(".qmail-foo:bar-default", "./FooBar/\n")
    home.dotqmail(".qmail-a-default", "./Def/\n")
    home.dotqmail(".qmail-default", "./Top/\n")
    cases = [("Foo", "Foo"), ("foo.bar-baz", "FooBar"), ("Foo.Bar-x-y", "FooBar"), ("a-b-c", "Def"), ("a", "Top"),
             ("foo-x", "Top"), ("zzz", "Top")]
    for ext, md in cases:
        before = len(home.new(md))
        assert home.run(local=f"joe-{ext}", dash="-", ext=ext) == (0, b"did 1+0+0\n"), ext
        assert len(home.new(md)) == before + 1, ext


def test_no_mailbox_by_that_name(home):
    assert home.run(local="joe-nobody", dash="-", ext="nobody") == (100, b"Sorry, no mailbox here by that name. (#5.1.1)\n")
    # The plain address without a .qmail uses the default delivery; an empty .qmail too.
    assert home.run() == (0, b"did 1+0+0\n")
    home.dotqmail(".qmail", "")
    assert home.run(default="./Mailbox\n") == (0, b"did 1+0+0\n")
    assert (home.path / "Mailbox").exists()


def test_dash_n_says_what_it_would_do(home):
    home.dotqmail(".qmail", "./Maildir/\n./Mailbox\n|preline procmail\n&a@b\nc@d\n# x\n")
    assert home.run(opts=("-n",)) == (
        0, b"maildir ./Maildir/\nmbox ./Mailbox\nprogram preline procmail\nforward a@b\nforward c@d\ndid 2+2+1\n")
    assert home.new() == [] and not (home.path / "Mailbox").exists()


def test_delivered_to_loop(home):
    assert home.run(b"Received: x\n" + DT + b"Subject: loop\n\nbody\n") == (
        100, b"This message is looping: it already has my Delivered-To line. (#5.4.6)\n")
    # In the body, or for another address: delivered.
    assert home.run(b"Subject: x\n\n" + DT)[0] == 0
    assert home.run(b"Delivered-To: joe@example.org.uk\n\nx\n")[0] == 0
    assert len(home.new()) == 2
    # -n skips the check.
    assert home.run(DT + b"\n", opts=("-n",)) == (0, b"maildir ./Maildir/\ndid 1+0+0\n")


def test_forward_loop_is_caught_on_the_second_pass(home, capture):
    d, env = capture
    home.dotqmail(".qmail", "&joe@example.org\n")
    assert home.run(env=env)[0] == 0
    looped = (d / "msg").read_bytes()
    assert home.run(looped, env=env) == (100, b"This message is looping: it already has my Delivered-To line. (#5.4.6)\n")


# --- bad .qmail files and homes ------------------------------------------------------

@pytest.mark.parametrize("text,mode,rc,out", [
    ("\n./Maildir/\n", 0o644, 111, b"Uh-oh: first line of .qmail file is blank. (#4.2.1)\n"),
    ("  \t\n./Maildir/\n", 0o644, 111, b"Uh-oh: first line of .qmail file is blank. (#4.2.1)\n"),
    ("./Maildir/\n\n\n# ok\n", 0o644, 0, b"did 1+0+0\n"),
    ("./Maildir/  \t\n", 0o644, 0, b"did 1+0+0\n"),
    ("+other\n./Maildir/\n", 0o644, 0, b"did 1+0+0\n"),
    ("+list\n./Maildir/\n", 0o644, 111, b"Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)\n"),
    ("./Maildir/\n", 0o744, 111, b"Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)\n"),
    ("|true\n", 0o744, 111, b"Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)\n"),
    ("./Maildir/\n", 0o646, 111, b"Uh-oh: .qmail file is writable. (#4.7.0)\n"),
    ("./Maildir/\n", 0o664, 0, b"did 1+0+0\n"),
    ("./Maildir/", 0o644, 0, b"did 1+0+0\n"),
    # As qmail's C: the line ends in "k", so it is an mbox line, whose path ends at the NUL.
    (b"./Maildir/\0junk\n", 0o644, 111, b"Unable to open ./Maildir/: is a directory. (#4.2.1)\n"),
    (b"./Maildir/\0junk/\n", 0o644, 0, b"did 1+0+0\n"),
])
def test_dotqmail_lines_and_modes(home, text, mode, rc, out):
    home.dotqmail(".qmail", text, mode)
    assert home.run() == (rc, out)
    assert len(home.new()) == (1 if rc == 0 else 0)


def test_writable_and_sticky_home(home):
    home.path.chmod(0o702)
    assert home.run() == (111, b"Uh-oh: home directory is writable. (#4.7.0)\n")
    # Group-writable is accepted, as qmail's conf-patrn (002) does.
    home.path.chmod(0o770)
    assert home.run() == (0, b"did 1+0+0\n")
    home.path.chmod(0o1700)
    assert home.run() == (111, b"Home directory is sticky: user is editing his .qmail file. (#4.2.1)\n")
    assert home.run(opts=("-n",)) == (0, b"Warning: home directory is sticky.\nmaildir ./Maildir/\ndid 1+0+0\n")
    assert len(home.new()) == 1


def test_symlink_and_directory_dotqmail(home, open_dir):
    home.maildir("Other")
    target = open_dir / "elsewhere"
    target.write_text("./Other/\n")
    os.symlink(target, home.path / ".qmail")
    # A symlink is followed, as open() does.
    assert home.run() == (0, b"did 1+0+0\n")
    assert len(home.new("Other")) == 1
    # A dangling one is no file: the default delivery.
    target.unlink()
    assert home.run() == (0, b"did 1+0+0\n")
    assert len(home.new()) == 1
    # A directory is no file either: the -default file, or no mailbox.
    (home.path / ".qmail-dir").mkdir()
    assert home.run(local="joe-dir", dash="-", ext="dir") == (100, b"Sorry, no mailbox here by that name. (#5.1.1)\n")
    home.dotqmail(".qmail-default", "./Other/\n")
    assert home.run(local="joe-dir", dash="-", ext="dir") == (0, b"did 1+0+0\n")
    # A world-writable target counts as a writable .qmail.
    target.write_text("./Other/\n")
    target.chmod(0o666)
    assert home.run() == (111, b"Uh-oh: .qmail file is writable. (#4.7.0)\n")


def test_unreadable_dotqmail_defers(home):
    need(IS_ROOT, "root (a .qmail the user cannot read)")
    p = home.dotqmail(".qmail", "./Maildir/\n", 0o600)
    os.chown(p, 0, 0)
    assert home.run() == (111, b"Unable to open .qmail: access denied. (#4.3.0)\n")


def snapshot(base):
    return sorted(str(p) for p in base.rglob("*"))


def test_hostile_bytes_stay_inside_the_mailbox(home, open_dir):
    home.dotqmail(".qmail-default", "./Maildir/\n")
    before = snapshot(open_dir)
    # ../ in an extension cannot name a file outside the home: dots become colons.
    for ext in ("../../etc/passwd", "..", "x/../../y", ".qmail"):
        rc, out = home.run(local=f"joe-{ext}", dash="-", ext=ext)
        assert rc == 0, (ext, out)
    # Newlines in the recipient and sender cannot add header lines.
    assert home.run(local="joe-a\nX-Evil: 1", dash="-", ext="a\nX-Evil: 1", sender="b\nX-Bad: 2@x")[0] == 0
    after = snapshot(open_dir)
    added = sorted(set(after) - set(before))
    assert all(p.startswith(str(home.path / "Maildir" / "new")) for p in added), added
    assert len(added) == 5
    msgs = [p.read_bytes() for p in home.new()]
    evil = [m for m in msgs if b"Evil" in m]
    assert evil == [b"Return-Path: <\"b\\_X-Bad: 2\"@x>\nDelivered-To: joe-a_X-Evil: 1@example.org\n" + MSG]
    assert all(m.startswith(RP) for m in msgs if m not in evil)


def test_hostile_argv_bytes_arrive_as_bytes(home):
    p = subprocess.run([QL.encode(), b"--", b"joe", str(home.path).encode(), b"j\xffe", b"", b"", b"ex.org",
                        b"s\xe9@x", b"./Maildir/\n"], stdin=tempfile.TemporaryFile(), capture_output=True,
                       env=home.env(), **as_user())
    assert p.returncode == 0, p
    [f] = home.new()
    assert f.read_bytes() == b"Return-Path: <\"s\xe9\"@x>\nDelivered-To: j\xffe@ex.org\n"


# --- exit codes, usage, the environment it runs in ----------------------------------

def test_usage_and_start_failures(home):
    usage = b"qmail-local: usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty\n"
    for argv in ([QL], [QL, "a", "b"], home.argv()[:-1], home.argv() + ["extra"], home.argv(home="rel/home"),
                 home.argv(opts=("-x",))):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        assert (r.returncode, r.stdout, r.stderr) == (100, b"", usage), argv
    assert home.run(home="/nonexistent/home") == (
        111, b"Unable to switch to /nonexistent/home: file does not exist. (#4.3.0)\n")


def test_unseekable_message_is_temporary(home):
    p = subprocess.Popen(home.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=home.env(), **as_user())
    out, _ = p.communicate(MSG, timeout=30)
    assert (p.returncode, out) == (111, b"Unable to rewind message. (#4.3.0)\n")
    assert home.new() == []


def test_big_message_under_softlimit(home):
    need(Path("/usr/bin/softlimit").exists(), "daemontools' softlimit")
    home.dotqmail(".qmail", "./Maildir/\n./Mailbox\n")
    big = MSG + b"x" * 99 + b"\n"
    big = big + (b"y" * 1000 + b"\n") * 30000 + b"no newline " * 100000
    f = tempfile.TemporaryFile()
    f.write(big)
    f.seek(0)
    r = subprocess.run(["softlimit", "-m", "2000000", *home.argv()], stdin=f, capture_output=True, env=home.env(),
                       timeout=120, **as_user())
    assert (r.returncode, r.stdout, r.stderr) == (0, b"did 2+0+0\n", b"")
    [m] = home.new()
    assert m.stat().st_size == len(RP + DT + big)
    assert (home.path / "Mailbox").stat().st_size > len(big)


@pytest.fixture
def small_tmpfs(open_dir):
    need_root("mounting a tmpfs")
    mnt = open_dir / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_is_temporary_and_leaves_nothing(small_tmpfs):
    home = Home(small_tmpfs)
    free = os.statvfs(home.path).f_bavail * os.statvfs(home.path).f_frsize
    big = b"Subject: big\n\n" + b"z" * (free + 65536)
    assert home.run(big) == (111, b"Temporary error on maildir delivery. (#4.3.0)\n")
    assert home.new() == [] and home.tmp() == []
    # mbox: cut back to what it held.
    home.dotqmail(".qmail", "./Mailbox\n")
    assert home.run(b"Subject: small\n\nx\n") == (0, b"did 1+0+0\n")
    kept = (home.path / "Mailbox").read_bytes()
    assert home.run(big) == (111, b"Unable to write ./Mailbox: out of disk space. (#4.3.0)\n")
    assert (home.path / "Mailbox").read_bytes() == kept
    assert not (home.path / "Mailbox.lock").exists()
    # The space came back: both work again.
    (home.path / ".qmail").unlink()
    assert home.run() == (0, b"did 1+0+0\n")


# --- a real reader -------------------------------------------------------------------

def dovecot_pop3(home, location, commands):
    """Dovecot's pop3 run preauthenticated as the user (USER and HOME set, as after a
    login), on `location`; the replies with CRLF made LF."""
    pop3 = Path("/usr/lib/dovecot/pop3")
    need(pop3.exists(), "Dovecot's pop3 (dovecot-pop3d)")
    d = home.base / "dovecot"
    for sub in ("", "run", "state"):
        (d / sub).mkdir(mode=0o755, exist_ok=True)
        own(d / sub)
    conf = d / "dovecot.conf"
    conf.write_text(f"base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = /dev/stderr\n")
    r = subprocess.run([str(pop3), "-c", str(conf), "-o", f"mail_uid={UID}", "-o", f"mail_gid={GID}",
                        "-o", f"mail_location={location}"], input=commands, capture_output=True, timeout=30,
                       env={"USER": "joe", "HOME": str(home.path), "PATH": "/usr/bin:/bin"}, **as_user())
    assert r.returncode == 0, r
    return r.stdout.replace(b"\r\n", b"\n")


def test_dovecot_reads_the_maildir_and_the_mbox(home):
    home.dotqmail(".qmail", "./Maildir/\n./Mailbox\n")
    second = b"Subject: two\n\nFrom here\nlast line"
    assert home.run() == (0, b"did 2+0+0\n")
    assert home.run(second) == (0, b"did 2+0+0\n")
    cmds = b"list\r\nretr 1\r\nretr 2\r\nquit\r\n"
    one, two = RP + DT + MSG, RP + DT + second + b"\n"
    out = dovecot_pop3(home, f"maildir:{home.path}/Maildir", cmds)
    assert out.count(b"\n.\n") == 3 and b"+OK 2 messages" in out, out
    got = sorted(out.split(b"octets\n")[1:])
    assert [g.split(b".\n")[0] for g in got] == sorted([one, two]), out
    # Dovecot shows an mbox message without its From_ line and the blank line after
    # it, and leaves >From quoting as written.
    out = dovecot_pop3(home, f"mbox:{home.path}/mail:INBOX={home.path}/Mailbox", cmds)
    assert b"+OK 2 messages" in out, out
    parts = [p.split(b"\n.\n")[0] + b"\n" for p in out.split(b"octets\n")[1:]]
    quoted = RP + DT + b"From: bob@example.com\nSubject: hello\n\nbody line\n>From the start\n>>From quoted\n"
    assert parts == [quoted, RP + DT + b"Subject: two\n\n>From here\nlast line\n"], out
