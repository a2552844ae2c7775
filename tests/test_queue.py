"""qmail-queue, qmail-mkqueue and qmail-mkids against qmail-queue(8) and qmail's
hier.c: the tree, the files it writes, exit codes for every bad input, a full disk,
and kill -9 at random points.

As root the queue belongs to numeric test users and qmail-queue runs as qmailq:qmail,
as its setuid bit would make it; without root everything runs as the caller."""

import os
import random
import re
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import BIN, IS_ROOT, TEST_GROUPS, QHome, need_root

ENV1 = b"Fa@example.org\0Tc@example.net\0Td\0\0"
RECEIVED = re.compile(rb"^Received: \(qmail (\d+) invoked (by uid \d+|by alias|from network|for bounce)\); "
                      rb"([1-9]|[12]\d|3[01]) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                      rb"\d\d:\d\d:\d\d -0000\n")


def leftovers(h):
    return {d: h.files(d) for d in ("pid", "mess", "intd", "todo")}


NOTHING = {"pid": [], "mess": [], "intd": [], "todo": []}


# --- the tree ----------------------------------------------------------------------

def test_tree_owners_and_modes(qhome):
    q = qhome.q
    u, g = qhome.users, TEST_GROUPS["qmail"] if IS_ROOT else os.getgid()
    want = {"": (u["qmailq"], 0o750), "pid": (u["qmailq"], 0o700), "intd": (u["qmailq"], 0o700),
            "todo": (u["qmailq"], 0o750), "mess": (u["qmailq"], 0o750), "mess/22": (u["qmailq"], 0o750),
            "info/0": (u["qmails"], 0o700), "local/5": (u["qmails"], 0o700), "remote/22": (u["qmails"], 0o700),
            "bounce": (u["qmails"], 0o700), "lock": (u["qmailq"], 0o750), "lock/sendmutex": (u["qmails"], 0o600),
            "lock/tcpto": (u["qmailr"], 0o644), "lock/trigger": (u["qmails"], 0o622)}
    for rel, (uid, mode) in want.items():
        st = os.lstat(q / rel)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, g, mode), rel
    assert stat.S_ISFIFO(os.lstat(q / "lock/trigger").st_mode)
    assert (q / "lock/tcpto").stat().st_size == 1024
    assert not (q / "mess/23").exists() and (q / "mess/22").is_dir()
    assert stat.S_IMODE(os.lstat(qhome.path / "alias").st_mode) == 0o2755


def test_check_finds_drift_and_make_repairs_it(qhome):
    mk = str(BIN / "qmail-mkqueue")
    assert subprocess.run([mk, "-c", str(qhome.path)]).returncode == 0
    (qhome.q / "pid").chmod(0o755)
    (qhome.q / "lock/trigger").unlink()
    r = subprocess.run([mk, "-c", str(qhome.path)], capture_output=True)
    assert r.returncode == 100
    err = r.stderr.decode()
    assert "qmail-mkqueue: wrong: queue/pid: directory" in err and "0755, want Dir" in err and " 0700" in err
    assert "queue/lock/trigger: file does not exist" in err
    assert (qhome.q / "pid").stat().st_mode & 0o777 == 0o755  # -c changed nothing
    assert subprocess.run([mk, str(qhome.path)]).returncode == 0
    assert subprocess.run([mk, "-c", str(qhome.path)]).returncode == 0


def test_mkqueue_refuses_big_todo_and_missing_ids(open_dir):
    h = QHome(open_dir / "h")
    (h.q / "todo" / "0").mkdir()
    r = subprocess.run([str(BIN / "qmail-mkqueue"), str(h.path)], capture_output=True)
    assert r.returncode == 100 and b"big-todo" in r.stderr
    r = subprocess.run([str(BIN / "qmail-mkqueue"), str(open_dir / "nothing")], capture_output=True)
    assert r.returncode == 111 and b"control/ids: file does not exist" in r.stderr


