"""A real Dovecot (Debian's 2.3, dovecot-core + dovecot-pop3d) on a loopback port with our
checkpassword as its passdb and userdb program: POP3 logins through python's poplib with
a right and a wrong password, APOP through Dovecot's credentials lookup, and the mail in
the user's Maildir read back byte for byte."""

import os
import poplib
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, need, need_root
from netkit import free_port, wait_port

DOVECOT = Path("/usr/sbin/dovecot")
MESSAGE = b"From: a@example.org\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nbody line\r\n.dot line\r\n"


@pytest.fixture
def dovecot(open_dir):
    need_root()   # Dovecot's auth must read the root-only database, and mail runs as the user
    need(DOVECOT.exists() and Path("/usr/lib/dovecot/pop3").exists(), "dovecot-core and dovecot-pop3d")
    t = open_dir
    home = t / "qmail"
    (home / "control").mkdir(parents=True)
    (home / "control/checkpwdelay").write_text("0\n")
    (home / "control/checkpwsources").write_text(f"users\nsystem {t / 'passwd'} {t / 'shadow'}\n")
    homes = t / "homes"
    homes.mkdir()
    homes.chmod(0o755)
    env = dict(os.environ, QMAILHOME=str(home))
    subprocess.run([str(BIN / "checkpassword-users"), "add", "-c", "-m", "-u", "7790", "-g", "7791", "-d",
                    str(homes / "alice"), "alice@example.com"], input=b"pop-pw\n", env=env, check=True, timeout=60)
    import crypt  # Debian's libxcrypt, through python
    (homes / "sysuser").mkdir()
    os.chown(homes / "sysuser", 7792, 7792)
    (t / "passwd").write_text(f"sysuser:x:7792:7792::{homes / 'sysuser'}:/bin/sh\n")
    (t / "shadow").write_text(f"sysuser:{crypt.crypt('sys-pw', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$')}:19000:0:99999:7:::\n")
    new = homes / "alice/Maildir/new/1700000000.1.example"
    new.write_bytes(MESSAGE.replace(b"\r\n", b"\n"))
    os.chown(new, 7790, 7791)
    for d in ("run", "state"):
        (t / d).mkdir()
    port = free_port()
    prog = BIN / "checkpassword"
    (t / "dovecot.conf").write_text(f"""
base_dir = {t}/run
state_dir = {t}/state
log_path = {t}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login apop cram-md5
mail_location = maildir:~/Maildir
first_valid_uid = 1000
import_environment = QMAILHOME={home}
service pop3-login {{
  inet_listener pop3 {{
    port = {port}
  }}
}}
service auth {{
  user = root
}}
passdb {{
  driver = checkpassword
  args = {prog}
}}
userdb {{
  driver = checkpassword
  args = {prog}
}}
""")
    proc = subprocess.Popen([str(DOVECOT), "-F", "-c", str(t / "dovecot.conf")])
    try:
        wait_port(port)
    except RuntimeError:
        proc.kill()
        pytest.fail("dovecot did not listen: " + (t / "dovecot.log").read_text())
    yield port, t
    proc.terminate()
    proc.wait(20)
    print((t / "dovecot.log").read_text())   # shown when a test fails


def pop(port):
    return poplib.POP3("127.0.0.1", port, timeout=20)


def test_pop3_right_password_reads_the_maildir(dovecot):
    port, t = dovecot
    p = pop(port)
    p.user("alice@example.com")
    assert p.pass_("pop-pw").startswith(b"+OK")
    assert p.stat() == (1, len(MESSAGE))
    resp, lines, _ = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == MESSAGE
    p.quit()
    log = (t / "dovecot.log").read_text()
    assert "Login: user=<alice@example.com>, method=PLAIN" in log


def test_pop3_wrong_password_is_refused(dovecot):
    port, t = dovecot
    p = pop(port)
    p.user("alice@example.com")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Authentication failed"):
        p.pass_("pop-pW")
    p = pop(port)
    p.user("nobody@example.com")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Authentication failed"):
        p.pass_("pop-pw")
    log = (t / "dovecot.log").read_text()
    assert "pop-pW" not in log
    # checkpassword's own lines, in Dovecot's log: the login escaped, no password.
    assert "checkpassword: failed: user=<alice@example.com> uid=0 ip=127.0.0.1: password mismatch" in log
    assert "checkpassword: failed: user=<nobody@example.com> uid=0 ip=127.0.0.1: no such user" in log


def test_apop_through_credentials_lookup(dovecot):
    """Dovecot asks for the credentials (AUTHORIZED=1, CREDENTIALS_LOOKUP=1); the opted-in
    secret goes back as {PLAIN} and Dovecot checks the digest itself."""
    port, _ = dovecot
    p = pop(port)
    assert p.apop("alice@example.com", "pop-pw").startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()
    p = pop(port)
    with pytest.raises(poplib.error_proto):
        p.apop("alice@example.com", "wrong")


def test_cram_md5_through_credentials_lookup(dovecot):
    import base64
    import hashlib
    import hmac
    port, _ = dovecot

    def auth(password):
        p = pop(port)
        challenge = p._shortcmd("AUTH CRAM-MD5")
        assert challenge.startswith(b"+ ")
        digest = hmac.new(password, base64.b64decode(challenge[2:]), hashlib.md5).hexdigest()
        p._putcmd(base64.b64encode(b"alice@example.com " + digest.encode()).decode())
        return p._getline()[0]
    assert auth(b"pop-pw").startswith(b"+OK")
    assert auth(b"pop-pW").startswith(b"-ERR")


def test_system_account_with_yescrypt(dovecot):
    port, _ = dovecot
    p = pop(port)
    p.user("sysuser")
    assert p.pass_("sys-pw").startswith(b"+OK")
    assert p.stat() == (0, 0)   # the Maildir Dovecot made, in the system user's home, as that user
    p.quit()
    maildir = Path(dovecot[1] / "homes/sysuser/Maildir")
    assert maildir.is_dir() and maildir.stat().st_uid == 7792
