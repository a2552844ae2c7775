#!/usr/bin/env python3
"""make bench, delivery part: SMTP in, Maildir out, in one run (root only).

- End to end: Postfix's smtp-source sends BENCH_DELIVERY_MESSAGES (2000) messages of
  1 KiB to bench@example.com at 1, 10 and 50 sessions; the clock runs from its start
  until the last message is a file in the user's Maildir/new (counted; bounded wait).
- A burst: BENCH_BURST (10000) messages accepted over SMTP (50 sessions) while the
  delivery side is stopped, so they all sit in the queue, committed; then the delivery
  side starts and the clock runs until the last one is in Maildir/new.
- Peak RSS (VmHWM) per process kind: the long-lived daemons read from /proc at the end
  of the burst; qmail-local, which lives for one delivery, through the maxrss launcher
  (a separate pass of 200 messages, so that the launcher costs nothing above).
- The disk's fsync ceiling (create + write 1 KiB + fsync + unlink), measured in the
  same run on the same filesystem, as bench_queue.py does.

The systems, each in a private instance on loopback:

- rqmail: tcpserver -> qmail-smtpd (as qmaild) -> setuid qmail-queue; qmail-start ->
  qmail-send -> qmail-lspawn -> qmail-local -> ./Maildir/ of one user found in
  users/cdb. As root in private mount namespaces whose /var/qmail is the instance, as
  tests/test_smtpd.py does; the users are the test ids (7790-7798, no system file).
- Postfix (Debian's): its own master in the foreground with a private config and queue,
  smtpd -> cleanup -> qmgr -> virtual(8) into a Maildir (virtual_mailbox_maps and
  virtual_uid_maps static: no system user needed). For the burst a second master.cf
  without qmgr accepts the messages into incoming/ (in_flow_delay 0, since no qmgr
  hands out tokens); then the full master starts and qmgr takes them all.
- notqmail, when NOTQMAIL_SRC names its source (a directory, or the bare git directory
  the fetch tool leaves, e.g. the mirror of github:notqmail/notqmail): built under
  target/peers/notqmail with conf-qmail = target/peers/notqmail-home, installed there
  afresh per run; Debian's tcpserver in front of its qmail-smtpd. notqmail looks up its
  users by name at run time, so every notqmail process runs in a private mount
  namespace with a test /etc/passwd and /etc/group bind-mounted over /etc's.

Every system uses its default local concurrency (qmail's concurrencylocal 10,
Postfix's default_destination_concurrency_limit 20) and the same mailbox uid 7810.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netkit import free_port, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
TESTBIN = ROOT / "target" / "test-bin"
COUNT = int(os.environ.get("BENCH_DELIVERY_MESSAGES", "2000"))
BURST = int(os.environ.get("BENCH_BURST", "10000"))
RSS_PASS = 200
CONCURRENCY = (1, 10, 50)
PEER_SRC = ROOT / "target" / "peers" / "notqmail"
PEER_HOME = ROOT / "target" / "peers" / "notqmail-home"

# The qmail users (as tests/conftest.py's), the groups, and the mailbox owner.
USERS = {"alias": 7790, "qmaild": 7791, "qmaill": 7792, "root": 0, "qmailp": 7794,
         "qmailq": 7795, "qmailr": 7796, "qmails": 7797}
GROUPS = {"qmail": 7780, "nofiles": 7781}
NOFILES_USERS = ("alias", "qmaild", "qmaill", "qmailp")
MBOX_UID = MBOX_GID = 7810
SENDER, RCPT = "bench@example.net", "bench@example.com"
SPAWNS = ("qmail-send", "qmail-lspawn", "qmail-rspawn", "qmail-clean")


def passwd_lines():
    return "".join(f"{n}:x:{u}:{GROUPS['nofiles'] if n in NOFILES_USERS else GROUPS['qmail']}::/nonexistent:"
                   "/usr/sbin/nologin\n" for n, u in USERS.items() if n != "root")


def group_lines():
    return "".join(f"{g}:x:{i}:\n" for g, i in GROUPS.items())


def run_ok(argv, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=600, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]}: exit {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return r


def mailbox(path):
    """A home owned by the mailbox user with Maildir/{tmp,new,cur}; returns new/."""
    path.mkdir(mode=0o700)
    for d in (path, path / "Maildir", *(path / "Maildir" / s for s in ("tmp", "new", "cur"))):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chown(d, MBOX_UID, MBOX_GID)
    return path / "Maildir" / "new"


def count(new):
    try:
        return len(os.listdir(new))
    except FileNotFoundError:
        return 0


def empty(new):
    for name in os.listdir(new):
        os.unlink(new / name)


def wait_count(new, want, deadline, step):
    """Polls Maildir/new until `want` files are there or the deadline passes; returns
    the time the last was seen, or None."""
    while True:
        if count(new) >= want:
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


def smtp_source(port, conc, n):
    """smtp-source: n messages of 1 KiB over conc sessions (one message per session)."""
    r = subprocess.run(["smtp-source", "-s", str(conc), "-m", str(n), "-l", "1024", "-f", SENDER, "-t", RCPT,
                        "-M", "bench.example.net", f"127.0.0.1:{port}"], capture_output=True, timeout=1800)
    if r.returncode != 0:
        print(f"  smtp-source: exit {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return r.returncode == 0


def children(pid):
    """{pid: comm} of the children of pid."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out[int(d.name)] = comm
    return out


