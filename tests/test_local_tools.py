"""The tools of .qmail files and admins, run as built in bin/: qmail-newu's users/cdb
checked record by record with Debian's tinycdb (`cdb -d`) and byte by byte against
qmail's cdbmake layout, malformed assign files refused with the old cdb kept;
qmail-pw2u from a test passwd file (numeric test users, never the system's);
preline, forward, condredirect, bouncesaying and except with their exit-code
contracts and, for the two that queue, the exact envelope in a real queue;
maildirmake and maildir2mbox, with the mbox lock held by another process."""

import fcntl
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, IS_ROOT, TEST_GROUPS, need, need_root

RECEIVED = b"Received: (qmail "


def run(prog, *args, input=b"", env=None, stdin=None, timeout=30):
    kw = {"stdin": stdin} if stdin is not None else {"input": input}
    argv = [str(BIN / prog), *(a if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, env=env, timeout=timeout, **kw)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QMAIL", "MAIL", "ERROR_FD")) and k not in
           ("UFLINE", "RPLINE", "DTLINE", "SENDER", "NEWSENDER")}
    env.update(extra)
    return env


# --- qmail-newu ----------------------------------------------------------------------

def cdb_hash(key):
    h = 5381
    for c in key:
        h = ((h << 5) + h ^ c) & 0xFFFFFFFF
    return h


def qmail_cdbmake(records):
    """The file qmail 1.03's cdbmss writes for `records` in order: the 2048-byte
    header, the records, then 256 tables of twice as many slots as entries, each
    entry at (hash >> 8) % slots, probing forward, in insertion order."""
    body, pos, buckets = b"", 2048, [[] for _ in range(256)]
    for k, v in records:
        h = cdb_hash(k)
        buckets[h & 255].append((h, pos))
        body += struct.pack("<LL", len(k), len(v)) + k + v
        pos += 8 + len(k) + len(v)
    header, tables = b"", b""
    for b in buckets:
        n = 2 * len(b)
        header += struct.pack("<LL", pos + len(tables), n)
        slots = [(0, 0)] * n
        for h, p in b:
            w = (h >> 8) % n
            while slots[w][1]:
                w = (w + 1) % n
            slots[w] = (h, p)
        tables += b"".join(struct.pack("<LL", h, p) for h, p in slots)
    return header + body + tables


def cdb_dump(path):
    """Every (key, data) of a cdb in file order, as Debian's tinycdb dumps it."""
    need(Path("/usr/bin/cdb").exists(), "Debian's tinycdb (cdb)")
    out = subprocess.run(["/usr/bin/cdb", "-d", str(path)], capture_output=True, check=True).stdout
    records, i = [], 0
    while out[i:i + 1] == b"+":
        comma, colon = out.index(b",", i), out.index(b":", i)
        klen, dlen = int(out[i + 1:comma]), int(out[comma + 1:colon])
        k = out[colon + 1:colon + 1 + klen]
        assert out[colon + 1 + klen:colon + 3 + klen] == b"->"
        d = out[colon + 3 + klen:colon + 3 + klen + dlen]
        i = colon + 3 + klen + dlen
        assert out[i:i + 1] == b"\n"
        i += 1
        records.append((k, d))
    assert out[i:] == b"\n"
    return records


ASSIGN = (b"=Joe.Shmoe:joe:503:78:/home/joe:::\n"
          b"+joe-:joe:507:100:/home/joe:-::\n"
          b"=alias:alias:7790:7781:/var/qmail/alias:::\n"
          b"+list=:lists:7791:7781:/home/lists:-:list-:\n"
          b"+Big-X:big:7792:7781:/home/big:-:x:ignored after the sixth colon\n"
          b"joe:joe:503:78:/home/joe:::\n"
          b"+:alias:7790:7781:/var/qmail/alias:-::\n"
          b"=Joe.Shmoe:second:1:1:/second:::\n"
          b"+ann-:ann:7793:7781:/home/ann:-::\n"
          b".\n"
          b"=after:the:1:1:/dot:::\n")

