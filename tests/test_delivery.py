"""The delivery side end to end, through the real programs: qmail-start (as root, with
qmail-send, qmail-lspawn, qmail-rspawn and qmail-clean under their users), qmail-local
as each recipient, setuid qmail-queue; qmail-inject, qmail-queue and tcpserver +
qmail-smtpd with swaks as the clients; Debian's fastforward, dot-forward, multilog and
isoqlog as the peers.

An Instance is a whole installation in a temporary directory: QMAILHOME with control/,
users/cdb made by qmail-newu, `~alias` with its .qmail files, and a passwd file
(`$QMAIL_PASSWD`, which qmail-lspawn reads since it is not setuid) whose users (uids
7801-7806, in no system file) have homes and Maildirs beside it. One process holds a
private mount namespace in which /var/qmail is that QMAILHOME (so setuid qmail-queue,
which ignores $QMAILHOME, writes into it), /var/lib/qmail too (where Debian's
fastforward and dot-forward run bin/qmail-queue from) and /etc an overlay (for
/etc/aliases); every program runs there through nsenter, and the test reads the
namespace's files through /proc/PID/root. qmail-start runs as the run scripts start it
(`env - PATH=QMAILHOME/bin:... qmail-start ./Maildir/`), qmail-send's log on a pipe
that a thread reads, into `multilog t` too when a test asks. Each log line must be one
of qmail-send's formats, parsed as qmailanalog's matchup would. Every wait is bounded;
every process is stopped by pid: qmail-send's process group, then whatever is left in
the namespace.
"""

import os
import random
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, NO_DNS, QHome, TEST_GROUPS, TEST_USERS, need, need_root, read_lines, run_queue

QMAILQ, QMAILD = TEST_USERS["qmailq"], TEST_USERS["qmaild"]
QMAIL_GID, NOFILES = TEST_GROUPS["qmail"], TEST_GROUPS["nofiles"]
ALIAS = TEST_USERS["alias"]
ME = "mx.example.com"
# The mail users: name -> uid (each its own gid), all in the test passwd file only.
USERS = {"joe": 7801, "ann": 7802, "mo": 7803, "vu": 7804, "full": 7805, "dot": 7806}
PROGRAMS = ["qmail-start", "qmail-send", "qmail-lspawn", "qmail-rspawn", "qmail-clean", "qmail-local",
            "qmail-newu", "preline", "forward", "condredirect", "bouncesaying", "except", "maildirmake",
            "qmail-smtpd", "tcpserver"]
DATE = r"\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d -0000"


def received_re(who):
    """qmail-queue's Received line; `who` a uid or qmail's words (b"from network", ...)."""
    who = b"by uid %d" % who if isinstance(who, int) else who
    return re.compile(rb"Received: \(qmail \d+ invoked " + re.escape(who) + rb"\); " + DATE.encode() + rb"\n")


class Instance:
    """A temporary installation and its mount namespace; start() runs qmail-start."""

    def __init__(self, base):
        need_root("qmail-start runs as root in a private mount namespace")
        need(shutil.which("nsenter") and shutil.which("unshare"), "util-linux nsenter/unshare")
        self.base = base
        self.h = QHome(base / "qmail")
        self.path, self.q = self.h.path, self.h.q
        b = self.path / "bin"
        for p in PROGRAMS:
            if not (b / p).exists():
                (b / p).symlink_to(BIN / p)
        qq = b / "qmail-queue"
        qq.unlink()
        shutil.copy(BIN / "qmail-queue", qq)
        os.chown(qq, QMAILQ, QMAIL_GID)
        qq.chmod(0o4711)
        self.control(me=ME, locals=f"example.com\n{ME}", rcpthosts=f"example.com\n{ME}\nvirt.example",
                     virtualdomains="virt.example:vu")
        # The homes, each owned by its user; a Maildir in each.
        self.homes = base / "homes"
        self.homes.mkdir()
        self.homes.chmod(0o755)
        lines = []
        for name, uid in USERS.items():
            home = self.homes / name
            home.mkdir(mode=0o700)
            os.chown(home, uid, uid)
            self.maildir(name)
            if name != "vu":   # vu exists only in users/assign
                lines.append(f"{name}:x:{uid}:{uid}:{name}:{home}:/bin/sh\n")
        self.alias = self.path / "alias"
        lines.append(f"alias:x:{ALIAS}:{NOFILES}::{self.alias}:/bin/false\n")
        self.passwd = base / "passwd"
        self.passwd.write_text("root:x:0:0:root:/root:/bin/sh\n" + "".join(lines))
        self.passwd.chmod(0o644)
        self.maildir("alias")
        self.dotqmail("alias", ".qmail-postmaster", "./Maildir/\n")
        self.assign(f"+vu-:vu:{USERS['vu']}:{USERS['vu']}:{self.homes / 'vu'}:-::\n"
                    f"=info:joe:{USERS['joe']}:{USERS['joe']}:{self.homes / 'joe'}:-:info:\n")
        self.procs = []       # Popens started in the namespace, stopped at the end
        self.send = None      # the running qmail-start/qmail-send
        self.log = []         # qmail-send's log lines, across restarts
        self.log_lock = threading.Lock()
        self.readers = []
        self.runs = []        # index in self.log where each qmail-send run began
        self.mark = 0         # ... the current one
        self.multilog = None
        ns = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs rqmail /var && mkdir -p /var/qmail /var/lib/qmail /var/etc/u /var/etc/w && '
             'mount --bind "$0" /var/qmail && mount --bind "$0" /var/lib/qmail && '
             'mount -t overlay etc -o lowerdir=/etc,upperdir=/var/etc/u,workdir=/var/etc/w /etc && '
             'echo ready && exec sleep 100000', str(self.path)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        self.ns = ns
        ready, _, _ = select.select([ns.stdout], [], [], 20)
        assert ready and ns.stdout.readline() == b"ready\n", "the mount namespace did not come up"
        self.root = Path(f"/proc/{ns.pid}/root")

    # --- setting up
    def control(self, **files):
        for name, text in files.items():
            (self.path / "control" / name).write_text(text.rstrip("\n") + "\n")

    def home(self, user):
        return self.alias if user == "alias" else self.homes / user

    def uid(self, user):
        return ALIAS if user == "alias" else USERS[user]

    def own(self, user, path):
        os.lchown(path, self.uid(user), NOFILES if user == "alias" else self.uid(user))

    def maildir(self, user, name="Maildir"):
        d = self.home(user) / name
        for sub in ("", "tmp", "new", "cur"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
            self.own(user, d / sub)
        return d

    def dotqmail(self, user, name, text, mode=0o644):
        p = self.home(user) / name
        p.write_bytes(text.encode() if isinstance(text, str) else text)
        p.chmod(mode)
        self.own(user, p)
        return p

    def assign(self, text):
        (self.path / "users" / "assign").write_text(text + ".\n")
        r = subprocess.run([str(BIN / "qmail-newu"), str(self.path)], capture_output=True, timeout=30,
                           env=self.h.env())
        assert r.returncode == 0, r.stderr

    # --- running things in the namespace
    def inside(self, cmd):
        return ["nsenter", "-t", str(self.ns.pid), "-m", "--", *[str(c) for c in cmd]]

    def env(self, **extra):
        env = {"PATH": "/var/qmail/bin:/usr/bin:/bin", "QMAILHOME": "/var/qmail", "DNSCACHEIP": NO_DNS}
        env.update(extra)
        return env

    def run(self, cmd, user=None, input=b"", timeout=30, env=None):
        """`cmd` in the namespace (as `user` if named): CompletedProcess."""
        return subprocess.run(self.inside(self.as_user(user) + list(cmd)), input=input, capture_output=True,
                              timeout=timeout, env=env or self.env())

    def as_user(self, user):
        """setpriv's drop to `user` (after nsenter, which needs root)."""
        if not user:
            return []
        u = self.uid(user)
        return ["setpriv", f"--reuid={u}", f"--regid={NOFILES if user == 'alias' else u}", "--clear-groups"]

    def start(self, default="./Maildir/"):
        """qmail-start as the run script starts it; returns qmail-send's pid."""
        assert self.send is None or self.send.poll() is not None
        for t in self.readers:   # the last run's lines are all in before this run's
            t.join(10)
        self.mark = len(self.lines())
        self.runs.append(self.mark)
        log_r, log_w = os.pipe()
        cmd = self.inside(["env", "-", "PATH=/var/qmail/bin:/usr/bin:/bin", f"QMAIL_PASSWD={self.passwd}",
                           "qmail-start", default])
        err = open(self.base / "qmail-start.err", "ab")
        self.send = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_w, stderr=err,
                                     start_new_session=True)
        err.close()
        os.close(log_w)
        self.procs.append(self.send)
        t = threading.Thread(target=self._read_log, args=(log_r,), daemon=True)
        t.start()
        self.readers.append(t)
        self.wait(lambda: any(line.startswith("status: local") for line in self.lines()[self.mark:]), 10,
                  "qmail-send's first status line")
        return self.send.pid

    def _read_log(self, fd):
        read_lines(fd, self._take_log)

    def _take_log(self, lines):
        with self.log_lock:
            self.log.extend(line.decode("latin-1") for line in lines)
            if self.multilog:
                try:
                    self.multilog.stdin.write(b"".join(x + b"\n" for x in lines))
                    self.multilog.stdin.flush()
                except OSError:
                    pass

    def log_to_multilog(self, directory):
        """qmail-send's log from now on also goes to `multilog t DIR`, as log/run has it."""
        need(shutil.which("multilog"), "daemontools' multilog")
        self.multilog = subprocess.Popen(["multilog", "t", str(directory)], stdin=subprocess.PIPE,
                                         start_new_session=True)

    def close_multilog(self):
        with self.log_lock:
            m, self.multilog = self.multilog, None
        m.stdin.close()
        assert m.wait(20) == 0

    def lines(self):
        with self.log_lock:
            return list(self.log)

    def wait(self, pred, timeout=20, what="condition", alarm=False):
        """Polls `pred` until true; with `alarm`, SIGALRMs qmail-send every second (retry now)."""
        end = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < end:
            if pred():
                return
            if alarm and time.monotonic() - last > 1:
                self.alarm()
                last = time.monotonic()
            time.sleep(0.02)
        raise AssertionError(f"{what} not met within {timeout}s; log:\n" + "\n".join(self.lines()[-60:]))

    def alarm(self):
        if self.send and self.send.poll() is None:
            os.kill(self.send.pid, signal.SIGALRM)

    def stop(self):
        """SIGTERM qmail-send, then SIGKILL its group and everything else started."""
        if self.send and self.send.poll() is None:
            self.send.send_signal(signal.SIGTERM)
            try:
                self.send.wait(20)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for t in self.readers:
            t.join(10)
        self.readers = []

    def pids(self):
        """Every process in the instance's mount namespace but the one holding it."""
        ns = os.readlink(f"/proc/{self.ns.pid}/ns/mnt")
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != self.ns.pid:
                try:
                    if os.readlink(d / "ns" / "mnt") == ns:
                        out.append(int(d.name))
                except OSError:
                    pass
        return out

    def close(self):
        self.stop()
        if self.multilog:
            self.multilog.kill()
            self.multilog.wait(10)
        # What outlived its group (a program delivery has a group of its own).
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.ns.kill()
        self.ns.wait(10)

    def smtpd(self):
        """tcpserver + qmail-smtpd (as qmaild, as the seeds' run line has it) on a loopback
        port; returns the port."""
        cdb = self.path / "tcp.smtp.cdb"
        r = subprocess.run([str(BIN / "tcprules"), str(cdb), str(cdb) + ".tmp"], input=b"127.0.0.1:allow\n:deny\n",
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        err = open(self.base / "smtpd.log", "ab")
        p = subprocess.Popen(self.inside(["/var/qmail/bin/tcpserver", "-1", "-v", "-R", "-H", "-l", "0",
                                          "-x", "/var/qmail/tcp.smtp.cdb", "-u", QMAILD, "-g", NOFILES,
                                          "127.0.0.1", "0", "/var/qmail/bin/qmail-smtpd"]),
                             stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=self.env(),
                             start_new_session=True)
        err.close()
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 20)
        line = p.stdout.readline() if ready else b""
        assert line.strip().isdigit(), (self.base / "smtpd.log").read_text()
        return int(line)

    def swaks(self, port, sender, rcpt, data, *extra):
        need(shutil.which("swaks"), "swaks")
        f = self.base / "swaks.eml"
        f.write_bytes(data)
        return subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(port), "-f", sender, "-t", rcpt,
                               "--helo", "client.example.net", "--data", f"@{f}", *extra],
                              capture_output=True, timeout=60)

    # --- mail in
    def inject(self, message, *args, user="ann"):
        r = self.run(["/var/qmail/bin/qmail-inject", *args], user=user, input=message)
        assert r.returncode == 0, r.stderr
        return r

    def queue(self, message, sender, *recips, user="ann"):
        """qmail-queue as a user runs it (setuid, in the namespace): its exit code."""
        envelope = b"F" + sender + b"\0" + b"".join(b"T" + r + b"\0" for r in recips) + b"\0"
        return run_queue(self.inside(self.as_user(user) + ["/var/qmail/bin/qmail-queue"]), message, envelope,
                         env=self.env())

    # --- mail out
    def new(self, user, md="Maildir"):
        """Files in a Maildir's new/, oldest first, as seen in the namespace."""
        d = self.root / str(self.home(user) / md / "new").lstrip("/")
        return sorted(d.iterdir(), key=lambda p: (p.stat().st_mtime, p.name))

    def wait_new(self, user, count=1, md="Maildir", timeout=20, alarm=False):
        self.wait(lambda: len(self.new(user, md)) >= count, timeout, f"{count} message(s) in ~{user}/{md}/new",
                  alarm=alarm)
        return [p.read_bytes() for p in self.new(user, md)]


