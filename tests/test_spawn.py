"""qmail-start, qmail-lspawn, qmail-rspawn and qmail-clean against their wire protocols.

A python driver plays qmail-send on the spawns' descriptors 0 and 1 (qmail-lspawn(8),
qmail's spawn.c): the slot-byte handshake, `slot messid\\0sender\\0recipient\\0` commands
and `slot letter text\\0` reports. The qmail-local, qmail-remote and qmail-start
children are stand-in python scripts in the temporary QMAILHOME/bin that record what
they were given (argv, ids, cwd, environment, stdin, descriptors) and exit as told.
As root: the spawns change users, so these tests need it.
"""

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, QHome, TEST_GROUPS, need, need_root

PY = "/usr/bin/python3"
MESSAGE = b"Received: (qmail 1 invoked by uid 0); 1 Dec 2026 00:00:00 -0000\nSubject: hi\n\nbody\n"
JOE_UID, JOE_GID = 7801, 7802
TRUNC = b"\nError report too long, sorry.\n"

# Records everything, then behaves as its extension (argv[6]) says.
FAKE_LOCAL = r'''#!/usr/bin/python3
import json, os, sys, time
argv = [a.encode("utf-8", "surrogateescape").decode("latin-1") for a in sys.argv]
fds = {}
for fd in range(0, 10):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
rec = {"argv": argv, "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
       "groups": os.getgroups(), "cwd": os.getcwd(), "env": dict(os.environ), "fds": fds,
       "stdin": sys.stdin.buffer.read().decode("latin-1")}
with open(os.path.join(os.environ["SPAWN_RECORD"], f"{os.getpid()}.json"), "w") as f:
    json.dump(rec, f)
ext = sys.argv[6]
out = sys.stdout.buffer
if ext.startswith("exit"):
    out.write(f"exit {ext[4:]}\n".encode()); out.flush()
    os.write(2, b"on stderr\n")
    os._exit(int(ext[4:]))
if ext == "kill":
    out.write(b"about to die\n"); out.flush()
    os.kill(os.getpid(), 9)
if ext.startswith("sleep"):
    time.sleep(float(ext[5:]))
if ext == "long":
    os.write(1, b"x" * 5000)
    os._exit(0)
if ext == "nul":
    os.write(1, b"before\0after")
    os._exit(0)
out.write(b"did 1+0+0\n"); out.flush()
os._exit(0)
'''

# qmail-remote: records, then answers as the recipient's local part says.
FAKE_REMOTE = r'''#!/usr/bin/python3
import json, os, sys
with open(os.path.join(os.environ["SPAWN_RECORD"], f"remote-{os.getpid()}.json"), "w") as f:
    json.dump({"argv": sys.argv, "uid": os.getuid(), "stdin": sys.stdin.read()}, f)
local = sys.argv[3].rsplit("@", 1)[0]
if local == "exit111":
    os._exit(111)
if local == "refused":
    os.write(1, b"h127.0.0.1 does not like recipient.\nRemote host said: 550 no\n\0DGiving up on 127.0.0.1.\n\0")
    os._exit(0)
os.write(1, b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 ok\n\0")
'''


def stand_in(path, text):
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def home(open_dir):
    """A root-run instance with a test passwd (QMAIL_PASSWD), homes owned by their
    users, a stand-in qmail-local and a record directory every test user can write."""
    need_root("qmail-lspawn becomes each recipient's user")
    q = QHome(open_dir / "home")
    records = open_dir / "records"
    records.mkdir()
    records.chmod(0o777)
    homes = open_dir / "homes"
    homes.mkdir()
    homes.chmod(0o755)
    for name, uid in [("joe", JOE_UID), ("notmine", 0)]:
        (homes / name).mkdir()
        os.chown(homes / name, uid, JOE_GID)
    q.passwd = open_dir / "passwd"
    q.passwd.write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        f"joe:x:{JOE_UID}:{JOE_GID}:Joe:{homes}/joe:/bin/sh\n"
        f"stranger:x:7803:7803::{homes}/notmine:/bin/sh\n"
        f"alias:x:{q.users['alias']}:{TEST_GROUPS['nofiles']}::{q.path}/alias:/bin/false\n")
    q.passwd.chmod(0o644)
    q.records = records
    q.homes = homes
    stand_in(q.path / "bin" / "qmail-local", FAKE_LOCAL)
    mess = q.q / "mess" / "5" / "123"
    mess.write_bytes(MESSAGE)
    mess.chmod(0o644)
    os.chown(mess, q.users["qmailq"], TEST_GROUPS["qmail"])
    return q