# Written by hand from qmail-users(5) and qmail-newu(8): `=` keys end in NUL, `+` keys
# do not, both lowercased after `!`; the first character is dropped whatever it is;
# the six fields NUL-separated; the empty key lists the `+` prefixes' last characters
# (as written), each once, in order; the catch-all adds none; nothing after `.`.
EXPECTED = [
    (b"!joe.shmoe\0", b"joe\x00503\x0078\0/home/joe\0\0"),
    (b"!joe-", b"joe\x00507\x00100\0/home/joe\0-\0"),
    (b"!alias\0", b"alias\x007790\x007781\0/var/qmail/alias\0\0"),
    (b"!list=", b"lists\x007791\x007781\0/home/lists\0-\0list-"),
    (b"!big-x", b"big\x007792\x007781\0/home/big\0-\0x"),
    (b"!oe\0", b"joe\x00503\x0078\0/home/joe\0\0"),
    (b"!", b"alias\x007790\x007781\0/var/qmail/alias\0-\0"),
    (b"!joe.shmoe\0", b"second\x001\x001\0/second\0\0"),
    (b"!ann-", b"ann\x007793\x007781\0/home/ann\0-\0"),
    (b"", b"-=X"),
]


@pytest.fixture
def users(tmp_path):
    (tmp_path / "users").mkdir()
    return tmp_path


def newu(home, assign=None):
    if assign is not None:
        (home / "users" / "assign").write_bytes(assign)
    return run("qmail-newu", env=clean_env(QMAILHOME=str(home)))


def test_newu_writes_qmails_records_and_layout(users):
    r = newu(users, ASSIGN)
    assert (r.returncode, r.stderr, r.stdout) == (0, b"", b"")
    cdb = users / "users" / "cdb"
    assert cdb_dump(cdb) == EXPECTED
    # Byte for byte qmail-newu's file: qmail's cdbmake layout of the same records.
    assert cdb.read_bytes() == qmail_cdbmake(EXPECTED)
    assert cdb.stat().st_mode & 0o777 == 0o644
    assert not (users / "users" / "cdb.tmp").exists()
    # A lookup by another cdb reader finds what qmail-lspawn will.
    q = subprocess.run(["/usr/bin/cdb", "-q", str(cdb), "!joe-"], capture_output=True)
    assert q.stdout == b"joe\x00507\x00100\0/home/joe\0-\0"


def test_newu_replaces_the_cdb_by_rename(users):
    assert newu(users, b"=a:a:1:1:/a:::\n.\n").returncode == 0
    old = (users / "users" / "cdb").stat().st_ino
    assert newu(users, b"=b:b:2:2:/b:::\n.\n").returncode == 0
    assert (users / "users" / "cdb").stat().st_ino != old
    assert cdb_dump(users / "users" / "cdb") == [(b"!b\0", b"b\x002\x002\0/b\0\0"), (b"", b"")]


@pytest.mark.parametrize("assign,line", [
    (b"=a:a:1:1:/a:::\n", None),                      # no . line
    (b"=a:a:1:1:/a:::\n=b:b:1:1:/b:::", 2),           # the last line has no newline
    (b"", None),                                      # empty
    (b"=a:a:1:1:/a::\n.\n", 1),                       # one colon short
    (b"=a:a:1:1:/a:::\n:a:1:1:/a:::\n.\n", 2),        # no key
    (b"=a:a:1:1:/a:::\n\n.\n", 2),                    # an empty line
    (b"=a:a:1:1:/a:::\n=b\0:b:1:1:/b:::\n.\n", 2),    # NUL
    (b"=a:a:1:1:/a:::\n=b:b:1:1:/b:-:x\r:\n.\n", None),  # CR is a byte of the ext, not an error
])
def test_newu_refuses_a_malformed_file_and_keeps_the_old_cdb(users, assign, line):
    assert newu(users, b"=old:old:1:1:/old:::\n.\n").returncode == 0
    cdb = users / "users" / "cdb"
    before = cdb.read_bytes()
    r = newu(users, assign)
    if assign.endswith(b"\r:\n.\n"):
        assert r.returncode == 0
        assert cdb_dump(cdb)[1] == (b"!b\0", b"b\x001\x001\0/b\0-\0x\r")
        return
    where = b"no . line at the end" if line is None else b"line %d" % line
    assert (r.returncode, r.stderr) == (111, b"qmail-newu: fatal: bad format in users/assign: " + where + b"\n")
    assert cdb.read_bytes() == before
    assert not (users / "users" / "cdb.tmp").exists()