def test_mkids_reads_test_copies_and_names_what_is_missing(open_dir):
    passwd = open_dir / "passwd"
    passwd.write_text("".join(f"{n}:x:{500 + i}:{600 + i}::/:/bin/false\n" for i, n in
                              enumerate(["alias", "qmaild", "qmaill", "root", "qmailp", "qmailq", "qmailr"])))
    group = open_dir / "group"
    group.write_text("qmail:x:700:\n")
    mk = [str(BIN / "qmail-mkids"), "-P", str(passwd), "-G", str(group), str(open_dir)]
    r = subprocess.run(mk, capture_output=True)
    assert r.returncode == 100
    assert r.stderr == b"qmail-mkids: fatal: missing user qmails, group nofiles; create them as INSTALL says\n"
    assert not (open_dir / "control/ids").exists()
    passwd.write_text(passwd.read_text() + "qmails:x:507:607::/:/bin/false\n")
    group.write_text("qmail:x:700:\nnofiles:x:701:\n")
    assert subprocess.run(mk).returncode == 0
    ids = (open_dir / "control/ids").read_text()
    assert "\nqmailq:505:605\n" in ids and "\nqmails:507:607\n" in ids and ids.endswith("qmail:700\nnofiles:701\n")


# --- one message -------------------------------------------------------------------

def test_queues_message_and_envelope_in_qmails_layout(qhome):
    trigger = os.open(qhome.q / "lock/trigger", os.O_RDONLY | os.O_NONBLOCK)
    body = b"Subject: t\r\n\r\nbinary \0 bytes\xff\n.\nno final newline"
    assert qhome.queue(body, ENV1) == 0
    assert os.read(trigger, 10) == b"\0"  # qmail-send would wake up
    os.close(trigger)
    [n] = qhome.todo()
    records, mess = qhome.todo()[n]
    m = RECEIVED.match(mess)
    assert m and mess[m.end():] == body
    uid = qhome.users["qmailq"]
    # Without root one uid plays every qmail user, alias included.
    assert m.group(2) == (f"by uid {uid}".encode() if IS_ROOT else b"by alias")
    assert records == [b"u%d" % uid, b"p" + m.group(1), b"Fa@example.org", b"Tc@example.net", b"Td"]
    mpath = qhome.q / "mess" / str(n % 23) / str(n)
    st = mpath.stat()
    assert st.st_ino == n and stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == uid
    # todo/N and intd/N are one inode; pid/ is empty again.
    assert (qhome.q / "todo" / str(n)).stat().st_ino == (qhome.q / "intd" / str(n)).stat().st_ino
    assert qhome.files("pid") == []
    assert stat.S_IMODE((qhome.q / "todo" / str(n)).stat().st_mode) == 0o644


def test_invoker_names_come_from_control_ids(open_dir):
    need_root()  # the caller's uid must be both qmaild (say) and able to write the queue
    for user, who in [("qmaild", b"from network"), ("qmails", b"for bounce"), ("alias", b"by alias")]:
        h = QHome(open_dir / user, users={user: 0})
        assert h.queue(b"x\n", ENV1, as_qmailq=False) == 0
        [(records, mess)] = h.todo().values()
        assert RECEIVED.match(mess).group(2) == who and records[0] == b"u0"


@pytest.mark.parametrize("envelope,message,code", [
    (b"", b"x\n", 54),                                 # no envelope at all
    (b"Xa\0\0", b"x\n", 91),                           # first byte not F
    (b"Fa@b\0", b"x\n", 54),                           # no final NUL
    (b"Fa@b\0Tc@d\0", b"x\n", 54),                     # still no final NUL
    (b"Fa@b", b"x\n", 54),                             # sender without its NUL
    (b"Fa@b\0c@d\0\0", b"x\n", 91),                    # recipient without T
    (b"Fa@b\0Tc@d\0e@f\0\0", b"x\n", 91),              # a NUL inside a recipient
    (b"F" + b"x" * 1003 + b"\0\0", b"x\n", 11),        # sender too long
    (b"Fa\0T" + b"y" * 1003 + b"\0\0", b"x\n", 11),    # recipient too long
    (b"F" + b"x" * 1002 + b"\0\0", b"x\n", 0),         # the longest address
    (b"F\0\0", b"x\n", 0),                             # bounce with no recipients
    (b"Fa\0Tb\0\0", b"", 0),                           # 0-byte message
    (b"Fa\0Tb\0\0trailing garbage never read", b"x\n", 0),
])
def test_envelope_contract(qhome, envelope, message, code):
    assert qhome.queue(message, envelope) == code
    left = leftovers(qhome)
    if code:
        assert left == NOTHING  # nothing half-queued, and nothing left behind either
    else:
        assert len(left["todo"]) == 1 and left["pid"] == []


