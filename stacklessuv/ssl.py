"""Green TLS: the stdlib ``ssl.SSLSocket``, with its I/O parking only the calling tasklet.

``SSLSocket`` subclasses both the stdlib ``ssl.SSLSocket`` (so ``isinstance`` checks,
including against the class captured before patching, and every method that does no
I/O are CPython's own) and the green socket. What differs from CPython, and why:

- libuv watches the fd, and the ``_ssl`` module's fd mode would block in C, so the TLS
  state machine is the ``_ssl`` object ``SSLContext._wrap_bio`` makes over two
  ``MemoryBIO``s, and ciphertext moves through the fd with green waits. ``_sslobj`` is
  that object, with the SSLSocket as its owner, so callbacks (``sni_callback``,
  ``_msg_callback``) get the SSLSocket, as in CPython.
- Ciphertext is read one TLS record at a time (header, then body), as OpenSSL reads
  the fd, so nothing is read ahead: select()/poll() on ``fileno()`` stay truthful and
  the plaintext after ``unwrap()`` is left on the socket.
- A non-blocking write that cannot send all its ciphertext raises
  ``SSLWantWriteError`` and returns the count when retried, as OpenSSL's does; a
  blocking write encrypts at most ``_WRITE_CHUNK`` bytes at a time.

Timeouts, exceptions and messages are CPython's: the socket timeout bounds each TLS
call as a whole; ``SSLWantReadError``/``SSLWantWriteError`` reach non-blocking callers
only.

``patches()`` lists what ``monkey.patch_ssl`` sets: ``ssl.SSLSocket``, and
``sslsocket_class`` and ``_create`` on the stdlib classes, so contexts made before
patching make green sockets too, and any socket object (green or not) can be wrapped:
the SSLSocket takes its fd over, as CPython's does.
"""

import errno as _errno
import ssl as _stdlib
import time as _time
from socket import MSG_DONTWAIT, SO_TYPE, SOCK_STREAM, SOL_SOCKET
from ssl import (
    SSL_ERROR_EOF,
    SSLError,
    SSLWantReadError,
    SSLWantWriteError,
)

from stacklessuv import socket as _green
from stacklessuv._uv import schedule as _schedule

_StdlibSSLSocket = _stdlib.SSLSocket
_StdlibSSLContext = _stdlib.SSLContext
_MemoryBIO = _stdlib.MemoryBIO
_monotonic = _time.monotonic

_WRITE_CHUNK = 256 * 1024  # plaintext per SSLObject.write: bounds the ciphertext buffer
_HEADER = 5  # a TLS record header: type, version (2), length (2)

# What CPython 3.11's _ssl.c says when a TLS call's socket wait times out.
_HANDSHAKE_TIMEOUT = "_ssl.c:989: The handshake operation timed out"
_READ_TIMEOUT = "The read operation timed out"
_WRITE_TIMEOUT = "The write operation timed out"
_WANT_WRITE = "The operation did not complete (write) (_ssl.c:2427)"

_HANDSHAKE, _READ, _WRITE, _SHUTDOWN = range(4)


def _want_write(like=None):
    """The SSLWantWriteError _ssl.c would raise (from ``like``'s call site, if given).

    Like ``_want_read``, it first lets other tasklets run: a non-blocking caller
    typically spins on select() next, which returns at once while the socket is
    writable, so a peer in this thread would otherwise never get to answer."""
    _schedule()
    msg = _WANT_WRITE if like is None else like.strerror.replace("(read)", "(write)")
    err = SSLWantWriteError(_stdlib.SSL_ERROR_WANT_WRITE, msg)
    err.library = err.reason = None
    return err


def _want_read(err):
    _schedule()
    return err


def _timeout_error(op, reading):
    if op == _HANDSHAKE:
        return TimeoutError(_HANDSHAKE_TIMEOUT)
    if op == _READ or (op == _SHUTDOWN and reading):
        return TimeoutError(_READ_TIMEOUT)
    return TimeoutError(_WRITE_TIMEOUT)