@pytest.fixture
def inst(open_dir):
    i = Instance(open_dir)
    yield i
    i.close()


def procs(name):
    """(pid, process group) of every process whose command name is `name`."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_bytes()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
        if comm == name.encode()[:15]:
            out.append((int(d.name), int(stat[stat.rindex(b")") + 2:].split()[2])))
    return out


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


def split_delivered(data, sender, recipient):
    """What qmail-local wrote: checks Return-Path and Delivered-To, returns the rest."""
    head = b"Return-Path: <%s>\nDelivered-To: %s\n" % (sender, recipient)
    assert data.startswith(head), data[:300]
    return data[len(head):]


# --- qmail-send's log as qmailanalog reads it ----------------------------------------------------

LOGSAFE = r"[!-$&-~]*"   # logsafe: no byte < 33 or > 126, no %
LOG_LINES = [
    ("status", r"status: local \d+/\d+ remote \d+/\d+( exitasap)?"),
    ("exiting", r"status: exiting"),
    ("new", r"new msg (?P<msg>\d+)"),
    ("info", rf"info msg (?P<msg>\d+): bytes (?P<bytes>\d+) from <(?P<sender>{LOGSAFE})> "
             r"qp (?P<qp>\d+) uid (?P<uid>\d+)"),
    ("start", rf"starting delivery (?P<d>\d+): msg (?P<msg>\d+) to (?P<chan>local|remote) (?P<recip>{LOGSAFE})"),
    ("result", rf"delivery (?P<d>\d+): (?P<result>success|deferral|failure): (?P<text>{LOGSAFE})"),
    ("mangled", r"delivery (?P<d>\d+): report mangled, will defer"),
    ("bounce", r"bounce msg (?P<msg>\d+) qp (?P<qp>\d+)"),
    ("triple", r"triple bounce: discarding bounce/(?P<msg>\d+)"),
    ("end", r"end msg (?P<msg>\d+)"),
    ("warning", r"(warning|alert): .*"),
]


class Analysis:
    """qmailanalog's matchup, in small: every line must be one of qmail-send's formats.
    A message's life runs from `new msg N` to `end msg N` (numbers are inodes, reused
    later); deliveries are numbered per qmail-send run."""

    def __init__(self, lines, runs=(0,)):
        self.msgs = []        # {"n", "info", "events", "deliveries"} in the order they began
        self.deliveries = {}  # (run, d) -> {"msg", "chan", "recip", "results": [(result, text)]}
        self.kinds = []
        cur = {}
        starts = set(runs)
        run = -1 if 0 in starts else 0
        for i, line in enumerate(lines):
            if i in starts:
                run += 1
            for kind, pattern in LOG_LINES:
                m = re.fullmatch(pattern, line)
                if m:
                    break
            else:
                raise AssertionError(f"log line {i} is no qmail-send format: {line!r}")
            self.kinds.append(kind)
            g = m.groupdict()
            if "msg" in g and kind != "triple":
                n = int(g["msg"])
                if kind == "new" or n not in cur:
                    cur[n] = {"n": n, "events": [], "deliveries": [], "info": {}}
                    self.msgs.append(cur[n])
                msg = cur[n]
                msg["events"].append(kind)
                if kind == "info":
                    msg["info"] = g
                elif kind == "start":
                    d = {"msg": msg, "chan": g["chan"], "recip": g["recip"], "results": []}
                    self.deliveries[(run, int(g["d"]))] = d
                    msg["deliveries"].append(d)
                elif kind == "end":
                    del cur[n]
            elif kind in ("result", "mangled"):
                d = self.deliveries.get((run, int(g["d"])))
                assert d is not None, f"log line {i}: delivery {g['d']} never started: {line!r}"
                d["results"].append((g.get("result", "deferral"), g.get("text", "")))
                d["msg"]["events"].append(g.get("result", "deferral"))

    def count(self, kind):
        return self.kinds.count(kind)

    def by_sender(self, sender):
        return [m for m in self.msgs if m["info"].get("sender") == sender]

    def to(self, recip):
        return [m for m in self.msgs if any(d["recip"] == recip for d in m["deliveries"])]

    @staticmethod
    def flow(m):
        """The message's events with repeats of a kind squeezed."""
        out = []
        for e in m["events"]:
            if not out or out[-1] != e:
                out.append(e)
        return out