def hwm(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def stop_group(p, sig=signal.SIGTERM, timeout=60):
    """Signals p (by pid; under strace, strace's child), waits, then kills what is
    left of its process group."""
    if p is None:
        return
    if p.poll() is None:
        try:
            if getattr(p, "traced", False):
                for pid in children(p.pid):
                    os.kill(pid, sig)
            else:
                p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass


def tcpserver_port(p, log):
    line = p.stdout.readline()
    if not line.strip().isdigit():
        raise RuntimeError(f"tcpserver did not start: {Path(log).read_text(errors='replace')[-1000:]}")
    return int(line)


TRACED = "fsync,fdatasync,sync_file_range,msync,execve,fork,vfork,clone,clone3"


def popen(cmd, trace, **kw):
    """Popen, under `strace -f -c` into trace + '.strace' when trace is set."""
    if trace:
        cmd = ["strace", "-f", "-qq", "-c", "-o", f"{trace}.strace", "-e", f"trace={TRACED}", *cmd]
    p = subprocess.Popen([str(c) for c in cmd], start_new_session=True, **kw)
    p.traced = bool(trace)
    return p


def strace_counts(path):
    """{syscall: successful calls} from an `strace -c` summary."""
    out = {}
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1] in TRACED.split(",") and f[0][0].isdigit():
            calls = int(f[3])
            errors = int(f[4]) if len(f) == 6 else 0
            out[f[-1]] = out.get(f[-1], 0) + calls - errors
    return out


