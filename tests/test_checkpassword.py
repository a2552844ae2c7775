"""checkpassword (and its names vchkpw, cmd5checkpw) and checkpassword-users, black-box:
the fd 3 interface byte by byte, exit codes, what the program it execs sees (uid, gid,
groups, cwd, environment, read back by envprobe), CRAM-MD5 and APOP against digests
computed here with python's hmac/hashlib, hashes made by Debian's libxcrypt (python's
crypt module), the seeds' softlimit, and setuid runs in a private mount namespace."""

import hashlib
import hmac
import os
import subprocess
import time
import warnings

import pytest

from conftest import BIN, IS_ROOT, PROBE, need_root, parse_probe

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

TS = b"<12345.1795368151@mail.example.test>"
ME = (os.getuid(), os.getgid())
VUID, VGID = (7790, 7791) if IS_ROOT else ME
YESCRYPT_SALT = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$"
TODAY = int(time.time() // 86400)
STD_AGEING = "19000:0:99999:7:::"
# shadow(5) fields 3 (last change), 4 (min), 5 (max), 6 (warn), 7 (inactive),
# 8 (expires), 9, for accounts whose password is "aged-pw"; True: may log in.
AGEING = {
    "mustchange": ("0:0:99999:7:::", False),                          # root enforced a change
    "inactive": (f"{TODAY - 100}:0:30:7:10::", False),                 # past max + inactive
    "aged": (f"{TODAY - 40}:0:30:7:30::", False),                      # past max: must change
    "agedforever": (f"{TODAY - 40}:0:30:7:::", False),                 # ... and no inactive limit
    "fresh": (f"{TODAY - 10}:0:30:7:10::", True),
    "lastday": (f"{TODAY - 30}:0:30:7:0::", True),                     # max reached, not passed
    "future": (f"{TODAY + 10}:0:1:7:1::", True),                       # changed in the future
    "noageing": ("::30:7:1::", True),                                  # empty field 3: no ageing
    "expirestoday": (f"19000:0:99999:7::{TODAY}:", False),
    "expirestomorrow": (f"19000:0:99999:7::{TODAY + 1}:", True),
    "garbled": ("19000x:0:99999:7:::", False),                         # unreadable: fail closed
}


def hashed(password, scheme):
    salt = YESCRYPT_SALT if scheme == "y" else crypt.mksalt(
        {"6": crypt.METHOD_SHA512, "5": crypt.METHOD_SHA256, "1": crypt.METHOD_MD5}[scheme])
    return crypt.crypt(password, salt)


class Home:
    """A QMAILHOME with rqmail's database and test copies of passwd and shadow."""

    def __init__(self, path):
        self.path = path
        self.bin = path / "bin"
        self.bin.mkdir(parents=True)
        (path / "control").mkdir()
        (path / "control/checkpwdelay").write_text("0\n")
        for name in ("checkpassword", "vchkpw", "cmd5checkpw"):
            (self.bin / name).symlink_to(BIN / "checkpassword")
        self.passwd, self.shadow = path / "passwd", path / "shadow"
        (path / "control/checkpwsources").write_text(f"users\nsystem {self.passwd} {self.shadow}\n")
        self.homes = path / "homes"
        self.homes.mkdir()
        self.homes.chmod(0o755)
        uid, gid = ME
        aged = hashed("aged-pw", "6")
        sys_users = {  # name: (passwd field, shadow field or None, shadow fields 3 to 9)
            "sysy": ("x", hashed("yes-pw", "y"), STD_AGEING),
            "sys6": ("x", hashed("six-pw", "6"), STD_AGEING),
            "sys5": ("x", hashed("five-pw", "5"), STD_AGEING),
            "sys1": ("x", hashed("one-pw", "1"), STD_AGEING),
            "inpasswd": (hashed("pw-in-passwd", "6"), None, ""),
            "bang": ("x", "!" + hashed("locked-pw", "6"), STD_AGEING),
            "star": ("x", "*", STD_AGEING),
            "empty": ("x", "", STD_AGEING),
            "expired": ("x", hashed("old-pw", "6"), "19000:0:99999:7::1:"),
            "noshadow": ("x", None, ""),
            **{name: ("x", aged, fields) for name, (fields, _) in AGEING.items()},
        }
        pw, sh = [], []
        for name, (field, shadow, fields) in sys_users.items():
            home = self.homes / name
            home.mkdir()
            pw.append(f"{name}:{field}:{VUID}:{VGID}:{name}:{home}:/bin/sh\n")
            if shadow is not None:
                sh.append(f"{name}:{shadow}:{fields}\n")
        self.passwd.write_text("".join(pw))
        self.shadow.write_text("".join(sh))
        self.shadow.chmod(0o600)

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TCP", "USER", "HOME", "SHELL", "VPOPUSER", "ORIG_UID", "AUTHORIZED"))}
        env["QMAILHOME"] = str(self.path)
        env.update(extra)
        return env

    def users(self, *args, password=b"", check=True):
        r = subprocess.run([str(BIN / "checkpassword-users"), *args], input=password, capture_output=True,
                           env=self.env(), timeout=60)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def add(self, login, password, *opts):
        home = self.homes / login.replace("@", "_")
        self.users("add", "-u", str(VUID), "-g", str(VGID), "-d", str(home), "-m", *opts, login,
                   password=password.encode() + b"\n")
        return home

    def run(self, fd3, prog=None, name="checkpassword", env=None, fd3_open=True, limit=None, **kw):
        """Runs the verifier with `fd3` on descriptor 3; returns (code, probe report, stderr)."""
        argv = [str(self.bin / name)] + ([PROBE] if prog is None else prog)
        if limit:
            argv = ["softlimit", "-m", str(limit)] + argv
        r, w = os.pipe()
        os.write(w, fd3)
        os.close(w)

        def fd3_setup():
            if fd3_open:
                os.dup2(r, 3) if r != 3 else os.set_inheritable(3, True)
            else:
                try:
                    os.close(3)
                except OSError:
                    pass
        try:
            p = subprocess.run(argv, preexec_fn=fd3_setup, close_fds=False, capture_output=True,
                               env=env if env is not None else self.env(), timeout=60, **kw)
        finally:
            os.close(r)
        return p.returncode, parse_probe(p.stdout), p.stderr


@pytest.fixture
def home(open_dir):
    h = Home(open_dir / "qmail")
    h.add("alice@example.com", "alice-pw", "-c")
    h.add("bob@example.com", "bob-pw")
    return h


def ran(code, probe):
    return code == 0 and probe.get("END")


# --- the interface, byte by byte -----------------------------------------------------

@pytest.mark.parametrize("fd3, code", [
    (b"alice@example.com\0alice-pw\0" + TS + b"\0", 0),
    (b"alice@example.com\0alice-pw\0", 0),               # the timestamp is optional
    (b"alice@example.com\0alice-pw\0\0", 0),
    (b"alice@example.com\0alice-pw\0" + TS, 0),          # ... and its NUL
    (b"alice@example.com\0alice-pw\0t\0more bytes", 0),
    (b"ALICE@Example.Com\0alice-pw\0\0", 0),             # logins are case-insensitive
    (b"alice%example.com\0alice-pw\0\0", 0),             # vchkpw's separators
    (b"alice/example.com\0alice-pw\0\0", 0),
    (b"", 2),
    (b"alice@example.com", 2),                            # no NUL after the login
    (b"alice@example.com\0", 2),                          # nothing after the login
    (b"alice@example.com\0alice-pw", 2),                  # no NUL after the password
    (b"alice@example.com\0\0\0", 1),                      # empty password
    (b"\0alice-pw\0\0", 1),                               # empty login
    (b"alice@example.com\0Alice-pw\0\0", 1),
    (b"alice@example.com\0alice-pw\n\0\0", 1),
    (b"alice@example.com\0alice-pw\0alice-pw\0", 0),
    (b"alice@example.org\0alice-pw\0\0", 1),              # unknown domain
    (b"alice\0alice-pw\0\0", 1),                          # no default domain
    (b"carol@example.com\0alice-pw\0\0", 1),
    (b"al ice@example.com\0alice-pw\0\0", 1),
    (b"alice@example.com\0ali\0ce-pw\0", 1),              # a NUL inside the password
    (b"alice@example.com\x00alice-pw\x00\xff" * 1, 0),
])
def test_fd3_layouts(home, fd3, code):
    got, probe, err = home.run(fd3)
    assert got == code, err
    assert bool(probe.get("END")) == (code == 0)
    assert b"alice-pw" not in err and b"Alice-pw" not in err


def test_512_bytes_is_the_limit(home):
    head = b"alice@example.com\0alice-pw\0"
    exact = head + b"x" * (512 - len(head) - 1) + b"\0"
    assert len(exact) == 512
    assert ran(*home.run(exact)[:2])
    code, probe, _ = home.run(exact + b"x")
    assert code == 1 and "END" not in probe
    assert home.run(exact + b"x" * 5000)[0] == 1


def test_misuse_and_temporary_codes(home):
    good = b"sys6\0six-pw\0\0"
    assert home.run(good, prog=[])[0] == 2                                      # no program
    assert home.run(good, fd3_open=False)[0] == 111                             # fd 3 not open
    assert home.run(good, prog=["/nonexistent/prog"])[0] == 111                 # exec fails
    (home.path / "control/checkpwsources").write_text(f"system {home.passwd} {home.path}\n")
    code, _, err = home.run(good)                                               # shadow unreadable
    assert code == 111 and b"unable to read" in err and b"six-pw" not in err
    (home.path / "control/checkpwsources").write_text("ldap\n")
    assert home.run(good)[0] == 111
    (home.path / "control/checkpwsources").write_text(f"system {home.passwd} {home.shadow}\n")
    (home.homes / "sys6").rmdir()
    assert home.run(good)[0] == 111                                             # chdir fails
    assert home.run(good, env=home.env(TCPLOCALPORT="25"))[0] == 0              # SMTP: no chdir


# --- system accounts ------------------------------------------------------------------

@pytest.mark.parametrize("user, password, code", [
    ("sysy", "yes-pw", 0), ("sysy", "yes-Pw", 1),
    ("sys6", "six-pw", 0), ("sys6", "six-p", 1),
    ("sys5", "five-pw", 0), ("sys5", "", 1),
    ("sys1", "one-pw", 0), ("sys1", "one-pw ", 1),
    ("inpasswd", "pw-in-passwd", 0),
    ("bang", "locked-pw", 1), ("star", "*", 1), ("star", "", 1), ("empty", "", 1), ("empty", "x", 1),
    ("expired", "old-pw", 1), ("noshadow", "x", 1), ("SYS6", "six-pw", 1), ("nobody-here", "x", 1),
])
def test_system_accounts(home, user, password, code):
    got, probe, err = home.run(f"{user}\0{password}\0\0".encode())
    assert got == code, err
    if code == 0:
        assert probe["env"]["USER"] == user and probe["env"]["SHELL"] == "/bin/sh"
        assert probe["CWD"] == str(home.homes / user)


@pytest.mark.parametrize("user", sorted(AGEING))
def test_shadow_ageing_as_pam_unix(home, user):
    """shadow(5) as pam_unix reads it: expired (field 8), a change the admin forced
    (field 3 = 0), a password past its maximum age (field 5), and past that plus the
    inactivity period (field 7): none of them logs in; DJB's checkpassword let all in."""
    code, probe, err = home.run(b"%s\0aged-pw\0\0" % user.encode())
    assert code == (0 if AGEING[user][1] else 1), err
    assert bool(probe.get("END")) == AGEING[user][1]
    assert b"aged-pw" not in err


def test_sources_restrict_and_reorder(home):
    (home.path / "control/checkpwsources").write_text("users\n")
    assert home.run(b"sys6\0six-pw\0\0")[0] == 1
    assert home.run(b"bob@example.com\0bob-pw\0\0")[0] == 0
    (home.path / "control/checkpwsources").write_text(f"system {home.passwd} {home.shadow}\n")
    assert home.run(b"bob@example.com\0bob-pw\0\0")[0] == 1
    # The first source that knows a login decides.
    home.users("add", "-u", str(VUID), "-g", str(VGID), "-d", str(home.homes / "sys6"), "sys6",
               password=b"virtual-pw\n")
    (home.path / "control/checkpwsources").write_text(f"users\nsystem {home.passwd} {home.shadow}\n")
    assert [home.run(f"sys6\0{p}\0\0".encode())[0] for p in ("virtual-pw", "six-pw")] == [0, 1]
    (home.path / "control/checkpwsources").write_text(f"system {home.passwd} {home.shadow}\nusers\n")
    assert [home.run(f"sys6\0{p}\0\0".encode())[0] for p in ("virtual-pw", "six-pw")] == [1, 0]


# --- what the program sees ----------------------------------------------------------

def test_login_service_becomes_the_user(home):
    """POP3/IMAP: setgroups to the gid alone, setgid, setuid, chdir, USER/HOME/SHELL."""
    code, p, err = home.run(b"alice@example.com\0alice-pw\0" + TS + b"\0", env=home.env(TCPLOCALPORT="110"))
    assert code == 0, err
    assert p["Uid"] == [str(VUID)] * 4 and p["Gid"] == [str(VGID)] * 4
    if IS_ROOT:
        assert p["Groups"] == [str(VGID)]
    assert p["CWD"] == str(home.homes / "alice@example.com".replace("@", "_"))
    assert (p["env"]["USER"], p["env"]["HOME"], p["env"]["SHELL"]) == \
        ("alice@example.com", p["CWD"], "NOLOGIN")
    assert "VPOPUSER" not in p["env"]


def test_vchkpw_environment(home):
    code, p, _ = home.run(b"Alice%Example.com\0alice-pw\0" + TS + b"\0", name="vchkpw",
                          env=home.env(TCPLOCALPORT="110"))
    assert code == 0
    assert p["Uid"][0] == str(VUID) and p["CWD"] == str(home.homes / "alice_example.com")
    e = p["env"]
    assert (e["USER"], e["SHELL"], e["VPOPUSER"], e["HOME"]) == \
        ("alice", "NOLOGIN", "alice@example.com", str(home.homes / "alice_example.com"))


def test_smtp_caller_keeps_its_ids(home, open_dir):
    """SMTP AUTH: no setuid, no chdir, as vchkpw in SMTP mode."""
    cwd = open_dir
    for env in (home.env(TCPLOCALPORT="25"), home.env(TCPLOCALPORT="587")):
        code, p, _ = home.run(b"alice@example.com\0alice-pw\0\0", name="vchkpw", env=env, cwd=cwd)
        assert code == 0
        assert p["Uid"] == [str(os.getuid())] * 4 and p["CWD"] == str(cwd)
        assert p["env"]["USER"] == "alice" and p["env"]["VPOPUSER"] == "alice@example.com"


def test_cmd5checkpw_sets_nothing(home, open_dir):
    code, p, _ = home.run(b"alice@example.com\0" + TS + b"\0" +
                          hmac.new(b"alice-pw", TS, "md5").hexdigest().encode() + b"\0",
                          name="cmd5checkpw", cwd=open_dir)
    assert code == 0
    assert not {"USER", "HOME", "SHELL", "VPOPUSER"} & set(p["env"])
    assert p["Uid"][0] == str(os.getuid()) and p["CWD"] == str(open_dir)


@pytest.mark.parametrize("name, wrong, empty_login, empty_pw, bad_chars, no_fd3", [
    ("checkpassword", 1, 1, 1, 1, 111),
    ("cmd5checkpw", 1, 1, 1, 1, 111),
    ("vchkpw", 3, 12, 13, 20, 11),
])
def test_exit_codes_by_name(home, name, wrong, empty_login, empty_pw, bad_chars, no_fd3):
    r = lambda fd3, **kw: home.run(fd3, prog=["/bin/true"], name=name, **kw)[0]
    assert r(b"bob@example.com\0wrong\0\0") == wrong
    assert r(b"nobody@example.com\0wrong\0\0") == wrong
    assert r(b"\0bob-pw\0\0") == empty_login
    assert r(b"bob@example.com\0\0\0") == empty_pw
    assert r(b"bob@exa mple.com\0bob-pw\0\0") == bad_chars
    assert r(b"bob@example.com\0bob-pw\0\0", fd3_open=False) == no_fd3
    assert r(b"bob@example.com\0bob-pw\0\0") == 0


def test_true_needs_no_exec(home):
    """The seeds' `vchkpw /bin/true` under softlimit, where Debian's /bin/true cannot load."""
    for prog in (["/bin/true"], ["/nonexistent/true", "x"]):
        assert home.run(b"bob@example.com\0bob-pw\0\0", prog=prog, name="vchkpw", limit=2000000)[0] == 0
    assert home.run(b"bob@example.com\0nope\0\0", prog=["/bin/true"], name="vchkpw", limit=2000000)[0] == 3


def test_program_path_containing_true_is_no_smtp_caller(home, open_dir):
    """`/opt/construe/pop3d` is a login service: it becomes the user. Only a program
    whose file name is exactly `true` means SMTP AUTH."""
    d = open_dir / "construe"
    d.mkdir()
    (d / "pop3d").symlink_to(PROBE)
    (d / "true-pop3d").symlink_to(PROBE)
    for prog in (d / "pop3d", d / "true-pop3d"):
        code, p, err = home.run(b"sys6\0six-pw\0" + TS + b"\0", prog=[str(prog)], cwd=open_dir)
        assert code == 0, err
        assert p["CWD"] == str(home.homes / "sys6") and p["Uid"] == [str(VUID)] * 4, prog


def test_fd3_that_never_ends_times_out(home):
    """A FIFO whose writer stays open: a deadline, 111 and a log line, not a root
    process waiting forever."""
    r, w = os.pipe()
    os.write(w, b"sys6\0six-pw\0")
    t = time.monotonic()
    try:
        p = subprocess.run([str(home.bin / "checkpassword"), PROBE], preexec_fn=lambda: os.dup2(r, 3),
                           close_fds=False, capture_output=True, env=home.env(), timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 111 and b"END" not in p.stdout
    assert time.monotonic() - t < 15
    assert b"timeout reading descriptor 3" in p.stderr and b"six-pw" not in p.stderr


def test_caller_signal_state_is_undone(home):
    """Blocked and ignored signals survive exec: the program (here grep, reading its
    own status) starts with none of the caller's, as qmail's programs do."""
    import signal
    r, w = os.pipe()
    os.write(w, b"sys6\0six-pw\0\0")
    os.close(w)

    def setup():
        os.dup2(r, 3)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM, signal.SIGCHLD})
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGXFSZ, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
    try:
        p = subprocess.run([str(home.bin / "checkpassword"), "/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"],
                           preexec_fn=setup, close_fds=False, capture_output=True, env=home.env(), timeout=30)
    finally:
        os.close(r)
    assert p.returncode == 0, p.stderr
    masks = dict(line.split(":") for line in p.stdout.decode().split("\n") if line)
    assert {k: int(v, 16) for k, v in masks.items()} == {"SigBlk": 0, "SigIgn": 0}


