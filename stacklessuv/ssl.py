"""Green TLS: ``SSLContext.wrap_socket`` over stacklessuv's sockets.

libuv watches the socket's fd, so the ``_ssl`` module's own fd mode (which blocks in
its C code) is not used: the TLS state machine is an ``ssl.SSLObject`` over two
``MemoryBIO``s, and the ciphertext moves through the green socket's ``recv`` and
``sendall``, so waiting parks only the calling tasklet. Exceptions are the stdlib's
(``SSLError`` and subclasses); ``SSLWantReadError``/``SSLWantWriteError`` reach only
non-blocking callers.

First version: handshake, read/write, recv/recv_into/send/sendall, makefile (the
stdlib's, over these), unwrap, and the peer/cipher/ALPN/session queries. Not yet
wired into ``monkey.patch_all``. Timeouts apply per socket call, not per TLS call.
"""

import ssl as _stdlib
from ssl import (
    SSLEOFError,
    SSLError,
    SSLWantReadError,
    SSLWantWriteError,
    SSLZeroReturnError,
)

from stacklessuv import socket as _green

_RECV_CHUNK = 64 * 1024


class SSLSocket(_green.socket):
    """A green socket speaking TLS through an SSLObject."""

    __slots__ = (
        "_sslobj",
        "_incoming",
        "_outgoing",
        "_context",
        "server_side",
        "server_hostname",
        "suppress_ragged_eofs",
        "do_handshake_on_connect",
    )

    @classmethod
    def _create(
        cls,
        sock,
        context,
        server_side=False,
        do_handshake_on_connect=True,
        suppress_ragged_eofs=True,
        server_hostname=None,
        session=None,
    ):
        if server_side and server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        if session is not None and server_side:
            raise ValueError("session is only valid for client sockets")
        timeout = sock.gettimeout()
        self = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.settimeout(timeout)
        self._context = context
        self.server_side = server_side
        self.server_hostname = (
            context._encode_hostname(server_hostname) if server_hostname else None
        )
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.do_handshake_on_connect = do_handshake_on_connect
        self._incoming = _stdlib.MemoryBIO()
        self._outgoing = _stdlib.MemoryBIO()
        self._sslobj = context.wrap_bio(
            self._incoming, self._outgoing, server_side, self.server_hostname, session
        )
        try:
            self.getpeername()
            connected = True
        except OSError:
            connected = False
        if connected and do_handshake_on_connect:
            self.do_handshake()
        return self

    @property
    def context(self):
        return self._context

    # -- the pump between the SSLObject and the socket -------------------------

    def _flush(self):
        data = self._outgoing.read()
        if data:
            _green.socket.sendall(self, data)

    def _run(self, op, *args):
        """op(*args) on the SSLObject, moving ciphertext until it completes."""
        while True:
            try:
                result = op(*args)
            except SSLWantReadError:
                self._flush()
                if self.gettimeout() == 0.0 and not self._readable_now():
                    raise
                data = _green.socket.recv(self, _RECV_CHUNK)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            except SSLWantWriteError:
                self._flush()
                continue
            self._flush()
            return result

    def _readable_now(self):
        return bool(self._io.bytes_readable())

    def do_handshake(self, block=False):
        self._run(self._sslobj.do_handshake)

    def connect(self, address):
        super().connect(address)
        if self.do_handshake_on_connect:
            self.do_handshake()

    def connect_ex(self, address):
        err = super().connect_ex(address)
        if not err and self.do_handshake_on_connect:
            self.do_handshake()
        return err

    def accept(self):
        sock, addr = super().accept()
        return self._context.wrap_socket(
            sock,
            do_handshake_on_connect=self.do_handshake_on_connect,
            suppress_ragged_eofs=self.suppress_ragged_eofs,
            server_side=True,
        ), addr

    # -- data ------------------------------------------------------------------

    def read(self, len=1024, buffer=None):
        try:
            if buffer is not None:
                return self._run(self._sslobj.read, len, buffer)
            return self._run(self._sslobj.read, len)
        except SSLEOFError:
            if self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise
        except SSLZeroReturnError:
            return 0 if buffer is not None else b""

    def write(self, data):
        return self._run(self._sslobj.write, data)

    def recv(self, buflen=1024, flags=0):
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {type(self)}")
        return self.read(buflen)

    def recv_into(self, buffer, nbytes=None, flags=0):
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv_into() on {type(self)}")
        if nbytes is None or nbytes == 0:
            nbytes = len(buffer)
        return self.read(nbytes, buffer)

    def send(self, data, flags=0):
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {type(self)}")
        return self.write(data)

    def sendall(self, data, flags=0):
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to sendall() on {type(self)}")
        view = memoryview(data).cast("B")
        while view:
            view = view[self.write(view) :]

    def pending(self):
        return self._sslobj.pending()

    def unwrap(self):
        self._run(self._sslobj.unwrap)
        return _green.socket(self.family, self.type, self.proto, fileno=self.detach())

    # -- queries ---------------------------------------------------------------

    def getpeercert(self, binary_form=False):
        return self._sslobj.getpeercert(binary_form)

    def cipher(self):
        return self._sslobj.cipher()

    def shared_ciphers(self):
        return self._sslobj.shared_ciphers()

    def version(self):
        return self._sslobj.version()

    def selected_alpn_protocol(self):
        return self._sslobj.selected_alpn_protocol()

    def compression(self):
        return self._sslobj.compression()

    def get_channel_binding(self, cb_type="tls-unique"):
        return self._sslobj.get_channel_binding(cb_type)

    @property
    def session(self):
        return self._sslobj.session

    @property
    def session_reused(self):
        return self._sslobj.session_reused


class SSLContext(_stdlib.SSLContext):
    """The stdlib SSLContext, whose wrap_socket makes green SSLSockets."""

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
    return []
