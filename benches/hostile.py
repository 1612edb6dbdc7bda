#!/usr/bin/env python3
"""Helpers for the "Hostile traffic" figures of benches/RESULTS.md (std-only Python 3).

  hostile.py target --listen 127.0.0.1:7300 [--log FILE]
      TCP target behind tunnel-server. A connection starting with "GET " is an HTTP-like request: counted
      (one line "REQUEST <n> <first line>" on stdout and in --log), answered and closed. Any other connection
      is a bulk transfer: 8-byte big-endian length, then that many bytes; answered "OK" once all arrived.

  hostile.py push --connect 127.0.0.1:7301 --bytes 67108864
      One bulk transfer through the tunnel client; prints "PUSH <bytes> <secs> <MB/s>" (time from connect to
      the target's "OK"). With --secs S: transfers one after the other for S seconds, then
      "PUSHES <count> <bytes> <secs> <MB/s>".

  hostile.py get --connect 127.0.0.1:7301 [--timeout 30]
      One request through the tunnel client; prints "GET <secs> <answer line>" (time from connect to answer).
"""
import argparse
import os
import socket
import sys
import threading
import time


RANDOM = os.urandom(1 << 22)


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def target(args):
    lock = threading.Lock()
    count = [0]
    log = open(args.log, "a", buffering=1) if args.log else None

    def handle(c):
        try:
            first = c.recv(65536)
            if first.startswith(b"GET "):
                with lock:
                    count[0] += 1
                    n = count[0]
                line = first.split(b"\r\n", 1)[0].decode(errors="replace")
                msg = f"REQUEST {n} {line}"
                print(msg, flush=True)
                if log:
                    log.write(msg + "\n")
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            buf = first
            while len(buf) < 8:
                more = c.recv(65536)
                if not more:
                    return
                buf += more
            want = int.from_bytes(buf[:8], "big")
            got = len(buf) - 8
            while got < want:
                more = c.recv(1 << 20)
                if not more:
                    return
                got += len(more)
            c.sendall(b"OK")
        except OSError:
            pass
        finally:
            c.close()

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr(args.listen))
    s.listen(1024)
    print("READY", args.listen, flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def push(args):
    if args.secs:
        t0, total, n = time.monotonic(), 0, 0
        while time.monotonic() - t0 < args.secs:
            push_once(args)
            total += args.bytes
            n += 1
        dt = time.monotonic() - t0
        print(f"PUSHES {n} {total} {dt:.3f} {total / dt / 1e6:.2f}", flush=True)
    else:
        push_once(args)


def push_once(args):
    t0 = time.monotonic()
    c = socket.create_connection(addr(args.connect), timeout=args.timeout)
    c.sendall(args.bytes.to_bytes(8, "big"))
    left, off = args.bytes, 0
    while left > 0:
        n = min(left, 1 << 16)
        c.sendall(RANDOM[off:off + n])  # random bytes: the tunnel compresses by default
        off = (off + n) % (len(RANDOM) - (1 << 16))
        left -= n
    ans = c.recv(2)
    dt = time.monotonic() - t0
    if ans != b"OK":
        print(f"PUSH FAILED after {dt:.2f}s: {ans!r}", flush=True)
        sys.exit(1)
    print(f"PUSH {args.bytes} {dt:.3f} {args.bytes / dt / 1e6:.2f}", flush=True)


def get(args):
    t0 = time.monotonic()
    try:
        c = socket.create_connection(addr(args.connect), timeout=args.timeout)
        c.sendall(b"GET /hostile HTTP/1.0\r\nHost: target\r\n\r\n")
        ans = c.recv(4096)
    except OSError as e:
        print(f"GET FAILED {time.monotonic() - t0:.3f} {e}", flush=True)
        sys.exit(1)
    dt = time.monotonic() - t0
    line = ans.split(b"\r\n", 1)[0].decode(errors="replace")
    print(f"GET {dt:.3f} {line}", flush=True)
    sys.exit(0 if line.startswith("HTTP/1.0 200") else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("target")
    t.add_argument("--listen", required=True)
    t.add_argument("--log")
    u = sub.add_parser("push")
    u.add_argument("--connect", required=True)
    u.add_argument("--bytes", type=int, default=64 << 20)
    u.add_argument("--timeout", type=float, default=120)
    u.add_argument("--secs", type=float, default=0, help="repeat transfers for this long; prints the total too")
    g = sub.add_parser("get")
    g.add_argument("--connect", required=True)
    g.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    {"target": target, "push": push, "get": get}[args.cmd](args)


if __name__ == "__main__":
    main()
