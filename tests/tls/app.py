#!/usr/bin/env python3
"""A small line-protocol application for the TLS tests, run behind ucspi-tlsd: it asks
for TLS the UCSPI-TLS way (writes Y on $SSLCTLFD, reads the session variables, then
reads $SSLREADFD and writes $SSLWRITEFD), and answers:

  STARTTLS   220, then TLS          INFO       250 the session variables (or the env's)
  ECHO n     354, n bytes back, 250 SEND n     n bytes of a pattern, then 250
  WHOAMI     250 uid gid            KEYCHECK p 250 readable|denied, open|closed
  ENV NAME   250 value or -         EXIT       exits at once     QUIT  221, exits
"""
import os
import sys

rfd, wfd = 0, 1
buf = b""
info = {}


def out(data):
    while data:
        data = data[os.write(wfd, data):]


def line():
    global buf
    while b"\n" not in buf:
        chunk = os.read(rfd, 65536)
        if not chunk:
            sys.exit(0)
        buf += chunk
    l, _, buf = buf.partition(b"\n")
    return l.rstrip(b"\r")


def exactly(n):
    global buf
    while n:
        if not buf:
            buf = os.read(rfd, 65536)
            if not buf:
                sys.exit(1)
        take, buf = buf[:n], buf[n:]
        n -= len(take)
        yield take


out(b"220 tlsapp ready\r\n")
while True:
    cmd, _, arg = line().decode().partition(" ")
    cmd = cmd.upper()
    if cmd == "STARTTLS":
        ctl = os.environ.get("SSLCTLFD")
        if ctl is None:
            out(b"454 TLS not available\r\n")
            continue
        out(b"220 go ahead\r\n")
        os.write(int(ctl), b"Y")
        raw = b""
        while not raw.endswith(b"\0\0"):
            chunk = os.read(int(ctl), 4096)
            if not chunk:
                break
            raw += chunk
        info = dict(v.decode().split("=", 1) for v in raw.split(b"\0") if v)
        rfd, wfd = int(os.environ["SSLREADFD"]), int(os.environ["SSLWRITEFD"])
        buf = b""   # RFC 3207: nothing sent before the handshake counts
    elif cmd in ("EHLO", "HELO"):
        out(b"250-tlsapp\r\n250 STARTTLS\r\n")
    elif cmd == "INFO":
        v = info or {k: os.environ[k] for k in ("SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI") if k in os.environ}
        out(("250 " + " ".join(f"{k}={v[k]}" for k in sorted(v)) + "\r\n").encode())
    elif cmd == "ECHO":
        out(b"354 go\r\n")
        for chunk in exactly(int(arg)):
            out(chunk)
        out(b"250 echoed\r\n")
    elif cmd == "SEND":
        n = int(arg)
        block = bytes(range(256)) * 256
        while n:
            out(block[:n])
            n -= min(n, len(block))
        out(b"250 sent\r\n")
    elif cmd == "WHOAMI":
        out(f"250 {os.getuid()} {os.getgid()}\r\n".encode())
    elif cmd == "KEYCHECK":
        try:
            open(arg, "rb").close()
            r = "readable"
        except OSError:
            r = "denied"
        fds = os.listdir("/proc/self/fd")
        held = any(os.path.realpath(f"/proc/self/fd/{f}") == os.path.realpath(arg) for f in fds
                   if os.path.exists(f"/proc/self/fd/{f}"))
        out(f"250 {r} {'open' if held else 'closed'}\r\n".encode())
    elif cmd == "ENV":
        out(f"250 {os.environ.get(arg, '-')}\r\n".encode())
    elif cmd == "EXIT":
        os._exit(0)
    elif cmd == "QUIT":
        out(b"221 bye\r\n")
        sys.exit(0)
    else:
        out(b"500 what\r\n")