def test_unreadable_control_files_are_temporary(home):
    """An error reading a control file is 111 with a log line, never its default."""
    delay = home.path / "control/checkpwdelay"
    delay.unlink()
    delay.mkdir()
    for fd3 in (b"sys6\0six-pw\0\0", b"sys6\0bad-guess\0\0"):
        code, probe, err = home.run(fd3)
        assert code == 111 and "END" not in probe and b"checkpwdelay" in err, err
    delay.rmdir()
    delay.write_text("soon\n")
    code, _, err = home.run(b"sys6\0six-pw\0\0")
    assert code == 111 and b"checkpwdelay" in err
    delay.write_text("0\n")
    sources = home.path / "control/checkpwsources"
    sources.unlink()
    sources.mkdir()
    code, _, err = home.run(b"sys6\0six-pw\0\0")
    assert code == 111 and b"checkpwsources" in err


# --- CRAM-MD5 and APOP ---------------------------------------------------------------------

def cram(secret, challenge=TS):
    return hmac.new(secret.encode(), challenge, hashlib.md5).hexdigest().encode()


def apop(secret, ts=TS):
    return hashlib.md5(ts + secret.encode()).hexdigest().encode()


def test_cram_md5_both_orders(home):
    good = cram("alice-pw")
    for fd3 in (b"alice@example.com\0" + good + b"\0" + TS + b"\0",        # Hoffmann, vchkpw 5.4
                b"alice@example.com\0" + TS + b"\0" + good + b"\0"):       # brush, cmd5checkpw 0.22
        for name in ("checkpassword", "vchkpw", "cmd5checkpw"):
            assert home.run(fd3, prog=["/bin/true"], name=name)[0] == 0, (fd3, name)
    bad = cram("alice-pW")
    assert home.run(b"alice@example.com\0" + bad + b"\0" + TS + b"\0", prog=["/bin/true"])[0] == 1
    assert home.run(b"alice@example.com\0" + TS + b"\0" + bad + b"\0", prog=["/bin/true"])[0] == 1
    other = b"<1.2@elsewhere>"
    assert home.run(b"alice@example.com\0" + good + b"\0" + other + b"\0", prog=["/bin/true"])[0] == 1
    assert home.run(b"alice@example.com\0" + good.upper() + b"\0" + TS + b"\0", prog=["/bin/true"])[0] == 1