def _create(
    cls,
    sock,
    server_side=False,
    do_handshake_on_connect=True,
    suppress_ragged_eofs=True,
    server_hostname=None,
    context=None,
    session=None,
):
    """CPython's SSLSocket._create for ``cls``: green (an _ssl object over BIOs) if cls
    subclasses ours, else the stdlib's fd mode. The stdlib's own refers to the module's
    SSLSocket, which is ours once patched: it is replaced by this."""
    if sock.getsockopt(SOL_SOCKET, SO_TYPE) != SOCK_STREAM:
        raise NotImplementedError("only stream sockets are supported")
    if server_side:
        if server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        if session is not None:
            raise ValueError("session can only be specified in client mode")
    if context.check_hostname and not server_hostname:
        raise ValueError("check_hostname requires server_hostname")

    kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto, fileno=sock.fileno())
    self = cls.__new__(cls, **kwargs)
    super(_StdlibSSLSocket, self).__init__(**kwargs)
    sock_timeout = sock.gettimeout()
    sock.detach()

    self._context = context
    self._session = session
    self._closed = False
    self._sslobj = None
    self.server_side = server_side
    self.server_hostname = context._encode_hostname(server_hostname)
    self.do_handshake_on_connect = do_handshake_on_connect
    self.suppress_ragged_eofs = suppress_ragged_eofs

    try:
        self.getpeername()
    except OSError as e:
        if e.errno != _errno.ENOTCONN:
            raise
        connected = False
        blocking = self.getblocking()
        self.setblocking(False)
        try:
            # Data that arrived before the peer went away must not pass for TLS data.
            notconn_pre_handshake_data = self.recv(1)
        except OSError as e:
            if e.errno not in (_errno.ENOTCONN, _errno.EINVAL):
                raise
            notconn_pre_handshake_data = b""
        self.setblocking(blocking)
        if notconn_pre_handshake_data:
            reason = "Closed before TLS handshake with data in recv buffer."
            err = SSLError(e.errno, reason)
            err.reason = reason
            err.library = None
            try:
                self.close()
            except OSError:
                pass
            try:
                raise err
            finally:
                err = None
    else:
        connected = True

    self.settimeout(sock_timeout)  # after the setblocking() calls
    self._connected = connected
    if connected:
        try:
            if isinstance(self, SSLSocket):
                self._sslobj = self._new_sslobj()
            else:
                self._sslobj = context._wrap_socket(
                    self, server_side, self.server_hostname, owner=self, session=self._session
                )
            if do_handshake_on_connect:
                if self.gettimeout() == 0.0:
                    raise ValueError(
                        "do_handshake_on_connect should not be specified for non-blocking sockets"
                    )
                self.do_handshake()
        except (OSError, ValueError):
            self.close()
            raise
    return self


