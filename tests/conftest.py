"""Shared fixtures for rqmail's black-box system tests.

The built programs (bin/) run side by side with Debian's peers (ucspi-tcp's
tcpserver/tcprules, its IPv6 build unpacked under target/peers, dnsmasq as the DNS
server) on loopback only. Every process a test starts is stopped by pid (its process
group) at teardown. A test whose peer or privilege (root) is missing SKIPs, or FAILs
when CI=true.
"""

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
TESTBIN = ROOT / "target" / "test-bin"
PROBE = str(TESTBIN / "envprobe")
DEBIAN = Path("/usr/bin")
DEBIAN6 = ROOT / "target" / "peers" / "ucspi-tcp-ipv6" / "usr" / "bin"
IS_ROOT = os.geteuid() == 0
CI = os.environ.get("CI") == "true"
# Nothing listens here: a DNS lookup fails at once and never leaves the machine.
NO_DNS = "127.53.0.9"
DNS = "127.53.0.1"


def need(ok, what):
    """Skip when a peer or privilege is missing; with CI=true fail, since a test that
    cannot run must not look like one that passed. Every skip in tests/ goes through here."""
    if not ok:
        (pytest.fail if CI else pytest.skip)(f"needs {what}")


def need_root(why=""):
    need(IS_ROOT, f"root ({why})" if why else "root")


def impl_dir(impl):
    """bin/ for rqmail, /usr/bin for Debian's ucspi-tcp, the unpacked IPv6 build."""
    d = {"rqmail": BIN, "debian": DEBIAN, "debian6": DEBIAN6}[impl]
    need((d / "tcpserver").exists(), f"{impl} tcpserver in {d}")
    return d


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCP")}
    env["DNSCACHEIP"] = NO_DNS
    env.update(extra)
    return env


def tcprules(impl, cdb, text):
    r = subprocess.run([str(impl_dir(impl) / "tcprules"), str(cdb), str(cdb) + ".tmp"],
                       input=text.encode() if isinstance(text, str) else text, capture_output=True, timeout=120)
    return r


