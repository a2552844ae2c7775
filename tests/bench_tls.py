#!/usr/bin/env python3
"""make bench, TLS part: the engine next to Debian's stunnel4 and openssl s_server.

- TLS 1.3 handshakes/s with an ECDSA P-256 and an RSA-2048 certificate, at client
  concurrency 1 and 4 (python ssl clients, each: connect, handshake, close). ucspi-tlsd
  -i and stunnel4 (inetd mode) run under the same rqmail tcpserver, one process per
  connection, with the same static application; openssl s_server is one process
  serving connections in turn (no fork, no application).
- bulk MB/s of one connection sending 256 MB through the engine to the application;
- peak RSS (VmHWM) of the engine process, and of stunnel4's, at the end of that session.
"""

import multiprocessing
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "tls"))
import certs  # noqa: E402
from netkit import free_port, vmhwm  # noqa: E402

TCPSERVER = ROOT / "bin" / "tcpserver"
TLSD = ROOT / "bin" / "ucspi-tlsd"
APP = ROOT / "target" / "test-bin" / "tlsbenchapp"
SECONDS = float(os.environ.get("BENCH_TLS_SECONDS", "4"))
# The engine's own user (it refuses to guess one): a uid of no system account.
ENGINE_IDS = {"TLS_UID": "7798", "TLS_GID": "7798"}
BULK = 256 << 20
# stunnel4 in inetd mode, at its fastest: without libwrap and syslog it starts twice
# as fast as with Debian's defaults.
STUNNEL = "pid =\ncert = {cert}\nexec = {app}\nexecArgs = tlsbenchapp {args}\nlibwrap = no\nsyslog = no\ndebug = 0\n"


def handshakes(port, seconds):
    ctx = ssl._create_unverified_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                n += 1
    return n


def rate(port, conc):
    with multiprocessing.Pool(conc) as pool:
        start = time.monotonic()
        total = sum(pool.starmap(handshakes, [(port, SECONDS)] * conc))
        return total / (time.monotonic() - start)


def bulk(port, pattern):
    ctx = ssl._create_unverified_context()
    block = os.urandom(1 << 20)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost") as s:
        start = time.monotonic()
        for _ in range(BULK >> 20):
            s.sendall(block)
        reply = s.recv(100)
        elapsed = time.monotonic() - start
        rss = vmhwm(pattern)
    assert reply.strip() == str(BULK).encode(), reply
    return BULK / elapsed / 1e6, rss


def start(argv, env=None):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    port = int(p.stdout.readline())
    return p, port


def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-", dir=ROOT / "target"))
    procs = []
    try:
        pki = certs.make(tmp)
        have_stunnel = shutil.which("stunnel4") is not None
        print(f"\nTLS 1.3 handshakes/s ({SECONDS:.0f} s per cell; python ssl clients)")
        print(f"{'cert':6} {'conc':>4} {'ucspi-tlsd':>11} {'stunnel4':>9} {'s_server':>9} {'vs stunnel4':>12}")
        for cert in ("ec", "rsa"):
            env = dict(os.environ, CERTFILE=str(pki[cert]), **ENGINE_IDS)
            ours, oport = start([str(TCPSERVER), "-1", "-R", "-H", "-l", "0", "-c", "200", "127.0.0.1", "0",
                                 str(TLSD), "-i", str(APP), "hello"], env)
            procs.append(ours)
            sport = None
            if have_stunnel:
                conf = tmp / f"stunnel-{cert}.conf"
                conf.write_text(STUNNEL.format(cert=pki[cert], app=APP, args="hello"))
                st, sport = start([str(TCPSERVER), "-1", "-R", "-H", "-l", "0", "-c", "200", "127.0.0.1", "0",
                                   "stunnel4", str(conf)])
                procs.append(st)
            s_port = free_port()
            ss = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{s_port}", "-cert",
                                   str(pki[cert + ".crt"]), "-key", str(pki[cert + ".key"]), "-tls1_3"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(ss)
            time.sleep(0.5)
            for conc in (1, 4):
                a = rate(oport, conc)
                b = rate(sport, conc) if sport else None
                c = rate(s_port, conc)
                print(f"{cert:6} {conc:>4} {a:>11.0f} {b or 0:>9.0f} {c:>9.0f} {f'{a / b:.2f}x' if b else '-':>12}")
            for p in procs:
                p.kill()
                p.wait()
            procs.clear()
        print(f"\nbulk: one connection, {BULK >> 20} MB client -> application; peak RSS of the TLS process")
        env = dict(os.environ, CERTFILE=str(pki["ec"]), **ENGINE_IDS)
        ours, oport = start([str(TCPSERVER), "-1", "-R", "-H", "-l", "0", "127.0.0.1", "0", str(TLSD), "-i",
                             str(APP), "sink", str(BULK)], env)
        procs.append(ours)
        mb, rss = bulk(oport, "ucspi-tlsd")
        print(f"  ucspi-tlsd  {mb:7.0f} MB/s  engine VmHWM {rss} kB")
        if have_stunnel:
            conf = tmp / "stunnel-bulk.conf"
            conf.write_text(STUNNEL.format(cert=pki["ec"], app=APP, args=f"sink {BULK}"))
            st, sport = start([str(TCPSERVER), "-1", "-R", "-H", "-l", "0", "127.0.0.1", "0", "stunnel4", str(conf)])
            procs.append(st)
            mb2, rss2 = bulk(sport, "stunnel4 " + str(conf))
            print(f"  stunnel4    {mb2:7.0f} MB/s  stunnel VmHWM {rss2} kB   (ucspi-tlsd {mb / mb2:.2f}x)")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
