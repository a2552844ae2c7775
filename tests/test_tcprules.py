"""tcprules and tcprulescheck: CDBs byte-identical to Debian's, usable in both
directions, CIDR, bad lines refused with their line number while the old CDB stays,
a million lines, and tcprulescheck's report."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, impl_dir, need, probe, talk, tcprules

SEED = '127.0.0.1:allow,RELAYCLIENT=""\n192.168.10.:allow,RELAYCLIENT=""\n:allow\n'

REFERENCE = """# every form of the reference, and 0.88's quirks
127.0.0.1:allow,RELAYCLIENT=""
192.168.10.:allow,RELAYCLIENT=''
10.1.2.3-5:deny
10.2-3.:allow,RBLSMTPD="-no mail from you"
=mail.example.com:allow,RELAYCLIENT="",SMTPAUTH="1"
=.example.org:deny
joe@127.0.0.2:allow,WHO=/joe/
@127.0.0.9:allow
172.16.0.1:allow,A="1",B='two',C=|x y|,D=""
10.9.9.9:deny,FOO="bar"
172.16.0.2:allow   \t
1.2.3.4:deny
1.2.3.4:allow,X="second"
1.2.3.-2:allow
1.2.3.250-300:allow
1.2.4.9-2:allow
=a-b.example:allow
x@1.2.3.4-5:allow
127.0.0.3 :allow
allowx
   spaced line
1.2.3.5:allow,FOO="a,b",N=%with spaces and "quotes"%

:allow
"""


def dump(cdb):
    """Key/value pairs in file order, with tinycdb's `cdb -d`."""
    need(Path("/usr/bin/cdb").exists(), "tinycdb")
    return subprocess.run(["/usr/bin/cdb", "-d", str(cdb)], capture_output=True, check=True).stdout


@pytest.mark.parametrize("text", [SEED, REFERENCE, "", "# only a comment\n", ":deny"])
def test_byte_identical_to_debian(tmp_path, text):
    ours, theirs = tmp_path / "ours.cdb", tmp_path / "theirs.cdb"
    assert tcprules("rqmail", ours, text).returncode == 0
    assert tcprules("debian", theirs, text).returncode == 0
    assert ours.read_bytes() == theirs.read_bytes()
    assert dump(ours) == dump(theirs)
    if text == SEED:
        assert hashlib.sha256(ours.read_bytes()).hexdigest() == \
            "e60d760964801b7654bf229192e5b5dd8358ea5e6a452810023c6a93cfeb0368"
    if text == "":
        assert len(ours.read_bytes()) == 2048
    assert not Path(str(ours) + ".tmp").exists()


def test_debian_cdb_in_our_tcpserver(serve, tmp_path):
    cdb = tmp_path / "d.cdb"
    assert tcprules("debian", cdb, REFERENCE).returncode == 0
    s = serve("rqmail", ["-H", "-R", "-l", "0", "-x", str(cdb)])
    assert probe(s.port, src="127.0.0.1")["env"]["RELAYCLIENT"] == ""
    assert talk(s.port, src="127.0.0.3") != b""  # key '127.0.0.3 ' never matches: default allow
    empty = tmp_path / "e.cdb"
    assert tcprules("debian", empty, "").returncode == 0
    s = serve("rqmail", ["-H", "-R", "-l", "0", "-x", str(empty)])
    assert probe(s.port).get("END")


def test_cidr_pairs_and_use_in_debian_tcpserver(serve, tmp_path):
    cdb = tmp_path / "c.cdb"
    text = '127.0.8.0/22:allow,RULE="v4cidr"\n127.0.12.64/26:deny\n2001:db8::/48:allow,RULE="v6"\n:allow,RULE="d"\n'
    assert tcprules("rqmail", cdb, text).returncode == 0
    pairs = dump(cdb)
    for key in (b"127.0.8.", b"127.0.9.", b"127.0.10.", b"127.0.11.", b"127.0.12.64", b"127.0.12.127",
                b"2001:db8:0:", b"2001:db8::"):
        assert b":" + key + b"->" in pairs, key
    assert b":127.0.12.128->" not in pairs and b":127.0.7.->" not in pairs
    s = serve("debian", ["-H", "-R", "-l", "0", "-x", str(cdb)])
    assert probe(s.port, src="127.0.10.200")["env"]["RULE"] == "v4cidr"
    assert probe(s.port, src="127.0.12.1")["env"]["RULE"] == "d"
    assert talk(s.port, src="127.0.12.100") == b""


