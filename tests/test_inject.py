"""qmail-inject, sendmail, mailq, qmail-qstat and qmail-qread, run in a temporary
QMAILHOME against the real qmail-queue (or a $QMAILQUEUE filter)."""

import os
import re
import subprocess

import pytest


STAMP = re.compile(rb"^Date: \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d -0000\nMessage-ID: <\d{14}\.(\d+)\.qmail@([^>]*)>\n")


@pytest.fixture
def home(qhome):
    c = qhome.path / "control"
    (c / "me").write_text("mx.example.org\n")
    (c / "defaulthost").write_text("example.org\n")
    (c / "defaultdomain").write_text("example.org\n")
    (c / "plusdomain").write_text("example.com\n")
    return qhome


def inject(h, args, text, **env):
    env.setdefault("USER", "joe")
    full = {k: v for k, v in h.env(**env).items() if v is not None}
    return subprocess.run([str(h.path / "bin/qmail-inject"), *args], input=text, capture_output=True,
                          env=full, timeout=30)


def printed(h, text, *args, **env):
    r = inject(h, ["-n", *args], text, **env)
    assert r.returncode == 0, r.stderr
    return r.stdout


# --- header completion and rewriting (-n prints what would be queued) ------------

def test_adds_date_message_id_from_and_return_path(home):
    out = printed(home, b"To: ann\nSubject: hi\n\nbody\n", NAME="Joe Q. User")
    assert out.startswith(b"Return-Path: <joe@example.org>\n")
    rest = out[len(b"Return-Path: <joe@example.org>\n"):]
    m = STAMP.match(rest)
    assert m and m.group(2) == b"mx.example.org"  # idhost defaults to me
    assert rest[m.end():] == b'From: "Joe Q. User" <joe@example.org>\nTo: ann@example.org\nSubject: hi\n\nbody\n'


@pytest.mark.parametrize("env,header", [
    ({"QMAILUSER": "q", "MAILUSER": "m", "USER": "u"}, b"From: q@example.org\n"),
    ({"MAILUSER": "m", "USER": "u", "LOGNAME": "l"}, b"From: m@example.org\n"),
    ({"LOGNAME": "l", "USER": None}, b"From: l@example.org\n"),
    ({"USER": None, "LOGNAME": None}, b"From: anonymous@example.org\n"),
    ({"QMAILHOST": "h1", "MAILHOST": "h2"}, b"From: joe@h1.example.org\n"),
    ({"MAILHOST": "mail.example.net"}, b"From: joe@mail.example.net\n"),
    ({"QMAILNAME": "Q", "MAILNAME": "M", "NAME": "N"}, b'From: "Q" <joe@example.org>\n'),
    ({"MAILNAME": 'Say "hi"'}, b'From: "Say \\"hi\\"" <joe@example.org>\n'),
    ({"NAME": "N", "QMAILINJECT": "c"}, b"From: joe@example.org (N)\n"),
    ({"QMAILUSER": "a b"}, b'From: "a b"@example.org\n'),
    ({"QMAILDEFAULTHOST": "box"}, b"From: joe@box.example.org\n"),
    ({"QMAILDEFAULTHOST": "box", "QMAILDEFAULTDOMAIN": "d.test"}, b"From: joe@box.d.test\n"),
])
def test_from_field_from_the_environment(home, env, header):
    out = printed(home, b"To: a@b.c\n\nx\n", **env)
    assert header in out


def test_recipient_and_sender_fields_are_rewritten(home):
    text = (b"From: me\nTo: joe, \"Ann B\" <ann@mammoth+> (comment), list: x@host, y;\n"
            b"Cc: <@route,@r2:box@somewhere.org>, bob@[10.0.0.1], eve@dotless.\n"
            b"Reply-To: rt\nX-Other: joe, not@rewritten\nSubject: joe\n\nTo: body is not a header\n")
    out = printed(home, text)
    assert (b"From: me@example.org\n"
            b"To: joe@example.org, \"Ann B\" <ann@mammoth.example.com> (comment), list: x@host.example.org, y@example.org;\n"
            b"Cc: <box@somewhere.org>, bob@[10.0.0.1], eve@dotless.example.org\n"
            b"Reply-To: rt@example.org\nX-Other: joe, not@rewritten\nSubject: joe\n\nTo: body is not a header\n") in out