def test_newu_without_assign(users):
    r = newu(users)
    assert (r.returncode, r.stderr) == (111, b"qmail-newu: fatal: unable to open users/assign: file does not exist\n")
    assert not (users / "users" / "cdb").exists()


def test_newu_many_lines(users):
    lines = b"".join(b"=user%d:u%d:%d:1:/home/u%d:::\n" % (i, i, 1000 + i, i) for i in range(20000))
    assert newu(users, lines + b"+:alias:7790:7781:/a:-::\n.\n").returncode == 0
    expected = [(b"!user%d\0" % i, b"u%d\0%d\x001\0/home/u%d\0\0" % (i, 1000 + i, i)) for i in range(20000)]
    expected += [(b"!", b"alias\x007790\x007781\0/a\0-\0"), (b"", b"")]
    assert (users / "users" / "cdb").read_bytes() == qmail_cdbmake(expected)


# --- qmail-pw2u ----------------------------------------------------------------------

@pytest.fixture
def pwhome(tmp_path):
    """users/ and homes for the numeric test users, owned by them (as root)."""
    need_root("homes owned by the test users")
    (tmp_path / "users").mkdir()
    homes = tmp_path / "homes"
    for name, uid in [("alias", 7790), ("joe", 7795), ("ann", 7796), ("notmine", 7797)]:
        (homes / name).mkdir(parents=True)
        os.chown(homes / name, uid if name != "notmine" else 7790, TEST_GROUPS["qmail"])
    return tmp_path


def pw2u(home, passwd, *opts):
    return run("qmail-pw2u", *opts, input=passwd, env=clean_env(QMAILHOME=str(home)))


def passwd_for(home):
    h = home / "homes"
    return (f"root:x:0:0:root:/root:/bin/sh\n"
            f"alias:*:7790:7781::{h}/alias:/bin/false\n"
            f"joe:x:7795:7780:Joe:{h}/joe:/bin/sh\n"
            f"ann:x:7796:7780::{h}/ann:/bin/sh\n"
            f"Upper:x:7797:7780::{h}/ann:/bin/sh\n"
            f"notmine:x:7797:7780::{h}/notmine:/bin/sh\n"
            f"gone:x:7798:7780::{h}/gone:/bin/sh\n"
            f"short:x:7794:7780::{h}/joe\n").encode()


def test_pw2u_follows_qmail_getpws_rules(pwhome):
    h = pwhome / "homes"
    r = pw2u(pwhome, passwd_for(pwhome))
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout.decode() == (
        f"+:alias:7790:7781:{h}/alias:-::\n"
        f"=alias:alias:7790:7781:{h}/alias:::\n+alias-:alias:7790:7781:{h}/alias:-::\n"
        f"=joe:joe:7795:7780:{h}/joe:::\n+joe-:joe:7795:7780:{h}/joe:-::\n"
        f"=ann:ann:7796:7780:{h}/ann:::\n+ann-:ann:7796:7780:{h}/ann:-::\n.\n")
    # pw2u | newu: the cdb qmail-lspawn reads.
    assert newu(pwhome, r.stdout).returncode == 0
    dump = dict(cdb_dump(pwhome / "users" / "cdb"))
    assert dump[b"!joe\0"] == f"joe\0007795\0007780\0{h}/joe\0\0".encode()
    assert dump[b""] == b"-"


@pytest.mark.parametrize("opts,present,absent", [
    (["-H"], ["=gone:", "=notmine:"], ["=Upper:", "=root:", "=short:"]),
    (["-H", "-u"], ["=Upper:Upper:7797:7780:"], []),
    (["-u", "-U"], [], ["=Upper:"]),
    (["-C"], ["=joe:"], ["+joe-:", "+alias-:"]),
    (["-c+"], ["+joe+:joe:7795:7780:"], ["+joe-:"]),
    (["-c", "."], ["+joe.:joe:"], []),
    (["-/"], ["+joe-:joe:7795:7780:{h}/joe:-/::\n", "+:alias:7790:7781:{h}/alias:-/::\n"], []),
    (["-o"], ["=joe:"], ["=gone:", "=notmine:"]),
])
def test_pw2u_options(pwhome, opts, present, absent):
    r = pw2u(pwhome, passwd_for(pwhome), *opts)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for p in present:
        assert p.format(h=pwhome / "homes") in out
    for a in absent:
        assert a not in out
    assert out.endswith("\n.\n")


