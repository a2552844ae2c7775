"""tcpserver under operation: the -c limit, privilege drop, rules recompiled while
serving, missing or bad CDBs, clients that vanish, many connections, SIGTERM, the
banner, usage errors, and the seeds' softlimit."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, PROBE, base_env, impl_dir, need, need_root, probe, talk, tcprules

FLAGS = ["-H", "-R", "-l", "0", "-v"]


def test_limit_makes_third_client_wait(serve):
    """-c 2: two children run; the third client connects (kernel backlog) but is only
    served after a child has ended."""
    s = serve("rqmail", FLAGS + ["-c", "2"], prog=[PROBE, "0.6"])
    socks = []
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        socks.append(c)
    outs = []
    for c in socks:
        data = b""
        while not data.endswith(b"END\n"):
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        outs.append(data)
        c.close()
    assert all(o.endswith(b"END\n") for o in outs)
    log = s.wait_log(lambda t: t.count(" end ") == 3)
    lines = log.splitlines()
    assert "tcpserver: status: 2/2" in lines and "tcpserver: status: 3/2" not in lines
    pids = [l.split()[2] for l in lines if l.startswith("tcpserver: pid ")]
    first_end = next(i for i, l in enumerate(lines) if " end " in l)
    third_start = lines.index(f"tcpserver: pid {pids[2]} from 127.0.0.1")
    assert third_start > first_end


def test_limit_zero_never_accepts(serve):
    s = serve("rqmail", FLAGS + ["-c", "0"])
    with pytest.raises(socket.timeout):
        talk(s.port, timeout=0.5)
    assert "status: 0/0" in s.log() and " pid " not in s.log()


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_uid_gid_drop(serve, open_dir, impl):
    """-u/-g: the child runs with that uid and gid, and the gid as its only group."""
    need_root()
    cdb = open_dir / "r.cdb"
    assert tcprules("rqmail", cdb, ':allow,RULE="x"\n').returncode == 0
    s = serve(impl, FLAGS + ["-u", "4321", "-g", "4322", "-x", str(cdb)])
    got = probe(s.port)
    assert got["Uid"] == ["4321"] * 4 and got["Gid"] == ["4322"] * 4 and got["Groups"] == ["4322"]
    assert got["env"]["RULE"] == "x"  # the CDB is read after the drop: 0644 is readable
    # -U takes them from $UID/$GID, which stay in the environment.
    s = serve(impl, FLAGS + ["-U"], env=base_env(UID="4323", GID="4324"))
    got = probe(s.port)
    assert got["Uid"][0] == "4323" and got["Gid"][0] == "4324" and got["env"]["UID"] == "4323"


def test_uid_drop_is_checked_and_names_refused(tmp_path):
    r = subprocess.run([str(BIN / "tcpserver"), "-u", "nobody", "0", "0", PROBE], capture_output=True, text=True, timeout=10)
    assert r.returncode == 100 and "must be a number" in r.stderr and "usage:" in r.stderr
    r = subprocess.run([str(BIN / "tcpserver"), "-u", "", "0", "0", PROBE], capture_output=True, text=True, timeout=10)
    assert r.returncode == 100


@pytest.mark.parametrize("opts,env", [
    (["-u", "4321"], {}),
    (["-u", "4321", "-g", "0"], {}),              # -g 0 means "leave the gid": root's
    (["-U"], {"UID": "4321"}),
    (["-g", "4322", "-U"], {"UID": "4321", "GID": "0"}),
])
def test_uid_without_gid_is_refused(opts, env):
    """Issue 12 item 17: 0.88's -u without -g runs the program with gid 0 and root's
    groups; rqmail refuses to start (usage, exit 100)."""
    r = subprocess.run([str(BIN / "tcpserver"), *opts, "127.0.0.1", "0", PROBE], capture_output=True, text=True,
                       timeout=5, env=base_env(**env))
    assert r.returncode == 100, r.stderr
    assert r.stderr.startswith("tcpserver: fatal: -u without -g ") and "\ntcpserver: usage: tcpserver " in r.stderr


def test_unreadable_cdb_after_drop(serve, open_dir):
    """The CDB is read after the drop: one only root can read drops the connection,
    even with -X."""
    need_root()
    cdb = open_dir / "r.cdb"
    assert tcprules("rqmail", cdb, ":allow\n").returncode == 0
    os.chmod(cdb, 0o600)
    s = serve("rqmail", FLAGS + ["-X", "-u", "4321", "-g", "4321", "-x", str(cdb)])
    assert talk(s.port) == b""
    s.wait_log(lambda t: f"unable to read {cdb}: access denied" in t and "status 28416" in t)


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_rules_recompiled_while_serving(serve, tmp_path, impl):
    cdb = tmp_path / "r.cdb"
    assert tcprules("rqmail", cdb, ':allow,RULE="one"\n').returncode == 0
    s = serve(impl, FLAGS + ["-x", str(cdb)])
    assert probe(s.port)["env"]["RULE"] == "one"
    assert tcprules(impl, cdb, ':allow,RULE="two"\n').returncode == 0
    assert probe(s.port)["env"]["RULE"] == "two"
    assert tcprules(impl, cdb, "127.0.0.1:deny\n").returncode == 0
    assert talk(s.port) == b""
    assert s.proc.poll() is None


@pytest.mark.parametrize("case", ["missing", "missing-X", "garbage", "directory"])
def test_bad_cdb(serve, tmp_path, case):
    path = tmp_path / "r.cdb"
    opts = FLAGS + ["-x", str(path)]
    if case == "missing-X":
        opts.append("-X")
    if case == "garbage":
        path.write_bytes(b"\x01" * 3000)
    if case == "directory":
        path.mkdir()
    s = serve("rqmail", opts)
    if case == "missing-X":
        assert probe(s.port).get("END")
        return
    assert talk(s.port) == b""
    reason = {"missing": "file does not exist", "garbage": "protocol error", "directory": "is a directory"}[case]
    log = s.wait_log(lambda t: "status 28416" in t)
    assert f"tcpserver: warning: dropping connection, unable to read {path}: {reason}" in log
    assert probe(s.port) == {"env": {}}  # still serving, still dropping


def test_client_that_vanishes_at_once(serve):
    s = serve("rqmail", FLAGS, prog=[PROBE])
    for _ in range(20):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        c.connect(("127.0.0.1", s.port))
        c.close()
    assert probe(s.port).get("END")
    log = s.wait_log(lambda t: t.count(" end ") >= 21 and t.rstrip().endswith("status: 0/40"))
    assert s.proc.poll() is None and "fatal" not in log


def test_two_hundred_connections(serve):
    s = serve("rqmail", FLAGS + ["-c", "10"], prog=[PROBE, "-"])
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        results = list(ex.map(lambda _: talk(s.port), range(200)))
    assert results == [b"ok\n"] * 200
    log = s.wait_log(lambda t: t.count(" end ") == 200)
    assert log.count(" ok ") == 200 and log.count("status 0") == 200
    assert max(int(n) for n in re.findall(r"status: (\d+)/10", log)) <= 10


def test_sigterm_stops_accepting_children_finish(serve):
    s = serve("rqmail", FLAGS, prog=[PROBE, "0.5"])
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    s.wait_log(lambda t: " ok " in t)
    os.kill(s.proc.pid, signal.SIGTERM)
    assert s.proc.wait(timeout=5) == 0
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    assert data.endswith(b"END\n")  # the child kept serving
    with pytest.raises(ConnectionRefusedError):
        talk(s.port)


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_banner_and_inherited_descriptors(serve, impl):
    s = serve(impl, FLAGS + ["-B", "220 hi\r\n"])
    out = talk(s.port)
    assert out.startswith(b"220 hi\r\nENV ")
    s = serve(impl, FLAGS + ["-B", "220 x\\r\\n"])
    assert talk(s.port).startswith(b"220 x\\r\\nENV ")


def run_tcpserver(impl, *args, timeout=10):
    return subprocess.run([str(impl_dir(impl) / "tcpserver"), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [["-Z", "0", "25", "x"], ["0", "25"], ["0"], []])
def test_usage_errors_match_debian(args):
    ours, theirs = run_tcpserver("rqmail", *args), run_tcpserver("debian", *args)
    assert ours.returncode == theirs.returncode == 100
    assert ours.stderr == theirs.stderr


def test_fatal_errors_match_debian(serve):
    s = serve("rqmail", FLAGS)
    for args in (["127.0.0.1", str(s.port), "x"], ["127.0.0.1", "no-such-service-x", "x"]):
        ours, theirs = run_tcpserver("rqmail", *args), run_tcpserver("debian", *args)
        assert ours.returncode == theirs.returncode == 111
        assert ours.stderr == theirs.stderr
    assert "unable to bind: address already used" in ours.stderr or "port number" in ours.stderr


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_program_that_cannot_run(serve, impl):
    s = serve(impl, FLAGS, prog=["/nonexistent/prog"])
    assert talk(s.port) == b""
    log = s.wait_log(lambda t: "status 28416" in t)
    assert "tcpserver: warning: dropping connection, unable to run /nonexistent/prog: file does not exist" in log


def test_quiet_prints_nothing(serve):
    s = serve("rqmail", ["-q", "-H", "-R", "-l", "0"], prog=["/nonexistent/prog"])
    talk(s.port)
    time.sleep(0.2)
    assert s.log() == ""


def test_seeds_softlimit(serve, tmp_path):
    """tcpserver and a static child run under `softlimit -m 2000000`, also with a rules
    CDB far larger than the limit (mapped for the lookup only)."""
    need(Path("/usr/bin/softlimit").exists(), "daemontools softlimit")
    cdb = tmp_path / "big.cdb"
    lines = "".join(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:allow,X=\"{i}\"\n" for i in range(200000))
    assert tcprules("rqmail", cdb, lines + '127.0.0.1:allow,RULE="big"\n').returncode == 0
    assert cdb.stat().st_size > 4_000_000
    exe = ["/usr/bin/softlimit", "-m", "2000000", str(BIN / "tcpserver")]
    p = subprocess.Popen(exe + ["-1", *FLAGS, "-x", str(cdb), "127.0.0.1", "0", PROBE],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        port = int(p.stdout.readline())
        got = probe(port)
        assert got["env"]["RULE"] == "big" and got.get("END")
        # The child program got the limit as the admin set it, not the raised one.
        assert got["LIMIT_AS"] == "2000000"
        assert re.search(r"Max address space\s+2000000", Path(f"/proc/{p.pid}/limits").read_text())
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