def test_removed_fields_and_recipient_list_not_shown(home):
    text = b"Bcc: hidden@x.y\nContent-Length: 99\nReturn-Path: <rp@x.y>\nSubject: s\n\nb\n"
    out = printed(home, text)
    assert out.startswith(b"Return-Path: <rp@x.y>\n")  # the field set the sender, then went
    assert b"Cc: recipient list not shown: ;\nSubject: s\n\nb\n" in out
    assert not re.search(rb"^(Bcc|Content-Length|Return-Path):", out.split(b"\n", 1)[1], re.M)
    assert b"hidden" not in out
    out = printed(home, text, QMAILINJECT="s")
    assert out.startswith(b"Return-Path: <joe@example.org>\n")


def test_existing_fields_kept_and_flags_delete_them(home):
    text = b"Date: 1 Jan 2000 00:00:00 -0000\nMessage-ID: <x@y>\nFrom: a@b.c\nTo: d@e.f\n\n"
    out = printed(home, text)
    assert out == b"Return-Path: <joe@example.org>\n" + text
    out = printed(home, text, QMAILINJECT="fi")
    assert b"<x@y>" not in out and b"a@b.c" not in out and b"From: joe@example.org\n" in out


def test_resent_messages(home):
    text = b"Resent-To: r@x.y\nTo: orig@x.y\nFrom: o@x.y\nDate: 1 Jan 2000 00:00:00 -0000\n\nbody\n"
    out = printed(home, text)
    assert re.search(rb"^Resent-Date: .*\nResent-Message-ID: <.*\nResent-From: joe@example.org\n"
                     rb"Resent-To: r@x.y\nTo: orig@x.y\n", out.split(b"\n", 1)[1])


def test_header_edge_cases(home):
    # "From " lines, a line that is no field (ends the header, a blank line is
    # inserted), folded fields, no body at all, no final newline.
    out = printed(home, b"From someone Mon Jan 1\nX-A: 1\n  2\nnot a field\nbody")
    assert out.endswith(b"MBOX-Line: From someone Mon Jan 1\nX-A: 1\n  2\n\nnot a field\nbody\n")
    out = printed(home, b"Subject: only header")
    assert out.endswith(b"Subject: only header\n")
    r = inject(home, ["-n"], b"From: \"unclosed\n\nx\n")
    assert r.returncode == 100 and r.stderr.startswith(b"qmail-inject: fatal: unable to parse this line:")
    # An unparsable recipient field is kept as it is and gives no recipients.
    assert b"To: \"unclosed\n" in printed(home, b"To: \"unclosed\n\nx\n")


def test_mail_followup_to(home, open_dir):
    lists = open_dir / "lists"
    lists.write_text("List@Lists.Example.org\n")
    out = printed(home, b"To: list@lists.example.org\nCc: me@x.y\n\n", QMAILMFTFILE=str(lists))
    assert b"Mail-Followup-To: me@x.y,\n  list@lists.example.org\n" in out
    assert b"Mail-Followup-To" not in printed(home, b"To: other@x.y\n\n", QMAILMFTFILE=str(lists))


def test_verp_letters(home):
    out = printed(home, b"To: a@b.c\n\n", QMAILINJECT="r")
    assert out.startswith(b'Return-Path: <"joe-@example.org-"@[]>\n')  # quoted, as qmail's quote2 does
    assert inject(home, [], b"To: a@b.c\n\n", QMAILINJECT="r").returncode == 0
    assert queued(home)[0] == [b"Fjoe-@example.org-@[]", b"Ta@b.c"]  # qmail-inject(8)'s QMAILINJECT=r: VERP sender
    out = printed(home, b"To: a@b.c\n\n", QMAILINJECT="m")
    assert re.match(rb"Return-Path: <joe-\d+\.\d+@example\.org>\n", out)


# --- queueing ----------------------------------------------------------------------

def queued(h):
    [(records, mess)] = h.todo().values()
    return records[2:], mess


@pytest.mark.parametrize("args,rcpts", [
    ([], [b"Tto@example.org", b"Tcc@x.y", b"Tbcc@x.y"]),
    (["-a", "arg@x.y"], [b"Targ@x.y"]),
    (["arg@x.y", "arg2"], [b"Targ@x.y", b"Targ2@example.org"]),
    (["-h", "arg@x.y"], [b"Tto@example.org", b"Tcc@x.y", b"Tbcc@x.y"]),
    (["-H", "arg@x.y"], [b"Targ@x.y", b"Tto@example.org", b"Tcc@x.y", b"Tbcc@x.y"]),
])
def test_recipient_strategies(home, args, rcpts):
    r = inject(home, args, b"To: to\nCc: cc@x.y\nBcc: bcc@x.y\n\nbody\n")
    assert r.returncode == 0, r.stderr
    records, mess = queued(home)
    assert records == [b"Fjoe@example.org"] + rcpts
    assert b"Bcc" not in mess and mess.endswith(b"\nCc: cc@x.y\n\nbody\n")


