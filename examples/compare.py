"""Run examples/http_fanout.py on OS threads and under stacklessuv, side by side.

    python examples/compare.py [--runs N] [http_fanout.py options...]

Each mode runs N times (3 by default; the modes take turns, so background load hits
both alike) as a subprocess of this interpreter:

    python examples/http_fanout.py --json                 # plain: real OS threads
    python -m stacklessuv examples/http_fanout.py --json  # patched: threads are tasklets

The table shows each mode's median, the range over the runs in brackets, and which
mode did better on that line. Any other options go to http_fanout.py unchanged
(--clients, --requests, --delay).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "http_fanout.py")
MODES = {
    "OS threads": [sys.executable, PROGRAM],
    "stacklessuv": [sys.executable, "-m", "stacklessuv", PROGRAM],
}
# (JSON key, label, format, True if higher is better)
ROWS = [
    ("wall_s", "wall time (s)", "{:.2f}", False),
    ("req_per_s", "requests/s", "{:.0f}", True),
    ("cpu_s", "CPU time, user+sys (s)", "{:.2f}", False),
    ("peak_rss_mib", "peak RSS (MiB)", "{:.1f}", False),
    ("rss_growth_mib", "  growth during run", "{:.1f}", False),
    ("peak_os_threads", "peak OS threads", "{:.0f}", False),
    ("errors", "errors", "{:.0f}", False),
]


def run_once(mode, extra):
    cmd = MODES[mode] + ["--json", *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return None, f"{mode}: timed out after 120s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return None, f"{mode}: exit {proc.returncode}\n    " + "\n    ".join(tail)
    return json.loads(lines[-1]), None


def cell(values, fmt):
    if not values:
        return "failed"
    median = fmt.format(statistics.median(values))
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return median if lo == hi else f"{median} ({lo}-{hi})"


def verdict(a_name, a, b_name, b, higher_better):
    if not a or not b:
        return ""
    x, y = statistics.median(a), statistics.median(b)
    if x == y:
        return "same"
    winner, w, lose = (a_name, x, y) if (x > y) == higher_better else (b_name, y, x)
    if w == 0 or lose == 0:
        return winner
    ratio = max(w, lose) / min(w, lose)
    return "about the same" if ratio < 1.05 else f"{winner}, {ratio:.1f}x"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Other options go to http_fanout.py."
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (default 3)")
    args, extra = parser.parse_known_args()

    results = {mode: [] for mode in MODES}
    first = None
    for i in range(args.runs):
        for mode in MODES:
            result, problem = run_once(mode, extra)
            if problem:
                print(f"run {i + 1} {problem}", flush=True)
                continue
            first = first or result
            results[mode].append(result)
            print(
                f"run {i + 1} {mode:<12} wall {result['wall_s']:.2f}s, "
                f"ok {result['ok']}/{result['requests']}, errors {result['errors']}",
                flush=True,
            )
    if first is None:
        sys.exit("every run failed")

    names = list(MODES)
    print()
    print(
        f"{first['clients']} client threads x {first['requests'] // first['clients']} "
        f"urllib requests to a ThreadingHTTPServer whose handler sleeps {first['delay_ms']:g} ms"
    )
    print(
        f"(one after the other: {first['serial_s']}s); median of {args.runs} runs per mode, "
        f"range in brackets"
    )
    row = "{:<24}{:<22}{:<22}{}".format
    print(row("", *names, "better"))
    print("-" * 86)
    for key, label, fmt, higher_better in ROWS:
        a = [r[key] for r in results[names[0]]]
        b = [r[key] for r in results[names[1]]]
        print(
            row(label, cell(a, fmt), cell(b, fmt), verdict(names[0], a, names[1], b, higher_better))
        )
    tasklet_runs = results["stacklessuv"]
    if tasklet_runs:
        ran_on = max(r["distinct_native_ids"] for r in tasklet_runs)
        print(
            f"\nUnder stacklessuv every client and handler ran on {ran_on} OS thread(s); the "
            f"rest of its\npeak OS threads are libuv's thread pool (4 by default), started by "
            f"the first getaddrinfo."
        )
    if any(len(results[m]) < args.runs for m in MODES):
        sys.exit("some runs failed (see above)")


if __name__ == "__main__":
    main()