def records(q):
    out = []
    for f in sorted(q.records.glob("*.json")):
        out.append(json.loads(f.read_text()))
        f.unlink()
    return out


class Driver:
    """qmail-send's side of a spawn: commands on its fd 0, reports from its fd 1."""

    def __init__(self, argv, env, **popen):
        cmd_r, self.cmd = os.pipe()
        self.rep, rep_w = os.pipe()
        # As qmail-start leaves them: no stderr (descriptors 2-6 closed).
        self.p = subprocess.Popen([str(a) for a in argv], stdin=cmd_r, stdout=rep_w, env=env,
                                  preexec_fn=lambda: os.close(2), **popen)
        os.close(cmd_r)
        os.close(rep_w)
        self.buf = b""

    def read(self, n=1, timeout=20):
        end = time.time() + timeout
        while len(self.buf) < n:
            r, _, _ = select.select([self.rep], [], [], max(0, end - time.time()))
            assert r, f"no report within {timeout}s (have {self.buf!r})"
            chunk = os.read(self.rep, 65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handshake(self):
        return self.read(1)

    def send(self, slot, messid, sender, recipient):
        os.write(self.cmd, bytes([slot]) + messid + b"\0" + sender + b"\0" + recipient + b"\0")

    def report(self, timeout=20):
        """(slot, report bytes without the NUL)."""
        slot = self.read(1, timeout)[0]
        text = b""
        while True:
            c = self.read(1, timeout)
            if c == b"\0":
                return slot, text
            text += c

    def deliver(self, recipient, sender=b"a@example.org", slot=0, messid=b"5/123"):
        self.send(slot, messid, sender, recipient)
        got, text = self.report()
        assert got == slot
        return text

    def close(self, timeout=20):
        os.close(self.cmd)
        rc = self.p.wait(timeout)
        os.close(self.rep)
        return rc


@pytest.fixture
def lspawn(home):
    started = []

    def start(defaultdelivery="./Maildir/", **env):
        d = Driver([BIN / "qmail-lspawn", defaultdelivery],
                   home.env(QMAIL_PASSWD=str(home.passwd), SPAWN_RECORD=str(home.records), **env))
        assert d.handshake() == bytes([120])
        started.append(d)
        return d

    yield start
    for d in started:
        if d.p.poll() is None:
            d.p.kill()
            d.p.wait()


def test_lspawn_runs_qmail_local_as_the_user(home, lspawn):
    d = lspawn()
    assert d.deliver(b"Joe@Example.COM", sender=b"sender@example.org") == b"Kdid 1+0+0\n"
    [r] = records(home)
    assert r["argv"] == ["bin/qmail-local", "--", "joe", f"{home.homes}/joe", "Joe", "", "", "Example.COM",
                         "sender@example.org", "./Maildir/"]
    assert (r["uid"], r["euid"], r["gid"], r["egid"]) == (JOE_UID, JOE_UID, JOE_GID, JOE_GID)
    assert r["groups"] == [JOE_GID]
    assert r["cwd"] == str(home.path)
    assert r["stdin"] == MESSAGE.decode("latin-1")
    # The message on 0, one report pipe on 1 and 2, nothing else passed on.
    assert r["fds"]["0"] == str(home.q / "mess" / "5" / "123")
    assert r["fds"]["1"].startswith("pipe:") and r["fds"]["1"] == r["fds"]["2"]
    assert not any(int(fd) > 2 and not v.startswith("/proc") for fd, v in r["fds"].items()), r["fds"]
    assert r["env"]["QMAILHOME"] == str(home.path)
    assert d.close() == 0


def test_lspawn_extension_and_alias_by_passwd(home, lspawn):
    d = lspawn("./Mailbox")
    d.deliver(b"joe-Foo-Bar@host")
    d.deliver(b"Nobody@host")
    d.deliver(b"stranger@host")  # a home not owned by its account
    d.deliver(b"root@host")      # uid 0 is never a delivery user
    rs = records(home)
    got = sorted((r["argv"][2:8], r["uid"]) for r in rs)
    alias = lambda ext: (["alias", f"{home.path}/alias", ext, "-", ext, "host"], home.users["alias"])
    assert got == sorted([
        (["joe", f"{home.homes}/joe", "joe-Foo-Bar", "-", "Foo-Bar", "host"], JOE_UID),
        alias("Nobody"), alias("stranger"), alias("root"),
    ])
    assert all(r["argv"][9] == "./Mailbox" for r in rs)


def test_lspawn_reports_from_exit_codes(home, lspawn):
    d = lspawn()
    cases = {
        b"joe-exit0": b"Kexit 0\non stderr\n",
        b"joe-exit99": b"Dexit 99\non stderr\n",
        b"joe-exit100": b"Dexit 100\non stderr\n",
        b"joe-exit111": b"Zexit 111\non stderr\n",
        b"joe-exit1": b"Dexit 1\non stderr\n",
        b"joe-exit71": b"Zexit 71\non stderr\n",
        b"joe-exit75": b"Zexit 75\non stderr\n",
        b"joe-exit112": b"ZInternal qmail-lspawn bug.\n",
        b"joe-exit115": b"ZNFS failure in qmail-local.\n",
        b"joe-exit120": b"ZUnable to run qmail-local.\n",
        b"joe-exit126": b"DUnable to run qmail-local.\n",
        b"joe-kill": b"Zqmail-local crashed.\n",
        b"joe-nul": b"Kbefore",
        b"joe-long": b"K" + b"x" * 2966 + TRUNC,
    }
    # All at once, one slot each: reports come back as the children finish.
    slots = {}
    for slot, local in enumerate(cases):
        d.send(slot, b"5/123", b"", local + b"@host")
        slots[slot] = local
    got = {}
    for _ in cases:
        slot, text = d.report()
        got[slots[slot]] = text
    assert got == cases
    assert d.close() == 0


def test_lspawn_answers_bad_commands_at_once(home, lspawn):
    d = lspawn()
    q = home.q / "mess"
    (q / "6" / "77").write_bytes(b"x")  # owned by root, not qmailq
    (q / "7" / "88").mkdir()
    os.chown(q / "7" / "88", home.users["qmailq"], TEST_GROUPS["qmail"])
    assert d.deliver(b"joe@host", slot=120) == b"ZInternal error: delnum too big. (#4.3.5)\n"
    assert d.deliver(b"joe@host", messid=b"5/12x") == b"DInternal error: messid has nonnumerics. (#5.3.5)\n"
    assert d.deliver(b"joe@host", messid=b"../5/123") == b"DInternal error: messid has nonnumerics. (#5.3.5)\n"
    assert d.deliver(b"joe@host", messid=b"1" * 100) == b"DInternal error: messid too long. (#5.3.5)\n"
    assert d.deliver(b"joe@host", messid=b"") == b"DInternal error: messid too short. (#5.3.5)\n"
    assert d.deliver(b"joe") == b"DSorry, address must include host name. (#5.1.3)\n"
    assert d.deliver(b"joe@host", messid=b"5/999") == b"Zqmail-spawn unable to open message. (#4.3.0)\n"
    assert d.deliver(b"joe@host", messid=b"6/77") == b"ZSorry, message has wrong owner. (#4.3.5)\n"
    assert d.deliver(b"joe@host", messid=b"7/88") == b"ZSorry, message has wrong type. (#4.3.5)\n"
    # The trash address: delivered, nothing run.
    assert d.deliver(b"@host") == b"K"
    # A busy slot.
    d.send(3, b"5/123", b"", b"joe-sleep1@host")
    assert d.deliver(b"joe@host", slot=3) == b"ZInternal error: delnum in use. (#4.3.5)\n"
    assert d.report() == (3, b"Kdid 1+0+0\n")
    assert len(records(home)) == 1


def test_lspawn_users_cdb_exact_and_wildcard(home, lspawn):
    need(Path("/usr/bin/cdb").exists(), "Debian's tinycdb (cdb -c)")
    joe = f"joe\0{JOE_UID}\0{JOE_GID}\0{home.homes}/joe\0"
    recs = [(b"!joe.shmoe\0", (joe + "\0").encode()),
            (b"!list-", (joe + "-\0lists-").encode()),
            (b"!rooted\0", f"r\0000\0000\0{home.homes}/joe\0\0".encode()),
            (b"", b"-")]
    src = b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in recs) + b"\n"
    subprocess.run(["cdb", "-c", str(home.path / "users" / "cdb")], input=src, check=True)
    d = lspawn()
    assert d.deliver(b"Joe.Shmoe@host") == b"Kdid 1+0+0\n"
    assert d.deliver(b"list-Foo@host") == b"Kdid 1+0+0\n"
    assert d.deliver(b"rooted@host") == b"ZNot allowed to perform deliveries as root.\n"
    got = sorted(r["argv"][2:7] for r in records(home))
    assert got == [["joe", f"{home.homes}/joe", "Joe.Shmoe", "", ""],
                   ["joe", f"{home.homes}/joe", "list-Foo", "-", "lists-Foo"]]
    # Not in the cdb: the passwd rules.
    d.deliver(b"joe@host")
    assert [r["argv"][2:4] for r in records(home)] == [["joe", f"{home.homes}/joe"]]
    # A damaged cdb defers; it is never "not there".
    (home.path / "users" / "cdb").write_bytes(b"damaged")
    assert d.deliver(b"joe@host") == b"ZTrouble reading users/cdb in qmail-lspawn.\n"