def test_apop(home):
    assert home.run(b"alice@example.com\0" + apop("alice-pw") + b"\0" + TS + b"\0")[0] == 0
    assert home.run(b"alice@example.com\0" + apop("alice-pw", b"<1.2@x>") + b"\0" + TS + b"\0")[0] == 1


def test_challenges_need_the_opt_in(home):
    """bob has no stored secret: his digests fail, his plain password works."""
    for fd3 in (b"bob@example.com\0" + cram("bob-pw") + b"\0" + TS + b"\0",
                b"bob@example.com\0" + TS + b"\0" + cram("bob-pw") + b"\0",
                b"bob@example.com\0" + apop("bob-pw") + b"\0" + TS + b"\0"):
        assert home.run(fd3)[0] == 1
    assert home.run(b"bob@example.com\0bob-pw\0" + TS + b"\0")[0] == 0
    # System accounts never have one.
    assert home.run(b"sys6\0" + cram("six-pw") + b"\0" + TS + b"\0")[0] == 1


def test_challenge_shaped_fields_are_only_ever_digests(home):
    """A CRAM-MD5 (or APOP) exchange verifies an HMAC, never the plain password: a
    cleartext password in the digest's place does not log in. The edge case: a
    password that is itself 32 lower-case hex digits, sent with a <...@...> third
    field (qmail-popup's USER/PASS), is taken as a digest."""
    hexpw = hashlib.md5(b"x").hexdigest()
    home.add("hex@example.com", hexpw, "-c")
    home.add("angle@example.com", "<a.1@b.example>")
    for name in ("checkpassword", "vchkpw", "cmd5checkpw"):
        r = lambda fd3: home.run(fd3, prog=["/bin/true"], name=name)[0]
        wrong = 3 if name == "vchkpw" else 1
        assert r(b"hex@example.com\0" + hexpw.encode() + b"\0" + TS + b"\0") == wrong        # Hoffmann's shape
        assert r(b"angle@example.com\0<a.1@b.example>\0" + cram("x") + b"\0") == wrong       # brush's shape
        assert r(b"hex@example.com\0" + TS + b"\0" + cram(hexpw) + b"\0") == 0              # a real digest
        assert r(b"hex@example.com\0" + hexpw.encode() + b"\0\0") == 0                       # LOGIN/PLAIN
        assert r(b"angle@example.com\0<a.1@b.example>\0\0") == 0
    # qmail-popup's USER/PASS puts its timestamp in the third field: passwords still work.
    assert home.run(b"bob@example.com\0bob-pw\0" + TS + b"\0")[0] == 0
    assert home.run(b"alice@example.com\0alice-pw\0" + TS + b"\0")[0] == 0


