"""Green ``os.read`` and ``os.write`` for pipes, ttys and other pollable fds.

With threads as tasklets, a thread that reads a pipe (``subprocess``, a self-pipe, a
worker feeding another) must park only its tasklet. Each call first asks poll(2)
whether the fd is ready, so a regular file, a ready pipe or a non-blocking fd goes
straight to the real call (one extra syscall); only a blocking fd that is not ready
parks the tasklet until it is.
"""

import os as _os
import select as _select

from stacklessuv._uv import poll_fds

__all__ = ["read", "write"]

_real_read = _os.read
_real_write = _os.write


def _wait(fd, events):
    if not poll_fds([(fd, events)], 0) and _os.get_blocking(fd):
        poll_fds([(fd, events)], None)


def read(fd, n, /):
    """os.read: parks the tasklet, not the thread, while a blocking fd has no data."""
    _wait(fd, _select.POLLIN)
    return _real_read(fd, n)


def write(fd, data, /):
    """os.write: parks the tasklet, not the thread, while a blocking fd is full."""
    _wait(fd, _select.POLLOUT)
    return _real_write(fd, data)
