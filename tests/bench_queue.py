#!/usr/bin/env python3
"""make bench, queue part: how fast messages become durable.

- qmail-queue messages/s for 1 KiB and 100 KiB messages with 1 and 8 writers,
  next to this disk's own fsync ceiling (create + write + fsync + unlink per op),
  measured in the same run on the same filesystem;
- rqmail's `sendmail` (sendmail -> qmail-inject -> qmail-queue) next to Postfix's
  `sendmail` (sendmail -> postdrop into maildrop/), the Debian package, as a ratio.
Both queues live in a temporary directory under target/ and are removed afterwards.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "bin"
BENCH = ROOT / "target" / "test-bin" / "queuebench"
COUNT = int(os.environ.get("BENCH_MESSAGES", "1000"))
CASES = [(1, 1024), (1, 102400), (8, 1024), (8, 102400)]


def rate(conc, size, mode, *prog, env=None):
    out = subprocess.run([str(BENCH), str(conc), str(COUNT), str(size), mode, *map(str, prog)],
                         capture_output=True, text=True, env=env, timeout=900).stdout.split()
    assert out and out[3] == "0", f"queuebench failures: {out}"
    return float(out[1])


def make_home(tmp):
    home = tmp / "rqmail"
    home.mkdir()
    subprocess.run([str(OURS / "qmail-mkids"), "-1", str(home)], check=True)
    subprocess.run([str(OURS / "qmail-mkqueue"), str(home)], check=True)
    for p in ("qmail-queue", "qmail-inject", "sendmail"):
        (home / "bin" / p).symlink_to(OURS / p)
    (home / "control" / "me").write_text("bench.example.org\n")
    return home


def make_postfix(tmp):
    """A private Postfix queue (postdrop needs root to use another config directory)."""
    if os.geteuid() != 0 or not Path("/usr/sbin/postdrop").exists():
        return None
    conf, spool = tmp / "postfix", tmp / "postfix-spool"
    conf.mkdir()
    spool.mkdir()
    (tmp / "postfix-data").mkdir()
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    (conf / "main.cf").write_text(f"queue_directory = {spool}\ndata_directory = {tmp}/postfix-data\n"
                                  "compatibility_level = 3.6\nmyhostname = bench.example.org\n"
                                  f"maillog_file_prefixes = {tmp}\nmaillog_file = {tmp}/postfix.log\n")
    r = subprocess.run(["postfix", "-c", str(conf), "set-permissions"], capture_output=True)
    return conf if r.returncode == 0 else None


def main():
    if not BENCH.exists():
        sys.exit(f"bench: missing {BENCH} (make builds it)")
    (ROOT / "target").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as t:
        tmp = Path(t)
        home = make_home(tmp)
        env = dict(os.environ, QMAILHOME=str(home), USER="bench")
        postfix = make_postfix(tmp)
        fsdir = tmp / "fsync"
        fsdir.mkdir()
        print(f"queue: messages/s made durable ({COUNT} per case); the disk's fsync ceiling in the same run")
        print(f"  {'writers':>7} {'size':>6} {'fsync/s':>8} {'qmail-queue':>11} {'rqmail sendmail':>15} "
              f"{'postfix sendmail':>16} {'ratio':>6}")
        for conc, size in CASES:
            ceiling = rate(conc, size, "fsync", fsdir)
            qq = rate(conc, size, "qq", home / "bin/qmail-queue", env=env)
            ours = rate(conc, size, "stdin", home / "bin/sendmail", "rcpt@example.net", env=env)
            if postfix:
                theirs = rate(conc, size, "stdin", "/usr/sbin/sendmail", "-C", postfix, "rcpt@example.net")
                peer = f"{theirs:>16.0f} {ours / theirs:>5.2f}x"
            else:
                peer = f"{'(needs root+postfix)':>23}"
            print(f"  {conc:>7} {size // 1024:>4}Ki {ceiling:>8.0f} {qq:>11.0f} {ours:>15.0f} {peer}")
        print("  qmail-queue makes 4 fsyncs per message (message, envelope, mess/ and todo/ directories);"
              " postdrop makes 1")


if __name__ == "__main__":
    main()
