"""Deterministic switch cost: instructions per switch counted by valgrind's callgrind,
for schedule() between two tasklets and for raw greenlet.switch() between two
greenlets. Wall-clock figures on a shared machine are noisy; these are not.

    .venv/bin/python bench/switch_instructions.py      (needs valgrind)
"""

import re
import subprocess
import sys

PROGRAM = r"""
import sys, greenlet, stacklessuv as s
n = int(sys.argv[2])
if sys.argv[1] == "schedule":
    def spin(n):
        for _ in range(n):
            s.schedule()
    s.tasklet(spin)(n // 2)
    s.tasklet(spin)(n // 2)
    s.run()
else:
    main = greenlet.getcurrent()
    def other():
        for _ in range(n // 2):
            main.switch()
    g = greenlet.greenlet(other)
    for _ in range(n // 2):
        g.switch()
"""


def instructions(mode, n):
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            PROGRAM,
            mode,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def per_switch(mode):
    # the difference of two runs cancels start-up and teardown
    return (instructions(mode, 200_000) - instructions(mode, 100_000)) / 100_000


if __name__ == "__main__":
    sched, raw = per_switch("schedule"), per_switch("raw")
    print(f"schedule() between two tasklets: {sched:7.0f} instructions/switch")
    print(f"raw greenlet.switch():           {raw:7.0f} instructions/switch")
    print(f"ratio: {sched / raw:.2f}x (target <= 1.5x)")
