"""No backscatter: with control/rcptcheck, qmail-smtpd (as qmaild, behind tcpserver)
refuses unknown local recipients at RCPT with 550, using the lookup delivery does
(locals and virtualdomains, users/cdb, the passwd file, ~alias, the .qmail files),
and accepts everything delivery would deliver or defer."""

import os
import subprocess

import pytest

from conftest import BIN, IS_ROOT, TEST_USERS
from test_smtpd import mta, smtp  # noqa: F401  (mta is a fixture)


@pytest.fixture
def site(mta, open_dir):
    """bob (uid 7790) with .qmail-list and .qmail-shop-default, alias (7794) with
    .qmail-postmaster; carol through users/assign; example.com local, virt.example
    virtual for bob. Homes owned by their users and searchable, as usual."""
    c = mta.path / "control"
    (c / "locals").write_text("example.com\n")
    (c / "rcpthosts").write_text("example.com\nvirt.example\n")
    (c / "virtualdomains").write_text("virt.example:bob\n")
    (c / "rcptcheck").write_text("1\n")
    homes = open_dir / "homes"
    users = {"bob": TEST_USERS["alias"], "alias": TEST_USERS["qmailp"], "carol": TEST_USERS["qmaill"]}
    for name, uid in users.items():
        (homes / name).mkdir(parents=True)
        if IS_ROOT:
            os.chown(homes / name, uid, uid)
    homes.chmod(0o755)
    open_dir.chmod(0o755)
    for f in (".qmail-list", ".qmail-shop-default"):
        (homes / "bob" / f).write_text("./Maildir/\n")
    (homes / "alias" / ".qmail-postmaster").write_text("&bob\n")
    passwd = open_dir / "passwd"
    passwd.write_text("".join(f"{n}:x:{users[n]}:{users[n]}::{homes / n}:/bin/sh\n" for n in ("bob", "alias")))
    passwd.chmod(0o644)
    (mta.path / "users").mkdir(exist_ok=True)
    uid = users["carol"]
    (mta.path / "users/assign").write_text(f"=carol:carol:{uid}:{uid}:{homes / 'carol'}:::\n.\n")
    r = subprocess.run([str(BIN / "qmail-newu")], capture_output=True, env=mta.env())
    assert r.returncode == 0, r.stderr
    return mta.start(env={"QMAIL_PASSWD": str(passwd)})


@pytest.mark.parametrize("rcpt,code", [
    ("bob@example.com", 250), ("BOB@Example.COM", 250), ("bob-list@example.com", 250),
    ("bob-shop-books@example.com", 250), ("postmaster@example.com", 250), ("carol@example.com", 250),
    ("list@virt.example", 250), ("friend@elsewhere.org", 553),
    ("nobody@example.com", 550), ("bob-nothing@example.com", 550), ("other@virt.example", 550),
    ("carol-ext@example.com", 550),
])
def test_unknown_local_recipients_get_550(site, mta, rcpt, code):
    s = smtp(site)
    s.ehlo()
    assert s.mail("a@example.net")[0] == 250
    got, text = s.rcpt(rcpt)
    assert got == code, (rcpt, text)
    if code == 550:
        assert text == b"5.1.1 sorry, no mailbox here by that name (#5.1.1)"
        assert f"rejected rcpt <{rcpt}>: no mailbox" in mta.log()
    s.quit()


def test_a_damaged_users_cdb_defers_never_refuses(site, mta):
    (mta.path / "users/cdb").write_bytes(b"\x5a" * 3000)
    s = smtp(site)
    s.ehlo()
    s.mail("a@example.net")
    for rcpt in ("carol@example.com", "nobody@example.com"):
        assert s.rcpt(rcpt)[0] == 451
    assert "deferred rcpt <nobody@example.com>: unable to look the mailbox up" in mta.log()


def test_without_rcptcheck_every_local_recipient_is_accepted(site, mta):
    (mta.path / "control/rcptcheck").unlink()
    port = mta.start(env={"QMAIL_PASSWD": "/nonexistent"})
    s = smtp(port)
    s.ehlo()
    s.mail("a@example.net")
    assert s.rcpt("nobody@example.com")[0] == 250
