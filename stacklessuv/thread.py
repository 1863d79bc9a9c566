"""Threads as tasklets: a green ``_thread`` and the pieces of ``threading`` that need it.

After ``monkey.patch_thread()`` a "thread" is a tasklet on the calling OS thread's hub:
``start_new_thread`` schedules one, locks park the tasklet instead of the OS thread, and
``get_ident()`` names the tasklet. Differences from real threads, and why:

- The main tasklet of an OS thread keeps that thread's real ident, so
  ``threading.main_thread()`` and threads started before patching stay who they are.
- A plain tasklet (made with ``tasklet()``, not as a thread) gets a dummy Thread from
  ``current_thread()`` that lives and dies with the tasklet; CPython would register a
  _DummyThread for ever (it still does for ``_thread.start_new_thread`` threads).
- Signal handlers run in whichever tasklet is running. With ``patch_signal`` their
  exceptions go to the main tasklet (see stacklessuv.signal); without it, a
  KeyboardInterrupt that escapes a thread-tasklet is sent to the main tasklet, where
  CPython would have raised it.
- ``get_native_id()`` stays the kernel's id: thread-tasklets share their OS thread's.
- ``threading.local`` keeps one dict per tasklet (``local`` below); as with CPython's
  C version, a thread's data goes when the thread-tasklet ends.
- Scheduling is cooperative: a thread-tasklet runs until it blocks (I/O, a lock, sleep).
  One that spins (``while not lock.acquire(False): pass``) or computes without
  blocking starves the others; ``time.sleep(0)`` in the loop lets them run.
- A lock released to a waiter is handed to it (no barging, so a tasklet that loops
  acquire/release cannot starve the others); until the waiter runs, ``locked()`` is
  False, as right after a real release, but nobody else can take it.
- After ``os.fork()`` only the forking thread-tasklet's thread goes on in the child, as
  with real threads; the others never run again (plain tasklets do go on).
- Per-OS-thread state is shared by its thread-tasklets: ``sys.settrace``/``setprofile``
  set in one apply to all, and ``sys._current_frames()`` lists OS threads only.
"""

import contextlib
import os
import sys
import weakref

from stacklessuv._uv import RLock, allocate_lock, get_ident, getcurrent, getmain, tasklet
from stacklessuv._uv import lock as LockType

__all__ = [
    "LockType",
    "RLock",
    "allocate_lock",
    "get_ident",
    "local",
    "start_new_thread",
]

_alive = 0  # thread-tasklets started and not yet finished (_thread._count())


def _unraisable_args_type():
    """sys.UnraisableHookArgs has no public constructor; catch one to get its type."""
    caught = []
    hook, sys.unraisablehook = sys.unraisablehook, caught.append
    try:

        class _Raises:
            def __del__(self):
                raise RuntimeError

        _Raises()
    finally:
        sys.unraisablehook = hook
    args_type = type(caught[0])
    # Its traceback holds this frame, whose `caught` holds it: a cycle that would keep
    # the importing frames, and so the program's __main__ globals, alive past shutdown
    # (open files never flushed, __del__ never run).
    caught.clear()
    return args_type


_UnraisableHookArgs = _unraisable_args_type()


def _run_thread(function, args, kwargs):
    global _alive
    getcurrent()._thread_data["started_as_thread"] = True
    try:
        function(*args, **kwargs)
    except SystemExit:
        pass  # as with _thread: SystemExit (and kill()'s TaskletExit) ends a thread quietly
    except KeyboardInterrupt as exc:
        if _keyboard_interrupts_are_routed():
            _unraisable(exc, function)
        else:
            getmain().throw(exc, pending=True)
    except BaseException as exc:
        _unraisable(exc, function)
    finally:
        _alive -= 1
        sentinel = getcurrent()._thread_data.pop("sentinel", None)
        if sentinel is not None and sentinel.locked():
            sentinel.release()


def start_new_thread(function, args, kwargs=None):
    """_thread.start_new_thread: the function runs in a new tasklet, scheduled after the
    runnable ones; returns its ident."""
    if not callable(function):
        raise TypeError("first arg must be callable")
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    global _alive
    t = tasklet(_run_thread)(function, args, kwargs or {})
    _alive += 1
    _thread_tasklets.add(t)
    return id(t)


_thread_tasklets = weakref.WeakSet()  # live thread-tasklets, for fork


def _forget_other_threads_after_fork():
    """In a forked child only the forking thread lives on, as with real threads: the
    other thread-tasklets never run again (threading marks their Threads stopped)."""
    global _alive
    me = getcurrent()
    for t in list(_thread_tasklets):
        if t is not me and t.alive:
            t._forget_after_fork()
            _alive -= 1
    _thread_tasklets.clear()
    if me._thread_data.get("started_as_thread"):
        _thread_tasklets.add(me)


