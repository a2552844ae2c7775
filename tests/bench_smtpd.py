#!/usr/bin/env python3
"""make bench, SMTP part: messages/s accepted (250 after DATA, the message on disk)
with Postfix's smtp-source at concurrency 1, 10 and 50, against

- rqmail: tcpserver -> qmail-smtpd -> qmail-queue (fsync) into a private queue,
- Postfix (Debian's, the same run): master -> smtpd -> cleanup into a private queue,
  delivered to `discard:` so that the queue does not grow,

both on loopback, same message (1 KiB), same recipient; and the peak RSS of one SMTP
session (qmail-smtpd with its qmail-queue; Postfix's smtpd processes, which are reused).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from netkit import free_port, vmhwm, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
COUNT = int(os.environ.get("BENCH_SMTP_MESSAGES", "2000"))
CONCURRENCY = (1, 10, 50)


def source(port, conc, count):
    """smtp-source: `count` messages over `conc` sessions; returns messages/s."""
    start = time.monotonic()
    r = subprocess.run(["smtp-source", "-s", str(conc), "-m", str(count), "-l", "1024", "-f", "bench@example.net",
                        "-t", "rcpt@example.com", "-M", "bench.example.net", f"127.0.0.1:{port}"],
                       capture_output=True, timeout=900)
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode())
    return count / elapsed


def rqmail(tmp):
    home = tmp / "rqmail"
    home.mkdir()
    subprocess.run([str(BIN / "qmail-mkids"), "-1", str(home)], check=True)
    subprocess.run([str(BIN / "qmail-mkqueue"), str(home)], check=True)
    (home / "bin/qmail-queue").symlink_to(BIN / "qmail-queue")
    (home / "control/rcpthosts").write_text("example.com\n")
    (home / "control/me").write_text("bench.example.org\n")
    port = free_port()
    log = open(tmp / "rqmail.log", "ab")   # O_APPEND: many sessions write lines at once
    p = subprocess.Popen([str(BIN / "tcpserver"), "-R", "-H", "-l", "0", "-c", "100", "-b", "100",
                          "127.0.0.1", str(port),
                          str(ROOT / "target/test-bin/maxrss"), str(BIN / "qmail-smtpd")],
                         env=dict(os.environ, QMAILHOME=str(home)), stdout=subprocess.DEVNULL, stderr=log,
                         start_new_session=True)
    wait_port(port)
    return p, port, home


def postfix(tmp):
    """A private Postfix instance (root only: master must own its queue)."""
    if os.geteuid() != 0 or not Path("/usr/sbin/postfix").exists():
        return None
    conf, spool, data = tmp / "pf-conf", tmp / "pf-spool", tmp / "pf-data"
    for d in (conf, spool, data):
        d.mkdir()
    port = free_port()
    master = Path("/etc/postfix/master.cf").read_text().replace("smtp      inet", f"{port}      inet", 1)
    (conf / "master.cf").write_text(master)
    (conf / "main.cf").write_text(
        f"queue_directory = {spool}\ndata_directory = {data}\ncompatibility_level = 3.6\n"
        "myhostname = bench.example.org\nmydestination =\nrelay_domains = example.com\n"
        "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n"
        "default_transport = discard\nrelay_transport = discard\nlocal_transport = discard\n"
        "default_process_limit = 100\nsmtpd_client_connection_count_limit = 0\n"
        "smtpd_client_connection_rate_limit = 0\nsmtpd_peername_lookup = no\n"
        f"maillog_file_prefixes = {tmp}\nmaillog_file = {tmp}/postfix.log\n")
    import pwd
    os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
    subprocess.run(["/etc/postfix/post-install", f"config_directory={conf}", "meta_directory=/etc/postfix",
                    "create-missing"], capture_output=True)
    subprocess.run(["postfix", "-c", str(conf), "set-permissions"], capture_output=True)
    subprocess.run(["postconf", "-c", str(conf), "-F", "*/*/chroot = n"], check=True)
    # master in the foreground, as a child of this script (postfix start wants syslog).
    master = subprocess.Popen(["/usr/lib/postfix/sbin/master", "-c", str(conf), "-d"],
                              env=dict(os.environ, MAIL_CONFIG=str(conf)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port)
    return master, port


def main():
    if not shutil.which("smtp-source"):
        print("smtp bench: smtp-source (postfix) is missing; skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-smtpd-", dir=ROOT / "target"))
    tmp.chmod(0o755)   # Postfix's processes run as postfix
    ours = peer = None
    try:
        ours, oport, home = rqmail(tmp)
        peer = postfix(tmp)
        print(f"\nSMTP: messages/s accepted (250 after DATA), {COUNT} messages of 1 KiB per cell, smtp-source")
        print(f"{'sessions':>8} {'rqmail':>8} {'postfix':>8} {'ratio':>6}")
        for conc in CONCURRENCY:
            a = source(oport, conc, COUNT)
            b = source(peer[1], conc, COUNT) if peer else None
            print(f"{conc:>8} {a:>8.0f} {b or 0:>8.0f} {f'{a / b:.2f}x' if b else '-':>6}")
        ours.send_signal(signal.SIGTERM)
        ours.wait(10)
        import re
        sizes = [int(m) for m in re.findall(r"^maxrss (\d+) 0$", (tmp / "rqmail.log").read_text(), re.M)]
        queued = len(list((home / "queue/todo").iterdir()))
        print(f"peak RSS of one session: rqmail qmail-smtpd (with its qmail-queue) {max(sizes)} kB"
              f" (median {sorted(sizes)[len(sizes) // 2]} kB over {len(sizes)} sessions; {queued} messages queued)")
        if peer:
            print(f"  postfix smtpd (long-lived, reused processes) {vmhwm('smtpd -n ' + str(peer[1]))} kB,"
                  f" cleanup {vmhwm('cleanup -z')} kB")
    finally:
        if ours and ours.poll() is None:
            os.killpg(ours.pid, signal.SIGKILL)
        if peer:
            os.killpg(peer[0].pid, signal.SIGTERM)
            peer[0].wait(20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
