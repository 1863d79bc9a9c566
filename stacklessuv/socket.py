"""A green drop-in for the stdlib ``socket`` module.

Every public name of ``socket`` is here. ``socket.socket`` subclasses the stdlib class,
so ``isinstance`` checks, ``makefile``, ``dup``, ``__repr__`` and the close/refcount
rules are CPython's own. What differs, and why:

- ``settimeout``/``setblocking`` set the fd's O_NONBLOCK flag as CPython does, but
  every call is made without blocking (MSG_DONTWAIT, or O_NONBLOCK held for the call)
  and a blocking call parks only the calling tasklet (see ``_uv.SocketIO``).
- Names given to ``connect``/``sendto``/``bind`` are resolved with the green resolver
  first (CPython would call the blocking getaddrinfo inside the C call).
- ``getaddrinfo``/``getnameinfo`` run on libuv's thread pool; ``gethostbyname_ex``,
  ``gethostbyaddr`` (which have no libuv equivalent) run the C functions there too.
- ``create_connection``, ``create_server``, ``socketpair``, ``fromfd``, ``getfqdn`` and
  ``has_dualstack_ipv6`` are CPython's own functions, rebound to this module's names;
  ``create_connection`` tries addresses in happy-eyeballs order (families interleaved).
- ``ioctl`` exists on every platform, with the subset listed in ``ioctl.__doc__``.
"""

import _socket
import operator
import os
import socket as _stdlib
import time
import types
from socket import *  # every public name, constants included
from socket import (  # noqa: F401 (private helpers CPython's rebound functions use)
    _GLOBAL_DEFAULT_TIMEOUT,
    _LOCALHOST,
    _LOCALHOST_V6,
    _GiveupOnSendfile,
    _intenum_converter,
)

from stacklessuv import _uv
from stacklessuv._uv import ThreadResult

__all__ = list(_stdlib.__all__) + [
    "SIO_KEEPALIVE_VALS",
    "SIO_LOOPBACK_FAST_PATH",
    "SIO_RCVALL",
    "FIONREAD",
    "FIONBIO",
]

_StdlibSocket = _stdlib.socket
_CSocket = _socket.socket
_c_family = _CSocket.family.__get__
_c_type = _CSocket.type.__get__
_c_fileno = _CSocket.fileno
_c_settimeout = _CSocket.settimeout
_c_gettimeout = _CSocket.gettimeout

# Windows' ioctl codes, accepted everywhere; FIONREAD/FIONBIO are Linux's values.
SIO_RCVALL = 0x98000001
SIO_KEEPALIVE_VALS = 0x98000004
SIO_LOOPBACK_FAST_PATH = 0x98000010
FIONREAD = 0x541B
FIONBIO = 0x5421

_INET = (AF_INET, AF_INET6)
_index = operator.index


def _kind(family, type):
    if family in _INET:
        if type == SOCK_STREAM:
            return "tcp"
        if type == SOCK_DGRAM:
            return "udp"
    return "other"


