"""stacklessuv: Stackless-style tasklets on one libuv loop per thread.

The scheduler API follows Stackless Python (tasklet, channel, schedule, run, ...).
Differences from Stackless: scheduling is purely cooperative (no preemption, so
``atomic`` only sets a flag), and ``run()`` also waits for tasklets parked on the
hub (sleep, I/O, threads), not just for runnable ones.
"""

from stacklessuv._tasklets import (
    TaskletExit,
    ThreadResult,
    atomic,
    bomb,
    channel,
    get_schedule_callback,
    getcurrent,
    getmain,
    getruncount,
    run,
    schedule,
    schedule_remove,
    set_schedule_callback,
    sleep,
    tasklet,
    wait_fd,
)

__all__ = [
    "TaskletExit",
    "ThreadResult",
    "atomic",
    "bomb",
    "channel",
    "get_schedule_callback",
    "getcurrent",
    "getmain",
    "getruncount",
    "run",
    "schedule",
    "schedule_remove",
    "set_schedule_callback",
    "sleep",
    "tasklet",
    "wait_fd",
]
