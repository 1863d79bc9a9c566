"""The Stackless API, re-exported from the Rust core, plus the pieces that are
simplest in Python (``atomic``) and the fork hook that keeps a child's hub working."""

import os

from stacklessuv._uv import (
    TaskletExit,
    ThreadResult,
    _after_fork_in_child,
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


class atomic:
    """``with atomic():`` marks the current tasklet atomic for the block.

    Scheduling here is cooperative, so nothing preempts a tasklet anyway; the flag is
    set and restored for code that reads ``tasklet.atomic``.
    """

    def __enter__(self):
        self._tasklet = getcurrent()
        self._old = self._tasklet.set_atomic(True)
        return self

    def __exit__(self, *exc_info):
        self._tasklet.set_atomic(self._old)
        return False


# A forked child inherits the parent's loop: libuv must re-create its kernel state.
os.register_at_fork(after_in_child=_after_fork_in_child)