def test_pw2u_failures(pwhome):
    r = pw2u(pwhome, passwd_for(pwhome), "-h")
    assert (r.returncode, r.stderr) == (111, f"qmail-pw2u: fatal: unable to stat {pwhome}/homes/gone\n".encode())
    r = pw2u(pwhome, b"joe:x:7795:7780::/:/bin/sh\n", "-H")
    assert (r.returncode, r.stderr) == (111, b"qmail-pw2u: fatal: unable to find alias user\n")
    r = pw2u(pwhome, b"", "-z")
    assert (r.returncode, r.stderr, r.stdout) == (100, b"qmail-pw2u: illegal option -- z\n", b"")


def test_pw2u_users_files(pwhome):
    h = pwhome / "homes"
    u = pwhome / "users"
    (u / "exclude").write_text("# comments and blank lines do not count\n\nANN \t\n")
    (u / "mailnames").write_text("joe:old\nJOE:joe.shmoe:js\nnobody:x\n")
    (u / "subusers").write_text("help:Joe:helpdesk:\nnocolons\n")
    (u / "append").write_text("=extra:joe:7795:7780:/x:::\n")
    r = pw2u(pwhome, passwd_for(pwhome))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (
        f"+:alias:7790:7781:{h}/alias:-::\n"
        f"=alias:alias:7790:7781:{h}/alias:::\n+alias-:alias:7790:7781:{h}/alias:-::\n"
        f"=joe.shmoe:joe:7795:7780:{h}/joe:::\n+joe.shmoe-:joe:7795:7780:{h}/joe:-::\n"
        f"=js:joe:7795:7780:{h}/joe:::\n+js-:joe:7795:7780:{h}/joe:-::\n"
        f"=help:joe:7795:7780:{h}/joe:-:helpdesk:\n+help-:joe:7795:7780:{h}/joe:-:helpdesk-:\n"
        f"=extra:joe:7795:7780:/x:::\n.\n")
    (u / "include").write_text("alias\nann\n")
    r = pw2u(pwhome, passwd_for(pwhome))
    assert (r.returncode, r.stderr) == (111, b"qmail-pw2u: fatal: unable to find Joe user for subuser\n")
    (u / "subusers").unlink()
    r = pw2u(pwhome, passwd_for(pwhome))
    assert r.returncode == 0 and b"=alias:" in r.stdout and b"ann" not in r.stdout and b"joe.shmoe" not in r.stdout


# --- preline ---------------------------------------------------------------------------

LINES = {"UFLINE": "From a@b.example Thu Feb 01 09:05:07 2024\n", "RPLINE": "Return-Path: <a@b.example>\n",
         "DTLINE": "Delivered-To: joe@example.org\n"}
MESSAGE = b"Subject: hi\n\nFrom here\nbody\n"


@pytest.mark.parametrize("opts,head", [
    ([], "UFLINE RPLINE DTLINE"),
    (["-f"], "RPLINE DTLINE"),
    (["-fr"], "DTLINE"),
    (["-d", "-r"], "UFLINE"),
    (["-frd"], ""),
    (["-fF"], "UFLINE RPLINE DTLINE"),
])
def test_preline_prepends_the_lines(opts, head):
    r = run("preline", *opts, "cat", input=MESSAGE, env=clean_env(**LINES))
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == "".join(LINES[k] for k in head.split()).encode() + MESSAGE


def test_preline_passes_the_exit_code_and_arguments():
    for code in (0, 1, 99, 100, 111):
        r = run("preline", "sh", "-c", f"cat >/dev/null; exit {code}", input=MESSAGE, env=clean_env(**LINES))
        assert r.returncode == code
    # Options after the command are the command's.
    r = run("preline", "-f", "sh", "-c", 'echo "$@"', "sh", "-d", input=b"", env=clean_env(**LINES))
    assert r.stdout == b"-d\n"


