"""What the child sees: the TCP* environment and the rules' variables, for allowed,
denied, prefix, range, CIDR and IPv6 clients, with rqmail's tcpserver and Debian's
side by side on the same CDB; log lines in ucspi-tcp's exact format."""

import re

import pytest

from conftest import base_env, need_root, probe, talk, tcp_env, tcprules

RULES = """# test rules
127.0.0.1:allow,RELAYCLIENT="",RULE="exact"
127.0.0.5:deny
127.0.1.:allow,RULE="prefix"
127.0.2.10-20:allow,RULE="range"
127.0.3.0/24:allow,RULE='cidr'
@127.0.0.6:allow,RULE="info"
=host1.test:allow,RULE="host"
=.example.test:allow,RULE="domain"
127.0.0.4:allow,TCPLOCALHOST="overridden",RULE="override"
:allow,RULE="default"
"""

SEED_FLAGS = ["-H", "-R", "-l", "0", "-v", "-p"]


def expect(ip, rule, **more):
    env = {"PROTO": "TCP", "TCPLOCALHOST": "0", "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": "*",
           "TCPREMOTEIP": ip, "TCPREMOTEPORT": "*", "RULE": rule}
    env.update(more)
    return env


CASES = [
    ("127.0.0.1", expect("127.0.0.1", "exact", RELAYCLIENT="")),
    ("127.0.1.7", expect("127.0.1.7", "prefix")),
    ("127.0.2.15", expect("127.0.2.15", "range")),
    ("127.0.2.21", expect("127.0.2.21", "default")),
    ("127.0.3.77", expect("127.0.3.77", "cidr")),
    ("127.0.4.1", expect("127.0.4.1", "default")),
    ("127.0.0.4", expect("127.0.0.4", "override", TCPLOCALHOST="overridden")),
]


@pytest.fixture
def cdb(tmp_path):
    path = tmp_path / "rules.cdb"
    r = tcprules("rqmail", path, RULES)
    assert r.returncode == 0, r.stderr
    return path


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_env_per_client(serve, cdb, impl):
    s = serve(impl, SEED_FLAGS + ["-x", str(cdb)])
    for src, want in CASES:
        got = probe(s.port, src=src)
        assert got.get("END"), (src, got)
        assert tcp_env(got) == want, src
    # Denied: the client sees a bare close and the log says deny.
    assert talk(s.port, src="127.0.0.5") == b""
    s.wait_log(lambda t: " deny " in t and "status 25600" in t)


def normalise(log):
    """Log lines with pids and ports replaced, to compare two implementations."""
    out = []
    for line in log.splitlines():
        line = re.sub(r"\b(pid|ok|deny|end) \d+", r"\1 PID", line)
        line = re.sub(r":\d+$", ":PORT", line)
        line = re.sub(r"(127\.0\.0\.1|\]):\d+ ", r"\1:PORT ", line)
        out.append(line)
    return out


def test_log_lines_match_debian(serve, cdb):
    logs = {}
    for impl in ("rqmail", "debian"):
        s = serve(impl, SEED_FLAGS + ["-x", str(cdb)])
        for src in ("127.0.0.1", "127.0.0.5", "127.0.2.15"):
            talk(s.port, src=src)
            s.wait_log(lambda t, n=src: t.count("status: 0/40") >= 1 + ["127.0.0.1", "127.0.0.5", "127.0.2.15"].index(n) + 1)
        logs[impl] = normalise(s.log())
    assert logs["rqmail"] == logs["debian"]
    assert "tcpserver: ok PID 0:127.0.0.1:PORT :127.0.0.1::PORT" in logs["rqmail"]
    assert "tcpserver: end PID status 25600" in logs["rqmail"]


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_no_rules_no_flags_inherited_vars_removed(serve, impl):
    """Without -x everyone is allowed; an inherited TCPREMOTEHOST disappears under -H."""
    env = base_env(TCPREMOTEHOST="stale", KEEPME="yes")
    s = serve(impl, ["-H", "-R", "-l", "0"], env=env)
    got = probe(s.port)
    assert "TCPREMOTEHOST" not in got["env"] and "TCPREMOTEINFO" not in got["env"]
    assert got["env"]["KEEPME"] == "yes"
    assert got["FDS"].split()[:3] == ["0", "1", "2"]


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_dns_names_and_paranoia(serve, dnsmasq, cdb, impl):
    """-h looks up PTR names (and rules on =host / =.domain apply); -p drops a name
    whose A record does not lead back; without -l the local name is looked up too."""
    s = serve(impl, ["-h", "-p", "-R", "-v", "-x", str(cdb)], env=base_env(DNSCACHEIP=dnsmasq))
    one = tcp_env(probe(s.port, src="127.0.0.1"))
    assert one["TCPREMOTEHOST"] == "host1.test" and one["TCPLOCALHOST"] == "host1.test"
    assert one["RULE"] == "exact"  # the IP key comes before =host
    three = tcp_env(probe(s.port, src="127.0.0.3"))
    assert three["TCPREMOTEHOST"] == "mx.sub.example.test" and three["RULE"] == "domain"
    liar = tcp_env(probe(s.port, src="127.0.0.2"))
    assert "TCPREMOTEHOST" not in liar and liar["RULE"] == "default"
    log = s.wait_log(lambda t: t.count(" ok ") >= 3)
    assert re.search(r"ok \d+ host1\.test:127\.0\.0\.1:\d+ mx\.sub\.example\.test:127\.0\.0\.3::\d+", log)
    # Without -p the liar keeps its name.
    s2 = serve(impl, ["-h", "-P", "-R", "-l", "0"], env=base_env(DNSCACHEIP=dnsmasq))
    assert tcp_env(probe(s2.port, src="127.0.0.2"))["TCPREMOTEHOST"] == "liar.test"


