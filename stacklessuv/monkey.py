"""Monkey patching: make unmodified blocking-style code run as tasklets.

``patch_all()`` replaces, in the stdlib modules themselves, the names that block, so
that ``import socket`` anywhere (before or after patching) sees green versions. Code
that copied a name out of a module before patching (``from socket import socket``)
keeps the original; patch as early as possible, or run the program with
``python -m stacklessuv``.

``is_patched`` tells which patches are in effect.
"""

import importlib

_originals = {}  # (module name, attribute) -> the value before patching
_patched = set()

# Only the class: socket's own create_connection, socketpair, fromfd, ... look it and
# getaddrinfo up in the module at call time, so they make green sockets as they are
# (and tests that replace socket.socket with a mock keep working).
SOCKET_NAMES = ("socket",)
DNS_NAMES = (
    "getaddrinfo",
    "getnameinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getfqdn",
)


_MISSING = object()


def _patch(module_name, name, value, owner=None):
    """Set ``name`` on the module (or on ``owner``, a class in it, whose qualified name
    then prefixes the key); ``_MISSING`` deletes it."""
    target = owner if owner is not None else importlib.import_module(module_name)
    key = (module_name, f"{owner.__qualname__}.{name}" if owner is not None else name)
    if key not in _originals:
        _originals[key] = getattr(target, name, None)
    if value is _MISSING:
        if hasattr(target, name):
            delattr(target, name)
    else:
        setattr(target, name, value)


def _apply(patches):
    """Applies a green module's patches(): (module, name, value[, owner class]) each."""
    for entry in patches:
        _patch(*entry)


def get_original(module_name, name):
    """The value ``module_name.name`` had before stacklessuv patched it."""
    key = (module_name, name)
    if key in _originals:
        return _originals[key]
    return getattr(importlib.import_module(module_name), name)


def is_patched(name):
    """Whether the patch called ``name`` ("socket", "dns", "time", ...) is in effect."""
    return name in _patched


def patch_socket(dns=True):
    """socket.socket and the functions that make sockets become green."""
    if "socket" not in _patched:
        from stacklessuv import socket as green

        for name in SOCKET_NAMES:
            _patch("socket", name, getattr(green, name))
        _patched.add("socket")
    if dns:
        patch_dns()


def patch_dns():
    """Name resolution runs on libuv's thread pool."""
    if "dns" in _patched:
        return
    from stacklessuv import socket as green

    for name in DNS_NAMES:
        _patch("socket", name, getattr(green, name))
    _patched.add("dns")


def patch_time():
    """time.sleep parks only the calling tasklet."""
    if "time" in _patched:
        return
    from stacklessuv import sleep

    _patch("time", "sleep", sleep)
    _patched.add("time")


def patch_select():
    """select.select and select.poll park the tasklet; epoll, devpoll and kqueue are
    removed (code that looks for them falls back to poll), and selectors'
    DefaultSelector becomes its PollSelector over the green poll (EpollSelector: see
    stacklessuv.select.epoll_selector_class)."""
    if "select" in _patched:
        return
    import selectors

    from stacklessuv import select as green

    _patch("select", "select", green.select)
    _patch("select", "poll", green.poll)
    for name in ("epoll", "devpoll", "kqueue", "kevent"):
        _patch("select", name, _MISSING)
    # selectors copied these into class attributes when it was imported
    _patch("selectors", "_selector_cls", staticmethod(green.poll), owner=selectors.PollSelector)
    _patch("selectors", "_select", staticmethod(green.select), owner=selectors.SelectSelector)
    _patch("selectors", "DefaultSelector", selectors.PollSelector)
    # Code that asks for epoll's selector by name gets a green one.
    if hasattr(selectors, "EpollSelector") and green._real_epoll is not None:
        _patch("selectors", "EpollSelector", green.epoll_selector_class())
    _patched.add("select")


def patch_ssl():
    """ssl's SSLSocket and SSLContext become the green ones in stacklessuv.ssl;
    contexts and sockets made before patching keep working as they were."""
    if "ssl" in _patched:
        return
    from stacklessuv import ssl as green

    _apply(green.patches())
    _patched.add("ssl")


def patch_thread():
    """Threads become tasklets (see stacklessuv.thread): _thread, threading's locks,
    idents, local and current_thread; existing logging locks are swapped for green ones."""
    if "thread" in _patched:
        return
    import threading  # noqa: F401  (before _thread is patched: it makes its main thread)

    from stacklessuv import thread as green

    _apply(green.patches())
    green.adopt_existing_locks()
    _patched.add("thread")


def patch_queue():
    """queue.SimpleQueue (C code that blocks the OS thread) becomes a green one, written
    like the C type (reentrant put) over a green lock. Queue, LifoQueue and
    PriorityQueue already wait on threading's locks, green once threads are patched.
    A SimpleQueue made before patching stays the C one."""
    if "queue" in _patched:
        return
    from stacklessuv._uv import SimpleQueue

    _patch("_queue", "SimpleQueue", SimpleQueue)
    _patch("queue", "SimpleQueue", SimpleQueue)
    _patched.add("queue")


def patch_os():
    """os.read and os.write park the tasklet on a blocking pipe (see stacklessuv.os)."""
    if "os" in _patched:
        return
    from stacklessuv import os as green

    _patch("os", "read", green.read)
    _patch("os", "write", green.write)
    _patched.add("os")


def patch_signal():
    """signal's blocking calls park the tasklet (see stacklessuv.signal)."""
    if "signal" in _patched:
        return
    from stacklessuv import signal as green

    _apply(green.patches())
    green.route_installed_handlers()
    _patched.add("signal")


def patch_all(
    socket=True,
    dns=True,
    time=True,
    select=True,
    ssl=True,
    thread=True,
    queue=True,
    signal=True,
    os=True,
):
    """Apply every patch asked for; calling it again is harmless."""
    if socket:
        patch_socket(dns=dns)
    elif dns:
        patch_dns()
    if time:
        patch_time()
    if select:
        patch_select()
    if ssl:
        patch_ssl()
    if thread:
        patch_thread()
    if queue:
        patch_queue()
    if os:
        patch_os()
    if signal:
        patch_signal()
    # Make this thread's hub now: its fds exist before the program opens any, as they
    # would with the real modules (no fd number a program just closed gets reused by it).
    from stacklessuv import getcurrent

    getcurrent()