def test_preline_failures():
    usage = b"preline: usage: preline cmd [ arg ... ]\n"
    r = run("preline", "cat", env=clean_env(UFLINE="x", RPLINE="y"))
    assert (r.returncode, r.stderr) == (100, usage)
    r = run("preline", env=clean_env(**LINES))
    assert (r.returncode, r.stderr) == (100, usage)
    r = run("preline", "-x", "cat", env=clean_env(**LINES))
    assert (r.returncode, r.stderr) == (100, b"preline: illegal option -- x\n" + usage)
    r = run("preline", "rqmail-no-such-program", env=clean_env(**LINES))
    assert (r.returncode, r.stderr) == (100, b"preline: fatal: unable to run rqmail-no-such-program: file does not exist\n")
    r = run("preline", "sh", "-c", "kill -9 $$", env=clean_env(**LINES))
    assert (r.returncode, r.stderr) == (111, b"preline: fatal: child crashed\n")


# --- forward, condredirect: into a real queue -------------------------------------------

@pytest.fixture
def fhome(qhome, tmp_path):
    msg = tmp_path / "message"
    msg.write_bytes(MESSAGE)
    qhome.message = msg
    return qhome


def qenv(h, **extra):
    return clean_env(**dict({"QMAILHOME": str(h.path), "DTLINE": "Delivered-To: joe@example.org\n"}, **extra))


def queued(h):
    [(records, mess)] = h.todo().values()
    assert records[0].startswith(b"u") and records[1].startswith(b"p")
    assert mess.startswith(RECEIVED)
    return records[2:], mess[mess.index(b"\n") + 1:]