def test_sender_option_and_return_path(home):
    assert inject(home, ["-f", "bounces", "x@y.z"], b"Return-Path: <ignored@x.y>\n\n").returncode == 0
    assert queued(home)[0] == [b"Fbounces@example.org", b"Tx@y.z"]


def test_no_recipients_is_refused(home):
    r = inject(home, [], b"Subject: nobody\n\nx\n")
    assert (r.returncode, r.stderr) == (100, b"qmail-inject: fatal: no recipients\n")
    assert home.todo() == {}


def test_qmailqueue_filter_sees_message_and_envelope(home, open_dir):
    f = open_dir / "filter"
    out = open_dir / "captured"
    f.write_text(f"#!/bin/sh\ncat > {out}.msg\ncat <&1 > {out}.env\necho \"$PWD\" > {out}.cwd\nexit 0\n")
    f.chmod(0o755)
    r = inject(home, ["a@b.c"], b"To: a@b.c\n\nhi\n", QMAILQUEUE=str(f))
    assert r.returncode == 0, r.stderr
    assert (open_dir / "captured.env").read_bytes() == b"Fjoe@example.org\0Ta@b.c\0\0"
    assert (open_dir / "captured.msg").read_bytes().endswith(b"To: a@b.c\n\nhi\n")
    assert (open_dir / "captured.cwd").read_text().strip() == str(home.path)  # run in QMAILHOME
    assert home.todo() == {}


@pytest.mark.parametrize("script,code,stderr", [
    ("exit 31", 100, b"mail server permanently rejected message (#5.3.0)"),
    ("exit 71", 111, b"mail server temporarily rejected message (#4.3.0)"),
    ("exit 53", 111, b"qq write error or disk full (#4.3.0)"),
    ("exit 25", 100, b"qq permanent problem (#5.3.0)"),
    ("kill -9 $$", 111, b"qq crashed (#4.3.0)"),
    ("printf 'DVirus found (#5.7.1)' >&6; exit 82", 100, b"Virus found (#5.7.1)"),
    ("printf 'Zgreylisted (#4.7.1)' >&4; exit 88", 111, b"greylisted (#4.7.1)"),
])
def test_qmailqueue_exit_codes_become_qmails_texts(home, open_dir, script, code, stderr):
    f = open_dir / "filter"
    f.write_text(f"#!/bin/sh\ncat >/dev/null\n{script}\n")
    f.chmod(0o755)
    r = inject(home, ["a@b.c"], b"To: a@b.c\n\nhi\n", QMAILQUEUE=str(f), ERROR_FD="4")
    assert (r.returncode, r.stderr) == (code, b"qmail-inject: fatal: " + stderr + b"\n")


def test_unrunnable_queue_program(home):
    r = inject(home, ["a@b.c"], b"x\n", QMAILQUEUE="bin/nonexistent")
    assert r.returncode == 111 and r.stderr == b"qmail-inject: fatal: unable to exec qq (#4.3.0)\n"


# --- sendmail, mailq, qmail-qstat, qmail-qread -------------------------------------

def sendmail(h, args, text=b"", argv0="sendmail", **env):
    env.setdefault("USER", "joe")
    return subprocess.run([argv0, *args], executable=str(h.path / "bin/sendmail"), input=text,
                          capture_output=True, env=h.env(**env), timeout=30)


def test_sendmail_as_php_and_cron_call_it(home):
    r = sendmail(home, ["-t", "-i"], b"To: php@x.y\nSubject: from PHP\n\n.\nnot the end\n")
    assert r.returncode == 0, r.stderr
    records, mess = queued(home)
    assert records == [b"Fjoe@example.org", b"Tphp@x.y"] and mess.endswith(b"\n\n.\nnot the end\n")
    for f in home.files("todo"):
        (home.q / "todo" / f).unlink()
    r = sendmail(home, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], b"Subject: cron\n\nout\n")
    assert r.returncode == 0, r.stderr
    records, mess = queued(home)
    assert records == [b"Fjoe@example.org", b"Troot@example.org"]
    assert b'From: "CronDaemon" <joe@example.org>\n' in mess