def analysis(inst):
    return Analysis(inst.lines(), inst.runs)


def one_message(inst, sender):
    """The one message from `sender` in the log; it went through new, info, starting
    delivery, success, end, in that order."""
    [m] = analysis(inst).by_sender(sender)
    assert Analysis.flow(m) == ["new", "info", "start", "success", "end"], m["events"]
    return m


# --- end to end -----------------------------------------------------------------------------------

MESSAGE = (b"From: Ann <ann@example.com>\nTo: joe@example.com\nDate: Tue, 1 Dec 2026 10:00:00 +0000\n"
           b"Message-ID: <e2e-1@example.com>\nSubject: by qmail-inject\n\nline one\n\nFrom the start\n>From quoted\n"
           b".leading dot\nlast line")


def test_inject_lands_in_the_maildir_byte_for_byte(inst):
    inst.start()
    inst.inject(MESSAGE, "-fann@example.com", "joe@example.com")
    [got] = inst.wait_new("joe")
    rest = split_delivered(got, b"ann@example.com", b"joe@example.com")
    m = received_re(USERS["ann"]).match(rest)
    assert m, rest[:200]
    # qmail-inject ends the last line; nothing else in the header changes when it is complete.
    assert rest[m.end():] == MESSAGE + b"\n"
    [f] = inst.new("joe")
    assert f.stat().st_mode & 0o777 == 0o600 and f.stat().st_uid == USERS["joe"]
    inst.wait(lambda: any(x.startswith("end msg") for x in inst.lines()), 10, "end msg")
    m = one_message(inst, "ann@example.com")
    assert m["info"]["uid"] == str(USERS["ann"]) and m["info"]["bytes"] == str(len(rest))
    [d] = m["deliveries"]
    assert (d["chan"], d["recip"], d["results"]) == ("local", "joe@example.com", [("success", "did_1+0+0/")])
    # The qp of the log is the pid in qmail-queue's Received line.
    assert rest.startswith(b"Received: (qmail %s invoked by uid" % m["info"]["qp"].encode())
    # SIGTERM, as svc -t sends it: qmail-send says so and exits 0.
    inst.send.send_signal(signal.SIGTERM)
    assert inst.send.wait(20) == 0
    inst.readers[-1].join(10)
    assert inst.lines()[-1] == "status: exiting"


SMTP_DATA = (b"From: Ann <ann@example.com>\nTo: joe@example.com\nSubject: by swaks\nMessage-ID: <e2e-2@example.com>\n\n"
             b"over SMTP\n.leading dot, stuffed by swaks\n\nFrom here\n" + b"x" * 998 + b"\n")


def test_smtp_extension_alias_and_virtual_domain_addresses(inst):
    """swaks through tcpserver + qmail-smtpd to joe, joe-ext (.qmail-ext), joe-list-Foo
    (.qmail-list-default), postmaster (~alias/.qmail-postmaster), info (an = line of
    users/assign) and a virtual domain (virtualdomains + a + line of users/assign); each
    lands byte for byte with qmail's headers."""
    inst.maildir("joe", "Maildir-ext")
    inst.maildir("joe", "Maildir-list")
    inst.dotqmail("joe", ".qmail-ext", "./Maildir-ext/\n")
    inst.dotqmail("joe", ".qmail-list-default", "# lists\n./Maildir-list/\n")
    inst.dotqmail("vu", ".qmail-default", "./Maildir/\n")
    inst.maildir("joe", "Maildir-info")
    inst.dotqmail("joe", ".qmail-info", "./Maildir-info/\n")
    inst.start()
    port = inst.smtpd()
    cases = [("Info@example.com", "joe", "Maildir-info", b"Info@example.com"),   # users/assign's = line
             ("joe@example.com", "joe", "Maildir", b"joe@example.com"),
             ("joe-ext@example.com", "joe", "Maildir-ext", b"joe-ext@example.com"),
             ("joe-list-Foo@example.com", "joe", "Maildir-list", b"joe-list-Foo@example.com"),
             ("Postmaster@example.com", "alias", "Maildir", b"Postmaster@example.com"),
             ("Someone@virt.example", "vu", "Maildir", b"vu-Someone@virt.example")]
    for rcpt, _, _, _ in cases:
        # swaks ends the data with CRLF . CRLF itself.
        r = inst.swaks(port, "ann@example.com", rcpt, SMTP_DATA.replace(b"\n", b"\r\n")[:-2])
        assert r.returncode == 0 and re.search(rb"<-  250 2.0.0 ok \d+ qp \d+", r.stdout), r.stdout[-1500:]
    smtpd_received = re.compile(rb"Received: from unknown \(HELO client\.example\.net\) \(127\.0\.0\.1\)\n"
                                rb"  by 0 with E?SMTP; " + DATE.encode() + rb"\n")
    for rcpt, user, md, dt in cases:
        [got] = inst.wait_new(user, md=md)
        rest = split_delivered(got, b"ann@example.com", dt)
        m = received_re(b"from network").match(rest)
        assert m, rest[:300]
        rest = rest[m.end():]
        m = smtpd_received.match(rest)
        assert m, rest[:300]
        assert rest[m.end():] == SMTP_DATA, rcpt
    inst.wait(lambda: analysis(inst).count("end") == len(cases), 10, "every end msg")
    a = analysis(inst)
    got = sorted(d["recip"] for d in a.deliveries.values())
    assert got == sorted(dt.decode() for _, _, _, dt in cases)
    assert all(d["results"] == [("success", "did_1+0+0/")] for d in a.deliveries.values())
    assert len(a.msgs) == len(cases)
    for m in a.msgs:
        assert a.flow(m) == ["new", "info", "start", "success", "end"]
        assert m["info"]["uid"] == str(QMAILD)


BOUNCE_HEAD = (b"Hi. This is the qmail-send program at mx.example.com.\n"
               b"I'm afraid I wasn't able to deliver your message to the following addresses.\n"
               b"This is a permanent error; I've given up. Sorry it didn't work out.\n\n")


def check_bounce(data, recipient, paragraph, original_sender=b"ann@example.com"):
    """A QSBMF bounce in a Maildir: returns the copy of the message it carries."""
    rest = split_delivered(data, b"", recipient)
    m = received_re(b"for bounce").match(rest)
    assert m, rest[:300]
    head, _, body = rest[m.end():].partition(b"\n\n")
    h = head.split(b"\n")
    assert re.fullmatch(rb"Date: " + DATE.encode(), h[0]), h
    assert h[1:] == [b"From: MAILER-DAEMON@mx.example.com", b"To: " + recipient, b"Subject: failure notice"], h
    assert body.startswith(BOUNCE_HEAD), body[:400]
    body = body[len(BOUNCE_HEAD):]
    assert body.startswith(paragraph + b"\n--- Below this line is a copy of the message.\n\n"), body[:600]
    copy = body[len(paragraph) + len(b"\n--- Below this line is a copy of the message.\n\n"):]
    assert copy.startswith(b"Return-Path: <%s>\n" % original_sender), copy[:200]
    return copy[len(b"Return-Path: <%s>\n" % original_sender):]