def test_forward_queues_to_every_address(fhome):
    r = run("forward", "ann@example.net", "bob", stdin=open(fhome.message, "rb"),
            env=qenv(fhome, NEWSENDER="joe-owner@example.org", SENDER="ignored@x"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(b"forward: qp ") and r.stderr[12:-1].isdigit() and r.stdout == b""
    records, mess = queued(fhome)
    assert records == [b"Fjoe-owner@example.org", b"Tann@example.net", b"Tbob"]
    assert mess == b"Delivered-To: joe@example.org\n" + MESSAGE


def test_forward_with_an_empty_sender(fhome):
    r = run("forward", "ann@example.net", stdin=open(fhome.message, "rb"), env=qenv(fhome, NEWSENDER=""))
    assert r.returncode == 0, r.stderr
    assert queued(fhome)[0] == [b"F", b"Tann@example.net"]


def test_forward_needs_newsender_and_dtline(fhome):
    r = run("forward", "a@b", env=qenv(fhome))
    assert (r.returncode, r.stderr) == (100, b"forward: fatal: NEWSENDER not set\n")
    env = qenv(fhome, NEWSENDER="x@y")
    del env["DTLINE"]
    r = run("forward", "a@b", env=env)
    assert (r.returncode, r.stderr) == (100, b"forward: fatal: DTLINE not set\n")
    assert fhome.todo() == {}


def test_hostile_bytes_never_make_records(fhome):
    """An environment value or an argument cannot hold NUL; a newline or a `T` after
    one is a byte of that address, never a new record."""
    r = run("forward", "ann@x\nTinjected@evil.org", b"\x01T\xff", stdin=open(fhome.message, "rb"),
            env=qenv(fhome, NEWSENDER="s@x\nTinjected@evil.org\r"))
    assert r.returncode == 0, r.stderr
    records, _ = queued(fhome)
    assert records == [b"Fs@x\nTinjected@evil.org\r", b"Tann@x\nTinjected@evil.org", b"T\x01T\xff"]


@pytest.mark.parametrize("code,exit,text", [
    (31, 100, b"mail server permanently rejected message (#5.3.0)"),
    (71, 111, b"mail server temporarily rejected message (#4.3.0)"),
    (53, 111, b"qq write error or disk full (#4.3.0)"),
])
def test_forward_reports_the_queues_refusal(fhome, tmp_path, code, exit, text):
    qq = tmp_path / "qq"
    qq.write_text(f"#!/bin/sh\ncat >/dev/null\nexit {code}\n")
    qq.chmod(0o755)
    r = run("forward", "a@b", stdin=open(fhome.message, "rb"), env=qenv(fhome, NEWSENDER="x@y", QMAILQUEUE=str(qq)))
    assert (r.returncode, r.stderr) == (exit, b"forward: fatal: " + text + b"\n")


def test_forward_through_a_qmailqueue_standin(fhome, tmp_path):
    qq = tmp_path / "qq"
    qq.write_text(f"#!/bin/sh\ncat > {tmp_path}/msg\ncat <&1 > {tmp_path}/env\nexit 0\n")
    qq.chmod(0o755)
    r = run("forward", "a@b", "c@d", stdin=open(fhome.message, "rb"),
            env=qenv(fhome, NEWSENDER="x@y", QMAILQUEUE=str(qq)))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "env").read_bytes() == b"Fx@y\0Ta@b\0Tc@d\0\0"
    assert (tmp_path / "msg").read_bytes() == b"Delivered-To: joe@example.org\n" + MESSAGE


def test_condredirect_forwards_when_the_program_says_yes(fhome):
    # The program reads the whole message first: condredirect rewinds it.
    r = run("condredirect", "ann@example.net", "sh", "-c", "cat >/dev/null; exit 0",
            stdin=open(fhome.message, "rb"), env=qenv(fhome, SENDER="a@b.example", NEWSENDER="not@used"))
    assert r.returncode == 99, r.stderr
    assert r.stderr.startswith(b"condredirect: qp ")
    records, mess = queued(fhome)
    assert records == [b"Fa@b.example", b"Tann@example.net"]
    assert mess == b"Delivered-To: joe@example.org\n" + MESSAGE


@pytest.mark.parametrize("script,code,err", [
    ("exit 1", 0, b""),
    ("exit 100", 0, b""),
    ("exit 99", 0, b""),
    ("exit 111", 111, b"condredirect: fatal: temporary child error\n"),
    ("kill -9 $$", 111, b"condredirect: fatal: child crashed\n"),
])
def test_condredirect_otherwise_lets_the_qmail_file_go_on(fhome, script, code, err):
    r = run("condredirect", "ann@example.net", "sh", "-c", script, stdin=open(fhome.message, "rb"),
            env=qenv(fhome, SENDER="a@b"))
    assert (r.returncode, r.stderr) == (code, err)
    assert fhome.todo() == {}


def test_condredirect_usage_and_missing_program(fhome):
    r = run("condredirect", "ann@example.net", env=qenv(fhome, SENDER="a@b"))
    assert (r.returncode, r.stderr) == (100, b"condredirect: usage: condredirect newaddress program [ arg ... ]\n")
    r = run("condredirect", "ann@example.net", "rqmail-no-such-program", stdin=open(fhome.message, "rb"),
            env=qenv(fhome, SENDER="a@b"))
    assert (r.returncode, r.stderr) == (0, b"")
    r = run("condredirect", "ann@example.net", "true", stdin=open(fhome.message, "rb"), env=qenv(fhome))
    assert (r.returncode, r.stderr) == (100, b"condredirect: fatal: SENDER not set\n")
    assert fhome.todo() == {}


# --- bouncesaying, except ---------------------------------------------------------------

@pytest.mark.parametrize("args,code,err", [
    ([], 100, b"This address no longer accepts mail.\n"),
    (["sh", "-c", "exit 0"], 100, b"This address no longer accepts mail.\n"),
    (["sh", "-c", "exit 1"], 0, b""),
    (["sh", "-c", "exit 100"], 0, b""),
    (["sh", "-c", "exit 111"], 111, b"bouncesaying: fatal: temporary child error\n"),
    (["sh", "-c", "kill -9 $$"], 111, b"bouncesaying: fatal: child crashed\n"),
    (["rqmail-no-such-program"], 0, b""),
])
def test_bouncesaying(args, code, err):
    r = run("bouncesaying", "This address no longer accepts mail.", *args, input=MESSAGE)
    assert (r.returncode, r.stderr) == (code, err)


def test_bouncesaying_usage():
    r = run("bouncesaying")
    assert (r.returncode, r.stderr) == (100, b"bouncesaying: usage: bouncesaying error [ program [ arg ... ] ]\n")


@pytest.mark.parametrize("code,exit,err", [
    (0, 100, b""), (100, 0, b""), (1, 0, b""), (99, 0, b""),
    (111, 111, b"except: fatal: temporary child error\n"),
])
def test_except(code, exit, err):
    r = run("except", "sh", "-c", f"exit {code}")
    assert (r.returncode, r.stderr) == (exit, err)


def test_except_usage_and_missing_program():
    r = run("except")
    assert (r.returncode, r.stderr) == (100, b"except: usage: except program [ arg ... ]\n")
    assert run("except", "rqmail-no-such-program").returncode == 0


def test_the_qmail_file_tools_run_under_softlimit(fhome, tmp_path):
    """Another user's .qmail runs them under the seeds' softlimit -m 2000000, where
    only static programs start (the programs they run here are rqmail's too); a
    20 MB message streams through."""
    need(Path("/usr/bin/softlimit").exists(), "daemontools' softlimit")
    big = tmp_path / "big"
    big.write_bytes(b"Subject: big\n\n" + b"x" * 999 + b"\n" + (b"y" * 79 + b"\n") * (20 << 20 >> 7))
    size = big.stat().st_size
    dt = b"Delivered-To: joe@example.org\n"

    def limited(*argv, **env):
        argv = [str(a) for a in argv]
        return subprocess.run(["softlimit", "-m", "2000000", *argv], stdin=open(big, "rb"),
                              capture_output=True, env=qenv(fhome, **env), timeout=120)
    # |preline -f forward a@b: preline's lines, then forward's Delivered-To.
    r = limited(BIN / "preline", "-f", BIN / "forward", "a@b", NEWSENDER="x@y", **LINES)
    assert r.returncode == 0, r.stderr
    [(records, mess)] = fhome.todo().values()
    assert records[2:] == [b"Fx@y", b"Ta@b"]
    assert mess[mess.index(b"\n") + 1:].startswith(dt + LINES["RPLINE"].encode() + dt + b"Subject: big\n")
    assert len(mess) - mess.index(b"\n") - 1 == len(dt) * 2 + len(LINES["RPLINE"]) + size
    for f in list((fhome.q / "todo").iterdir()):
        f.unlink()
    # maildirmake is the static program that says yes.
    r = limited(BIN / "condredirect", "c@d", BIN / "maildirmake", tmp_path / "m1", SENDER="x@y")
    assert r.returncode == 99, r.stderr
    [(records, mess)] = fhome.todo().values()
    assert records[2:] == [b"Fx@y", b"Tc@d"] and len(mess) - mess.index(b"\n") - 1 == len(dt) + size
    r = limited(BIN / "bouncesaying", "no", BIN / "maildirmake", tmp_path / "m2")
    assert (r.returncode, r.stderr) == (100, b"no\n")
    r = limited(BIN / "except", BIN / "maildirmake", tmp_path / "m3")
    assert (r.returncode, r.stderr) == (100, b"")


# --- maildirmake, maildir2mbox ---------------------------------------------------------

def test_maildirmake(tmp_path):
    d = tmp_path / "Maildir"
    r = subprocess.run(["sh", "-c", f'umask 0; exec "$0" "$1"', str(BIN / "maildirmake"), str(d)], capture_output=True)
    assert (r.returncode, r.stderr) == (0, b"")
    for sub in ("", "tmp", "new", "cur"):
        assert (d / sub).is_dir() and (d / sub).stat().st_mode & 0o777 == 0o700
    assert sorted(os.listdir(d)) == ["cur", "new", "tmp"]
    r = run("maildirmake", d)
    assert (r.returncode, r.stderr) == (111, f"maildirmake: fatal: unable to mkdir {d}: file already exists\n".encode())
    r = run("maildirmake")
    assert (r.returncode, r.stderr) == (100, b"maildirmake: usage: maildirmake name\n")


def maildir(tmp_path):
    d = tmp_path / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (d / sub).mkdir(parents=True)
    return d


def put(d, name, data, mtime):
    p = d / name
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))
    return p