def test_credentials_only_for_lookups(home):
    """PASSWORD={PLAIN}... is Dovecot's answer to a credentials lookup (AUTHORIZED=1);
    a verification never exports the secret."""
    fd3 = b"alice@example.com\0" + TS + b"\0" + cram("alice-pw") + b"\0"
    code, p, err = home.run(fd3, env=home.env(ORIG_UID=str(os.getuid()), CREDENTIALS_LOOKUP="1"))
    assert code == 0, err
    assert "PASSWORD" not in p["env"] and "PASSWORD" not in p["env"].get("EXTRA", "")


def test_passwd_keeps_or_drops_the_secret(home):
    home.users("passwd", "alice@example.com", password=b"new-pw\n")
    fd3 = lambda pw: b"alice@example.com\0" + cram(pw) + b"\0" + TS + b"\0"
    assert [home.run(fd3(p))[0] for p in ("alice-pw", "new-pw")] == [1, 0]
    assert home.run(b"alice@example.com\0alice-pw\0\0")[0] == 1
    home.users("passwd", "-C", "alice@example.com", password=b"newer-pw\n")
    assert home.run(fd3("newer-pw"))[0] == 1
    assert home.run(b"alice@example.com\0newer-pw\0\0")[0] == 0
    home.users("passwd", "-c", "bob@example.com", password=b"bob-pw\n")
    assert home.run(b"bob@example.com\0" + cram("bob-pw") + b"\0" + TS + b"\0")[0] == 0