@pytest.mark.parametrize("impl", ["rqmail", "debian"])
def test_ident(serve, cdb, impl):
    """-r asks the client's identd: the user id after the third colon, spaces dropped;
    an error reply sets TCPREMOTEINFO empty, which makes the @IP rule eligible."""
    need_root()  # identd must listen on port 113
    import socket
    import threading
    replies = {"127.0.0.7": b"%s : USERID : UNIX , UTF-8 :  j o:e \r\n", "127.0.0.6": b"%s : ERROR : NO-USER\r\n"}
    servers = []
    for ip, reply in replies.items():
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((ip, 113))
        ls.listen(5)
        ls.settimeout(10)
        servers.append(ls)

        def answer(ls=ls, reply=reply):
            try:
                c, _ = ls.accept()
                q = c.recv(100).strip()
                c.sendall(reply % q)
                c.close()
            except OSError:
                pass
        threading.Thread(target=answer, daemon=True).start()
    try:
        s = serve(impl, ["-H", "-r", "-t", "5", "-l", "0", "-v", "-x", str(cdb)])
        joe = tcp_env(probe(s.port, src="127.0.0.7"))
        assert joe["TCPREMOTEINFO"] == "jo:e"
        err = tcp_env(probe(s.port, src="127.0.0.6"))
        assert err["TCPREMOTEINFO"] == "" and err["RULE"] == "info"
        nobody = tcp_env(probe(s.port, src="127.0.0.8"))  # no identd there
        assert "TCPREMOTEINFO" not in nobody
        assert re.search(r"ok \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.7:jo\?e:\d+", s.log())
    finally:
        for ls in servers:
            ls.close()


V6RULES = """::1:allow,RULE="v6exact"
2001:db8::/32:allow,RULE="v6cidr"
127.0.0.1:allow,RULE="v4"
:allow,RULE="default"
"""


@pytest.mark.parametrize("impl", ["rqmail", "debian6"])
def test_ipv6_client(serve, tmp_path, impl):
    cdb = tmp_path / "v6.cdb"
    assert tcprules("rqmail", cdb, V6RULES).returncode == 0
    s = serve(impl, ["-H", "-R", "-l", "0", "-v", "-x", str(cdb)], host="::1")
    got = tcp_env(probe(s.port, host="::1"))
    assert got == {"PROTO": "TCP6", "TCPLOCALHOST": "0", "TCPLOCALIP": "::1", "TCPLOCALPORT": "*",
                   "TCPREMOTEIP": "::1", "TCPREMOTEPORT": "*", "TCP6LOCALHOST": "0", "TCP6LOCALIP": "::1",
                   "TCP6LOCALPORT": "*", "TCP6REMOTEIP": "::1", "TCP6REMOTEPORT": "*", "RULE": "v6exact"}
    assert re.search(r"ok \d+ 0:::1:\d+ :::1::\d+", s.log())


def test_dual_stack_wildcard(serve, tmp_path):
    """Host 0 listens on :: for both families; IPv4 clients look exactly as with 0.88."""
    cdb = tmp_path / "v6.cdb"
    assert tcprules("rqmail", cdb, V6RULES).returncode == 0
    s = serve("rqmail", ["-H", "-R", "-l", "0", "-v", "-x", str(cdb)], host="0")
    v4 = tcp_env(probe(s.port, host="127.0.0.1"))
    assert v4["PROTO"] == "TCP" and v4["TCPREMOTEIP"] == "127.0.0.1" and v4["RULE"] == "v4"
    assert not any(k.startswith("TCP6") for k in v4)
    v6 = tcp_env(probe(s.port, host="::1"))
    assert v6["PROTO"] == "TCP6" and v6["RULE"] == "v6exact"
    assert re.search(r"ok \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+", s.log())


def test_ipv6_tcprules_matches_debian6(tmp_path):
    """The IPv6 build's tcprules and ours write the same bytes for IPv6 rule lines."""
    text = '::1:allow,RULE="v6exact"\n2001:db8::5:deny\n:allow\n'
    ours, theirs = tmp_path / "a.cdb", tmp_path / "b.cdb"
    assert tcprules("rqmail", ours, text).returncode == 0
    assert tcprules("debian6", theirs, text).returncode == 0
    assert ours.read_bytes() == theirs.read_bytes()
