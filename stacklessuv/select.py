"""A green drop-in for the stdlib ``select`` module: ``select`` and ``poll`` park only
the calling tasklet. Readiness comes from poll(2) itself, after a wait on the hub,
and our sockets never read ahead, so what they report is the truth.

Differences from CPython: ``epoll``, ``devpoll`` and ``kqueue`` are not offered (code
that checks for them falls back to ``poll``); exceptional conditions (``xlist``,
POLLPRI) are reported when present but do not by themselves end a wait.
"""

import math
import select as _stdlib
from select import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, error

from stacklessuv import _uv

# every other constant of the stdlib module (POLLRDNORM, PIPE_BUF, ...)
_CONSTANTS = {n: getattr(_stdlib, n) for n in dir(_stdlib) if n.isupper()}
globals().update(_CONSTANTS)
__all__ = ["error", "select", "poll", *_CONSTANTS]

_REPORT_READ = POLLIN | POLLHUP | POLLERR
_REPORT_WRITE = POLLOUT | POLLERR


def _fileno(obj):
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = obj.fileno()
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _seconds(timeout, what):
    if timeout is None:
        return None
    timeout = float(timeout)
    if math.isnan(timeout):
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError(f"{what} must be non-negative")
    return timeout


def select(rlist, wlist, xlist, timeout=None):
    """select.select, parking the tasklet instead of the thread."""
    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    seconds = _seconds(timeout, "timeout")
    fds = {}
    for objs, events in ((rlist, POLLIN), (wlist, POLLOUT), (xlist, POLLPRI)):
        for obj in objs:
            fd = _fileno(obj)
            fds[fd] = fds.get(fd, 0) | events
    if not fds:
        if seconds is None:
            _uv.schedule_remove()  # nothing can ever be ready: wait forever (or deadlock)
        elif seconds:
            _uv.sleep(seconds)
        return [], [], []
    ready = dict(_uv.poll_fds(list(fds.items()), seconds))
    if any(revents & POLLNVAL for revents in ready.values()):
        raise OSError(9, "Bad file descriptor")
    return (
        [o for o in rlist if ready.get(_fileno(o), 0) & _REPORT_READ],
        [o for o in wlist if ready.get(_fileno(o), 0) & _REPORT_WRITE],
        [o for o in xlist if ready.get(_fileno(o), 0) & POLLPRI],
    )


class poll:
    """select.poll, parking the tasklet instead of the thread."""

    def __init__(self):
        self._fds = {}

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        self._fds[_fileno(fd)] = eventmask & 0xFFFF

    def modify(self, fd, eventmask):
        fd = _fileno(fd)
        if fd not in self._fds:
            raise FileNotFoundError(2, "No such file or directory")
        self._fds[fd] = eventmask & 0xFFFF

    def unregister(self, fd):
        del self._fds[_fileno(fd)]

    def poll(self, timeout=None):
        """timeout in milliseconds; None or negative waits without limit."""
        if timeout is not None:
            timeout = float(timeout)
            timeout = None if timeout < 0 else timeout / 1000.0
        if not self._fds:
            if timeout is None:
                raise RuntimeError("poll() with no fds and no timeout would wait forever")
            if timeout:
                _uv.sleep(timeout)
            return []
        return _uv.poll_fds(list(self._fds.items()), timeout)