# --- the delay, the logs ---------------------------------------------------------------

def test_failures_answer_after_the_delay(home):
    (home.path / "control/checkpwdelay").unlink()   # the default: 2 seconds
    for fd3 in (b"bob@example.com\0wrong\0\0", b"nobody@example.com\0x\0\0", b"sysy\0wrong\0\0"):
        t = time.monotonic()
        code, _, err = home.run(fd3, prog=["/bin/true"])
        assert code == 1 and time.monotonic() - t >= 1.9
        login = fd3.split(b"\0")[0]
        assert err.startswith(b"checkpassword: failed: user=<" + login + b"> uid=%d" % os.getuid()), err
        assert err.count(b"\n") == 1 and b"wrong" not in err
    (home.path / "control/checkpwdelay").write_text("1\n")
    t = time.monotonic()
    assert home.run(b"bob@example.com\0wrong\0\0")[0] == 1 and time.monotonic() - t >= 0.9


def test_no_password_in_any_output(home):
    secret = "Zebra-Secret-42"
    for fd3 in (f"bob@example.com\0{secret}\0\0", f"sysy\0{secret}\0\0", f"nobody\0{secret}\0\0",
                f"bob@example.com\0{secret}", f"b b\0{secret}\0\0", f"bob@example.com\0{secret}\0" + "x" * 600):
        code, probe, err = home.run(fd3.encode(), prog=["/nonexistent"])
        assert secret.encode() not in err and "END" not in probe