def test_sendmail_f_sets_envelope_and_from(home):
    r = sendmail(home, ["-oi", "-f", "www@site.example", "a@b.c"], b"Subject: x\n\n", NAME="ignored")
    assert r.returncode == 0, r.stderr
    records, mess = queued(home)
    assert records == [b"Fwww@site.example", b"Ta@b.c"]
    assert b"From: www@site.example\n" in mess


def test_sendmail_bs_runs_qmail_smtpd_as_a_local_client(home, open_dir):
    fake = home.path / "bin/qmail-smtpd"
    fake.write_text("#!/bin/sh\necho \"220 $RELAYCLIENT|$TCPREMOTEIP|$TCPREMOTEINFO|$PROTO\"\n")
    fake.chmod(0o755)
    assert sendmail(home, ["-bs"]).stdout == b"220 |127.0.0.1|sendmail-bs|TCP\n"
    # Under tcpserver (PROTO set) the connection's own variables stay.
    assert sendmail(home, ["-bs"], PROTO="TCP", TCPREMOTEIP="10.1.1.1").stdout == b"220 |10.1.1.1||TCP\n"


def test_sendmail_refusals(home):
    r = sendmail(home, ["-q"])
    assert (r.returncode, r.stderr) == (100, b"sendmail: illegal option -- q\nsendmail: usage: sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ arg ... ]\n")
    r = sendmail(home, [], argv0="newaliases")
    assert (r.returncode, r.stderr) == (100, b"sendmail: fatal: please use fastforward/newaliases instead\n")


def test_qstat_qread_and_mailq(home):
    for i in range(2):
        assert inject(home, [f"r{i}@x.y", "s@x.y"], b"Subject: q\n\nbody\n").returncode == 0
    r = subprocess.run([str(home.path / "bin/qmail-qstat")], capture_output=True, env=home.env())
    assert r.stdout == b"messages in queue: 2\nmessages in queue but not yet preprocessed: 2\n"
    # Preprocess one by hand, as qmail-send would: info/ and remote/ instead of todo/.
    [n] = [k for k, (records, _) in home.todo().items() if b"Tr0@x.y" in records]
    s = str(n % 23)
    (home.q / "info" / s / str(n)).write_bytes(b"Fjoe@example.org\0")
    os.utime(home.q / "info" / s / str(n), (1706951107, 1706951107))
    (home.q / "remote" / s / str(n)).write_bytes(b"Dr0@x.y\0Ts@x.y\0")
    (home.q / "todo" / str(n)).unlink()
    size = (home.q / "mess" / s / str(n)).stat().st_size
    r = subprocess.run([str(home.path / "bin/qmail-qread")], capture_output=True, env=home.env())
    lines = r.stdout.decode().splitlines()
    assert lines[:3] == [f"3 Feb 2024 09:05:07 GMT  #{n}  {size}  <joe@example.org> ",
                         "  done\tremote\tr0@x.y", "\tremote\ts@x.y"]
    assert re.match(r"\d+ \w+ \d{4} [\d:]+ GMT  #\d+  \d+  <joe@example.org> $", lines[3])
    assert lines[4:] == ["\ttodo\tr1@x.y", "\ttodo\ts@x.y"]
    assert sendmail(home, ["-bp"]).stdout == r.stdout
    assert sendmail(home, [], argv0="mailq").stdout == r.stdout
    r = subprocess.run([str(home.path / "bin/qmail-qstat")], capture_output=True, env=home.env())
    assert r.stdout == b"messages in queue: 2\nmessages in queue but not yet preprocessed: 1\n"


def test_queue_programs_run_under_softlimit(home):
    """qmail-smtpd will run qmail-queue under the seeds' softlimit -m 2000000."""
    r = subprocess.run(["softlimit", "-m", "2000000", str(home.path / "bin/qmail-inject"), "a@b.c"],
                       input=b"Subject: big\n\n" + b"x" * (20 << 20), capture_output=True, env=home.env(USER="joe"))
    assert r.returncode == 0, r.stderr
    [(records, mess)] = home.todo().values()
    assert len(mess) > 20 << 20


def test_sendmail_bs_with_the_real_qmail_smtpd(home):
    """sendmail -bs through rqmail's qmail-smtpd: a local client relays and the message
    is queued with the Received line naming it."""
    from conftest import BIN
    (home.path / "bin/qmail-smtpd").symlink_to(BIN / "qmail-smtpd")
    (home.path / "control/rcpthosts").write_text("example.com\n")
    dialog = b"HELO me\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@elsewhere.org>\r\nDATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    r = sendmail(home, ["-bs"], dialog)
    assert r.returncode == 0 and b"250 2.1.5 ok\r\n354 go ahead\r\n250 2.0.0 ok " in r.stdout, r.stdout
    records, mess = queued(home)
    assert records == [b"Fa@example.org", b"Tx@elsewhere.org"]
    assert b"(sendmail-bs@127.0.0.1)" in mess and b"\nhi\n" in mess