class SSLSocket(_StdlibSSLSocket, _green.socket):
    """ssl.SSLSocket over a green socket (see the module docstring)."""

    _create = classmethod(_create)

    def _new_sslobj(self):
        """The _ssl object over fresh BIOs, owned by this socket."""
        self._incoming = _MemoryBIO()
        self._outgoing = _MemoryBIO()
        self._wbuf = bytearray()  # ciphertext not yet sent
        self._wdone = None  # a non-blocking write's count, sent but not yet reported
        self._rx_header = b""  # the part of the current record header read so far
        self._rx_body = 0  # bytes of the current record body still to read
        return self._context._wrap_bio(
            self._incoming,
            self._outgoing,
            self.server_side,
            self.server_hostname,
            owner=self,
            session=self._session,
        )

    def _real_connect(self, addr, connect_ex):
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self._new_sslobj()
        try:
            if connect_ex:
                rc = _plain_connect_ex(self, addr)
            else:
                rc = None
                _green.socket.connect(self, addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    # -- the pump: one TLS call, moving ciphertext until it completes ----------

    def _call(self, op, func, *args, deadline=None):
        io = self._io
        timeout = io.timeout
        nonblocking = timeout == 0.0
        if deadline is None and timeout:
            deadline = _monotonic() + timeout
        if self._wbuf and not self._send_out(op, deadline, nonblocking) and op == _WRITE:
            raise _want_write()
        while True:
            try:
                result = func(*args)
            except SSLWantReadError as e:
                if not self._send_out(op, deadline, nonblocking):
                    raise _want_write(e) from None
                if not self._receive(op, deadline, nonblocking):
                    raise _want_read(e) from None
                continue
            except BaseException:
                # An alert the failed call produced still goes to the peer, as in CPython.
                try:
                    self._send_out(op, deadline, nonblocking)
                except OSError:
                    pass
                raise
            if (self._wbuf or self._outgoing.pending) and not self._send_out(
                op, deadline, nonblocking
            ):
                # OpenSSL reports a call whose output did not all go out as WANT_WRITE
                # (a read's output is a side matter: it goes with the next call)
                if op == _WRITE:
                    self._wdone = result
                if op != _READ:
                    raise _want_write()
            return result

    def _send_out(self, op, deadline, nonblocking):
        """Sends the pending ciphertext; False if a non-blocking socket took only part."""
        wbuf = self._wbuf
        out = self._outgoing
        if out.pending:
            wbuf += out.read()
        io = self._io
        while wbuf:
            try:
                n = io.send(wbuf, MSG_DONTWAIT)
            except BlockingIOError:
                if nonblocking:
                    return False
                try:
                    io.wait_writable(deadline)
                except TimeoutError:
                    raise _timeout_error(op, False) from None
                continue
            del wbuf[:n]
        return True

    def _receive(self, op, deadline, nonblocking):
        """Reads the next piece of the current TLS record into the incoming BIO (EOF is
        passed on); False if a non-blocking socket has nothing."""
        io = self._io
        try:
            data = io.recv(self._rx_body or _HEADER - len(self._rx_header), MSG_DONTWAIT)
        except BlockingIOError:
            if nonblocking:
                return False
            while True:
                try:
                    io.wait_readable(deadline)
                except TimeoutError:
                    raise _timeout_error(op, True) from None
                # The size again: another tasklet may have read meanwhile. A reader
                # woken by wait_readable has the socket's read turn.
                want = self._rx_body or _HEADER - len(self._rx_header)
                try:
                    data = io.recv(want, MSG_DONTWAIT)
                    break
                except BlockingIOError:
                    pass
        if not data:
            self._incoming.write_eof()
            return True
        if self._rx_body:
            self._rx_body -= len(data)
        else:
            header = self._rx_header + data
            if len(header) == _HEADER:
                self._rx_header = b""
                self._rx_body = int.from_bytes(header[3:5], "big")
            else:
                self._rx_header = header
        self._incoming.write(data)
        return True

    # -- TLS calls -------------------------------------------------------------

    def do_handshake(self, block=False):
        self._check_connected()
        timeout = self.gettimeout()
        try:
            if timeout == 0.0 and block:
                self.settimeout(None)
            self._call(_HANDSHAKE, self._sslobj.do_handshake)
        finally:
            self.settimeout(timeout)

    def read(self, len=1024, buffer=None):
        self._checkClosed()
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            if buffer is not None:
                return self._call(_READ, sslobj.read, len, buffer)
            return self._call(_READ, sslobj.read, len)
        except SSLError as x:
            if x.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data):
        self._checkClosed()
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        if self._wdone is not None:
            # a non-blocking write's ciphertext went out since it raised SSLWantWriteError
            if self._wbuf and not self._send_out(_WRITE, None, self._io.timeout == 0.0):
                raise _want_write()
            done, self._wdone = self._wdone, None
            return done
        try:
            raw = memoryview(data)
        except TypeError:
            return self._call(_WRITE, sslobj.write, data)  # _ssl's own TypeError
        with raw, raw.cast("B") as view:
            size = len(view)
            if size <= _WRITE_CHUNK:
                return self._call(_WRITE, sslobj.write, view)
            timeout = self._io.timeout
            if timeout == 0.0:
                return self._call(_WRITE, sslobj.write, view[:_WRITE_CHUNK])
            deadline = _monotonic() + timeout if timeout else None
            sent = 0
            while sent < size:
                chunk = view[sent : sent + _WRITE_CHUNK]
                sent += self._call(_WRITE, sslobj.write, chunk, deadline=deadline)
            return sent

    def send(self, data, flags=0):
        self._checkClosed()
        if self._sslobj is None:
            return _green.socket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def unwrap(self):
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        self._call(_SHUTDOWN, sslobj.shutdown)
        self._sslobj = None
        return self


def _plain_connect_ex(sock, address):
    """connect_ex over the green socket's connect (the SSLSocket's own would recurse).
    As in CPython, a name that does not resolve raises instead of returning its code."""
    try:
        _green.socket.connect(sock, address)
    except _green.gaierror:
        raise
    except TimeoutError:
        return _errno.EAGAIN  # what CPython's connect_ex reports on timeout
    except OSError as e:
        if e.errno is None:
            raise
        return e.errno
    return 0


class SSLContext(_StdlibSSLContext):
    """The stdlib SSLContext, making green SSLSockets even without patching."""

    sslsocket_class = SSLSocket


def create_default_context(*args, **kwargs):
    """ssl.create_default_context, returning a green SSLContext."""
    ctx = _stdlib.create_default_context(*args, **kwargs)
    ctx.__class__ = SSLContext
    return ctx


__all__ = [
    "SSLContext",
    "SSLSocket",
    "SSLError",
    "create_default_context",
]


def patches():
    """(module, name, value, owner class or None) for monkey.patch_ssl."""
    return [
        ("ssl", "SSLSocket", SSLSocket, None),
        ("ssl", "sslsocket_class", SSLSocket, _StdlibSSLContext),
        ("ssl", "_create", classmethod(_create), _StdlibSSLSocket),
    ]
