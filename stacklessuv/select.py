"""A green drop-in for the stdlib ``select`` module: ``select`` and ``poll`` park only
the calling tasklet. Readiness comes from poll(2) itself, after a wait on the hub,
and our sockets never read ahead, so what they report is the truth.

Differences from CPython: ``epoll``, ``devpoll`` and ``kqueue`` are not offered (code
that checks for them falls back to ``poll``; ``selectors.EpollSelector`` is green);
exceptional conditions (``xlist``, POLLPRI) are reported when present but do not by
themselves end a wait.
"""

import math
import select as _stdlib
from select import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, error

from stacklessuv import _uv

# every other constant of the stdlib module (POLLRDNORM, PIPE_BUF, ...)
_CONSTANTS = {n: getattr(_stdlib, n) for n in dir(_stdlib) if n.isupper()}
globals().update(_CONSTANTS)
__all__ = ["error", "select", "poll", *_CONSTANTS]

_real_epoll = getattr(_stdlib, "epoll", None)  # before patch_select takes it away
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


def _filenos(seq):
    """(object, fd) pairs, calling fileno() once per object while walking the live
    sequence by index, as CPython does (fileno() may even change the list)."""
    pairs = []
    i = 0
    while i < len(seq):
        obj = seq[i]
        pairs.append((obj, _fileno(obj)))
        i += 1
    return pairs


def _seconds(timeout):
    if timeout is None:
        return None
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise TypeError("timeout must be a float or None") from None
    if math.isnan(timeout):
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError("timeout must be non-negative")
    return timeout


def select(rlist, wlist, xlist, timeout=None):
    """select.select, parking the tasklet instead of the thread."""
    try:
        lists = [x if isinstance(x, (list, tuple)) else list(x) for x in (rlist, wlist, xlist)]
    except TypeError:
        raise TypeError("arguments 1-3 must be sequences") from None
    seconds = _seconds(timeout)
    pairs = [_filenos(objs) for objs in lists]
    fds = {}
    for objs, events in zip(pairs, (POLLIN, POLLOUT, POLLPRI), strict=True):
        for _obj, fd in objs:
            fds[fd] = fds.get(fd, 0) | events
    if not fds:
        if seconds is None:
            _uv.schedule_remove()  # nothing can ever be ready: wait forever (or deadlock)
        else:
            _uv.sleep(seconds)  # sleep(0) yields, as below
        return [], [], []
    ready = dict(_uv.poll_fds(list(fds.items()), seconds))
    if not ready and seconds == 0:
        _uv.schedule()  # see _Poll.poll
    if any(revents & POLLNVAL for revents in ready.values()):
        raise OSError(9, "Bad file descriptor")
    masks = (_REPORT_READ, _REPORT_WRITE, POLLPRI)
    return tuple(
        [obj for obj, fd in objs if ready.get(fd, 0) & mask]
        for objs, mask in zip(pairs, masks, strict=True)
    )


def poll():
    """select.poll(), parking the tasklet instead of the thread."""
    return object.__new__(_Poll)._start()


class _Poll:
    """The poll object; like CPython's, made only by select.poll()."""

    __module__ = "select"
    __qualname__ = "poll"

    def __new__(cls, *args, **kwargs):
        raise TypeError("cannot create 'select.poll' instances")

    def _start(self):
        self._fds = {}
        return self

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
            _uv.sleep(timeout)  # sleep(0) yields, as below
            return []
        ready = _uv.poll_fds(list(self._fds.items()), timeout)
        if not ready and timeout == 0:
            # A loop polling without waiting would starve the tasklet it waits for:
            # with threads, the OS would have run it meanwhile.
            _uv.schedule()
        return ready


_Poll.__name__ = "poll"


def epoll_selector_class():
    """selectors.EpollSelector for patched code that asks for it by name: it waits
    through the green poll, and a private (never waited on) epoll object mirrors the
    registrations so that what epoll refuses (a regular file: EPERM) is still refused
    and fileno() is an epoll fd, as with CPython's."""
    import selectors

    def mask(events):
        return (_stdlib.EPOLLIN if events & selectors.EVENT_READ else 0) | (
            _stdlib.EPOLLOUT if events & selectors.EVENT_WRITE else 0
        )

    class EpollSelector(selectors.PollSelector):
        def __init__(self):
            super().__init__()
            self._epoll = _real_epoll()

        def fileno(self):
            return self._epoll.fileno()

        def register(self, fileobj, events, data=None):
            key = super().register(fileobj, events, data)
            try:
                self._epoll.register(key.fd, mask(events))
            except BaseException:
                super().unregister(fileobj)
                raise
            return key

        def unregister(self, fileobj):
            key = super().unregister(fileobj)
            try:
                self._epoll.unregister(key.fd)
            except OSError:
                pass  # closed already: epoll forgot it, as CPython's unregister allows
            return key

        def modify(self, fileobj, events, data=None):
            key = super().modify(fileobj, events, data)
            self._epoll.modify(key.fd, mask(events))
            return key

        def close(self):
            self._epoll.close()
            super().close()

    EpollSelector.__module__ = "selectors"
    return EpollSelector
