"""Echo benchmark: the same echo server in each implementation, loaded by one native
load generator (loadgen.c, epoll) on loopback, side by side in one run.

    .venv/bin/python bench/echo/run.py [--seconds 3] [--reps 3] [--idle 10000] [--only a,b]

Per implementation and rep: 100 connections x 64 B round trips, 100 x 16 KiB round
trips, connect/one round trip/close churn at 50 concurrent, and server RSS per idle
connection (10,000 connections). Each figure is divided by gevent-libev's from the
same rep; the table shows medians over the reps. Needs gcc and libuv headers
(Debian's libuv1-dev) for the native pieces, and gevent, eventlet, uvloop.
"""

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
IMPLS = [
    "stacklessuv",
    "gevent-libev",
    "gevent-libuv",
    "eventlet",
    "threads",
    "asyncio",
    "uvloop-streams",
    "uvloop-protocol",
    "c-libuv",
]
BASELINE = "gevent-libev"
GEVENT_LOOPS = {"gevent-libev": "libev-cext", "gevent-libuv": "libuv-cffi"}


def build():
    BUILD.mkdir(exist_ok=True)
    for name, libs in (("loadgen", []), ("uv_echo", ["-luv"])):
        src, exe = HERE / f"{name}.c", BUILD / name
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), *libs], check=True)


def more_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(impl, port):
    if impl == "c-libuv":
        cmd = [str(BUILD / "uv_echo"), str(port)]
    else:
        cmd = [sys.executable, str(HERE / "servers.py"), impl, str(port)]
    env = dict(os.environ)
    if impl in GEVENT_LOOPS:
        env["GEVENT_LOOP"] = GEVENT_LOOPS[impl]
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.Popen(cmd, env=env, preexec_fn=more_fds, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{impl} did not start listening")


def loadgen(*args, timeout=120):
    out = subprocess.run(
        [str(BUILD / "loadgen"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=more_fds,
        check=True,
    )
    return [float(x) for x in out.stdout.split()]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_rss_per_conn(proc, port, n):
    time.sleep(0.3)
    before = rss_kib(proc.pid)
    lg = subprocess.Popen(
        [str(BUILD / "loadgen"), "idle", "127.0.0.1", str(port), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=more_fds,
    )
    try:
        if lg.stdout.readline().strip() != "ready":
            raise RuntimeError("idle loadgen failed")
        time.sleep(0.5)
        after = rss_kib(proc.pid)
    finally:
        lg.stdin.close()
        lg.wait(timeout=60)
    return (after - before) / n


def measure(impl, seconds, idle_n):
    port = free_port()
    proc = start_server(impl, port)
    try:
        rr64, _ = loadgen("rr", "127.0.0.1", port, 100, 64, seconds)
        rr16k, mbps = loadgen("rr", "127.0.0.1", port, 100, 16384, seconds)
        (churn,) = loadgen("churn", "127.0.0.1", port, 50, seconds)
        rss = idle_rss_per_conn(proc, port, idle_n) if idle_n else float("nan")
    finally:
        proc.kill()
        proc.wait()
    return {"rr64": rr64, "rr16k": rr16k, "mbps16k": mbps, "churn": churn, "rss_kib": rss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    impls = [i for i in IMPLS if not args.only or i in args.only.split(",") or i == BASELINE]
    build()
    reps = []
    for rep in range(args.reps):
        row = {}
        for impl in impls:
            try:
                row[impl] = measure(impl, args.seconds, args.idle)
            except Exception as e:  # one broken implementation must not stop the run
                print(f"rep {rep + 1}: {impl} failed: {e}", file=sys.stderr)
                continue
            r = row[impl]
            print(
                f"rep {rep + 1} {impl:16} 64B {r['rr64']:9.0f}/s  16KiB {r['rr16k']:8.0f}/s "
                f"({r['mbps16k']:6.0f} MB/s)  churn {r['churn']:7.0f}/s  "
                f"idle {r['rss_kib']:5.1f} KiB/conn",
                flush=True,
            )
        reps.append(row)

    def ratio(impl, key):
        vals = [r[impl][key] / r[BASELINE][key] for r in reps if impl in r and BASELINE in r]
        return statistics.median(vals) if vals else float("nan")

    print()
    print(f"medians of {args.reps} reps, each divided by {BASELINE} within its rep")
    head = ("implementation", "64 B rr", "16 KiB rr", "churn", "RSS/idle conn")
    print(f"{head[0]:18} {head[1]:>8} {head[2]:>10} {head[3]:>7} {head[4]:>14}")
    summary = {}
    for impl in [i for i in impls if any(i in r for r in reps)]:
        rss = statistics.median(r[impl]["rss_kib"] for r in reps if impl in r)
        summary[impl] = {k: ratio(impl, k) for k in ("rr64", "rr16k", "churn")}
        summary[impl]["rss_kib_per_idle_conn"] = rss
        s = summary[impl]
        print(f"{impl:18} {s['rr64']:7.2f}x {s['rr16k']:9.2f}x {s['churn']:6.2f}x {rss:10.1f} KiB")
    keys = ("rr64", "mbps16k", "churn")
    base = {k: statistics.median(r[BASELINE][k] for r in reps) for k in keys}
    print(
        f"\n{BASELINE} itself: {base['rr64']:.0f} round trips/s, {base['mbps16k']:.0f} MB/s, "
        f"{base['churn']:.0f} conn/s"
    )
    out = HERE.parent / "results"
    out.mkdir(exist_ok=True)
    (out / "echo.json").write_text(json.dumps({"reps": reps, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
