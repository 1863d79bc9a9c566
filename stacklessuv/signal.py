"""Green ``signal``: what blocks the OS thread parks only the calling tasklet, and a
wake-up fd the program sets no longer displaces the hub's.

Python runs signal handlers in the main thread between bytecodes: here in whichever
tasklet runs Python code then, or in the hub right after a signal ended its sleep in
libuv. What differs from CPython, and why:

- ``signal()`` installs the program's handler wrapped, so that an exception it raises
  (``KeyboardInterrupt``, ``sys.exit()`` in a SIGTERM handler, a SIGALRM timeout) goes
  to the main tasklet, where CPython's main thread would get it, and not to whichever
  thread-tasklet happened to run. The handler itself still runs where the signal found
  Python, so ``current_thread()`` inside it may name that thread. ``getsignal()`` and
  ``signal()``'s return value give the program's own handler. Handlers installed
  before patching (Python's SIGINT handler among them) are wrapped at patch time.
  ``signal()`` and ``set_wakeup_fd()`` from a thread-tasklet raise CPython's
  ValueError, as from a thread.
- While a program's handler is installed, a main tasklet blocked with nothing else
  left to wake it (``stop.wait()`` until SIGTERM sets ``stop``) waits for a signal, as
  CPython would, instead of being reported as a deadlock.

- ``set_wakeup_fd``: the hub's pipe stays Python's wake-up fd (else a signal would no
  longer end the hub's sleep); the program's fd gets a copy of each signal byte when
  the hub next polls, a moment later than CPython's handler would write it. Arguments,
  errors, return values and ``warn_on_full_buffer`` reports are CPython's.
- ``pause()`` parks the tasklet until a signal arrives and its handler has run. The
  handler's exception comes out where the handler ran: in the main tasklet if the hub
  ran it, else in the tasklet running then (this one, if woken by another's poll).
- ``sigwait``, ``sigwaitinfo``, ``sigtimedwait`` wait on a signalfd(2) for the set, then
  take the signal with ``sigtimedwait(set, 0)`` on the calling OS thread, so signals
  pending for that thread (``raise_signal``, ``pthread_kill``) count as in CPython.
  Not libuv's thread pool: a pool thread cannot see signals pending for the caller's
  thread, and its own mask decides what reaches it. A set with a signal not blocked in
  this OS thread gets the real, thread-blocking call (POSIX leaves that case undefined;
  Linux takes such a signal before its handler runs, which a signalfd cannot).
- ``pthread_kill`` of a thread-tasklet's ident (not a pthread_t: CPython would crash or
  hit another thread) signals the OS thread that the tasklet runs on.
- ``pthread_sigmask``, ``alarm`` and ``setitimer`` are CPython's own; a mask is per OS
  thread, so all of its tasklets share it.
"""

import _signal
import math as _math
import operator as _operator
import os as _os
import select as _select
import sys as _sys
import time as _time

from stacklessuv._uv import (
    RoutedHandler,
    getcurrent,
    getmain,
    pause_for_signal,
    poll_fds,
    set_signal_forward,
    signal_wakeup_fd,
    signalfd,
)

__all__ = [
    "getsignal",
    "pause",
    "pthread_kill",
    "set_wakeup_fd",
    "sigtimedwait",
    "sigwait",
    "sigwaitinfo",
    "signal",
]

_real_signal = _signal.signal
_real_getsignal = _signal.getsignal
_real_set_wakeup_fd = _signal.set_wakeup_fd
_real_pause = _signal.pause
_real_sigwait = _signal.sigwait
_real_sigwaitinfo = _signal.sigwaitinfo
_real_sigtimedwait = _signal.sigtimedwait
_real_pthread_sigmask = _signal.pthread_sigmask
_real_pthread_kill = _signal.pthread_kill
_NON_NEGATIVE = "timeout must be non-negative"


def _in_main_tasklet():
    """Whether CPython would be in the main thread here: the main tasklet or the hub
    (whose greenlet runs no tasklet). On another OS thread, its main tasklet: CPython's
    own calls then refuse as they should."""
    try:
        return getcurrent() is getmain()
    except RuntimeError:
        return True  # the hub greenlet


def _not_from_a_thread(name):
    if not _in_main_tasklet():
        raise ValueError(f"{name} only works in main thread of the main interpreter")


def _routed(handler):
    """The program's handler, wrapped so that what it raises reaches the main tasklet."""
    return RoutedHandler(handler)


def _unwrapped(handler):
    return getattr(handler, "_stacklessuv_handler", handler)


def signal(signalnum, handler, /):
    """signal.signal: the handler's exceptions go to the main tasklet."""
    _not_from_a_thread("signal")
    installed = _routed(handler) if callable(handler) else handler
    return _unwrapped(_real_signal(signalnum, installed))


def getsignal(signalnum, /):
    """signal.getsignal: the program's own handler, not our wrapper."""
    return _unwrapped(_real_getsignal(signalnum))


def route_installed_handlers():
    """Wraps the Python handlers installed before patching (SIGINT's, at least)."""
    for signum in _signal.valid_signals():
        handler = _real_getsignal(signum)
        if callable(handler) and not hasattr(handler, "_stacklessuv_handler"):
            _real_signal(signum, _routed(handler))