def _count():
    return _alive


def _set_sentinel():
    """The lock threading's join() waits on: threading acquires it when the thread
    starts and the thread-tasklet's end releases it (CPython's thread state does)."""
    sentinel = allocate_lock()
    getcurrent()._thread_data["sentinel"] = sentinel
    return sentinel


def _tasklet_thread_class():
    import threading

    class _TaskletThread(threading._DummyThread):
        """current_thread() of a tasklet not started by threading: kept with the tasklet,
        not in threading._active, so it goes away when the tasklet does."""

        def __init__(self):
            threading.Thread.__init__(self, name=threading._newname("Dummy-%d"), daemon=True)
            self._started.set()
            self._set_ident()
            self._set_native_id()

    return _TaskletThread


_TaskletThread = None


def current_thread():
    """threading.current_thread for tasklets (see the module docstring)."""
    import threading

    try:
        return threading._active[get_ident()]
    except KeyError:
        pass
    global _TaskletThread
    data = getcurrent()._thread_data
    if data.get("started_as_thread"):
        return threading._DummyThread()  # registers itself in _active, as CPython's
    thread = data.get("thread")
    if thread is None:
        if _TaskletThread is None:
            _TaskletThread = _tasklet_thread_class()
        thread = data["thread"] = _TaskletThread()
    return thread


class local:
    """threading.local for tasklets: attributes live in a dict per tasklet (kept in the
    tasklet's ``_thread_data``, so it is dropped when the tasklet ends). A subclass's
    ``__init__`` runs again, with the constructor's arguments, in each tasklet that
    first touches the object, as with CPython's."""

    __slots__ = ("_local__key", "_local__args", "_local__lock", "__dict__", "__weakref__")

    def __new__(cls, /, *args, **kw):
        if (args or kw) and (cls.__init__ is object.__init__):
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        key = _LocalKey()
        object.__setattr__(self, "_local__key", key)
        object.__setattr__(self, "_local__args", (args, kw))
        object.__setattr__(self, "_local__lock", RLock())
        # Data that other tasklets hold for us goes when we do.
        weakref.finalize(self, key.forget)
        key.holders.add(getcurrent())
        getcurrent()._thread_data[key] = object.__getattribute__(self, "__dict__")
        return self

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {_type_name(self)!r} object")

    def __getattribute__(self, name):
        with _dict_of_this_tasklet(self):
            return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if name == "__dict__":
            raise AttributeError(f"{_type_name(self)!r} object attribute '__dict__' is read-only")
        with _dict_of_this_tasklet(self):
            return object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name == "__dict__":
            raise AttributeError(f"{_type_name(self)!r} object attribute '__dict__' is read-only")
        with _dict_of_this_tasklet(self):
            return object.__delattr__(self, name)


def _type_name(obj):
    """As CPython's messages name it: the C type's tp_name, a subclass's __name__."""
    return "_thread._local" if type(obj) is local else type(obj).__name__


class _LocalKey:
    """Names one local object in each tasklet's ``_thread_data``; knows who holds data."""

    __slots__ = ("holders", "__weakref__")

    def __init__(self):
        self.holders = weakref.WeakSet()

    def forget(self):
        for t in list(self.holders):
            t._thread_data.pop(self, None)


@contextlib.contextmanager
def _dict_of_this_tasklet(self):
    """The current tasklet's dict is the instance dict while an attribute operation
    runs; an empty one otherwise, so the instance never keeps a thread's data alive
    after that thread ends."""
    lock = object.__getattribute__(self, "_local__lock")
    with lock:
        _switch_dict(self)
        try:
            yield
        finally:
            if lock._recursion_count() == 1:  # not inside the subclass's __init__
                object.__setattr__(self, "__dict__", {})


def _switch_dict(self):
    """Make the current tasklet's dict the instance dict (creating it, and running the
    subclass's __init__, the first time this tasklet looks)."""
    key = object.__getattribute__(self, "_local__key")
    me = getcurrent()
    data = me._thread_data
    d = data.get(key)
    if d is not None:
        object.__setattr__(self, "__dict__", d)
        return
    d = data[key] = {}
    key.holders.add(me)
    object.__setattr__(self, "__dict__", d)
    cls = type(self)
    if cls.__init__ is not object.__init__:
        args, kw = object.__getattribute__(self, "_local__args")
        cls.__init__(self, *args, **kw)