T = 1706778307  # Thu Feb 01 09:05:07 2024 UTC


def test_maildir2mbox_moves_new_and_cur_oldest_first(tmp_path):
    d = maildir(tmp_path)
    mbox = tmp_path / "mbox"
    mbox.write_bytes(b"From old@x Thu Jan 01 00:00:00 1970\nSubject: old\n\nold\n\n")
    put(d, "cur/2.b:2,S", b"Return-Path: <>\nSubject: bounce\n\nFrom me\n>From you\n", T + 60)
    put(d, "new/1.a", b"Return-Path: <a b@c.example>\nSubject: one\n\nbody\nno newline", T)
    put(d, "new/3.c", b"Subject: no return path\n\nx\n", T + 86400 * 30)
    put(d, "new/.hidden", b"x\n", T)
    fresh = put(d, "new/9.now", b"Subject: too new\n\n", time.time() + 3600)
    stale = put(d, "tmp/dead", b"partial", T)
    r = run("maildir2mbox", env=clean_env(MAILDIR=str(d), MAIL=str(mbox), MAILTMP=str(tmp_path / "mbox.tmp")))
    assert (r.returncode, r.stderr) == (0, b"")
    assert mbox.read_bytes() == (
        b"From old@x Thu Jan 01 00:00:00 1970\nSubject: old\n\nold\n\n"
        b"From a-b@c.example Thu Feb 01 09:05:07 2024\nReturn-Path: <a b@c.example>\nSubject: one\n\nbody\nno newline\n\n"
        b"From MAILER-DAEMON Thu Feb 01 09:06:07 2024\nReturn-Path: <>\nSubject: bounce\n\n>From me\n>>From you\n\n"
        b"From XXX Sat Mar 02 09:05:07 2024\nSubject: no return path\n\nx\n\n")
    assert mbox.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(d / "new")) == [".hidden", "9.now"] and os.listdir(d / "cur") == []
    assert fresh.exists() and not stale.exists() and not (tmp_path / "mbox.tmp").exists()