def test_unknown_user_bounces_to_the_sender_in_qsbmf(inst):
    inst.start()
    inst.inject(b"Subject: to nobody\n\nhello\n", "-fann@example.com", "nosuch@example.com")
    [got] = inst.wait_new("ann")
    copy = check_bounce(got, b"ann@example.com",
                        b"<nosuch@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n")
    m = received_re(USERS["ann"]).match(copy)
    assert m and copy[m.end():].endswith(b"Subject: to nobody\n\nhello\n"), copy
    inst.wait(lambda: analysis(inst).count("end") == 2, 10, "both end msg")
    a = analysis(inst)
    [orig] = a.by_sender("ann@example.com")
    [bounce] = a.by_sender("")
    assert a.flow(orig) == ["new", "info", "start", "failure", "bounce", "end"]
    assert orig["deliveries"][0]["results"] == [("failure", "Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/")]
    assert orig["deliveries"][0]["recip"] == "nosuch@example.com"
    assert bounce["info"]["uid"] == str(TEST_USERS["qmails"])
    # `bounce msg N qp Q`: Q is the qp of the bounce's own info line.
    [line] = [x for x in inst.lines() if x.startswith("bounce msg ")]
    assert line == f"bounce msg {orig['n']} qp {bounce['info']['qp']}"
    assert [d["recip"] for d in bounce["deliveries"]] == ["ann@example.com"]
    assert a.flow(bounce) == ["new", "info", "start", "success", "end"]


def mail(subject, body=b"hello\n"):
    """A message whose header qmail-inject leaves alone (it is complete)."""
    return (b"From: ann@example.com\nTo: someone@example.com\nDate: Tue, 1 Dec 2026 10:00:00 +0000\n"
            b"Message-ID: <%s@example.com>\nSubject: %s\n\n%s" % (subject.encode(), subject.encode(), body))


def inject_from_ann(inst, rcpt, body=b"hello\n", subject="test"):
    inst.inject(mail(subject, body), "-fann@example.com", rcpt)


def test_mbox_waits_for_a_readers_fcntl_lock(inst):
    import fcntl
    inst.dotqmail("mo", ".qmail", "./Mailbox\n")
    box = inst.home("mo") / "Mailbox"
    box.write_bytes(b"")
    box.chmod(0o600)
    inst.own("mo", box)
    inst.start()
    with open(box, "rb+") as reader:
        fcntl.lockf(reader, fcntl.LOCK_EX)   # as mutt and Dovecot lock it
        inject_from_ann(inst, "mo@example.com", b"From me\n>From you\nbody\n")
        inst.wait(lambda: any(x.startswith("starting delivery") for x in inst.lines()), 10, "the delivery start")
        time.sleep(1.5)
        assert box.stat().st_size == 0, "qmail-local wrote while a reader held the lock"
        assert not any(x.startswith("delivery 1:") for x in inst.lines())
        fcntl.lockf(reader, fcntl.LOCK_UN)
    inst.wait(lambda: any(x.startswith("end msg") for x in inst.lines()), 20, "end msg after the lock went")
    data = box.read_bytes()
    m = re.match(rb"From ann@example\.com [A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}\n", data)
    assert m, data[:200]
    rest = split_delivered(data[m.end():], b"ann@example.com", b"mo@example.com")
    r = received_re(USERS["ann"]).match(rest)
    assert r and rest[r.end():] == mail("test", b">From me\n>>From you\nbody\n\n"), rest
    msg = one_message(inst, "ann@example.com")
    assert msg["deliveries"][0]["results"] == [("success", "did_1+0+0/")]


def test_program_preline_and_forward(inst):
    inst.dotqmail("joe", ".qmail-prog",
                  '|{ echo "$RECIPIENT $SENDER $EXT $DEFAULT"; cat; } > prog.out\n|preline cat > preline.out\n')
    inst.dotqmail("ann", ".qmail-fwd", "&joe@example.com\n")
    inst.start()
    inject_from_ann(inst, "joe-prog@example.com", subject="prog")
    inst.wait(lambda: analysis(inst).count("end") == 1, 20, "the program delivery")
    out = (inst.home("joe") / "prog.out").read_bytes()
    first, _, mess = out.partition(b"\n")
    assert first == b"joe-prog@example.com ann@example.com prog "
    r = received_re(USERS["ann"]).match(mess)
    assert r and mess[r.end():] == mail("prog")
    pre = (inst.home("joe") / "preline.out").read_bytes()
    m = re.match(rb"From ann@example\.com [A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}\n", pre)
    assert m and pre[m.end():] == b"Return-Path: <ann@example.com>\nDelivered-To: joe-prog@example.com\n" + mess
    assert (inst.home("joe") / "prog.out").stat().st_uid == USERS["joe"]
    [d] = one_message(inst, "ann@example.com")["deliveries"]
    assert d["results"] == [("success", "did_0+0+2/")]

    inject_from_ann(inst, "ann-fwd@example.com", subject="fwd")
    [got] = inst.wait_new("joe")
    rest = split_delivered(got, b"ann@example.com", b"joe@example.com")
    r = received_re(USERS["ann"]).match(rest)      # qmail-local's forward, run as ann
    assert r, rest[:200]
    rest = rest[r.end():]
    assert rest.startswith(b"Delivered-To: ann-fwd@example.com\n")
    r2 = received_re(USERS["ann"]).match(rest[len(b"Delivered-To: ann-fwd@example.com\n"):])
    assert r2 and rest.endswith(b"Subject: fwd\n\nhello\n")
    inst.wait(lambda: analysis(inst).count("end") == 3, 20, "the forward's end msg")
    a = analysis(inst)
    fwd = [d for d in a.deliveries.values() if d["recip"] == "ann-fwd@example.com"]
    assert len(fwd) == 1 and re.fullmatch(r"did_0\+1\+0/qp_\d+/", fwd[0]["results"][0][1]), fwd


def test_program_exit_codes_and_the_timeout(inst):
    inst.control(timeoutlocal="2")
    inst.dotqmail("joe", ".qmail-hang", "|exec sleep 60\n")
    inst.dotqmail("joe", ".qmail-hundred", "|echo no thanks; exit 100\n")
    inst.dotqmail("joe", ".qmail-retry", "|test -e tried || { touch tried; echo later; exit 111; }\n./Maildir/\n")
    inst.dotqmail("joe", ".qmail-stop", "|exit 99\n./Maildir/\n")
    inst.start()
    # 99: success, and the lines after it are skipped.
    inject_from_ann(inst, "joe-stop@example.com", subject="stop")
    inst.wait(lambda: analysis(inst).count("end") == 1, 15, "exit 99's end msg")
    [m] = analysis(inst).to("joe-stop@example.com")
    assert m["deliveries"][0]["results"] == [("success", "did_0+0+1/")] and not inst.new("joe")
    t0 = time.monotonic()
    inject_from_ann(inst, "joe-hang@example.com", subject="hang")
    inst.wait(lambda: any(re.fullmatch(r"delivery \d+: deferral: .*", x) for x in inst.lines()), 15, "the timeout")
    assert time.monotonic() - t0 < 10
    [line] = [x for x in inst.lines() if re.fullmatch(r"delivery \d+: deferral: .*", x)]
    assert line.endswith(": deferral: Timeout_on_program_delivery:_killed_after_2_seconds._(#4.3.0)/"), line
    # The program's group is gone with it.
    inst.wait(lambda: not [pid for pid in inst.pids() if cmdline(pid) == [b"sleep", b"60"]], 5,
              "the hanging program killed")

    inject_from_ann(inst, "joe-hundred@example.com", subject="hundred")
    [bounce] = inst.wait_new("ann")
    copy = check_bounce(bounce, b"ann@example.com", b"<joe-hundred@example.com>:\nno thanks\n")
    assert copy.endswith(b"Subject: hundred\n\nhello\n")

    inject_from_ann(inst, "joe-retry@example.com", subject="retry")
    inst.wait(lambda: any(x.endswith(": deferral: later/") for x in inst.lines()), 15, "exit 111's deferral")
    assert not inst.new("joe")
    [got] = inst.wait_new("joe", alarm=True)   # SIGALRM: retried now
    assert got.endswith(b"Subject: retry\n\nhello\n")
    a = analysis(inst)
    [m] = a.to("joe-retry@example.com")
    assert [r for d in m["deliveries"] for r in d["results"]] == [("deferral", "later/"), ("success", "did_1+0+1/")]
    # The hanging one is still queued, not bounced: never a failure for it.
    hang = [d for d in a.deliveries.values() if d["recip"] == "joe-hang@example.com"]
    assert hang and all(r[0] == "deferral" for d in hang for r in d["results"])