def _unraisable(exc, function):
    message = "Exception ignored in thread started by"
    sys.unraisablehook(_UnraisableHookArgs((type(exc), exc, exc.__traceback__, message, function)))


def _keyboard_interrupts_are_routed():
    """With patch_signal, Ctrl-C's KeyboardInterrupt reaches the main tasklet by itself;
    one that a thread raises is that thread's, as in CPython."""
    from stacklessuv import monkey

    return monkey.is_patched("signal")


def excepthook(args, /):
    """threading.excepthook: without patch_signal, a KeyboardInterrupt goes to the main
    tasklet (see the module docstring); everything else to the hook threading had."""
    if (
        args.exc_type is not None
        and issubclass(args.exc_type, KeyboardInterrupt)
        and not _keyboard_interrupts_are_routed()
    ):
        getmain().throw(args.exc_value, pending=True)
        return
    _threading_excepthook(args)


def _threading_excepthook(args):
    import threading

    return threading.__excepthook__(args)


# What introspection (and CPython's test__all__) expects of the names we put in
# _thread and threading.
for _obj, _module in ((get_ident, "_thread"), (allocate_lock, "_thread")):
    try:
        _obj.__module__ = _module
    except (AttributeError, TypeError):
        pass
current_thread.__module__ = "threading"
excepthook.__module__ = "threading"
local.__module__ = "_thread"
local.__name__ = local.__qualname__ = "_local"


# threading internals the patch replaces or relies on (CPython 3.11 and 3.12 have them;
# 3.13 reworked thread start-up and joining).
_THREADING_INTERNALS = (
    "_start_new_thread",
    "_allocate_lock",
    "_set_sentinel",
    "_CRLock",
    "_active",
    "_main_thread",
    "_shutdown_locks",
    "_shutdown_locks_lock",
    "_DummyThread",
    "_newname",
)


def patches():
    """(module, name, value) for monkey.patch_thread; refuses, rather than half-patch,
    a threading module without the internals it replaces."""
    import threading

    missing = [name for name in _THREADING_INTERNALS if not hasattr(threading, name)]
    if missing:
        raise RuntimeError(
            f"stacklessuv cannot patch threads on Python {sys.version.split()[0]}: threading "
            f"has no {', '.join(missing)}; run with patch_all(thread=False) or --no-thread"
        )
    out = [
        ("_thread", "start_new_thread", start_new_thread),
        ("_thread", "start_new", start_new_thread),
        ("_thread", "allocate_lock", allocate_lock),
        ("_thread", "allocate", allocate_lock),
        ("_thread", "LockType", LockType),
        ("_thread", "RLock", RLock),
        ("_thread", "get_ident", get_ident),
        ("_thread", "_count", _count),
        ("_thread", "_set_sentinel", _set_sentinel),
        ("_thread", "_local", local),
        ("threading", "_start_new_thread", start_new_thread),
        ("threading", "_allocate_lock", allocate_lock),
        ("threading", "Lock", allocate_lock),
        ("threading", "_CRLock", RLock),
        ("threading", "_set_sentinel", _set_sentinel),
        ("threading", "get_ident", get_ident),
        ("threading", "current_thread", current_thread),
        ("threading", "excepthook", excepthook),
        ("threading", "local", local),
        ("_threading_local", "current_thread", current_thread),
    ]
    return out


os.register_at_fork(after_in_child=_forget_other_threads_after_fork)


def adopt_existing_locks():
    """Locks made before patching are real ones, and a tasklet blocking on one blocks
    its whole OS thread. Swap in green ones where the stdlib keeps long-lived locks
    that a tasklet may hold across I/O: logging's module lock and its handlers'
    (a handler emitting to a socket), and the main thread's join lock."""
    import threading

    main = threading._main_thread
    if main._tstate_lock is not None and not isinstance(main._tstate_lock, LockType):
        sentinel = allocate_lock()
        sentinel.acquire()
        with threading._shutdown_locks_lock:
            if main._tstate_lock in threading._shutdown_locks:
                threading._shutdown_locks.discard(main._tstate_lock)
                threading._shutdown_locks.add(sentinel)
        main._tstate_lock = sentinel
    logging = sys.modules.get("logging")
    if logging is None:
        return
    if _unheld(logging._lock):
        logging._lock = RLock()
    for ref in list(logging._handlerList):
        handler = ref()
        if handler is not None and handler.lock is not None and _unheld(handler.lock):
            handler.createLock()


def _unheld(lock):
    if isinstance(lock, RLock):
        return False  # already green
    if lock.acquire(False):
        lock.release()
        return True
    return False