def test_failure_log_lines_cannot_be_forged(home):
    forged = b"eve\nqmail-smtpd: auth-success user=<postmaster@example.com>"
    code, _, err = home.run(forged + b"\0Guess-1234\0\0", env=home.env(TCPREMOTEIP="10.0.0.1\nfake"))
    assert code == 1 and err.count(b"\n") == 1, err
    assert b"user=<eve?qmail-smtpd:?auth-success?user=?postmaster@example.com?>" in err
    assert b"ip=10.0.0.1?fake" in err and b"Guess-1234" not in err


# --- the seeds' memory limit ---------------------------------------------------------------

def test_yescrypt_under_softlimit(home):
    code, p, err = home.run(b"sysy\0yes-pw\0\0", limit=2000000)
    assert code == 0, err
    assert p["LIMIT_AS"] == "2000000"      # the limit is back before exec
    assert home.run(b"sysy\0wrong\0\0", limit=2000000)[0] == 1


def test_yescrypt_hard_limit_is_temporary(home):
    """With no room under the hard limit: 111 and a clear message, never a crash or a match."""
    import resource

    def hard():
        resource.setrlimit(resource.RLIMIT_AS, (4000000, 4000000))
    for pw in (b"yes-pw", b"wrong"):
        r, w = os.pipe()
        os.write(w, b"sysy\0" + pw + b"\0\0")
        os.close(w)
        p = subprocess.run([str(home.bin / "checkpassword"), "/bin/true"], env=home.env(), capture_output=True,
                           preexec_fn=lambda: (os.dup2(r, 3) if r != 3 else os.set_inheritable(3, True), hard()), close_fds=False, timeout=30)
        os.close(r)
        assert p.returncode == 111 and b"no memory for yescrypt (17 MiB): out of memory" in p.stderr and pw not in p.stderr


# --- checkpassword-users -------------------------------------------------------------------

def test_users_list_and_files(home):
    out = home.users("list").stdout.decode()
    assert out == (f"alice@example.com {VUID} {VGID} {home.homes / 'alice_example.com'} $6$ cram\n"
                   f"bob@example.com {VUID} {VGID} {home.homes / 'bob_example.com'} $6$\n")
    db = home.path / "users/checkpassword.cdb"
    assert db.stat().st_mode & 0o777 == 0o600
    assert not (home.path / "users/checkpassword.tmp").exists()
    # The record format, read by tinycdb, and its hash checked by libxcrypt.
    dump = subprocess.run(["cdb", "-q", str(db), "bob@example.com"], capture_output=True, timeout=10).stdout
    h, uid, gid, hdir, secret = dump.split(b":", 4)
    assert (int(uid), int(gid), hdir, secret) == (VUID, VGID, str(home.homes / "bob_example.com").encode(), b"")
    assert crypt.crypt("bob-pw", h.decode()) == h.decode()
    alice = subprocess.run(["cdb", "-q", str(db), "alice@example.com"], capture_output=True, timeout=10).stdout
    assert alice.endswith(b":alice-pw")
    maildir = home.homes / "bob_example.com" / "Maildir"
    assert all((maildir / d).is_dir() for d in ("cur", "new", "tmp"))
    assert (maildir.stat().st_uid, maildir.stat().st_mode & 0o777) == (VUID, 0o700)


def test_users_yescrypt_and_del(home):
    home.users("add", "-y", "-u", str(VUID), "-g", str(VGID), "-d", "/nonexistent/carol", "carol@example.com",
               password=b"carol-pw\r\n")
    assert "carol@example.com" in home.users("list").stdout.decode()
    assert "$y$" in home.users("list").stdout.decode()
    h = subprocess.run(["cdb", "-q", str(home.path / "users/checkpassword.cdb"), "carol@example.com"],
                       capture_output=True, timeout=10).stdout.split(b":")[0].decode()
    assert crypt.crypt("carol-pw", h) == h     # libxcrypt agrees
    assert home.run(b"carol@example.com\0carol-pw\0\0", prog=["/bin/true"], limit=2000000)[0] == 0
    home.users("del", "carol@example.com")
    assert home.run(b"carol@example.com\0carol-pw\0\0", prog=["/bin/true"])[0] == 1
    assert "carol" not in home.users("list").stdout.decode()


@pytest.mark.parametrize("args, password", [
    (["add", "-u", "1", "-g", "1", "-d", "/h", "bob@example.com"], b"x\n"),     # exists
    (["add", "-u", "1", "-g", "1", "-d", "/h", "b b@example.com"], b"x\n"),     # invalid login
    (["add", "-u", "1", "-g", "1", "-d", "relative", "dave@example.com"], b"x\n"),
    (["add", "-u", "1", "-g", "1", "-d", "/h:x", "dave@example.com"], b"x\n"),
    (["add", "-u", "1", "-d", "/h", "dave@example.com"], b"x\n"),               # numeric uid, no gid
    (["add", "-g", "1", "-d", "/h", "dave@example.com"], b"x\n"),               # no uid
    (["add", "-u", "1", "-g", "1", "-d", "/h", "dave@example.com"], b"\n"),     # empty password
    (["add", "-u", "1", "-g", "1", "-d", "/h", "dave@example.com"], b"a\0b\n"),
    (["add", "-u", "1", "-g", "1", "-d", "/h", "dave@example.com"], b"x" * 256 + b"\n"),
    (["passwd", "nobody@example.com"], b"x\n"),
    (["del", "nobody@example.com"], b""),
    (["frob"], b""), ([], b""), (["list", "extra"], b""), (["add", "-q", "x@y"], b"x\n"),
])
def test_users_refusals_change_nothing(home, args, password):
    db = home.path / "users/checkpassword.cdb"
    before = db.read_bytes()
    r = home.users(*args, password=password, check=False)
    assert r.returncode == 100, r.stderr
    assert r.stderr.startswith(b"checkpassword-users: fatal: ")
    assert db.read_bytes() == before