def test_forward_loop_is_caught_by_delivered_to(inst):
    inst.dotqmail("joe", ".qmail-loop", "&ann-loop@example.com\n")
    inst.dotqmail("ann", ".qmail-loop", "&joe-loop@example.com\n")
    inst.start()
    inject_from_ann(inst, "joe-loop@example.com", subject="loop")
    [bounce] = inst.wait_new("ann")
    copy = check_bounce(bounce, b"ann@example.com",
                        b"<joe-loop@example.com>:\n"
                        b"This message is looping: it already has my Delivered-To line. (#5.4.6)\n")
    assert copy.count(b"Delivered-To: joe-loop@example.com\n") == 1
    assert copy.count(b"Delivered-To: ann-loop@example.com\n") == 1
    assert not inst.new("joe")


def test_debian_fastforward_from_alias_default(inst):
    """`| fastforward -d /etc/aliases.cdb` in ~alias/.qmail-default, the database made by
    Debian's newaliases from /etc/aliases (in the namespace's /etc overlay)."""
    need(Path("/usr/bin/fastforward").exists() and Path("/usr/sbin/qmail-newaliases").exists(),
         "Debian's fastforward (fastforward, qmail-newaliases)")
    (inst.root / "etc" / "aliases").write_text("# sendmail style\nwebmaster: joe\nstaff: joe, ann@example.com\n")
    r = inst.run(["/usr/sbin/qmail-newaliases"])
    assert r.returncode == 0, r.stderr
    assert (inst.root / "etc" / "aliases.cdb").exists()
    inst.dotqmail("alias", ".qmail-default", "| fastforward -d /etc/aliases.cdb\n")
    inst.start()
    inject_from_ann(inst, "webmaster@example.com", subject="webmaster")
    inject_from_ann(inst, "Staff@example.com", subject="staff")
    got = inst.wait_new("joe", 2)
    assert sorted(g.rsplit(b"Subject: ", 1)[1] for g in got) == [b"staff\n\nhello\n", b"webmaster\n\nhello\n"]
    for g in got:
        name = b"webmaster" if g.endswith(b"webmaster\n\nhello\n") else b"Staff"
        # newaliases completes a bare name with control/me.
        rest = split_delivered(g, b"ann@example.com", b"joe@mx.example.com")
        assert b"Delivered-To: %s@example.com\n" % name in rest, rest[:400]
        # fastforward queued it as alias: qmail-queue says so.
        assert received_re(b"by alias").match(rest), rest[:200]
    [ann] = inst.wait_new("ann")
    assert ann.endswith(b"Subject: staff\n\nhello\n")
    inst.wait(lambda: analysis(inst).count("end") == 4, 20, "four end msg")
    a = analysis(inst)
    for m in a.to("webmaster@example.com") + a.to("Staff@example.com"):
        assert re.fullmatch(r"fastforward:_qp_\d+/did_0\+0\+1/", m["deliveries"][0]["results"][0][1]), m


def test_debian_dot_forward_in_the_default_delivery(inst):
    need(Path("/usr/bin/dot-forward").exists(), "Debian's dot-forward")
    inst.dotqmail("dot", ".forward", "joe@example.com\n")
    inst.start(default="|dot-forward .forward\n./Maildir/\n")
    inject_from_ann(inst, "dot@example.com", subject="dot")
    inject_from_ann(inst, "ann@example.com", subject="plain")
    [joe] = inst.wait_new("joe")
    rest = split_delivered(joe, b"ann@example.com", b"joe@example.com")
    assert b"Delivered-To: dot@example.com\n" in rest and rest.endswith(mail("dot")), rest
    [ann] = inst.wait_new("ann")
    assert split_delivered(ann, b"ann@example.com", b"ann@example.com").endswith(mail("plain"))
    assert not inst.new("dot")


# --- a queue notqmail wrote ---------------------------------------------------------------------

def notqmail_message(inst, message, todo=None, info=None, local=None):
    """A message laid down by hand as notqmail's qmail-queue and qmail-send leave it:
    mess/S/N named by the inode of its pid/ file, then either intd/N + todo/N (queued,
    not yet preprocessed) or info/S/N + local/S/N (preprocessed, `D` records done)."""
    q = inst.q
    qq, qs = (QMAILQ, QMAIL_GID), (TEST_USERS["qmails"], QMAIL_GID)
    pid = q / "pid" / f"{os.getpid()}.{int(time.time())}.1"
    pid.write_bytes(b"")
    n = pid.stat().st_ino
    mess = q / "mess" / str(n % 23) / str(n)
    os.link(pid, mess)
    pid.unlink()
    mess.write_bytes(b"Received: (qmail 4242 invoked by uid %d); 1 Dec 2026 10:00:00 -0000\n" % USERS["ann"] + message)
    os.chown(mess, *qq)
    mess.chmod(0o644)
    if todo is not None:
        intd = q / "intd" / str(n)
        intd.write_bytes(todo)
        os.chown(intd, *qq)
        intd.chmod(0o644)
        os.link(intd, q / "todo" / str(n))
    else:
        for sub, data in (("info", info), ("local", local)):
            f = q / sub / str(n % 23) / str(n)
            f.write_bytes(data)
            os.chown(f, *qs)
            f.chmod(0o600)
    return n, mess.read_bytes()


def queue_is_settled(inst):
    return not any(inst.h.files(d) for d in ("todo", "info", "local", "remote", "bounce"))


def queue_is_empty(inst):
    return not any(inst.h.files(d) for d in ("mess", "intd", "todo", "info", "local", "remote", "bounce"))


def test_a_queue_notqmail_wrote_is_delivered(inst):
    a_n, a = notqmail_message(inst, mail("todo-state"),
                              todo=b"u%d\0p4242\0Fann@example.com\0Tjoe@example.com\0" % USERS["ann"])
    b_n, b = notqmail_message(inst, mail("info-state"), info=b"Fann@example.com\0",
                              local=b"Djoe@example.com\0Tann@example.com\0")
    # And one queued by qmail-queue while qmail-send is stopped (the same layout), and one
    # with no recipient at all.
    assert inst.queue(mail("stopped"), b"ann@example.com", b"joe@example.com") == 0
    assert inst.queue(mail("nobody"), b"nobody@example.com") == 0
    inst.start()
    joe = inst.wait_new("joe", 2)
    [ann] = inst.wait_new("ann")
    want_a = b"Return-Path: <ann@example.com>\nDelivered-To: joe@example.com\n" + a
    assert want_a in joe
    [c] = [j for j in joe if j != want_a]
    rest = split_delivered(c, b"ann@example.com", b"joe@example.com")
    r = received_re(USERS["ann"]).match(rest)
    assert r and rest[r.end():] == mail("stopped")
    assert ann == b"Return-Path: <ann@example.com>\nDelivered-To: ann@example.com\n" + b
    inst.wait(lambda: queue_is_empty(inst), 20, "an empty queue")
    time.sleep(0.5)
    assert len(inst.new("joe")) == 2, "joe@example.com, marked D in local/, was delivered again"
    an = analysis(inst)
    [ma] = [m for m in an.msgs if m["n"] == a_n]
    [mb] = [m for m in an.msgs if m["n"] == b_n]
    assert an.flow(ma) == ["new", "info", "start", "success", "end"]
    assert ma["info"] == {"msg": str(a_n), "bytes": str(len(a)), "sender": "ann@example.com", "qp": "4242",
                          "uid": str(USERS["ann"])}
    assert an.flow(mb) == ["start", "success", "end"] and mb["deliveries"][0]["recip"] == "ann@example.com"
    [mn] = an.by_sender("nobody@example.com")
    assert an.flow(mn) == ["new", "info", "end"]


# --- bad input --------------------------------------------------------------------------------------

def snapshot(inst):
    """Every file under the test's directory (but the queue) and the namespace's /var
    (but the bound QMAILHOME), with its size."""
    out = {}
    skip = {inst.q, inst.root / "var" / "qmail", inst.root / "var" / "lib" / "qmail"}
    for top in (inst.base, inst.root / "var"):
        stack = [top]
        while stack:
            d = stack.pop()
            for p in d.iterdir():
                if p in skip:
                    continue
                if p.is_dir() and not p.is_symlink():
                    stack.append(p)
                else:
                    out[str(p)] = p.lstat().st_size
    return out