# --- no header byte can end an envelope record (issue 12, item 3) -----------------

NUL_FIELDS = [
    b"To: alice@example.test, bob\0Tinjected@evil.org\n",
    b"Cc: alice@example.test, bob\0Tinjected@evil.org\n",
    b"Bcc: bob\0Tinjected@evil.org\n",
    b"Apparently-To: bob\0Tinjected@evil.org\n",
    b"To: \"bob\0Tinjected\"@evil.org\n",                # inside a quoted string
    b"To: \"bob\\\0Tinjected\"@evil.org\n",              # backslash-escaped
    b"To: Bob <bob@[10.0.0.1\0Tinjected@evil.org]>\n",   # inside a domain literal
    b"To: alice@example.test,\n bob\0Tinjected@evil.org\n",  # on a continuation line
    b"Resent-To: bob\0Tinjected@evil.org\n",
    b"Resent-Cc: bob\0Tinjected@evil.org\n",
    b"Resent-Bcc: bob\0Tinjected@evil.org\n",
    b"To: alice@example.test\nReturn-Path: <bob\0Tinjected@evil.org>\n",
    b"To: alice@example.test\nReturn-Path: <\0Tinjected@evil.org>\n",
]


def nul_capture(h, open_dir):
    """A $QMAILQUEUE filter that keeps what reached it: message and envelope."""
    f = open_dir / "capture"
    f.write_text(f"#!/bin/sh\ncat > {open_dir}/cap.msg\ncat <&1 > {open_dir}/cap.env\nexit 0\n")
    f.chmod(0o755)
    return f


@pytest.mark.parametrize("how", ["qmail-inject", "sendmail -t", "sendmail -t -i -f www@site.example"])
@pytest.mark.parametrize("field", NUL_FIELDS, ids=lambda f: f.split(b":")[0].decode() + ":" + str(len(f)))
def test_nul_in_a_header_address_never_reaches_the_envelope(home, open_dir, how, field):
    """A web form that strips only CR and LF: a NUL in any address field the
    rewriter reads would end the record and start an injected one. The message is
    refused, permanently, before anything is queued."""
    text = b"Subject: form\n" + field + b"\nbody\n"
    if field.startswith(b"Resent-"):
        text = b"To: orig@x.y\n" + text

    def run(**env):
        if how == "qmail-inject":
            return inject(home, [], text, **env)
        return sendmail(home, how.split()[1:], text, **env)

    r = run()
    if b"Return-Path" in field and "-f" in how:
        # -f wins over Return-Path, which is then only removed: the envelope is
        # exactly the sender and the one recipient.
        assert r.returncode == 0, r.stderr
        assert queued(home)[0] == [b"Fwww@site.example", b"Talice@example.test"]
        return
    assert (r.returncode, r.stderr) == (100, b"qmail-inject: fatal: envelope address contains NUL (#5.1.3)\n")
    assert home.todo() == {}
    assert leftovers(home) == {"pid": [], "mess": [], "intd": [], "todo": []}
    # Through a $QMAILQUEUE filter: not one envelope byte reached the queue program.
    r = run(QMAILQUEUE=str(nul_capture(home, open_dir)))
    assert r.returncode == 100
    assert (open_dir / "cap.env").read_bytes() == b""
    assert b"injected@evil.org" not in b"".join(b"".join(rec) for rec, _ in home.todo().values())


def leftovers(h):
    return {d: h.files(d) for d in ("pid", "mess", "intd", "todo")}


def test_nul_elsewhere_in_the_header_is_not_an_address(home):
    """Only addresses become envelope bytes: a NUL in a Subject or a From is the
    message's business, and the envelope is exactly what the header asked for."""
    r = inject(home, [], b"Subject: a\0Tinjected@evil.org\nFrom: me\0Tinjected@evil.org\n"
                         b"To: alice@example.test, bob@x.y\n\nbody\n")
    assert r.returncode == 0, r.stderr
    records, mess = queued(home)
    assert records == [b"Fjoe@example.org", b"Talice@example.test", b"Tbob@x.y"]