class Server:
    """A tcpserver on an ephemeral port (from -1), with its log in a file."""

    def __init__(self, exe, opts, prog, host, env, logpath):
        self.logpath = logpath
        self.log_file = open(logpath, "wb")
        self.proc = subprocess.Popen([str(exe), "-1", *opts, host, "0", *prog], stdout=subprocess.PIPE,
                                     stderr=self.log_file, env=env, start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise AssertionError(f"tcpserver did not start: {self.log()}")
        self.port = int(line)
        self.host = host

    def log(self):
        return Path(self.logpath).read_text(errors="replace")

    def wait_log(self, pred, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            text = self.log()
            if pred(text):
                return text
            time.sleep(0.02)
        raise AssertionError(f"log condition not met:\n{self.log()}")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.log_file.close()


@pytest.fixture
def serve(tmp_path):
    """serve(impl, opts, prog=[PROBE], host=..., env=...) starts a tcpserver."""
    started = []

    def start(impl, opts, prog=None, host="127.0.0.1", env=None, exe=None):
        exe = exe or impl_dir(impl) / "tcpserver"
        s = Server(exe, opts, prog or [PROBE], host, env or base_env(), tmp_path / f"log{len(started)}")
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def talk(port, host="127.0.0.1", src=None, send=b"", timeout=10):
    """Connects (from src if given), sends, and reads until EOF."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        if send:
            s.sendall(send)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def probe(port, **kw):
    """What the envprobe child behind a server saw."""
    return parse_probe(talk(port, **kw))


def parse_probe(output):
    """envprobe's report: {'env': {...}, 'Uid': [...], 'Groups': [...], 'CWD': ...}."""
    out = {"env": {}}
    for line in output.decode(errors="replace").splitlines():
        if line.startswith("ENV "):
            k, _, v = line[4:].partition("=")
            out["env"][k] = v
        elif line.startswith(("Uid:", "Gid:", "Groups:")):
            k, _, v = line.partition(":")
            out[k] = v.split()
        elif line.startswith(("CWD ", "FDS ", "LIMIT_AS ")):
            k, _, v = line.partition(" ")
            out[k] = v
        elif line == "END":
            out["END"] = True
    return out


def tcp_env(p):
    """The variables tcpserver and the rules set (ports blanked: they differ per run)."""
    keep = {k: v for k, v in p["env"].items()
            if k.startswith(("TCP", "PROTO")) or k in ("RELAYCLIENT", "WHO", "RBLSMTPD", "X", "Y", "RULE")}
    for k in ("TCPREMOTEPORT", "TCPLOCALPORT", "TCP6REMOTEPORT", "TCP6LOCALPORT"):
        if k in keep:
            keep[k] = "*"
    return keep


@pytest.fixture(scope="session")
def dnsmasq(tmp_path_factory):
    """dnsmasq on 127.53.0.1:53 answering for *.test and the reverse zones."""
    need_root()
    need(Path("/usr/sbin/dnsmasq").exists(), "dnsmasq")
    d = tmp_path_factory.mktemp("dns")
    records = [
        "--host-record=host1.test,127.0.0.1",
        "--ptr-record=1.0.0.127.in-addr.arpa,host1.test",
        "--ptr-record=2.0.0.127.in-addr.arpa,liar.test",
        "--host-record=liar.test,127.9.9.9",
        "--ptr-record=3.0.0.127.in-addr.arpa,mx.sub.example.test",
        "--host-record=mx.sub.example.test,127.0.0.3",
        "--ptr-record=4.0.0.127.in-addr.arpa,other.example.test",
        "--host-record=other.example.test,127.0.0.4",
        "--ptr-record=1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa,six.test",
        "--host-record=six.test,::1",
    ]
    p = subprocess.Popen(["/usr/sbin/dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                          "--bind-interfaces", f"--listen-address={DNS}", "--port=53", "--local=/test/",
                          "--local=/in-addr.arpa/", "--local=/ip6.arpa/", f"--pid-file={d}/pid", "--user=root",
                          *records], stdout=subprocess.DEVNULL, stderr=open(d / "log", "wb"))
    try:
        for _ in range(100):
            if subprocess.run(["ss", "-lun", f"src {DNS}:53"], capture_output=True, text=True).stdout.count(DNS):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("dnsmasq did not start: " + (d / "log").read_text())
        yield DNS
    finally:
        p.kill()
        p.wait()


@pytest.fixture
def open_dir():
    """A temporary directory every uid can enter (pytest's own are 0700), for files
    that a process must read after dropping privileges."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="rqmail-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- a temporary QMAILHOME with a real queue -------------------------------------

# Test ids: as root the queue is owned by these numeric users, which exist in no
# passwd file; qmail-mkids reads them from a test copy into control/ids.
TEST_USERS = {"alias": 7790, "qmaild": 7791, "qmaill": 7792, "root": 0, "qmailp": 7794,
              "qmailq": 7795, "qmailr": 7796, "qmails": 7797, "qmailtls": 7798}
# The TLS engine's user has a group of its own (7798, as make install's qmailtls).
TEST_USER_GIDS = {"qmailtls": 7798}
TEST_GROUPS = {"qmail": 7780, "nofiles": 7781}
QUEUE_PROGRAMS = ["qmail-queue", "qmail-inject", "sendmail", "qmail-qstat", "qmail-qread"]


def run_queue(argv, message, envelope, timeout=60, **popen):
    """Runs a qmail-queue command line with the message on fd 0 and the envelope on
    fd 1 (written by a thread, since qmail-queue reads it only after the message);
    its exit code."""
    import threading
    r, w = os.pipe()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=r, **popen)
    os.close(r)

    def feed():
        try:
            with open(w, "wb") as f:
                f.write(envelope)
        except OSError:
            pass
    t = threading.Thread(target=feed)
    t.start()
    try:
        p.stdin.write(message)
        p.stdin.close()
    except BrokenPipeError:
        pass
    rc = p.wait(timeout)
    t.join(10)
    return rc


def read_lines(fd, take):
    """Reads `fd` to its end, handing each batch of complete lines (bytes, without
    their LF) to `take`: a log reader for a thread."""
    buf = b""
    with open(fd, "rb", buffering=0) as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if lines:
                take(lines)


class QHome:
    """An instance made by qmail-mkids and qmail-mkqueue, its programs in bin/."""

    def __init__(self, path, users=None):
        self.path = Path(path)
        self.path.mkdir(exist_ok=True)
        self.path.chmod(0o755)
        if IS_ROOT:
            self.users = dict(TEST_USERS, **(users or {}))
            passwd = "".join(f"{n}:x:{u}:{TEST_USER_GIDS.get(n) or (TEST_GROUPS['nofiles'] if n in ('alias', 'qmaild', 'qmaill', 'qmailp') else TEST_GROUPS['qmail'])}:"
                             f":/nonexistent:/usr/sbin/nologin\n" for n, u in self.users.items())
            group = "".join(f"{g}:x:{i}:\n" for g, i in TEST_GROUPS.items())
            (self.path / "passwd.test").write_text(passwd)
            (self.path / "group.test").write_text(group)
            self.run_ok(BIN / "qmail-mkids", "-P", self.path / "passwd.test", "-G", self.path / "group.test", self.path)
        else:
            self.users = {n: os.getuid() for n in TEST_USERS}
            self.run_ok(BIN / "qmail-mkids", "-1", self.path)
        self.run_ok(BIN / "qmail-mkqueue", self.path)
        for p in QUEUE_PROGRAMS:
            (self.path / "bin" / p).symlink_to(BIN / p)
        self.q = self.path / "queue"

    @staticmethod
    def run_ok(*argv):
        r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QMAIL", "MAIL", "NAME", "ERROR_FD"))}
        env["QMAILHOME"] = str(self.path)
        env.update(extra)
        return env

    def as_qmailq(self):
        """Popen arguments that run a program as qmailq:qmail, as the setuid bit would."""
        if not IS_ROOT:
            return {}
        return {"user": self.users["qmailq"], "group": TEST_GROUPS["qmail"], "extra_groups": []}

    def queue(self, message, envelope, as_qmailq=True, timeout=60, preexec_fn=None, **env):
        """Runs qmail-queue with the message on fd 0 and the envelope on fd 1;
        `preexec_fn` sets up the caller's state at exec."""
        return run_queue([str(self.path / "bin" / "qmail-queue")], message, envelope, timeout,
                         env=self.env(**env), preexec_fn=preexec_fn, **(self.as_qmailq() if as_qmailq else {}))

    def files(self, sub):
        """Names of the files under queue/SUB (recursively), relative to it."""
        base = self.q / sub
        return sorted(str(f.relative_to(base)) for f in base.rglob("*") if f.is_file())

    def todo(self):
        """{message number: (envelope records, message bytes)} for every committed message."""
        out = {}
        for name in self.files("todo"):
            n = int(name)
            env = (self.q / "todo" / name).read_bytes()
            out[n] = (env.split(b"\0")[:-1], (self.q / "mess" / str(n % 23) / name).read_bytes())
        return out


@pytest.fixture
def qhome(open_dir):
    return QHome(open_dir / "home")


@pytest.fixture
def pki(open_dir):
    """Certificates for the TLS tests (tests/tls/certs.py): {name: path}."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent / "tls"))
    import certs
    d = open_dir / "certs"
    d.mkdir()
    d.chmod(0o755)
    return certs.make(d)