def test_lspawn_no_alias_user(home, lspawn):
    home.passwd.write_text(f"joe:x:{JOE_UID}:{JOE_GID}::{home.homes}/joe:/bin/sh\n")
    d = lspawn()
    assert d.deliver(b"nobody@host") == b"ZUnable to find alias user!\n"
    assert d.deliver(b"joe@host") == b"Kdid 1+0+0\n"


def test_lspawn_finishes_deliveries_after_eof(home, lspawn):
    d = lspawn()
    d.send(9, b"5/123", b"", b"joe-sleep1@host")
    os.close(d.cmd)
    assert d.report() == (9, b"Kdid 1+0+0\n")
    assert d.p.wait(20) == 0


def test_lspawn_needs_its_argument(home):
    r = subprocess.run([str(BIN / "qmail-lspawn")], env=home.env(), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    assert r.returncode == 100 and r.stdout == b""


def as_user(q, name):
    return {"user": q.users[name], "group": TEST_GROUPS["qmail"], "extra_groups": []}


def test_rspawn_without_qmail_remote_defers(home):
    (home.q / "lock" / "tcpto").write_bytes(b"\1" * 1024)
    d = Driver([BIN / "qmail-rspawn"], home.env(SPAWN_RECORD=str(home.records)), **as_user(home, "qmailr"))
    assert d.handshake() == bytes([120])
    assert (home.q / "lock" / "tcpto").read_bytes() == b"\0" * 1024
    text = d.deliver(b"someone@example.net")
    assert text == b"Zremote delivery is not built yet: no bin/qmail-remote to run. (#4.3.0)\n"
    assert d.deliver(b"nohost") == b"DSorry, address must include host name. (#5.1.3)\n"
    assert d.close() == 0


def test_rspawn_runs_qmail_remote(home):
    stand_in(home.path / "bin" / "qmail-remote", FAKE_REMOTE)
    d = Driver([BIN / "qmail-rspawn"], home.env(SPAWN_RECORD=str(home.records)), **as_user(home, "qmailr"))
    assert d.handshake() == bytes([120])
    assert d.deliver(b"ok@Example.NET", sender=b"s@x") == \
        b"K127.0.0.1 accepted message.\nRemote host said: 250 ok\n"
    [r] = records(home)
    assert r["argv"] == [str(home.path / "bin" / "qmail-remote"), "Example.NET", "s@x", "ok@Example.NET"]
    assert r["uid"] == home.users["qmailr"] and r["stdin"] == MESSAGE.decode()
    assert d.deliver(b"refused@h") == \
        b"D127.0.0.1 does not like recipient.\nRemote host said: 550 no\nGiving up on 127.0.0.1.\n"
    assert d.deliver(b"exit111@h") == b"ZUnable to run qmail-remote.\n"
    assert d.close() == 0


def test_clean_removes_in_order(home):
    q = home.q
    qq = (home.users["qmailq"], TEST_GROUPS["qmail"])
    for f in ["intd/47", "mess/1/47", "intd/48", "todo/48", "todo/49", "pid/old", "pid/new"]:
        (q / f).write_bytes(b"")
        os.chown(q / f, *qq)
    (q / "intd" / "49").mkdir()  # an unlink that fails
    day = 86400
    os.utime(q / "pid" / "old", (time.time() - 2 * day, time.time() - 2 * day))
    os.utime(q / "pid" / "new", (time.time() - day, time.time() - day))
    p = subprocess.Popen([str(BIN / "qmail-clean")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=home.env(), **as_user(home, "qmailq"))
    out, _ = p.communicate(b"foop/47\0todo/48\0todo/49\0todo/12ab\0todo/\0junk/123\0foop/5\0todo/7", timeout=20)
    assert (out, p.returncode) == (b"++!xxx+", 0)
    left = {f"{d}/{f}" for d in ("intd", "mess", "todo") for f in home.files(d)}
    assert left == {"todo/49", "mess/5/123"}  # the fixture's message stays
    assert home.files("pid") == ["new"]


FAKE_DAEMON = r'''#!/usr/bin/python3
import json, os, sys
name = os.path.basename(sys.argv[0])
fds = {}
for fd in range(0, 12):
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
        flags = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        fds[fd] = [link, "rw"[flags & 3] if flags & 3 < 2 else "+"]
    except OSError:
        pass
rec = {"name": name, "argv": sys.argv, "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
       "cwd": os.getcwd(), "fds": fds, "umask": os.umask(0)}
def line(fd):
    b = b""
    while not b.endswith(b"\n"):
        c = os.read(fd, 1)
        if not c:
            break
        b += c
    return b.decode()
if name == "qmail-send":
    pairs = [(1, 2), (3, 4), (5, 6)] + ([(7, 8)] if 7 in fds else [])
    rec["replies"] = {}
    for w, r in pairs:
        os.write(w, f"hello {w}\n".encode())
        rec["replies"][w] = line(r)
    os.write(0, b"log line\n")
elif name == "qmail-todo":
    got = line(0)
    os.write(2, b"todo asks clean\n")
    rec["clean said"] = line(3)
    os.write(1, f"qmail-todo got {got}".encode())
elif name == "splogger":
    rec["log"] = os.read(0, 100).decode()
    os.write(1, b"logged: " + rec["log"].encode())
else:
    os.write(1, f"{name} got {line(0)}".encode())
path = os.path.join(os.environ["SPAWN_RECORD"], f"{name}-{os.getpid()}")
with open(path, "w") as f:
    json.dump(rec, f)
os.rename(path, path + ".json")
'''


def run_start(home, args, todo=False):
    for name in ["qmail-send", "qmail-lspawn", "qmail-rspawn", "qmail-clean", "splogger"] + (["qmail-todo"] if todo else []):
        stand_in(home.path / "bin" / name, FAKE_DAEMON)
    env = home.env(SPAWN_RECORD=str(home.records), PATH=f"{home.path}/bin:/usr/bin:/bin")
    p = subprocess.Popen([str(BIN / "qmail-start"), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    out = p.stdout.read()
    assert p.wait(20) == 0
    want = 4 + (1 if "splogger" in args else 0) + (2 if todo else 0)
    for _ in range(200):
        if len(list(home.records.glob("*.json"))) >= want:
            break
        time.sleep(0.05)
    recs = records(home)
    assert len(recs) == want, recs
    by = {}
    for r in recs:
        by.setdefault(r["name"], []).append(r)
    return out, by


def pipe_between(a, fa, b, fb):
    """Descriptor fa of a writes into descriptor fb of b."""
    assert a["fds"][str(fa)][0].startswith("pipe:") and a["fds"][str(fa)] == [b["fds"][str(fb)][0], "w"], (a, b)
    assert b["fds"][str(fb)][1] == "r"


def test_start_wires_each_daemon_under_its_user(home):
    out, by = run_start(home, ["./Maildir/"])
    [send], [l], [r], [c] = by["qmail-send"], by["qmail-lspawn"], by["qmail-rspawn"], by["qmail-clean"]
    u, qmail = home.users, TEST_GROUPS["qmail"]
    assert [(x["uid"], x["gid"], x["groups"]) for x in (send, l, r, c)] == [
        (u["qmails"], qmail, [qmail]), (0, qmail, [qmail]), (u["qmailr"], qmail, [qmail]), (u["qmailq"], qmail, [qmail])]
    assert l["argv"][1:] == ["./Maildir/"] and r["argv"][1:] == [] and c["argv"][1:] == []
    assert all(x["cwd"] == "/" and x["umask"] == 0o077 for x in (send, l, r, c))
    for fa, helper, fb in [(1, l, 0), (3, r, 0), (5, c, 0)]:
        pipe_between(send, fa, helper, fb)
        pipe_between(helper, fb + 1, send, fa + 1)
    # Helpers have nothing on 2..9; qmail-send has exactly 0..6.
    for x in (l, r, c):
        assert sorted(x["fds"]) == ["0", "1"], x["fds"]
    assert sorted(send["fds"], key=int) == [str(i) for i in range(7)]
    assert send["replies"] == {"1": "qmail-lspawn got hello 1\n", "3": "qmail-rspawn got hello 3\n",
                               "5": "qmail-clean got hello 5\n"}
    # qmail-send's log (descriptor 0) is qmail-start's stdout.
    assert send["fds"]["0"][1] == "w"
    assert out == b"log line\n"


def test_start_runs_the_logger_and_the_default_delivery(home):
    out, by = run_start(home, ["|preline procmail", "splogger", "qmail"])
    [send], [log], [l] = by["qmail-send"], by["splogger"], by["qmail-lspawn"]
    assert l["argv"][1:] == ["|preline procmail"]
    assert log["argv"][1:] == ["qmail"]
    assert (log["uid"], log["gid"], log["groups"]) == (home.users["qmaill"], TEST_GROUPS["nofiles"], [TEST_GROUPS["nofiles"]])
    pipe_between(send, 0, log, 0)
    assert sorted(log["fds"]) == ["0", "1"]
    assert log["log"] == "log line\n" and out == b"logged: log line\n"


def test_start_adds_qmail_todo_when_installed(home):
    out, by = run_start(home, [], todo=True)
    [send], [todo], cleans, [l] = by["qmail-send"], by["qmail-todo"], by["qmail-clean"], by["qmail-lspawn"]
    assert l["argv"][1:] == ["./Mailbox"]
    assert (todo["uid"], todo["gid"]) == (home.users["qmails"], TEST_GROUPS["qmail"])
    assert sorted(send["fds"], key=int) == [str(i) for i in range(9)]
    pipe_between(send, 7, todo, 0)
    pipe_between(todo, 1, send, 8)
    [tc] = [c for c in cleans if c["fds"]["0"][0] == todo["fds"]["2"][0]]
    pipe_between(todo, 2, tc, 0)
    pipe_between(tc, 1, todo, 3)
    assert tc["uid"] == home.users["qmailq"]
    assert sorted(todo["fds"], key=int) == ["0", "1", "2", "3"]
    assert send["replies"]["7"] == "qmail-todo got hello 7\n"
    assert todo["clean said"] == "qmail-clean got todo asks clean\n"


def test_spawns_run_under_softlimit(home):
    """The seeds' memory limit: the spawns, their delivery children and qmail-clean
    all work under `softlimit -m 2000000` (qmail-local is the static envprobe here)."""
    from conftest import PROBE, parse_probe
    need(Path("/usr/bin/softlimit").exists(), "daemontools' softlimit")
    need(Path(PROBE).exists(), "envprobe (make)")
    (home.path / "bin" / "qmail-local").unlink()
    (home.path / "bin" / "qmail-local").symlink_to(PROBE)
    limit = ["softlimit", "-m", "2000000"]
    env = {"QMAILHOME": str(home.path), "QMAIL_PASSWD": str(home.passwd), "PATH": "/usr/bin:/bin"}
    d = Driver(limit + [BIN / "qmail-lspawn", "./Maildir/"], env)
    assert d.handshake() == bytes([120])
    text = d.deliver(b"joe-x@host")
    assert text.startswith(b"K"), text
    p = parse_probe(text[1:])
    assert p["Uid"][:2] == [str(JOE_UID)] * 2 and p["Groups"] == [str(JOE_GID)] and p["END"]
    assert p["CWD"] == str(home.path) and p["LIMIT_AS"] != "unlimited"
    assert d.close() == 0
    d = Driver(limit + [BIN / "qmail-rspawn"], env, **as_user(home, "qmailr"))
    assert d.handshake() == bytes([120])
    assert d.deliver(b"x@example.net").startswith(b"Zremote delivery is not built yet")
    assert d.close() == 0
    r = subprocess.run(limit + [str(BIN / "qmail-clean")], input=b"todo/1\0", capture_output=True, env=env,
                       timeout=20, **as_user(home, "qmailq"))
    assert (r.stdout, r.returncode) == (b"+", 0)
