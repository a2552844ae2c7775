#!/usr/bin/env python3
"""make bench, checkpassword part: verifications per second and peak RSS.

- a user in rqmail's database (sha512-crypt), a yescrypt (Debian's default) and a
  sha512-crypt system account, each verified `BENCH_LOGINS` times in a row, as a login
  service calls it (setuid to the user, chdir, exec the program);
- next to DJB's checkpassword 0.90 (the maintained derivative, which links Debian's
  libxcrypt) when its source is given: CHECKPASSWORD_SRC=<git dir or source dir>, e.g.
  the mirror of github:rgglez/classic-checkpassword. It is built under target/peers/.
- whether each starts and verifies under the seeds' `softlimit -m 2000000`.

The system accounts are test copies bind-mounted over /etc/passwd and /etc/shadow in a
private mount namespace (root only), because DJB's checkpassword reads them through
getpwnam/getspnam; nothing on the system is changed. Both programs exec the same
/bin/true (through a link named `ok`), so peak RSS includes that program's.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "bin" / "checkpassword"
MAXRSS = ROOT / "target" / "test-bin" / "maxrss"
COUNT = int(os.environ.get("BENCH_LOGINS", "200"))
PEER_DIR = ROOT / "target" / "peers" / "checkpassword"


def build_peer():
    src = os.environ.get("CHECKPASSWORD_SRC")
    if not src:
        return None
    src = Path(src)
    if not (PEER_DIR / "checkpassword").exists():
        shutil.rmtree(PEER_DIR, ignore_errors=True)
        PEER_DIR.mkdir(parents=True)
        if (src / "HEAD").exists():   # a bare git directory, as fetch leaves it
            tar = subprocess.run(["git", "--git-dir", str(src), "archive", "HEAD"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(PEER_DIR)], input=tar.stdout, check=True)
        else:
            shutil.copytree(src, PEER_DIR, dirs_exist_ok=True)
        subprocess.run(["make", "checkpassword"], cwd=PEER_DIR, capture_output=True, check=True, timeout=600)
    return PEER_DIR / "checkpassword"


def verify(exe, fd3, prog=None, limit=None):
    """One verification through the maxrss launcher: (exit code, peak RSS in kB)."""
    r, w = os.pipe()
    os.write(w, fd3)
    os.close(w)
    argv = [str(MAXRSS)] + (["softlimit", "-m", str(limit)] if limit else []) + [str(exe), str(prog or OK)]
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=False, timeout=60,
                       preexec_fn=lambda: os.dup2(r, 3) if r != 3 else os.set_inheritable(3, True))
    os.close(r)
    lines = p.stderr.decode().splitlines()
    sys.stderr.write("".join(l + "\n" for l in lines[:-1]))
    _, rss, code = lines[-1].split()
    return int(code), int(rss)


def rate(exe, fd3):
    if verify(exe, fd3)[0] != 0:
        return None
    start = time.monotonic()
    for _ in range(COUNT):
        code, _ = verify(exe, fd3)
        assert code == 0, f"{exe}: exit {code}"
    return COUNT / (time.monotonic() - start)


def setup(tmp):
    global OK
    home = tmp / "qmail"
    (home / "control").mkdir(parents=True)
    (home / "control/checkpwdelay").write_text("0\n")
    users = tmp / "home"
    users.mkdir()
    OK = tmp / "ok"
    OK.symlink_to("/bin/true")
    os.environ["QMAILHOME"] = str(home)
    subprocess.run([str(ROOT / "bin/checkpassword-users"), "add", "-u", "7790", "-g", "7791", "-d", str(users),
                    "bench@example.com"], input=b"bench-pw\n", check=True)
    passwd = tmp / "passwd"
    shadow = tmp / "shadow"
    passwd.write_text(Path("/etc/passwd").read_text() + f"ysys:x:7790:7791::{users}:/bin/sh\n"
                      f"ssys:x:7790:7791::{users}:/bin/sh\n")
    shadow.write_text(f"ysys:{crypt.crypt('bench-pw', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$')}:19000:0:99999:7:::\n"
                      f"ssys:{crypt.crypt('bench-pw', crypt.mksalt(crypt.METHOD_SHA512))}:19000:0:99999:7:::\n")
    for real, copy in (("/etc/passwd", passwd), ("/etc/shadow", shadow)):
        subprocess.run(["mount", "--bind", str(copy), real], check=True)


def main():
    if os.geteuid() != 0:
        print("checkpassword bench: needs root (setuid to the user, a private mount namespace); skipped")
        return
    if os.environ.get("RQMAIL_BENCH_NS") != "1":
        os.environ["RQMAIL_BENCH_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable, *sys.argv])
    peer = build_peer()
    tmp = Path(tempfile.mkdtemp(prefix="bench-checkpassword-", dir=ROOT / "target"))
    tmp.chmod(0o755)
    try:
        setup(tmp)
        cases = [("rqmail database, sha512-crypt", b"bench@example.com\0bench-pw\0\0", False),
                 ("system account, yescrypt $y$j9T", b"ysys\0bench-pw\0\0", True),
                 ("system account, sha512-crypt", b"ssys\0bench-pw\0\0", True)]
        print(f"\ncheckpassword: {COUNT} verifications in a row each, as a login service runs it"
              " (setuid, chdir, exec /bin/true)")
        print(f"{'account':34} {'rqmail/s':>9} {'djb/s':>7} {'ratio':>6} {'rqmail peak RSS':>16}")
        for name, fd3, peer_too in cases:
            ours = rate(OURS, fd3)
            theirs = rate(peer, fd3) if peer and peer_too else None
            ratio = f"{ours / theirs:.2f}x" if ours and theirs else "-"
            # The verifier alone: `true` is answered without an exec.
            code, rss = verify(OURS, fd3, prog="/bin/true")
            fmt = lambda v: f"{v:.0f}" if v else "-"
            print(f"{name:34} {fmt(ours):>9} {fmt(theirs):>7} {ratio:>6} {f'{rss} kB' if code == 0 else '-':>16}")
        print("\nunder softlimit -m 2000000 (the seeds' vchkpw /bin/true):")
        for name, exe in (("rqmail checkpassword", OURS), ("djb checkpassword (dynamic)", peer)):
            if exe:
                res = [verify(exe, fd3, prog="/bin/true", limit=2000000)[0] for _, fd3, _ in cases]
                print(f"  {name:28} " + ", ".join(f"{label}: {'ok' if r == 0 else f'exit {r}'}"
                                                  for label, r in zip(("database", "yescrypt", "sha512"), res)))
        if not peer:
            print("  (set CHECKPASSWORD_SRC to compare with DJB's checkpassword)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
