#!/usr/bin/env python3
"""Go↔Go rows for `kcpbench throughput --transport tcp,smux-tcp --op oneway`, which kcpbench itself
does not run (its kcp-go column is for KCP transports only). Drives the kcpbench-go peer that kcpbench
builds (target/release/kcpbench-go) through its control protocol: `serve`, one `listen` per row,
then `kcpbench-go run '<sink job>'`. The config is kcpbench's default (kcptun's: smuxbuf 4 MiB,
streambuf 2 MiB, frames 32 KiB), as in the Rust rows.

  benches/go/smuxbench/kcpbench_go_tcp.py [--bytes N] [--smuxver 1|2] [--exe PATH]
"""
import argparse, json, socket, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("--bytes", type=int, default=256 << 20)
ap.add_argument("--smuxver", type=int, default=2)
ap.add_argument("--exe", default="target/release/kcpbench-go")
a = ap.parse_args()

srv = subprocess.Popen([a.exe, "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
try:
    ready = srv.stdout.readline().split()
    assert ready[0] == "READY", ready
    host, port = ready[1].rsplit(":", 1)
    rates = {}
    for transport in ("tcp", "smux-tcp"):
        cfg = {"transport": transport, "smuxver": a.smuxver}
        ctl = socket.create_connection((host, int(port)))
        f = ctl.makefile("rw")
        f.write(json.dumps({"cmd": "listen", "config": cfg}) + "\n")
        f.flush()
        rep = json.loads(f.readline())
        assert rep.get("ok"), rep
        job = {"addr": f"127.0.0.1:{rep['port']}", "config": cfg, "test": "sink",
               "bytes": a.bytes, "streams": 1}
        out = subprocess.run([a.exe, "run", json.dumps(job)], capture_output=True, text=True, timeout=300)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        ctl.close()
        if not res.get("ok"):
            print(f"go {transport} v{a.smuxver}: FAILED {res.get('error')}")
            continue
        rates[transport] = res["bytes"] / res["secs"] / 1e6
        print(f"go {transport:8} v{a.smuxver} {rates[transport]:8.1f} MB/s ({res['bytes']} B in {res['secs']:.2f} s)")
    if len(rates) == 2:
        print(f"go smux-tcp/tcp v{a.smuxver} ratio {rates['smux-tcp'] / rates['tcp']:.2f}")
finally:
    srv.kill()
    srv.wait()