def test_users_concurrent_adds_all_land(home):
    procs = [subprocess.Popen([str(BIN / "checkpassword-users"), "add", "-u", "1", "-g", "1", "-d", f"/h/u{i}",
                               f"u{i}@example.com"], stdin=subprocess.PIPE, env=home.env())
             for i in range(12)]
    for p in procs:
        p.communicate(b"pw\n", timeout=60)
        assert p.returncode == 0
    listed = home.users("list").stdout.decode()
    assert all(f"u{i}@example.com " in listed for i in range(12))


# --- setuid root, as the seeds install vchkpw --------------------------------------------------

def in_namespace(home, exe, fd3, argv, uid, env, gid=None, groups=()):
    """Runs `exe argv` as `uid` (group `gid`, default the uid; supplementary `groups`)
    in a private mount namespace whose /var/qmail is `home`: a setuid run ignores
    QMAILHOME and reads the compiled-in /var/qmail, and this is how a test gives it
    one without touching the system's."""
    script = ('mount -t tmpfs rqmail-test /var && mkdir /var/qmail && mount --bind "$1" /var/qmail && '
              'shift && exec "$@" 3<&0')
    ids = ["setpriv", f"--reuid={uid}", f"--regid={uid if gid is None else gid}",
           f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"]
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(home.path),
                        *ids, str(exe), *argv], input=fd3, capture_output=True, env=env, timeout=60)
    return p.returncode, parse_probe(p.stdout), p.stderr


# The test qmail users (control/ids), as conftest's QHome has them.
TEST_IDS = ("alias:7790:7781\nqmaild:7791:7781\nqmaill:7792:7781\nroot:0:0\nqmailp:7794:7781\n"
            "qmailq:7795:7780\nqmailr:7796:7780\nqmails:7797:7780\nqmailtls:7798:7798\nqmail:7780\nnofiles:7781\n")
UNTRUSTED = 7799          # in no list: an ordinary local user
GROUPIE = 7789            # an ordinary user, but in the admin's group where a test says so
ADMIN_GROUP = 7788        # control/checkpwgroup, where a test names it


@pytest.fixture
def suid(home):
    need_root()
    exe = home.path / "suid" / "vchkpw"
    exe.parent.mkdir()
    exe.parent.chmod(0o755)
    exe.write_bytes((BIN / "checkpassword").read_bytes())
    os.chown(exe, 0, 0)
    exe.chmod(0o4711)
    home.path.chmod(0o755)
    (home.path / "control/ids").write_text(TEST_IDS)
    return exe


def test_setuid_smtp_gives_the_privilege_back(home, suid):
    """qmail-smtpd (qmaild) runs the setuid-root vchkpw: it reads the root-only database,
    then runs the program as qmaild, not as root."""
    code, p, err = in_namespace(home, suid, b"bob@example.com\0bob-pw\0\0", [PROBE], 7791,
                                home.env(TCPLOCALPORT="25"))
    assert code == 0, err
    assert p["Uid"] == ["7791"] * 4 and p["Gid"] == ["7791"] * 4 and p["env"]["USER"] == "bob"
    code, _, _ = in_namespace(home, suid, b"bob@example.com\0wrong\0\0", [PROBE], 7791, home.env(TCPLOCALPORT="25"))
    assert code == 3


def test_setuid_login_becomes_the_user(home, suid):
    """A login service run by a member of the group the admin named."""
    (home.path / "control/checkpwgroup").write_text(f"{ADMIN_GROUP}\n")
    code, p, err = in_namespace(home, suid, b"sys6\0six-pw\0" + TS + b"\0", [PROBE], GROUPIE,
                                home.env(TCPLOCALPORT="110"), gid=ADMIN_GROUP)
    assert code == 0, err
    assert p["Uid"] == [str(VUID)] * 4 and p["Groups"] == [str(VGID)] and p["CWD"] == str(home.homes / "sys6")


def test_setuid_refuses_other_callers_before_any_lookup(home, suid):
    """A local password oracle no more: an ordinary user's run is refused at once,
    whatever the login and password (nothing looked up, no hash computed, no delay to
    kill early), and logged without the password."""
    (home.path / "control/checkpwdelay").write_text("2\n")
    # A lookup would stop at this line with "unable to parse": the refusal comes first.
    (home.path / "control/checkpwsources").write_text("ldap\n")
    env = home.env(TCPLOCALPORT="110")
    for fd3 in (b"sys6\0Right-Or-Not-1\0" + TS + b"\0", b"sysy\0Right-Or-Not-2\0\0", b"nobody-here\0Right-Or-Not-3\0\0",
                b"alice@example.com\0" + TS + b"\0" + cram("alice-pw") + b"\0", b"ro\not\0Right-Or-Not-4\0\0"):
        t = time.monotonic()
        code, p, err = in_namespace(home, suid, fd3, [PROBE], UNTRUSTED, env)
        assert code == 111 and "END" not in p, err
        assert time.monotonic() - t < 1.5
        assert err.startswith(b"vchkpw: refused: uid 7799 may not run vchkpw setuid: user=<"), err
        assert err.count(b"\n") == 1 and b"Right-Or-Not" not in err and b"parse" not in err
    assert b"user=<ro?ot>" in err
    # With the group named, an ordinary user outside it is still refused.
    (home.path / "control/checkpwgroup").write_text(f"{ADMIN_GROUP}\n")
    assert in_namespace(home, suid, b"sys6\0six-pw\0\0", [PROBE], UNTRUSTED, env)[0] == 111