BAD = [
    ('1.2.3.4:allow,X="unterminated', "no closing"),
    ("1.2.3.4:Allow", "allow or deny"),
    ("1.2.3.4:allowx", "comma"),
    (":allow\r", "carriage return"),
    ('1.2.3.4:allow,FOO BAR="x"', "variable name"),
    ('1.2.3.4:allow,X="a\0+PATH=/evil"', "NUL"),
    ("1.2.3.a-b:allow", "range"),
    ("10.0.0.1/24:allow", "bits set"),
    ("2001:db8::/80:allow", "cannot be told apart"),
]


@pytest.mark.parametrize("line,reason", BAD)
def test_bad_line_names_its_number_and_keeps_old_cdb(tmp_path, line, reason):
    cdb = tmp_path / "r.cdb"
    assert tcprules("rqmail", cdb, SEED).returncode == 0
    before, inode = cdb.read_bytes(), cdb.stat().st_ino
    r = tcprules("rqmail", cdb, "# ok\n127.0.0.2:allow\n" + line + "\n:deny\n")
    assert r.returncode == 100
    msg = r.stderr.decode(errors="replace")
    assert msg.startswith("tcprules: fatal: unable to parse this line: ") and "line 3: " in msg and reason in msg
    assert cdb.read_bytes() == before and cdb.stat().st_ino == inode
    assert not Path(str(cdb) + ".tmp").exists()


def test_replaced_atomically_by_rename(tmp_path):
    cdb = tmp_path / "r.cdb"
    assert tcprules("rqmail", cdb, SEED).returncode == 0
    inode = cdb.stat().st_ino
    assert tcprules("rqmail", cdb, ":deny\n").returncode == 0
    assert cdb.stat().st_ino != inode


def test_system_errors_are_temporary(tmp_path):
    r = subprocess.run([str(BIN / "tcprules"), str(tmp_path / "r.cdb"), str(tmp_path / "no/such/dir.tmp")],
                       input=b":allow\n", capture_output=True)
    assert r.returncode == 111 and b"tcprules: fatal: unable to create" in r.stderr
    r = subprocess.run([str(BIN / "tcprules"), str(tmp_path / "r.cdb")], capture_output=True)
    assert r.returncode == 100 and r.stderr == b"tcprules: usage: tcprules rules.cdb rules.tmp\n"


def test_huge_value_and_long_file(tmp_path):
    cdb = tmp_path / "r.cdb"
    big = "x" * 1_000_000
    assert tcprules("rqmail", cdb, f'1.2.3.4:allow,BIG="{big}"\n').returncode == 0
    out = subprocess.run([str(BIN / "tcprulescheck"), str(cdb)], env={"TCPREMOTEIP": "1.2.3.4"},
                         capture_output=True, text=True).stdout
    assert out == f"rule 1.2.3.4:\nset environment variable BIG={big}\nallow connection\n"


def test_million_lines(tmp_path):
    lines = "".join(f"{i % 200 + 1}.{i // 40000 % 256}.{i // 200 % 200}.{i % 97}:allow,N=\"{i}\"\n" if i % 3 else
                    f"=host{i}.example.com:deny\n" for i in range(1_000_000))
    ours, theirs = tmp_path / "ours.cdb", tmp_path / "theirs.cdb"
    assert tcprules("rqmail", ours, lines).returncode == 0
    assert tcprules("debian", theirs, lines).returncode == 0
    assert ours.read_bytes() == theirs.read_bytes()
    out = subprocess.run([str(BIN / "tcprulescheck"), str(ours)],
                         env={"TCPREMOTEIP": "127.0.0.1", "TCPREMOTEHOST": "host999999.example.com"},
                         capture_output=True, text=True).stdout
    assert out == "rule =host999999.example.com:\ndeny connection\n"