class Qmail:
    """What rqmail and notqmail share: a tcpserver in front, qmail-start behind,
    Maildir/new to count, the spawns' VmHWM and qmail-local's through maxrss."""

    name = "?"
    send = None
    front = None
    trace = None

    def start_delivery(self):
        self.send = popen(self.start_cmd(), self.trace and f"{self.trace}-send", stdin=subprocess.DEVNULL,
                          stdout=self.send_log, stderr=self.send_log, env=self.env)

    def stop_delivery(self):
        stop_group(self.send)
        self.send = None

    def queued(self):
        return len(os.listdir(self.home / "queue" / "todo"))

    def daemons_hwm(self):
        """{kind: VmHWM kB} of qmail-send and its helpers (qmail-start's children)."""
        if not self.send or self.send.poll() is not None:
            return {}
        out = {"qmail-send": hwm(self.send.pid)}
        for pid, comm in children(self.send.pid).items():
            if comm in SPAWNS:
                v = hwm(pid)
                if v is not None:
                    out[comm] = max(out.get(comm, 0), v)
        return out

    def local_hwm(self, port):
        """qmail-local's peak RSS over RSS_PASS deliveries: bin/qmail-local becomes a
        script that runs it under maxrss, whose line ends up in the delivery report
        that qmail-send logs (`did_0+0+1/maxrss_KB_0/`)."""
        real, wrapper = self.local_path(), self.local_path().with_name("qmail-local.bench")
        os.rename(real, wrapper)
        real.write_text(f'#!/bin/sh\nexec {TESTBIN / "maxrss"} {self.local_target(wrapper)} "$@"\n')
        real.chmod(0o755)
        try:
            empty(self.new)
            start = self.log_size()
            smtp_source(port, 10, RSS_PASS)
            wait_count(self.new, RSS_PASS, time.monotonic() + 120, 0.05)
            time.sleep(0.3)   # the last log lines
            with open(self.send_log.name, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
            sizes = sorted(int(m) for m in re.findall(r"maxrss.(\d+).0/", text))
        finally:
            real.unlink()
            os.rename(wrapper, real)
        empty(self.new)
        return (max(sizes), sizes[len(sizes) // 2]) if sizes else None

    def log_size(self):
        self.send_log.flush()
        return os.path.getsize(self.send_log.name)

    def stop(self):
        self.stop_delivery()
        stop_group(self.front, signal.SIGKILL)


class Rqmail(Qmail):
    name = "rqmail"
    ns = 'mount -t tmpfs rqmail /var && mkdir /var/qmail && mount --bind "$0" /var/qmail && exec "$@"'

    def __init__(self, tmp):
        self.home = home = tmp / "rqmail"
        home.mkdir()
        home.chmod(0o755)
        (tmp / "passwd.test").write_text("root:x:0:0::/root:/bin/sh\n" + passwd_lines())
        (tmp / "group.test").write_text(group_lines())
        run_ok([BIN / "qmail-mkids", "-P", tmp / "passwd.test", "-G", tmp / "group.test", home])
        run_ok([BIN / "qmail-mkqueue", home])
        b = home / "bin"
        shutil.copy(BIN / "qmail-queue", b / "qmail-queue")   # setuid qmailq, as make install leaves it
        os.chown(b / "qmail-queue", USERS["qmailq"], GROUPS["qmail"])
        (b / "qmail-queue").chmod(0o4711)
        for p in ("qmail-smtpd", "qmail-start", "qmail-send", "qmail-lspawn", "qmail-rspawn", "qmail-clean",
                  "qmail-local", "qmail-newu"):
            (b / p).symlink_to(BIN / p)
        c = home / "control"
        (c / "me").write_text("bench.example.org\n")
        (c / "rcpthosts").write_text("example.com\n")
        (c / "locals").write_text("example.com\n")
        self.new = mailbox(tmp / "mail-rqmail")
        (home / "users" / "assign").write_text(f"=bench:bench:{MBOX_UID}:{MBOX_GID}:{tmp / 'mail-rqmail'}:::\n.\n")
        run_ok([BIN / "qmail-newu"], env=dict(os.environ, QMAILHOME=str(home)))
        self.env = {"PATH": "/var/qmail/bin:/usr/bin:/bin", "QMAILHOME": "/var/qmail", "DNSCACHEIP": "127.53.0.9"}
        self.smtpd_log = tmp / "rqmail-smtpd.log"
        self.send_log = open(tmp / "rqmail-send.log", "ab")

    def inside(self, cmd):
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", self.ns, str(self.home), *map(str, cmd)]

    def start_front(self):
        cmd = self.inside([BIN / "tcpserver", "-1", "-R", "-H", "-l", "0", "-c", "100", "-b", "100",
                           "-u", USERS["qmaild"], "-g", GROUPS["nofiles"], "127.0.0.1", "0",
                           "/var/qmail/bin/qmail-smtpd"])
        self.front = popen(cmd, self.trace and f"{self.trace}-smtp", stdout=subprocess.PIPE,
                           stderr=open(self.smtpd_log, "ab"), env=self.env)
        self.port = tcpserver_port(self.front, self.smtpd_log)

    def start_cmd(self):
        return self.inside(["qmail-start", "./Maildir/"])

    def local_path(self):
        return self.home / "bin" / "qmail-local"

    def local_target(self, wrapper):
        return os.readlink(wrapper)


def build_notqmail():
    """notqmail under target/peers/notqmail, its home fixed at target/peers/notqmail-home
    (conf-qmail is compiled in). Returns None, or the reason it is not there."""
    src = os.environ.get("NOTQMAIL_SRC")
    if not src:
        return "NOTQMAIL_SRC is not set"
    src = Path(src)
    stamp = PEER_SRC / ".built-for"
    if not (stamp.exists() and stamp.read_text() == str(PEER_HOME)):
        shutil.rmtree(PEER_SRC, ignore_errors=True)
        PEER_SRC.mkdir(parents=True)
        if (src / "HEAD").exists() and not (src / "Makefile").exists():   # a bare git directory
            tar = subprocess.run(["git", "--git-dir", str(src), "archive", "HEAD"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(PEER_SRC)], input=tar.stdout, check=True)
        else:
            shutil.copytree(src, PEER_SRC, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        (PEER_SRC / "conf-qmail").write_text(f"{PEER_HOME}\n")
        r = subprocess.run(["make", "it", "man"], cwd=PEER_SRC, capture_output=True, timeout=900)
        if r.returncode != 0:
            return "build failed: " + r.stderr.decode(errors="replace")[-300:]
        stamp.write_text(str(PEER_HOME))
    return None


class Notqmail(Qmail):
    name = "notqmail"

    def __init__(self, tmp):
        self.home = home = PEER_HOME
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        self.passwd, self.group = tmp / "nq-passwd", tmp / "nq-group"
        self.passwd.write_text(Path("/etc/passwd").read_text() + passwd_lines())
        self.group.write_text(Path("/etc/group").read_text() + group_lines())
        for p in (self.passwd, self.group):
            p.chmod(0o644)
        self.env = {"PATH": f"{home}/bin:/usr/bin:/bin"}
        run_ok(self.inside([PEER_SRC / "instpackage"]), env=self.env, cwd=PEER_SRC)
        run_ok(self.inside([PEER_SRC / "instchown"]), env=self.env, cwd=PEER_SRC)
        c = home / "control"
        (c / "me").write_text("bench.example.org\n")
        (c / "rcpthosts").write_text("example.com\n")
        (c / "locals").write_text("example.com\n")
        self.new = mailbox(tmp / "mail-notqmail")
        (home / "users" / "assign").write_text(f"=bench:bench:{MBOX_UID}:{MBOX_GID}:{tmp / 'mail-notqmail'}:::\n.\n")
        run_ok(self.inside([home / "bin" / "qmail-newu"]), env=self.env)
        self.smtpd_log = tmp / "notqmail-smtpd.log"
        self.send_log = open(tmp / "notqmail-send.log", "ab")

    def inside(self, cmd):
        setup = 'mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group && shift && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", setup, str(self.passwd), str(self.group),
                *map(str, cmd)]

    def start_front(self):
        cmd = self.inside(["/usr/bin/tcpserver", "-1", "-R", "-H", "-l", "0", "-c", "100", "-b", "100",
                           "-u", USERS["qmaild"], "-g", GROUPS["nofiles"], "127.0.0.1", "0",
                           self.home / "bin" / "qmail-smtpd"])
        self.front = popen(cmd, self.trace and f"{self.trace}-smtp", stdout=subprocess.PIPE,
                           stderr=open(self.smtpd_log, "ab"), env=self.env)
        self.port = tcpserver_port(self.front, self.smtpd_log)

    def start_cmd(self):
        return self.inside(["qmail-start", "./Maildir/"])

    def local_path(self):
        return self.home / "bin" / "qmail-local"

    def local_target(self, wrapper):
        return wrapper

    def stop(self):
        super().stop()
        shutil.rmtree(self.home, ignore_errors=True)   # its setuid qmail-queue goes with it


class Postfix:
    name = "postfix"
    trace = None

    def __init__(self, tmp):
        import pwd
        self.conf, self.hold = tmp / "pf-conf", tmp / "pf-conf-hold"
        spool, data, base = tmp / "pf-spool", tmp / "pf-data", tmp / "pf-mail"
        for d in (self.conf, self.hold, spool, data, base):
            d.mkdir()
        base.chmod(0o755)
        self.spool = spool
        self.port = free_port()
        master = Path("/etc/postfix/master.cf").read_text().replace("smtp      inet", f"{self.port}      inet", 1)
        main = (f"queue_directory = {spool}\ndata_directory = {data}\ncompatibility_level = 3.6\n"
                "myhostname = bench.example.org\nmydestination =\nrelay_domains =\n"
                "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n"
                "default_transport = discard\nlocal_transport = discard\nrelay_transport = discard\n"
                f"virtual_mailbox_domains = example.com\nvirtual_mailbox_base = {base}\n"
                "virtual_mailbox_maps = static:bench/Maildir/\n"
                f"virtual_uid_maps = static:{MBOX_UID}\nvirtual_gid_maps = static:{MBOX_GID}\n"
                "default_process_limit = 100\nsmtpd_client_connection_count_limit = 0\n"
                "smtpd_client_connection_rate_limit = 0\nsmtpd_peername_lookup = no\n"
                f"maillog_file_prefixes = {tmp}\nmaillog_file = {tmp}/postfix.log\n")
        (self.conf / "master.cf").write_text(master)
        (self.conf / "main.cf").write_text(main)
        # The hold instance: the same queue, no qmgr, so accepted mail stays in incoming/.
        (self.hold / "master.cf").write_text("".join(l for l in master.splitlines(True) if not l.startswith("qmgr ")))
        (self.hold / "main.cf").write_text(main + "in_flow_delay = 0s\n")
        os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
        subprocess.run(["/etc/postfix/post-install", f"config_directory={self.conf}", "meta_directory=/etc/postfix",
                        "create-missing"], capture_output=True)
        subprocess.run(["postfix", "-c", str(self.conf), "set-permissions"], capture_output=True)
        for conf in (self.conf, self.hold):
            run_ok(["postconf", "-c", conf, "-F", "*/*/chroot = n"])
        self.new = mailbox(base / "bench")
        self.master = None

    def start(self, conf):
        self.master = popen(["/usr/lib/postfix/sbin/master", "-c", conf, "-d"], self.trace and f"{self.trace}-all",
                            env=dict(os.environ, MAIL_CONFIG=str(conf)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def start_front(self):
        self.start(self.conf)

    def start_delivery(self):
        self.start(self.conf)

    def stop_delivery(self):
        stop_group(self.master)
        self.master = None
        time.sleep(0.5)   # its children see the master go and exit

    def hold_front(self):
        """Stops the full instance and accepts mail with the qmgr-less one."""
        self.stop_delivery()
        self.start(self.hold)

    def queued(self):
        return sum(len(f) for _, _, f in os.walk(self.spool / "incoming"))

    def daemons_hwm(self):
        out = {}
        if self.master and self.master.poll() is None:
            out["master"] = hwm(self.master.pid)
            for pid, comm in children(self.master.pid).items():
                v = hwm(pid)
                if v is not None and comm in ("qmgr", "virtual", "cleanup", "smtpd", "trivial-rewrite"):
                    out[comm] = max(out.get(comm, 0), v)
        return out

    def stop(self):
        stop_group(self.master)


def e2e(mta, conc, n):
    """messages/s from smtp-source's start to the last file in Maildir/new."""
    empty(mta.new)
    start = time.monotonic()
    smtp_source(mta.port, conc, n)
    done = wait_count(mta.new, n, time.monotonic() + 60 + n / 20, 0.01)
    if done is None:
        return None, f"{count(mta.new)}/{n} arrived"
    return n / (done - start), None


def burst(mta, n):
    """n messages accepted with delivery stopped, then the seconds from the delivery
    side's start to the last one in Maildir/new; (seconds, accept seconds, note)."""
    empty(mta.new)
    if isinstance(mta, Postfix):
        mta.hold_front()
    else:
        mta.stop_delivery()
    t = time.monotonic()
    smtp_source(mta.port, 50, n)
    accept = time.monotonic() - t
    if isinstance(mta, Postfix):
        deadline = time.monotonic() + 30
        while mta.queued() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        mta.stop_delivery()
    queued = mta.queued()
    if queued < n:
        return None, accept, f"only {queued} of {n} queued"
    start = time.monotonic()
    mta.start_delivery()
    done = wait_count(mta.new, n, start + 120 + n / 20, 0.05)
    if done is None:
        return None, accept, f"{count(mta.new)}/{n} arrived"
    return done - start, accept, None


def fsync_ceiling(tmp, writers):
    d = tmp / "fsync"
    d.mkdir(exist_ok=True)
    out = subprocess.run([str(TESTBIN / "queuebench"), str(writers), "1000", "1024", "fsync", str(d)],
                         capture_output=True, text=True, timeout=300).stdout.split()
    return float(out[1])


def instances(tmp, mtas):
    """Appends each system's instance to mtas; returns why notqmail is not there."""
    why_not = build_notqmail()
    mtas.append(Rqmail(tmp))
    if Path("/usr/lib/postfix/sbin/master").exists():
        mtas.append(Postfix(tmp))
    else:
        print("delivery bench: Debian's postfix is missing; rqmail alone")
    if why_not is None:
        try:
            mtas.append(Notqmail(tmp))
        except Exception as e:   # noqa: BLE001 -- a peer that cannot run is reported, not fatal
            why_not = f"cannot be set up: {e}"
    return why_not


def costs(tmp, mtas, n):
    """BENCH_DELIVERY_TRACE=N (instead of the figures): what one message costs each
    system in fsyncs and process starts, counted by `strace -f -c` around every
    process of the system over N messages in one session (the daemons' own start-up
    is in the totals: a few forks over N)."""
    print(f"\ndelivery costs per message: strace -f -c over {n} messages (smtp-source, 1 session)")
    print(f"{'':10}{'part':>10}{'fsyncs':>8}{'forks':>8}{'execs':>8}")
    for m in mtas:
        m.trace = tmp / m.name
        m.start_front()
        if not isinstance(m, Postfix):
            m.start_delivery()
        smtp_source(m.port, 1, n)
        got = wait_count(m.new, n, time.monotonic() + 300, 0.05)
        time.sleep(1)   # qmail-clean and qmgr finish the last messages
        m.stop()
        for f in sorted(tmp.glob(f"{m.name}-*.strace")):
            c = strace_counts(f)
            fs = sum(c.get(k, 0) for k in ("fsync", "fdatasync", "sync_file_range", "msync"))
            forks = sum(c.get(k, 0) for k in ("fork", "vfork", "clone", "clone3"))
            part = f.name[len(m.name) + 1:-len(".strace")]
            print(f"{m.name:10}{part:>10}{fs / n:>8.2f}{forks / n:>8.2f}{c.get('execve', 0) / n:>8.2f}"
                  + ("" if got else f"   (only {count(m.new)} of {n} arrived)"))


def main():
    if os.geteuid() != 0:
        print("delivery bench: needs root (qmail's users, mount namespaces, Postfix's master); skipped")
        return
    if not shutil.which("smtp-source"):
        print("delivery bench: smtp-source (postfix) is missing; skipped")
        return
    for p in ("qmail-send", "qmail-local", "qmail-smtpd"):
        if not (BIN / p).exists():
            sys.exit(f"delivery bench: missing {BIN / p} (make builds it)")
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-", dir=ROOT / "target"))
    tmp.chmod(0o755)   # Postfix's and qmail's daemons run as their own users
    mtas = []
    try:
        why_not = instances(tmp, mtas)
        if os.environ.get("BENCH_DELIVERY_TRACE"):
            return costs(tmp, mtas, int(os.environ["BENCH_DELIVERY_TRACE"]))
        for m in mtas:
            m.start_front()
            if not isinstance(m, Postfix):
                m.start_delivery()
        names = [m.name for m in mtas]
        ceil1, ceil10 = fsync_ceiling(tmp, 1), fsync_ceiling(tmp, 10)
        print(f"\ndelivery: SMTP -> Maildir, messages/s end to end ({COUNT} messages of 1 KiB per cell, smtp-source,"
              " until the last is in Maildir/new)")
        print(f"the disk's fsync ceiling in the same run: {ceil1:.0f}/s with 1 writer, {ceil10:.0f}/s with 10")
        hdr = f"{'sessions':>8}" + "".join(f"{n:>10}" for n in names)
        hdr += "".join(f"{'vs ' + n:>13}" for n in names[1:])
        print(hdr)
        notes = []
        for conc in CONCURRENCY:
            rates = []
            for m in mtas:
                r, note = e2e(m, conc, COUNT)
                rates.append(r)
                if note:
                    notes.append(f"  {m.name} at {conc}: {note}")
            line = f"{conc:>8}" + "".join(f"{r:>10.0f}" if r else f"{'-':>10}" for r in rates)
            line += "".join(f"{rates[0] / r:>12.2f}x" if r and rates[0] else f"{'-':>13}" for r in rates[1:])
            print(line, flush=True)
        for n in notes:
            print(n)
        if why_not:
            print(f"  notqmail: not run ({why_not})")

        rss = {m.name: m.daemons_hwm() for m in mtas}   # Postfix's smtpd and cleanup live here
        locals_rss = {m.name: m.local_hwm(m.port) for m in mtas if isinstance(m, Qmail)}

        print(f"\nburst: {BURST} messages accepted over SMTP (50 sessions) with delivery stopped, then the"
              " delivery side started: seconds until the last is in Maildir/new")
        print(f"{'':10}{'accept s':>10}{'deliver s':>10}{'msgs/s':>8}{'ratio':>8}")
        ours = None
        for m in mtas:
            secs, accept, note = burst(m, BURST)
            for k, v in m.daemons_hwm().items():   # the daemons' peaks, at the end of the burst
                rss[m.name][k] = max(v or 0, rss[m.name].get(k) or 0)
            if m is mtas[0]:
                ours = secs
            ratio = f"{secs / ours:>7.2f}x" if secs and ours and m is not mtas[0] else f"{'':>8}"
            print(f"{m.name:10}{accept:>10.1f}" + (f"{secs:>10.1f}{BURST / secs:>8.0f}{ratio}" if secs
                                                   else f"  {note}"), flush=True)
        print("  (ratio: rqmail's delivery speed / that system's, i.e. its seconds / rqmail's)")

        print("\npeak RSS (VmHWM, kB) per process kind; daemons at the end of the burst,"
              f" qmail-local max/median over {RSS_PASS} deliveries (maxrss)")
        for m in mtas:
            parts = [f"{k} {v}" for k, v in rss[m.name].items() if v]
            if m.name in locals_rss and locals_rss[m.name]:
                mx, med = locals_rss[m.name]
                parts.append(f"qmail-local {mx} (median {med})")
            print(f"  {m.name:9} " + ", ".join(parts))
        print(f"(bench_delivery: {time.monotonic() - began:.0f} s)")
    finally:
        for m in mtas:
            m.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