def test_100_megabyte_message(qhome):
    import hashlib
    chunk = bytes(range(256)) * 4096  # 1 MiB
    assert qhome.queue(chunk * 100, ENV1, timeout=300) == 0
    [(_, mess)] = qhome.todo().values()
    body = mess[RECEIVED.match(mess).end():]
    assert len(body) == 100 << 20 and hashlib.sha256(body).digest() == hashlib.sha256(chunk * 100).digest()


def test_writer_killed_midway(qhome):
    """The writer dies after half a message: qmail-queue sees the message end, then
    an envelope that ends early, and queues nothing."""
    r, w = os.pipe()
    qq = subprocess.Popen([str(qhome.path / "bin/qmail-queue")], stdin=subprocess.PIPE, stdout=r,
                          env=qhome.env(), **qhome.as_qmailq())
    writer = subprocess.Popen(["python3", "-c", "import os,sys,time\n"
                               "os.write(0, b'x' * 300000)\nos.write(1, b'Fa@b\\0Tc')\ntime.sleep(60)"],
                              stdin=qq.stdin, stdout=w)
    qq.stdin.close()
    os.close(r)
    os.close(w)
    time.sleep(0.3)
    writer.kill()
    writer.wait()
    assert qq.wait(30) == 54
    assert leftovers(qhome) == NOTHING


def test_setuid_ignores_qmailhome(open_dir, qhome):
    """A setuid qmail-queue must not let its caller pick the queue it writes."""
    need_root()
    d = open_dir / "suid"
    d.mkdir()
    d.chmod(0o755)
    exe = d / "qmail-queue"
    exe.write_bytes((BIN / "qmail-queue").read_bytes())
    os.chown(exe, qhome.users["qmailq"], TEST_GROUPS["qmail"])
    exe.chmod(0o4711)
    r, w = os.pipe()
    os.write(w, ENV1)
    os.close(w)
    p = subprocess.run([str(exe)], input=b"x\n", stdout=r, env=qhome.env(), user=7799, group=7799,
                       extra_groups=[], timeout=30)
    os.close(r)
    assert leftovers(qhome) == NOTHING
    if not os.path.exists("/var/qmail"):
        assert p.returncode == 61


# --- the caller's signal state (issue 12, item 5) -----------------------------------