def test_newline_and_dotdot_in_addresses_stay_in_the_mailbox(inst):
    inst.maildir("joe", "Maildir-default")
    inst.dotqmail("joe", ".qmail-default", "./Maildir-default/\n")
    inst.start()
    port = inst.smtpd()
    before = snapshot(inst)
    assert inst.queue(mail("newline"), b"x\ny@example.net", b"joe-a\nb@example.com") == 0
    assert inst.queue(mail("dotdot"), b"../../x@example.net", b"joe-/../../x@example.com") == 0
    assert inst.queue(mail("alias-dotdot"), b"ann@example.com", b"../../etc/x@example.com") == 0
    r = inst.swaks(port, "../../z@example.net", "joe-/../y/../../.qmail@example.com", b"Subject: smtp dotdot\r\n\r\nhi")
    assert r.returncode == 0 and b"<-  250 2.0.0 ok" in r.stdout, r.stdout[-800:]
    got = inst.wait_new("joe", 3, md="Maildir-default")
    heads = sorted(g.split(b"\n", 2)[:2] for g in got)
    # qmail-local quotes a local part with a newline (backslashed) or dots in a row
    # (quote.c), then writes _ for each newline.
    assert heads == sorted([
        [b'Return-Path: <"x\\_y"@example.net>', b"Delivered-To: joe-a_b@example.com"],
        [b'Return-Path: <"../../x"@example.net>', b"Delivered-To: joe-/../../x@example.com"],
        [b'Return-Path: <"../../z"@example.net>', b"Delivered-To: joe-/../y/../../.qmail@example.com"]])
    [bounce] = inst.wait_new("ann")
    check_bounce(bounce, b"ann@example.com",
                 b"<../../etc/x@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n")
    inst.wait(lambda: queue_is_empty(inst), 20, "an empty queue")
    after = snapshot(inst)
    ours = ("smtpd.log", "qmail-start.err", "swaks.eml")
    new = sorted(p for p in set(after) - set(before) if not p.endswith(ours))
    allowed = (str(inst.home("joe") / "Maildir-default" / "new") + "/", str(inst.home("ann") / "Maildir" / "new") + "/")
    assert [p for p in new if not p.startswith(allowed)] == [], "written outside the mailboxes"
    assert len(new) == 4
    changed = [p for p in before if after.get(p) != before[p] and not p.endswith(ours)]
    assert changed == []
    # The log shows the addresses logsafe: a newline as /, nothing that ends a line.
    a = analysis(inst)
    [m] = a.by_sender("x/y@example.net")
    assert [d["recip"] for d in m["deliveries"]] == ["joe-a/b@example.com"]


# --- full disks ---------------------------------------------------------------------------------------

def fill(path):
    """Writes `path` until the file system is full; returns how much it took."""
    chunk = b"\0" * 4096
    n = 0
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                n += f.write(chunk)
        except OSError as e:
            assert e.errno == 28, e   # ENOSPC
    return n


def test_full_mailbox_defers_and_delivers_after_space_is_freed(inst):
    md = inst.home("full") / "Maildir"
    uid = USERS["full"]
    r = inst.run(["mount", "-t", "tmpfs", "-o", f"size=256k,mode=0700,uid={uid},gid={uid}", "fullbox", md])
    assert r.returncode == 0, r.stderr
    box = inst.root / str(md).lstrip("/")
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(mode=0o700)
        os.chown(box / sub, uid, uid)
    fill(box / "filler")
    big = mail("full", b"".join(b"%05d %s\n" % (i, b"y" * 70) for i in range(800)))   # ~60 KB
    inst.start()
    inject_from_ann(inst, "full@example.com", big[big.index(b"\n\n") + 2:], subject="full")
    deferral = re.compile(r"delivery \d+: deferral: .*")
    inst.wait(lambda: any(deferral.fullmatch(x) for x in inst.lines()), 20, "a deferral")
    [line] = [x for x in inst.lines() if deferral.fullmatch(x)]
    assert line.endswith(": deferral: Temporary_error_on_maildir_delivery._(#4.3.0)/"), line
    assert list((box / "new").iterdir()) == [] and list((box / "tmp").iterdir()) == [], "a partial file was left"
    # Another try while still full: another deferral, never a failure or a bounce.
    inst.alarm()
    inst.wait(lambda: sum(bool(deferral.fullmatch(x)) for x in inst.lines()) >= 2, 20, "a second deferral")
    assert not [x for x in inst.lines() if ": failure: " in x or x.startswith("bounce msg")]
    assert inst.h.files("info"), "the message left the queue"
    (box / "filler").unlink()
    [got] = inst.wait_new("full", alarm=True)
    rest = split_delivered(got, b"ann@example.com", b"full@example.com")
    r = received_re(USERS["ann"]).match(rest)
    assert r and rest[r.end():] == big
    inst.wait(lambda: queue_is_empty(inst), 20, "an empty queue")
    assert not inst.new("ann")


def test_full_queue_makes_qmail_smtpd_answer_4xx_and_keeps_what_it_had(inst):
    r = inst.run(["mount", "-t", "tmpfs", "-o", "size=512k", "fullqueue", "/var/qmail/queue"])
    assert r.returncode == 0, r.stderr
    r = inst.run([BIN / "qmail-mkqueue", "/var/qmail"])
    assert r.returncode == 0, r.stderr
    q = inst.root / "var" / "qmail" / "queue"
    port = inst.smtpd()
    first = b"Subject: first\r\n\r\nkept"
    r = inst.swaks(port, "ann@example.com", "joe@example.com", first)
    assert b"<-  250 2.0.0 ok" in r.stdout, r.stdout[-800:]
    before = {str(p.relative_to(q)): p.read_bytes() for p in q.rglob("*") if p.is_file() and p.name != "trigger"}
    assert len([k for k in before if k.startswith("todo/")]) == 1
    fill(q / "filler")
    big = b"Subject: second\r\n\r\n" + b"z" * 76 * 2000
    r = inst.swaks(port, "ann@example.com", "joe@example.com", big)
    assert re.search(rb"<\*\* +451 4\.3\.0 qq write error or disk full \(#4\.3\.0\)", r.stdout), r.stdout[-800:]
    after = {str(p.relative_to(q)): p.read_bytes() for p in q.rglob("*")
             if p.is_file() and p.name not in ("trigger", "filler")}
    assert after == before, "the queue changed after a refused message"
    (q / "filler").unlink()
    inst.start()
    [got] = inst.wait_new("joe")
    assert got.endswith(b"Subject: first\n\nkept\n")
    r = inst.swaks(port, "ann@example.com", "joe@example.com", big)
    assert b"<-  250 2.0.0 ok" in r.stdout, r.stdout[-800:]
    got = inst.wait_new("joe", 2)
    assert any(g.endswith(b"z" * 76 * 2000 + b"\n") for g in got)


# --- kill -9 ------------------------------------------------------------------------------------------

KILLS = int(os.environ.get("RQMAIL_KILLS", "200"))