class socket(_StdlibSocket):
    """The stdlib socket, with blocking calls that park only the calling tasklet."""

    __slots__ = ("_io",)

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        timeout = _c_gettimeout(self)  # the default timeout CPython applied
        if timeout:
            _c_settimeout(self, 0.0)  # the C object must never poll by itself
        self._io = _uv.SocketIO(_c_fileno(self), _kind(_c_family(self), _c_type(self)))
        self._io.timeout = timeout

    # -- modes ---------------------------------------------------------------

    @property
    def timeout(self):
        return self._io.timeout

    def gettimeout(self):
        return self._io.timeout

    def settimeout(self, value):
        # CPython validates, normalises and sets O_NONBLOCK as its mode wants; its own
        # timeout stays 0 or None so that its methods never poll by themselves.
        _c_settimeout(self, value)
        timeout = _c_gettimeout(self)
        if timeout:
            _c_settimeout(self, 0.0)
        self._io.timeout = timeout

    def setblocking(self, flag):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self._io.timeout != 0.0

    # -- the hot paths, in Rust ---------------------------------------------

    def recv(self, bufsize, flags=0):
        return self._io.recv(bufsize, flags)

    def recv_into(self, buffer, nbytes=0, flags=0):
        return self._io.recv_into(buffer, nbytes, flags)

    def send(self, data, flags=0):
        return self._io.send(data, flags)

    def sendall(self, data, flags=0):
        self._io.sendall(data, flags)

    # -- everything else: CPython's C method, retried after a green wait -----

    def _retry(self, method, read, flags, *args):
        """CPython's C method, made non-blocking, retried after green waits (unless the
        socket is non-blocking or the caller passed MSG_DONTWAIT)."""
        io = self._io
        deadline = io.deadline()
        wait = io.wait_readable if read else io.wait_writable
        while True:
            try:
                return method(self, *args)
            except BlockingIOError:
                if io.timeout == 0.0 or flags & MSG_DONTWAIT:
                    raise
                wait(deadline)

    def _nonblocking_call(self, func, *args):
        """func(*args) with O_NONBLOCK held on the fd (for calls that take no flags)."""
        io = self._io
        if io.timeout is not None:
            return func(*args)  # the fd is non-blocking already
        io.set_fd_nonblocking(True)
        try:
            return func(*args)
        finally:
            if self.fileno() >= 0:
                io.set_fd_nonblocking(False)

    def recvfrom(self, bufsize, flags=0):
        flags = _index(flags)
        return self._retry(_CSocket.recvfrom, True, flags, bufsize, flags | MSG_DONTWAIT)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        flags = _index(flags)
        return self._retry(
            _CSocket.recvfrom_into, True, flags, buffer, nbytes, flags | MSG_DONTWAIT
        )

    def recvmsg(self, bufsize, ancbufsize=0, flags=0):
        flags = _index(flags)
        return self._retry(_CSocket.recvmsg, True, flags, bufsize, ancbufsize, flags | MSG_DONTWAIT)

    def recvmsg_into(self, buffers, ancbufsize=0, flags=0):
        flags = _index(flags)
        buffers = _as_list(buffers, "recvmsg_into() argument 1")  # must survive the retries
        return self._retry(
            _CSocket.recvmsg_into, True, flags, buffers, ancbufsize, flags | MSG_DONTWAIT
        )

    def sendto(self, data, *args):
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = _index(args[0]), args[1]
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        address = self._resolve(address)
        return self._retry(_CSocket.sendto, False, flags, data, flags | MSG_DONTWAIT, address)

    def sendmsg(self, buffers, ancdata=(), flags=0, address=None):
        flags = _index(flags)
        # iterators must survive the retries
        buffers = _as_list(buffers, "sendmsg() argument 1")
        ancdata = _as_list(ancdata, "sendmsg() argument 2")
        extra = () if address is None else (self._resolve(address),)
        return self._retry(
            _CSocket.sendmsg, False, flags, buffers, ancdata, flags | MSG_DONTWAIT, *extra
        )

    def _accept(self):
        return self._nonblocking_call(self._retry, _CSocket._accept, True, 0)

    def accept(self):
        fd, addr = self._accept()
        # the raw ints (not the IntEnum properties): cheaper, and the same to CPython
        sock = socket(_c_family(self), _c_type(self), self.proto, fileno=fd)
        # As CPython: an accepted socket inherits blocking mode only through the default.
        if getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, addr

    def bind(self, address):
        _CSocket.bind(self, self._resolve(address))

    def connect(self, address):
        self._nonblocking_call(self._connect, self._resolve(address))

    def _connect(self, address):
        io = self._io
        try:
            _CSocket.connect(self, address)
            return
        except BlockingIOError:
            if io.timeout == 0.0:
                raise
        try:
            io.wait_writable(io.deadline())
        finally:
            io.drop_write_watcher()
        err = self.getsockopt(SOL_SOCKET, SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address):
        try:
            self.connect(address)
        except TimeoutError:
            return 11  # EAGAIN, what CPython's connect_ex reports on timeout
        except (gaierror, herror):
            raise  # name resolution errors are raised by CPython's connect_ex too
        except OSError as e:
            if e.errno is None:
                raise
            return e.errno
        return 0

    def _resolve(self, address):
        """Resolve a host name in an AF_INET/AF_INET6 address with the green resolver;
        numeric and special hosts pass through to CPython untouched."""
        if _c_family(self) not in _INET or not isinstance(address, tuple) or not address:
            return address
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode("idna")
        if not isinstance(host, str) or host in ("", "<broadcast>") or _is_numeric(host):
            return address
        # the host only: CPython checks the port itself (OverflowError and friends)
        infos = getaddrinfo(host, None, _c_family(self), _c_type(self))
        return (infos[0][4][0],) + tuple(address[1:])

    # -- lifecycle -----------------------------------------------------------

    def _real_close(self, _ss=_CSocket):
        # Waiters get EBADF, and libuv lets go of the fd before it closes.
        if self._io.close():
            _ss.close(self)
        else:
            # Another thread's hub still watches the fd and did not let go in time:
            # closing it now could crash that loop, so the fd is left open.
            _ss.detach(self)

    def detach(self):
        self._io.close()
        return super().detach()

    def __del__(self):
        # libuv must let go of the fd before CPython's finalizer closes it.
        try:
            io = self._io
        except AttributeError:  # __init__ failed before the machinery existed
            pass
        else:
            if io.fileno >= 0:
                io.close()
        _CSocket.__del__(self)

    # -- sendfile and ioctl --------------------------------------------------

    def _sendfile_use_sendfile(self, file, offset=0, count=None):
        """os.sendfile, the real syscall, with green waits (CPython's logic otherwise)."""
        return self._nonblocking_call(self._sendfile, file, offset, count)

    def _sendfile(self, file, offset, count):
        self._check_sendfile_params(file, offset, count)
        sockno = self.fileno()
        try:
            fileno = file.fileno()
        except (AttributeError, OSError) as err:
            raise _GiveupOnSendfile(err) from None
        try:
            fsize = os.fstat(fileno).st_size
        except OSError as err:
            raise _GiveupOnSendfile(err) from None
        if not fsize:
            return 0
        blocksize = min(count or fsize, 2**30)
        timeout = self.gettimeout()
        if timeout == 0:
            raise ValueError("non-blocking sockets are not supported")
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = count - total_sent
                    if blocksize <= 0:
                        break
                try:
                    sent = os.sendfile(sockno, fileno, offset, blocksize)
                except BlockingIOError:
                    # the timeout bounds each wait, as CPython's selector does
                    self._io.wait_writable(None if timeout is None else time.monotonic() + timeout)
                    continue
                except OSError as err:
                    if total_sent == 0:
                        raise _GiveupOnSendfile(err) from None
                    raise err from None
                if sent == 0:
                    break
                offset += sent
                total_sent += sent
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset)

    def ioctl(self, control, option):
        """The portable subset of Windows' socket.ioctl, on every platform:

        - SIO_KEEPALIVE_VALS, (onoff, time_ms, interval_ms): TCP keepalive
        - SIO_LOOPBACK_FAST_PATH, bool: accepted, does nothing
        - FIONREAD: bytes readable now (nothing is ever read ahead)
        - FIONBIO, bool: non-blocking mode on (true) or off
        """
        if control == SIO_KEEPALIVE_VALS:
            onoff, time_ms, interval_ms = option
            self.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1 if onoff else 0)
            if onoff:
                self.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, max(1, time_ms // 1000))
                self.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, max(1, interval_ms // 1000))
            return None
        if control == SIO_LOOPBACK_FAST_PATH:
            bool(option)
            return None
        if control == FIONREAD:
            return self._io.bytes_readable()
        if control == FIONBIO:
            self.setblocking(not option)
            return None
        raise ValueError(
            f"ioctl control {control!r} is not supported; supported: SIO_KEEPALIVE_VALS, "
            "SIO_LOOPBACK_FAST_PATH, FIONREAD, FIONBIO"
        )


# As in CPython, SocketType is the C type, not the class.
SocketType = _CSocket


def _as_list(iterable, what):
    try:
        return list(iterable)
    except TypeError:
        raise TypeError(f"{what} must be an iterable") from None


def _is_numeric(host):
    for family in _INET:
        try:
            inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


# -- DNS on libuv's thread pool ------------------------------------------------


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """socket.getaddrinfo, answered by the system resolver on libuv's thread pool."""
    if host is None:
        hbytes = None
    elif isinstance(host, str):
        hbytes = host.encode("idna")
    elif isinstance(host, bytes):
        hbytes = host
    else:
        raise TypeError("getaddrinfo() argument 1 must be string or None")
    if isinstance(port, int):
        pbytes = str(port).encode()
    elif isinstance(port, str):
        pbytes = port.encode()
    elif isinstance(port, bytes) or port is None:
        pbytes = port
    else:
        raise OSError("Int or String expected")
    family, type, proto, flags = (int(x) for x in (family, type, proto, flags))
    return [
        (
            _intenum_converter(af, AddressFamily),
            _intenum_converter(st, SocketKind),
            pr,
            canon,
            sa,
        )
        for af, st, pr, canon, sa in _uv.getaddrinfo(hbytes, pbytes, family, type, proto, flags)
    ]


def getnameinfo(sockaddr, flags):
    """socket.getnameinfo: CPython's own function, run on libuv's thread pool."""
    if not isinstance(sockaddr, tuple):
        # the traceback keeps this frame; unlike CPython's C check it must not keep
        # the argument alive
        del sockaddr
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    return _in_threadpool(_socket.getnameinfo, sockaddr, flags)


def _in_threadpool(func, *args):
    result = ThreadResult()
    _uv.run_in_threadpool(result, func, args)
    try:
        return result.wait()
    finally:
        del result  # an exception's traceback must not keep the arguments alive


def gethostbyname(hostname):
    """The first IPv4 address of a name, as CPython's C function finds it (numeric and
    special names are answered without a lookup)."""
    if isinstance(hostname, str) and (hostname in ("", "<broadcast>") or _is_numeric(hostname)):
        return _socket.gethostbyname(hostname)
    return _in_threadpool(_socket.gethostbyname, hostname)


# The C functions from _socket: the stdlib module's names may be ours once patched.
def gethostbyname_ex(hostname):
    return _in_threadpool(_socket.gethostbyname_ex, hostname)


def gethostbyaddr(ip_address):
    return _in_threadpool(_socket.gethostbyaddr, ip_address)


# -- CPython's own functions, run against this module's names ------------------


def _rebind(func, namespace):
    """A copy of one of CPython's socket functions that looks names up in
    ``namespace`` (so it makes green sockets and resolves greenly)."""
    new = types.FunctionType(
        func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
    )
    new.__kwdefaults__ = func.__kwdefaults__
    new.__doc__ = func.__doc__
    new.__qualname__ = func.__qualname__
    new.__module__ = __name__
    return new


def _happy_eyeballs_getaddrinfo(*args, **kwargs):
    """getaddrinfo with families interleaved (RFC 8305: first family first)."""
    infos = getaddrinfo(*args, **kwargs)
    by_family = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    out = []
    while any(lists):
        for lst in lists:
            if lst:
                out.append(lst.pop(0))
    return out


create_server = _rebind(_stdlib.create_server, globals())
socketpair = _rebind(_stdlib.socketpair, globals())
fromfd = _rebind(_stdlib.fromfd, globals())
getfqdn = _rebind(_stdlib.getfqdn, globals())
has_dualstack_ipv6 = _rebind(_stdlib.has_dualstack_ipv6, globals())
create_connection = _rebind(
    _stdlib.create_connection,
    {**globals(), "getaddrinfo": _happy_eyeballs_getaddrinfo},
)