def test_maildir2mbox_relative_paths_and_nothing_to_do(tmp_path):
    d = maildir(tmp_path)
    env = clean_env(MAILDIR=str(d), MAIL="../mbox", MAILTMP="../mbox.tmp")
    r = run("maildir2mbox", env=env)
    assert r.returncode == 0 and not (tmp_path / "mbox").exists()  # nothing new: MAIL untouched
    put(d, "new/1.a", b"Subject: s\n\nb\n", T)
    assert run("maildir2mbox", env=env).returncode == 0
    assert (tmp_path / "mbox").read_bytes() == b"From XXX Thu Feb 01 09:05:07 2024\nSubject: s\n\nb\n\n"


@pytest.mark.parametrize("lock", ["flock", "lockf"])
def test_maildir2mbox_waits_for_the_lock(tmp_path, lock):
    d = maildir(tmp_path)
    put(d, "new/1.a", b"Subject: s\n\nb\n", T)
    mbox = tmp_path / "mbox"
    mbox.write_bytes(b"")
    holder = open(mbox, "r+b")
    (fcntl.flock if lock == "flock" else fcntl.lockf)(holder, fcntl.LOCK_EX)
    p = subprocess.Popen([str(BIN / "maildir2mbox")], stderr=subprocess.PIPE,
                         env=clean_env(MAILDIR=str(d), MAIL=str(mbox), MAILTMP=str(tmp_path / "t")))
    time.sleep(0.5)
    assert p.poll() is None and mbox.read_bytes() == b""  # waiting, nothing written
    holder.close()
    assert p.wait(10) == 0, p.stderr.read()
    assert mbox.read_bytes().startswith(b"From XXX ") and os.listdir(d / "new") == []


def test_maildir2mbox_failures(tmp_path):
    d = maildir(tmp_path)
    put(d, "new/1.a", b"x\n", T)
    full = dict(MAILDIR=str(d), MAIL=str(tmp_path / "mbox"), MAILTMP=str(tmp_path / "t"))
    for missing in ("MAIL", "MAILTMP", "MAILDIR"):
        env = clean_env(**{k: v for k, v in full.items() if k != missing})
        r = run("maildir2mbox", env=env)
        assert (r.returncode, r.stderr) == (111, f"maildir2mbox: fatal: {missing} not set\n".encode())
    r = run("maildir2mbox", env=clean_env(**dict(full, MAILDIR=str(tmp_path / "none"))))
    assert (r.returncode, r.stderr) == (111, b"maildir2mbox: fatal: unable to scan $MAILDIR/new: file does not exist\n")
    # MAILTMP in a directory that is not there: the message stays, MAIL unchanged.
    r = run("maildir2mbox", env=clean_env(**dict(full, MAILTMP=str(tmp_path / "no" / "t"))))
    assert r.returncode == 111 and b"unable to create" in r.stderr
    assert os.listdir(d / "new") == ["1.a"] and (tmp_path / "mbox").read_bytes() == b""
