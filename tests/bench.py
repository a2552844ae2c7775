#!/usr/bin/env python3
"""make bench: rqmail's ucspi-tcp next to Debian's, in the same run, as ratios.

- connections/s handed to a trivial static child, concurrency 1, 10 and 50
  (goal: >= 1.2x Debian's tcpserver)
- tcprules compile time for 10k, 100k and 1M lines (goal: >= 2x faster)
- peak RSS of tcpserver after the load
- whether tcpserver and a child run under the seeds' `softlimit -m 2000000`
Everything on loopback; every process started is stopped by pid.
"""

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "bin"
DEBIAN = Path("/usr/bin")
TESTBIN = ROOT / "target" / "test-bin"
CHILD = [str(TESTBIN / "envprobe"), "-"]
FLAGS = ["-H", "-R", "-l", "0", "-v", "-c", "100", "-b", "128"]
COUNT = int(os.environ.get("BENCH_CONNECTIONS", "4000"))


def start(exe, tmp, extra=(), prefix=()):
    cdb = tmp / "rules.cdb"
    log = open(tmp / f"log-{exe.parent.name}", "wb")
    p = subprocess.Popen([*prefix, str(exe), "-1", *FLAGS, *extra, "-x", str(cdb), "127.0.0.1", "0", *CHILD],
                         stdout=subprocess.PIPE, stderr=log, start_new_session=True, env={"DNSCACHEIP": "127.53.0.9"})
    return p, int(p.stdout.readline())


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def rate(port, conc, count):
    out = subprocess.run([str(TESTBIN / "connbench"), "127.0.0.1", str(port), str(conc), str(count)],
                         capture_output=True, text=True, timeout=600).stdout.split()
    assert out[3] == "0", f"connbench failures: {out}"
    return float(out[1])


def peak_rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def connections(tmp):
    print(f"tcpserver: connections/s to a trivial static child ({COUNT} connections, median of 3 runs)")
    print(f"  {'concurrency':>11} {'rqmail':>9} {'debian':>9} {'ratio':>7}")
    results = {}
    rss = {}
    for conc in (1, 10, 50):
        runs = {"rqmail": [], "debian": []}
        for _ in range(3):
            for name, d in (("rqmail", OURS), ("debian", DEBIAN)):
                p, port = start(d / "tcpserver", tmp)
                try:
                    rate(port, conc, 200)  # warm up
                    runs[name].append(rate(port, conc, COUNT))
                    rss[name] = max(rss.get(name, 0), peak_rss_kb(p.pid))
                finally:
                    stop(p)
        ours, theirs = statistics.median(runs["rqmail"]), statistics.median(runs["debian"])
        results[conc] = ours / theirs
        print(f"  {conc:>11} {ours:>9.0f} {theirs:>9.0f} {ours / theirs:>6.2f}x")
    print(f"tcpserver peak RSS (VmHWM of the parent): rqmail {rss['rqmail']} kB, debian {rss['debian']} kB")
    return results


def rules_text(n):
    r = random.Random(n)
    lines = []
    for i in range(n):
        a, b, c, d = (r.randrange(256) for _ in range(4))
        lines.append((f'{a}.{b}.{c}.{d}:allow,RELAYCLIENT=""', f"{a}.{b}.{c}.:deny",
                      f'=host{i}.example.com:allow,RBLSMTPD="",X="{i}"', f"{a}.{b}.:allow")[i % 4])
    return ("\n".join(lines) + "\n").encode()


def compile_time(d, text, tmp):
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([str(d / "tcprules"), str(tmp / "b.cdb"), str(tmp / "b.tmp")], input=text, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def tcprules_bench(tmp):
    print("tcprules: compile time, median of 5 (lower is better)")
    print(f"  {'lines':>9} {'rqmail':>9} {'debian':>9} {'speedup':>8}")
    for n in (10_000, 100_000, 1_000_000):
        text = rules_text(n)
        ours, theirs = compile_time(OURS, text, tmp), compile_time(DEBIAN, text, tmp)
        print(f"  {n:>9} {ours * 1000:>7.1f}ms {theirs * 1000:>7.1f}ms {theirs / ours:>7.2f}x")


def softlimit(tmp):
    print("softlimit -m 2000000 (the seeds' run line): tcpserver + static child serve a connection?")
    for name, d in (("rqmail", OURS), ("debian", DEBIAN)):
        p = subprocess.Popen(["/usr/bin/softlimit", "-m", "2000000", str(d / "tcpserver"), "-1", *FLAGS,
                              "127.0.0.1", "0", *CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            line = p.stdout.readline()
            ok = line.strip().isdigit() and rate(int(line), 1, 20) > 0
        except (AssertionError, IndexError, ValueError):
            ok = False
        finally:
            stop(p)
        print(f"  {name}: {'yes' if ok else 'no'}")


def main():
    for need in (DEBIAN / "tcpserver", Path("/usr/bin/softlimit"), TESTBIN / "connbench"):
        if not need.exists():
            sys.exit(f"bench: missing {need} (run make bench as root so tests/deps can install it)")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        subprocess.run([str(OURS / "tcprules"), str(tmp / "rules.cdb"), str(tmp / "rules.tmp")],
                       input=b'127.0.0.1:allow,RELAYCLIENT=""\n:allow\n', check=True)
        connections(tmp)
        tcprules_bench(tmp)
        softlimit(tmp)


if __name__ == "__main__":
    main()