CHECKS = [
    {"TCPREMOTEIP": "127.0.0.1"},
    {"TCPREMOTEIP": "10.1.2.4"},
    {"TCPREMOTEIP": "10.3.7.7"},
    {"TCPREMOTEIP": "10.9.9.9"},
    {"TCPREMOTEIP": "172.16.0.1"},
    {"TCPREMOTEIP": "127.0.0.2", "TCPREMOTEINFO": "joe"},
    {"TCPREMOTEIP": "127.0.0.9", "TCPREMOTEINFO": ""},
    {"TCPREMOTEIP": "8.8.8.8", "TCPREMOTEHOST": "mx.example.org"},
    {"TCPREMOTEIP": "8.8.8.8", "TCPREMOTEHOST": "mail.example.com"},
    {},
]


@pytest.mark.parametrize("env", CHECKS)
def test_tcprulescheck_matches_debian(tmp_path, env):
    cdb = tmp_path / "r.cdb"
    assert tcprules("rqmail", cdb, REFERENCE).returncode == 0
    ours = subprocess.run([str(BIN / "tcprulescheck"), str(cdb)], env=env, capture_output=True)
    theirs = subprocess.run([str(impl_dir("debian") / "tcprulescheck"), str(cdb)], env=env, capture_output=True)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
    assert ours.stdout.endswith(b"connection\n")


def test_tcprulescheck_errors_match_debian(tmp_path):
    for args in ([], [str(tmp_path / "missing.cdb")]):
        ours = subprocess.run([str(BIN / "tcprulescheck"), *args], capture_output=True)
        theirs = subprocess.run([str(impl_dir("debian") / "tcprulescheck"), *args], capture_output=True)
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)
        assert ours.returncode in (100, 111)


# Issue 12 item 9: a block that is not octet-aligned expands to exact addresses; a more
# specific line must win over it in whichever order the two are written, in our
# tcpserver and in Debian's reading the same CDB.
SHADOW = [
    ('127.0.20.0/25:allow,RULE="block"\n127.0.20.13:deny\n', {"127.0.20.12": "block", "127.0.20.13": None}),
    ('127.0.20.13:deny\n127.0.20.0/25:allow,RULE="block"\n', {"127.0.20.12": "block", "127.0.20.13": None}),
    ('127.0.20.0/25:allow,RULE="wide"\n127.0.20.0/28:deny\n127.0.20.0/27:allow,RULE="mid"\n',
     {"127.0.20.13": None, "127.0.20.16": "mid", "127.0.20.100": "wide"}),
    ('127.0.16.0/20:deny\n127.0.20.:allow,RULE="c"\n127.0.18.0/23:allow,RULE="b"\n',
     {"127.0.20.13": "c", "127.0.19.1": "b", "127.0.17.1": None}),
    ('127.0.20.0/25:allow,RULE="first"\n127.0.20.0/25:deny\n', {"127.0.20.13": "first"}),
]


@pytest.mark.parametrize("text,want", SHADOW)
def test_more_specific_line_beats_a_cidr_block_in_any_order(serve, tmp_path, text, want):
    cdb = tmp_path / "r.cdb"
    assert tcprules("rqmail", cdb, text + ':allow,RULE="default"\n').returncode == 0
    for impl in ("rqmail", "debian"):
        for ip, rule in want.items():
            out = subprocess.run([str(impl_dir(impl) / "tcprulescheck"), str(cdb)], env={"TCPREMOTEIP": ip},
                                 capture_output=True, text=True).stdout
            assert out.endswith("deny connection\n" if rule is None else
                                f"set environment variable RULE={rule}\nallow connection\n"), (impl, ip, out)
        s = serve(impl, ["-H", "-R", "-l", "0", "-x", str(cdb)])
        for ip, rule in want.items():
            if rule is None:
                assert talk(s.port, src=ip) == b"", (impl, ip)
            else:
                assert probe(s.port, src=ip)["env"]["RULE"] == rule, (impl, ip)