def test_kill_9_at_random_moments_loses_nothing(inst):
    """At least 200 kill -9s of qmail-send, qmail-lspawn or qmail-local (pids from /proc by
    name, in the instance's process groups) while messages flow in through qmail-queue;
    qmail-start is restarted whenever qmail-send is gone. After a final restart every
    message qmail-queue accepted is in each recipient's Maildir, byte for byte, at least
    once; extra copies only as many as the kills can explain."""
    seed = int(os.environ.get("RQMAIL_SEED", time.time()))
    rng = random.Random(seed)
    inst.start()
    groups = {inst.send.pid}
    accepted, refused = {}, []
    stop = threading.Event()

    def feeder():
        frng = random.Random(seed + 1)
        n = 0
        while not stop.is_set():
            n += 1
            body = b"".join(b"%d %d %s\n" % (n, i, b"k" * frng.randint(0, 200)) for i in range(frng.randint(1, 300)))
            rcpts = [b"joe@example.com"] + ([b"ann@example.com"] if n % 4 == 0 else [])
            msg = mail(f"seq{n}", body)
            rc = inst.queue(msg, b"ann@example.com", *rcpts)
            (accepted.__setitem__(n, (msg, rcpts)) if rc == 0 else refused.append((n, rc)))
            time.sleep(frng.uniform(0, 0.04))
    feeding = threading.Thread(target=feeder, daemon=True)
    feeding.start()
    killed = {"qmail-send": 0, "qmail-lspawn": 0, "qmail-local": 0}
    restarts = 0
    deadline = time.monotonic() + 100
    try:
        while sum(killed.values()) < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0, 0.08))
            if inst.send.poll() is not None:   # killed, or gone after its spawn was
                inst.start()
                groups.add(inst.send.pid)
                restarts += 1
                continue
            name = rng.choices(list(killed), weights=[2, 2, 6])[0]
            pids = [pid for pid, pgid in procs(name) if pgid in groups]
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    killed[name] += 1
                except ProcessLookupError:
                    pass
    finally:
        stop.set()
        feeding.join(30)
    assert sum(killed.values()) >= KILLS, f"only {killed} kills in the time allowed"
    assert refused == [], f"qmail-queue refused {refused}"
    # The final restart.
    if inst.send.poll() is None:
        os.kill(inst.send.pid, signal.SIGKILL)
        inst.send.wait(10)
    inst.start()

    def delivered():
        out = {}
        for user in ("joe", "ann"):
            for f in inst.new(user):
                data = f.read_bytes()
                m = re.search(rb"\nSubject: seq(\d+)\n", data)
                assert m, f"{f}: no sequence number: {data[:300]!r}"
                out.setdefault((int(m.group(1)), user), []).append(data)
        return out

    want = {(n, r.split(b"@")[0].decode()) for n, (_, rcpts) in accepted.items() for r in rcpts}
    try:
        inst.wait(lambda: want <= set(delivered()) and queue_is_settled(inst), 60,
                  f"all {len(want)} deliveries of {len(accepted)} messages (seed {seed})", alarm=True)
    except AssertionError as e:
        missing = sorted(want - set(delivered()))
        left = {d: inst.h.files(d) for d in ("mess", "intd", "todo", "info", "local", "bounce")}
        local = {f: (inst.q / "local" / f).read_bytes() for f in left["local"]}
        raise AssertionError(f"{e}\nmissing {missing[:20]}\nleft in the queue {left}\nlocal/ {local}\n"
                             f"kills {killed}") from None
    got = delivered()
    assert set(got) == want, f"delivered something never accepted: {sorted(set(got) - want)[:10]}"
    ann_rx = received_re(USERS["ann"])
    for (n, user), copies in got.items():
        for data in copies:
            rest = split_delivered(data, b"ann@example.com", f"{user}@example.com".encode())
            r = ann_rx.match(rest)
            assert r and rest[r.end():] == accepted[n][0], f"seq {n} for {user} is not byte for byte (seed {seed})"
    # A kill between `end msg N` (info/N gone) and qmail-clean's unlink leaves mess/N
    # behind, for qmail-send's 36-hour cleanup: qmail's state S2. Nothing else stays.
    a = analysis(inst)
    ended = {m["n"] for m in a.msgs if m["events"][-1:] == ["end"]}
    for name in inst.h.files("mess") + inst.h.files("intd"):
        assert int(name.split("/")[-1]) in ended, f"queue/{name} left behind before its end msg"
    extra = sum(len(c) - 1 for c in got.values())
    # A copy can repeat only when a kill lost the report of a delivery already linked into
    # new/: a killed qmail-local (one delivery), or a killed qmail-send or qmail-lspawn
    # (at most concurrencylocal, 10, deliveries in flight).
    bound = killed["qmail-local"] + 10 * (killed["qmail-send"] + killed["qmail-lspawn"])
    assert extra <= bound, f"{extra} extra copies for kills {killed} (seed {seed})"
    # Every line every run wrote parsed above; a line cut by a kill is dropped by the reader.
    print(f"seed {seed}: kills {killed}, restarts {restarts}, {len(accepted)} messages, "
          f"{len(want)} deliveries, {extra} extra copies, {a.count('start')} delivery starts, "
          f"tmp leftovers {sum(len(list((inst.home(u) / 'Maildir' / 'tmp').iterdir())) for u in ('joe', 'ann'))}")


# --- isoqlog --------------------------------------------------------------------------------------------

# Debian's isoqlog 2.2.1 keeps user pointers in an int array (Data.c, addUserToSortTab),
# so on amd64 it crashes as soon as a log names a user. Given heap addresses below 2 GB
# (this malloc, preloaded) it runs as it would on the 32-bit machines it was written for.
LOW_MALLOC = r"""
#define _GNU_SOURCE
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
static char *top, *end;
static void *take(size_t n) {
    n = (n + 31) & ~(size_t)15;
    if (!top) {
        top = mmap(0, 1 << 28, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
        if (top == MAP_FAILED) return top = 0;
        end = top + (1 << 28);
    }
    if ((size_t)(end - top) < n) return 0;
    *(size_t *)top = n - 16;
    top += n;
    return top - n + 16;
}
void *malloc(size_t n) { return take(n); }
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) { void *p = take(a * b); if (p) memset(p, 0, a * b); return p; }
void *realloc(void *p, size_t n) {
    void *q = take(n);
    if (p && q) { size_t old = *(size_t *)((char *)p - 16); memcpy(q, p, old < n ? old : n); }
    return q;
}
"""
SIZE_UNITS = {"bytes": 1, "KBytes": 1024, "MBytes": 1024 ** 2, "GBytes": 1024 ** 3}


def isoqlog(base, logdir, domains):
    """Runs isoqlog over a multilog directory; {domain or 'general': (sent, received, bytes)}
    for today, from its monthly pages."""
    need(Path("/usr/bin/isoqlog").exists(), "Debian's isoqlog")
    need(shutil.which("cc"), "a C compiler (isoqlog's 64-bit workaround)")
    (base / "low.c").write_text(LOW_MALLOC)
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(base / "low.so"), str(base / "low.c")],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = base / "isoqlog"
    out.mkdir()
    (base / "isoqlog.domains").write_text("".join(d + "\n" for d in domains))
    (base / "isoqlog.conf").write_text(
        f'logtype = "qmail-multilog"\nlogstore = "{logdir}"\ndomainsfile = "{base}/isoqlog.domains"\n'
        f'outputdir = "{out}"\nhtmldir = "/usr/share/isoqlog/htmltemp"\n'
        f'langfile = "/usr/share/isoqlog/lang/english"\nhostname = "example.com"\n'
        "maxsender = 100\nmaxreceiver = 100\nmaxtotal = 100\nmaxbyte = 100\n")
    # isoqlog counts the lines of "today" in local time: a zone where it is about noon
    # keeps a run near midnight from splitting the day.
    h = (12 - time.gmtime().tm_hour + 12) % 24 - 12
    r = subprocess.run(["isoqlog", "-f", str(base / "isoqlog.conf")], capture_output=True, timeout=60,
                       env=dict(os.environ, LD_PRELOAD=str(base / "low.so"), TZ=f"ISO{-h:+d}"))
    assert r.returncode == 0, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    now = time.gmtime(time.time() + h * 3600)
    counts = {}
    for name in list(domains) + ["general"]:
        page = (out / name / str(now.tm_year) / str(now.tm_mon) / "index.html").read_text(errors="replace")
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
            cells = [re.sub(r"<[^>]*>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)(?=<td|$)", row, re.S)]
            if cells and cells[0] == str(now.tm_mday):
                sent, received, total = map(int, cells[1:4])
                num, unit = cells[4].split()
                assert total == sent + received
                counts[name] = (sent, received, float(num) * SIZE_UNITS[unit])
    return counts


def test_isoqlog_counts_the_messages_and_deliveries_of_a_multilog_directory(inst):
    inst.dotqmail("vu", ".qmail-default", "./Maildir/\n")
    logdir = inst.base / "log"
    inst.log_to_multilog(logdir)
    inst.start()
    port = inst.smtpd()
    for i in range(3):
        inject_from_ann(inst, "joe@example.com", subject=f"plain{i}")
    inst.inject(mail("two"), "-fann@example.com", "joe@example.com", "ann@example.com")
    inject_from_ann(inst, "nosuch@example.com", subject="bounced")
    r = inst.swaks(port, "Bob@Other.Example", "someone@virt.example", b"Subject: from bob\r\n\r\nhi")
    assert b"<-  250 2.0.0 ok" in r.stdout
    inst.wait(lambda: analysis(inst).count("end") == 7 and queue_is_empty(inst), 30, "seven end msg")
    inst.stop()
    inst.close_multilog()
    current = (logdir / "current").read_text()
    assert all(re.fullmatch(r"@[0-9a-f]{24} .*", x) for x in current.splitlines())
    a = analysis(inst)
    # What the log says, counted as isoqlog counts: `info msg` lines by the sender's domain
    # (lowercased; a bounce's <> only in the total, without its bytes) and `starting
    # delivery` lines by the recipient's.
    domains = ["example.com", "virt.example", "other.example"]
    want = {d: [0, 0, 0] for d in domains + ["general"]}
    for m in a.msgs:
        s = m["info"]["sender"].lower()
        want["general"][0] += 1
        if "@" in s:
            want[s.rsplit("@", 1)[1]][0] += 1
            for k in (s.rsplit("@", 1)[1], "general"):
                want[k][2] += int(m["info"]["bytes"])
        for d in m["deliveries"]:
            for k in (d["recip"].lower().rsplit("@", 1)[1], "general"):
                want[k][1] += 1
    # ... which is what was sent: 6 messages and a bounce, 8 deliveries (one the bounce's).
    assert [want["general"][0], want["general"][1]] == [7, 8]
    assert [want[d][:2] for d in domains] == [[5, 7], [0, 1], [1, 0]]
    got = isoqlog(inst.base, logdir, domains)
    for name, (sent, received, size) in want.items():
        g = got.get(name, (0, 0, 0.0))
        assert g[:2] == (sent, received), f"isoqlog counts {name} {g}, the log {sent, received}"
        assert abs(g[2] - size) <= 0.01 * SIZE_UNITS["KBytes"] + 0.005 * size, (name, g, size)


