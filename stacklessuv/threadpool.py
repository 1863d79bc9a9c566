"""The escape hatch: run a blocking call on a real OS thread without blocking the hub.

Use it for C code that blocks without going through a patched module (a C database
driver, a CPU-heavy hash, ``os.system``...). The calling tasklet parks; every other
tasklet keeps running. The threads are libuv's pool (``UV_THREADPOOL_SIZE``, default
4, shared with name resolution), so keep the calls finite: a call that never returns
holds a pool thread for ever.
"""

import functools

from stacklessuv._uv import ThreadResult, run_in_threadpool

__all__ = ["run"]


def run(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a pool thread; returns its result or raises its exception."""
    result = ThreadResult()
    if kwargs:
        fn = functools.partial(fn, **kwargs)
    run_in_threadpool(result, fn, args)
    return result.wait()