def set_wakeup_fd(*args, **kwargs):
    """set_wakeup_fd(fd, /, *, warn_on_full_buffer=True) -> fd: the program's fd gets
    each signal byte from the hub, whose own pipe stays installed."""
    _not_from_a_thread("set_wakeup_fd")
    hub_fd = signal_wakeup_fd()
    old = _real_set_wakeup_fd(*args, **kwargs)  # CPython's checks and errors
    if hub_fd is None:
        return old
    fd = _operator.index(args[0])
    warn = bool(kwargs.get("warn_on_full_buffer", True))
    _real_set_wakeup_fd(hub_fd, warn_on_full_buffer=False)
    return set_signal_forward(fd, warn)


def pause(*args, **kwargs):
    """pause(): parks the tasklet until a signal arrives and its handler has run."""
    if args or kwargs or not pause_for_signal():
        return _real_pause(*args, **kwargs)  # an argument error, or off the main thread
    return None


def _sigset(sigset):
    """The set as a list (iterated once), with CPython's errors and without waiting."""
    sigset = list(sigset)
    try:
        _real_sigtimedwait(sigset, -1)
    except ValueError as e:
        if e.args != (_NON_NEGATIVE,):
            raise
    return sigset


def _timeout(obj):
    """sigtimedwait's timeout in seconds, with CPython's errors (rounded up to 1 ns)."""
    if isinstance(obj, float):
        if _math.isnan(obj):
            raise ValueError("Invalid value NaN (not a number)")
        ns = obj * 1e9
        if _math.isfinite(ns):
            ns = _math.ceil(ns)
        if not -(2.0**63) <= ns < 2.0**63:
            raise OverflowError("timestamp out of range for platform time_t")
    else:
        ns = _operator.index(obj) * 10**9
        if not -(2**63) <= ns < 2**63:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
    if ns < 0:
        raise ValueError(_NON_NEGATIVE)
    return ns / 1e9


def _all_blocked(sigset):
    blocked = _real_pthread_sigmask(_signal.SIG_BLOCK, [])
    return all(_operator.index(s) in blocked for s in sigset)


def _wait(sigset, timeout):
    """The siginfo of a signal of the set taken on this OS thread, or None on timeout."""
    deadline = None if timeout is None else _time.monotonic() + timeout
    fd = signalfd([_operator.index(s) for s in sigset])
    try:
        while True:
            # Checked after the signalfd exists: a signal after this makes it readable.
            info = _real_sigtimedwait(sigset, 0)
            if info is not None:
                return info
            left = None
            if deadline is not None:
                left = deadline - _time.monotonic()
                if left <= 0:
                    return None
            poll_fds([(fd, _select.POLLIN)], left)
    finally:
        _os.close(fd)


def sigwaitinfo(*args, **kwargs):
    """sigwaitinfo(sigset, /): parks the tasklet while no signal of the set is pending."""
    if len(args) != 1 or kwargs:
        return _real_sigwaitinfo(*args, **kwargs)
    sigset = _sigset(args[0])
    if not _all_blocked(sigset):
        return _real_sigwaitinfo(sigset)
    return _wait(sigset, None)


def sigtimedwait(*args, **kwargs):
    """sigtimedwait(sigset, timeout, /): parks the tasklet until a signal of the set is
    pending or the timeout passes (then None)."""
    if len(args) != 2 or kwargs:
        return _real_sigtimedwait(*args, **kwargs)
    sigset = _sigset(args[0])
    timeout = _timeout(args[1])
    if not _all_blocked(sigset):
        return _real_sigtimedwait(sigset, args[1])
    return _wait(sigset, timeout)


def sigwait(sigset):
    """sigwait(sigset): parks the tasklet while no signal of the set is pending."""
    sigset = _sigset(sigset)
    if _all_blocked(sigset):
        signum = _wait(sigset, None).si_signo
    else:
        signum = _real_sigwait(sigset)
    try:
        return _signal_module().Signals(signum)
    except ValueError:
        return signum


def _signal_module():
    import signal

    return signal


def _os_thread_of(ident):
    """The pthread ident of the OS thread a thread-tasklet's ident runs on."""
    import threading

    real = _sys._current_frames()  # keyed by the idents of real threads
    if ident in real:
        return ident
    thread = threading._active.get(ident)
    if thread is None or thread.native_id is None:
        return ident
    for other_ident, other in list(threading._active.items()):
        if other_ident in real and other.native_id == thread.native_id:
            return other_ident
    return ident


def pthread_kill(*args, **kwargs):
    """pthread_kill(thread_id, signalnum, /): a thread-tasklet's ident means its OS thread."""
    if len(args) == 2 and not kwargs and isinstance(args[0], int):
        args = (_os_thread_of(args[0]), args[1])
    return _real_pthread_kill(*args, **kwargs)


def patches():
    """(module, name, value) for monkey.patch_signal. signal() and getsignal() replace
    _signal's: the stdlib's signal.signal() wraps them with its enum conversions."""
    return [
        ("_signal" if name in ("signal", "getsignal") else "signal", name, globals()[name])
        for name in __all__
    ]