def signal_masks(pid):
    """{SigBlk, SigIgn, SigCgt: set of signal numbers} from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("SigBlk", "SigIgn", "SigCgt"):
                bits = int(value, 16)
                out[name] = {n for n in range(1, 65) if bits >> (n - 1) & 1}
    return out


def test_a_caller_cannot_switch_off_the_death_alarm(qhome):
    """A caller that blocks SIGALRM (and ignores SIGTERM) before exec: qmail-queue
    unblocks it, so its 24-hour alarm still ends it (52) while it waits for input."""
    def hostile():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM, signal.SIGHUP})
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    r, w = os.pipe()
    p = subprocess.Popen([str(qhome.path / "bin/qmail-queue")], stdin=subprocess.PIPE, stdout=r,
                         env=qhome.env(), preexec_fn=hostile, **qhome.as_qmailq())
    os.close(r)
    try:
        p.stdin.write(b"half a message")
        p.stdin.flush()
        deadline = time.time() + 10
        while not qhome.files("mess") and time.time() < deadline:
            time.sleep(0.01)
        assert qhome.files("mess"), "qmail-queue did not start the message"
        masks = signal_masks(p.pid)
        assert masks["SigBlk"] == set()
        assert signal.SIGALRM in masks["SigCgt"]
        assert signal.SIGTERM not in masks["SigIgn"]
        assert {signal.SIGXFSZ, signal.SIGXCPU, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                signal.SIGPIPE} <= masks["SigIgn"]
        os.kill(p.pid, signal.SIGALRM)  # what the 24-hour timer does
        assert p.wait(10) == 52
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(w)
    # As in qmail, the alarm exits without cleaning up; nothing was committed.
    assert qhome.files("todo") == [] and qhome.files("intd") == []


@pytest.mark.parametrize("message,envelope", [
    (b"m" * 100000, ENV1),                                                 # mess/ too big
    (b"small\n", b"Fa\0" + b"".join(b"Tr%04d@example.net\0" % i for i in range(1000)) + b"\0"),  # intd/
])
def test_a_low_file_size_limit_is_a_write_error(qhome, message, envelope):
    """SIGXFSZ at its default and RLIMIT_FSIZE at 8 KB: the write fails (EFBIG),
    qmail-queue exits 53 and leaves nothing, instead of dying with a truncated file."""
    import resource

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
    assert qhome.queue(message, envelope, preexec_fn=limited) == 53
    assert leftovers(qhome) == NOTHING
    # The same message without the limit is queued.
    assert qhome.queue(message, envelope) == 0


# --- disk full, kill -9 --------------------------------------------------------------

@pytest.fixture
def small_tmpfs(open_dir):
    need_root()
    mnt = open_dir / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=400,mode=0755", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk(small_tmpfs):
    h = QHome(small_tmpfs / "home")
    free = os.statvfs(h.q).f_bavail * os.statvfs(h.q).f_frsize
    assert h.queue(b"y" * (free + 65536), ENV1) == 53
    assert leftovers(h) == NOTHING
    # The space came back: the next message fits.
    assert h.queue(b"small\n", ENV1) == 0
    # Out of inodes: qmail-queue cannot even make its pid/ file.
    n = 0
    while True:
        try:
            (h.q / "lock" / f"filler{n}").touch()
            n += 1
        except OSError:
            break
    before = leftovers(h)
    assert h.queue(b"small\n", ENV1) == 63
    assert leftovers(h) == before


def test_kill_9_at_random_points(qhome):
    """Kills qmail-queue at random moments in 200 runs. Every run that exited 0 is in
    todo/ complete; every todo/ entry is a complete message; nothing else is visible."""
    rng = random.Random(4711)
    sent, ok = {}, set()
    kills, window = 0, 0.01
    for i in range(200):
        tag = b"X-Run: %d\n" % i
        body = tag + os.urandom(rng.choice([10, 3000, 70000, 300000])).hex().encode() + b"\n"
        env = b"Fs%d@example.org\0" % i + b"".join(b"Tr%d.%d@example.net\0" % (i, j) for j in range(rng.randint(0, 50))) + b"\0"
        sent[i] = (body, env)
        r, w = os.pipe()
        p = subprocess.Popen([str(qhome.path / "bin/qmail-queue")], stdin=subprocess.PIPE, stdout=r,
                             env=qhome.env(), **qhome.as_qmailq())
        os.close(r)

        def feed(p=p, w=w, body=body, env=env):
            try:
                p.stdin.write(body)
                p.stdin.close()
                os.write(w, env)
            except OSError:
                pass
            finally:
                os.close(w)
        t = threading.Thread(target=feed)
        t.start()
        time.sleep(rng.uniform(0, window))
        p.send_signal(signal.SIGKILL)
        rc = p.wait(30)
        t.join()
        # Keep about half the runs killed, whatever this disk's speed.
        if rc == 0:
            ok.add(i)
            window *= 0.85
        else:
            assert rc == -9
            kills += 1
            window *= 1.15
    assert kills >= 50, f"only {kills} runs were killed"
    queued = {}
    for n, (records, mess) in qhome.todo().items():
        run = int(re.search(rb"X-Run: (\d+)", mess).group(1))
        body, env = sent[run]
        assert mess[RECEIVED.match(mess).end():] == body, run
        assert records[2:] == env.split(b"\0")[:-2], run
        queued[run] = n
    print(f"kills={kills} ok={len(ok)} queued={len(queued)} left={ {d: len(qhome.files(d)) for d in ('pid', 'mess', 'intd')} }")
    assert ok <= set(queued)
    # What kill -9 left in pid/, mess/, intd/ is invisible to qmail-send, and the
    # 36-hour cleanup removes it, as in qmail.