def test_one_bounce_for_all_failures_and_a_double_bounce(inst):
    """Two failed recipients and a good one: one bounce with both paragraphs, after the
    last delivery; when the sender is unknown too, the bounce's own bounce goes to
    doublebounceto@doublebouncehost from #@[]; bouncefrom/bouncehost name the sender."""
    inst.control(bouncefrom="Mailer", bouncehost="bounces.example.com", doublebounceto="dbl",
                 doublebouncehost="example.com")
    inst.maildir("alias", "Maildir-dbl")
    inst.dotqmail("alias", ".qmail-dbl", "./Maildir-dbl/\n")
    inst.start()
    inst.inject(mail("two-fail"), "-fann@example.com", "nosuch1@example.com", "joe@example.com", "nosuch2@example.com")
    [bounce] = inst.wait_new("ann")
    assert inst.wait_new("joe") and len(inst.new("joe")) == 1
    rest = split_delivered(bounce, b"", b"ann@example.com")
    head, _, body = rest.partition(b"\n\n")
    assert b"\nFrom: Mailer@bounces.example.com\n" in head + b"\n"
    assert body.startswith(b"Hi. This is the qmail-send program at bounces.example.com.\n")
    paragraphs = body.split(b"\n\n")
    assert sorted(paragraphs[1:3]) == [b"<nosuch1@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)",
                                       b"<nosuch2@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)"]
    assert paragraphs[3] == b"--- Below this line is a copy of the message."

    inst.inject(mail("double"), "-fnobody2@example.com", "nosuch3@example.com")
    [dbl] = inst.wait_new("alias", md="Maildir-dbl")
    rest = split_delivered(dbl, b"#@[]", b"dbl@example.com")
    r = received_re(b"for bounce").match(rest)
    assert r, rest[:200]
    head, _, body = rest[r.end():].partition(b"\n\n")
    assert head.split(b"\n")[1:] == [b"From: Mailer@bounces.example.com", b"To: dbl@example.com",
                                     b"Subject: failure notice"]
    intro = (b"Hi. This is the qmail-send program at bounces.example.com.\n"
             b"I tried to deliver a bounce message to this address, but the bounce bounced!\n\n"
             b"<nobody2@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
             b"--- Below this line is the original bounce.\n\nReturn-Path: <>\n")
    assert body.startswith(intro), body[:500]
    original_bounce = body[len(intro):]
    assert received_re(b"for bounce").match(original_bounce)
    assert b"<nosuch3@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n" in original_bounce
    assert original_bounce.endswith(mail("double"))
    inst.wait(lambda: queue_is_empty(inst), 20, "an empty queue")
    a = analysis(inst)
    assert a.count("bounce") == 3 and a.count("triple") == 0
    [d] = a.by_sender("#@[]")
    assert [x["recip"] for x in d["deliveries"]] == ["dbl@example.com"]


def test_every_byte_value_and_a_big_message_arrive_unchanged(inst):
    inst.start()
    binary = b"Subject: bytes\n\n" + bytes(range(256)) * 64 + b"\r\n\0no newline at the end"
    assert inst.queue(binary, b"ann@example.com", b"joe@example.com") == 0
    [got] = inst.wait_new("joe")
    rest = split_delivered(got, b"ann@example.com", b"joe@example.com")
    r = received_re(USERS["ann"]).match(rest)
    assert r and rest[r.end():] == binary
    port = inst.smtpd()
    big = b"Subject: big\r\n\r\n" + b"".join(b"%07d %s\r\n" % (i, b"b" * 90) for i in range(60000))   # ~6 MB
    r = inst.swaks(port, "ann@example.com", "joe@example.com", big[:-2])
    assert b"<-  250 2.0.0 ok" in r.stdout, r.stdout[-500:]
    got = inst.wait_new("joe", 2, timeout=60)
    [g] = [g for g in got if b"Subject: big\n" in g]
    assert g.endswith(big.replace(b"\r\n", b"\n"))


def test_concurrencylocal_caps_the_deliveries_in_flight(inst):
    inst.control(concurrencylocal="3")
    inst.dotqmail("joe", ".qmail-slow", "|sleep 1\n./Maildir/\n")
    inst.start()
    for i in range(8):
        assert inst.queue(mail(f"slow{i}"), b"ann@example.com", b"joe-slow@example.com") == 0
    inst.wait_new("joe", 8, timeout=30)
    used = [int(m.group(1)) for m in (re.fullmatch(r"status: local (\d+)/3 remote 0/20", x) for x in inst.lines()) if m]
    assert used and max(used) == 3, used
    assert [x for x in inst.lines() if x.startswith("status: local")
            and not re.fullmatch(r"status: local [0-3]/3 remote 0/20", x)] == []


def test_list_owner_sender_verp_and_envnoathost(inst):
    """qmail-local's NEWSENDER from .qmail-EXT-owner (-owner-default: VERP, expanded per
    recipient by qmail-send), and a bare forward address completed with envnoathost."""
    inst.dotqmail("joe", ".qmail-list", "&ann@example.com\n&mo\n")
    inst.dotqmail("joe", ".qmail-list-owner", "./Maildir/\n")
    inst.dotqmail("joe", ".qmail-team", "&ann@example.com\n")
    inst.dotqmail("joe", ".qmail-team-owner", "./Maildir/\n")
    inst.dotqmail("joe", ".qmail-team-owner-default", "./Maildir/\n")
    inst.start()
    inject_from_ann(inst, "joe-list@example.com", subject="list")
    [a1] = inst.wait_new("ann")
    assert split_delivered(a1, b"joe-list-owner@example.com", b"ann@example.com").endswith(mail("list"))
    [m1] = inst.wait_new("mo")   # "mo" + @envnoathost (control/me)
    assert split_delivered(m1, b"joe-list-owner@example.com", b"mo@mx.example.com").endswith(mail("list"))
    inject_from_ann(inst, "joe-team@example.com", subject="team")
    got = inst.wait_new("ann", 2)
    [a2] = [g for g in got if g.endswith(mail("team"))]
    assert split_delivered(a2, b"joe-team-owner-ann=example.com@example.com", b"ann@example.com")
    inst.wait(lambda: queue_is_empty(inst), 20, "an empty queue")
    a = analysis(inst)
    assert {m["info"]["sender"] for m in a.msgs} >= {"joe-list-owner@example.com", "joe-team-owner-@example.com-@[]"}


def test_deferrals_until_queuelifetime_then_a_bounce(inst):
    """A delivery that keeps deferring: past control/queuelifetime the next attempt's
    deferral becomes a failure, and the bounce says why."""
    inst.control(queuelifetime="2")
    inst.dotqmail("joe", ".qmail-later", "|echo not now; exit 111\n")
    inst.start()
    inject_from_ann(inst, "joe-later@example.com", subject="later")
    inst.wait(lambda: any(x.endswith(": deferral: not_now/") for x in inst.lines()), 15, "the deferral")
    assert not inst.new("ann")
    time.sleep(2.5)
    [bounce] = inst.wait_new("ann", alarm=True)
    copy = check_bounce(bounce, b"ann@example.com", b"<joe-later@example.com>:\nnot now\n"
                        b"I'm not going to try again; this message has been in the queue too long.\n")
    assert copy.endswith(mail("later"))
    a = analysis(inst)
    [m] = a.by_sender("ann@example.com")
    results = [r for d in m["deliveries"] for r in d["results"]]
    assert results == [("deferral", "not_now/"), ("failure", "not_now/I'm_not_going_to_try_again;"
                                                              "_this_message_has_been_in_the_queue_too_long./")]