def test_setuid_trusted_callers(home, suid):
    """root, the qmail users of control/ids, and the admin's group (primary or
    supplementary) may; an unreadable group file is 111, not "nobody"."""
    fd3, env = b"bob@example.com\0bob-pw\0\0", home.env(TCPLOCALPORT="25")
    for uid in (7791, 7795, 7797):
        assert in_namespace(home, suid, fd3, [PROBE], uid, env)[0] == 0, uid
    # The TLS engine's user holds no qmail job that needs it, and reads hostile bytes.
    assert in_namespace(home, suid, fd3, [PROBE], 7798, env)[0] == 111
    assert in_namespace(home, suid, fd3, [PROBE], GROUPIE, env, gid=ADMIN_GROUP)[0] == 111
    (home.path / "control/checkpwgroup").write_text(f"{ADMIN_GROUP}\n")
    assert in_namespace(home, suid, fd3, [PROBE], GROUPIE, env, gid=ADMIN_GROUP)[0] == 0
    assert in_namespace(home, suid, fd3, [PROBE], GROUPIE, env, groups=[5, ADMIN_GROUP])[0] == 0
    assert in_namespace(home, suid, fd3, [PROBE], GROUPIE, env, groups=[5])[0] == 111
    (home.path / "control/checkpwgroup").unlink()
    (home.path / "control/checkpwgroup").mkdir()
    code, _, err = in_namespace(home, suid, fd3, [PROBE], 7791, env)
    assert code == 111 and b"checkpwgroup" in err
    (home.path / "control/checkpwgroup").rmdir()
    (home.path / "control/ids").write_text("qmaild:x\n")
    code, _, err = in_namespace(home, suid, fd3, [PROBE], 7791, env)
    assert code == 111 and b"control/ids" in err


def test_setuid_sniffed_exchange_gives_nothing(home, suid):
    """A CRAM-MD5 or APOP exchange sniffed once: from the qmail users it is verified
    (their own challenge); CREDENTIALS_LOOKUP in a setuid run is refused (it would
    print the clear password), and an admin-group caller gets no challenge proofs."""
    crammed = b"alice@example.com\0" + TS + b"\0" + cram("alice-pw") + b"\0"
    apopped = b"alice@example.com\0" + apop("alice-pw") + b"\0" + TS + b"\0"
    assert in_namespace(home, suid, crammed, [PROBE], 7791, home.env(TCPLOCALPORT="25"))[0] == 0
    for env in (home.env(ORIG_UID="7791", CREDENTIALS_LOOKUP="1"), home.env(CREDENTIALS_LOOKUP="1"),
                home.env(ORIG_UID="7791", CREDENTIALS_LOOKUP="1", AUTHORIZED="1")):
        code, p, err = in_namespace(home, suid, crammed, [PROBE], 7791, env)
        assert code == 111 and "END" not in p and b"alice-pw" not in err, err
        assert b"CREDENTIALS_LOOKUP" in err
    (home.path / "control/checkpwgroup").write_text(f"{ADMIN_GROUP}\n")
    for fd3 in (crammed, apopped):
        code, p, err = in_namespace(home, suid, fd3, [PROBE], GROUPIE, home.env(TCPLOCALPORT="110"), gid=ADMIN_GROUP)
        assert code == 111 and "END" not in p and b"challenge" in err, err
    code, p, _ = in_namespace(home, suid, b"alice@example.com\0alice-pw\0" + TS + b"\0", [PROBE], GROUPIE,
                              home.env(TCPLOCALPORT="110"), gid=ADMIN_GROUP)
    assert code == 0 and p["Uid"] == [str(VUID)] * 4


def test_setuid_ignores_qmailhome_and_refuses_lookups(home, suid, open_dir):
    """The caller's QMAILHOME must not choose the database or the passwd file."""
    other = Home(open_dir / "other")
    other.add("eve@example.com", "eve-pw")
    env = other.env(TCPLOCALPORT="25")
    assert in_namespace(home, suid, b"eve@example.com\0eve-pw\0\0", [PROBE], 7791, env)[0] == 3
    assert in_namespace(home, suid, b"bob@example.com\0bob-pw\0\0", [PROBE], 7791, env)[0] == 0
    code, p, err = in_namespace(home, suid, b"bob@example.com\0\0\0", [PROBE], 7791,
                                home.env(ORIG_UID="7791", AUTHORIZED="1"))
    assert code == 111 and "END" not in p and b"lookup" in err


def test_random_fd3_never_crashes_or_accepts(home):
    """500 random fd 3 inputs (mangled good ones among them) under each name: only the
    interface's codes, never a signal, never a login without the password."""
    import random
    rnd = random.Random(5)
    good = b"bob@example.com\0bob-pw\0\0"
    allowed = {"checkpassword": {1, 2}, "cmd5checkpw": {1, 2}, "vchkpw": {3, 11, 12, 13, 20}}
    for i in range(500):
        if rnd.random() < 0.5:
            data = bytearray(good)
            for _ in range(rnd.randrange(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            data = bytes(data)
        else:
            data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(600)))
        name = rnd.choice(list(allowed))
        code, probe, err = home.run(data, prog=["/nonexistent/prog"], name=name, limit=2000000)
        if b"\0bob-pw\0" in data:
            continue   # perhaps still a right login: the exec of /nonexistent would fail with 111
        assert code in allowed[name], (i, name, data[:80], code, err)
