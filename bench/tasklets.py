"""Scheduler micro-benchmarks: stacklessuv beside gevent and raw greenlet.

    .venv/bin/python bench/tasklets.py [--seconds-per-case 1.0] [--reps 3]

Each case runs in its own subprocess, repeated; the median is reported.
  channel ping-pong   round trips/s between two tasklets over two channels
                      (gevent: gevent.queue.Channel)
  schedule() switch   switches/s with two tasklets yielding to each other
                      (raw: two greenlets calling g.switch() on each other)
  sleep(0) round      sleep(0) calls/s from one tasklet (gevent: gevent.sleep(0))
  greenlet C API      switches/s between two Rust greenlets through greenlet's C API
                      versus g.switch() looked up and called through Python
"""

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

CASES = {
    "uv_channel": """
        import stacklessuv as s
        a, b = s.channel(), s.channel()
        def pong():
            while True:
                b.send(a.receive())
        s.tasklet(pong)()
        def bench(n):
            for i in range(n):
                a.send(i)
                b.receive()
        rate = measure(bench)
    """,
    "gevent_channel": """
        import gevent, gevent.queue
        a, b = gevent.queue.Channel(), gevent.queue.Channel()
        def pong():
            while True:
                b.put(a.get())
        gevent.spawn(pong)
        gevent.sleep(0)
        def bench(n):
            for i in range(n):
                a.put(i)
                b.get()
        rate = measure(bench)
    """,
    "uv_schedule": """
        import stacklessuv as s
        def spin(n):
            for _ in range(n):
                s.schedule()
        def bench(n):
            s.tasklet(spin)(n // 2)
            s.tasklet(spin)(n // 2)
            s.run()
        rate = measure(bench)
    """,
    "raw_greenlet_switch": """
        import greenlet
        def bench(n):
            main = greenlet.getcurrent()
            def other():
                back = main
                for _ in range(n // 2):
                    back.switch()
            g = greenlet.greenlet(other)
            for _ in range(n // 2):
                g.switch()
        rate = measure(bench)
    """,
    "uv_sleep0": """
        import stacklessuv as s
        def bench(n):
            for _ in range(n):
                s.sleep(0)
        rate = measure(bench)
    """,
    "gevent_sleep0": """
        import gevent
        def bench(n):
            for _ in range(n):
                gevent.sleep(0)
        rate = measure(bench)
    """,
    "greenlet_capi": """
        import stacklessuv._uv as u
        rate = measure(lambda n: u._switch_bench(n // 2, True))
    """,
    "greenlet_python_switch": """
        import stacklessuv._uv as u
        rate = measure(lambda n: u._switch_bench(n // 2, False))
    """,
}

HARNESS = """
import json, sys, time
SECONDS = {seconds}
def measure(bench):
    n = 1000
    while True:
        t = time.perf_counter(); bench(n); dt = time.perf_counter() - t
        if dt > SECONDS / 4:
            break
        n *= 4
    n = max(1000, int(n * SECONDS / dt))
    t = time.perf_counter(); bench(n); dt = time.perf_counter() - t
    return n / dt
"""


def run_case(name, seconds):
    code = HARNESS.format(seconds=seconds) + textwrap.dedent(CASES[name])
    code += "\nprint(json.dumps(rate))\n"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1:]
    return json.loads(out.stdout), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds-per-case", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rates = {}
    for name in CASES:
        got = []
        for _ in range(args.reps):
            rate, err = run_case(name, args.seconds_per_case)
            if err:
                print(f"{name}: failed: {err}", file=sys.stderr)
                break
            got.append(rate)
        rates[name] = statistics.median(got) if got else None

    def fmt(x):
        return "n/a" if x is None else f"{x / 1e6:7.3f} M/s"

    def ratio(a, b):
        if rates.get(a) is None or rates.get(b) is None:
            return "n/a"
        return f"{rates[a] / rates[b]:.2f}x"

    print(f"{'case':28} {'rate':>12}")
    for name, rate in rates.items():
        print(f"{name:28} {fmt(rate):>12}")
    print()
    print("channel ping-pong, stacklessuv / gevent:       ", ratio("uv_channel", "gevent_channel"))
    print(
        "switch cost, schedule() / raw greenlet switch: ",
        ratio("raw_greenlet_switch", "uv_schedule"),
        "(cost ratio; target <= 1.5x)",
    )
    print("sleep(0) rounds, stacklessuv / gevent:         ", ratio("uv_sleep0", "gevent_sleep0"))
    print(
        "greenlet C API / Python g.switch():            ",
        ratio("greenlet_capi", "greenlet_python_switch"),
    )


if __name__ == "__main__":
    main()
