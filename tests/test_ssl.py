"""Green TLS between tasklets, with a CA and a server certificate made at test time;
compared with CPython's own ssl (its fd mode, unpatched) where it matters."""

import errno
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import stacklessuv as sl
from stacklessuv import socket as gs
from stacklessuv import ssl as gssl

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=stacklessuv test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return d


def contexts(certs):
    server = gssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certs / "server.pem", certs / "server.key")
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = gssl.create_default_context(cafile=str(certs / "ca.pem"))
    client.set_alpn_protocols(["http/1.1"])
    return server, client


def test_tls_echo_between_tasklets(certs):
    server_ctx, client_ctx = contexts(certs)
    listener = gs.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ticks = []

    def serve():
        raw, _ = listener.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def ticker():
        for _ in range(5):
            ticks.append(1)
            sl.sleep(0.002)

    sl.tasklet(serve)()
    sl.tasklet(ticker)()
    with client_ctx.wrap_socket(
        gs.create_connection(("localhost", port)), server_hostname="localhost"
    ) as tls:
        assert isinstance(tls, gssl.SSLSocket)
        assert tls.version().startswith("TLS")
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
        tls.sendall(b"hello " * 10_000)
        got = b""
        while len(got) < 60_000:
            got += tls.recv(65536)
        assert got == b"HELLO " * 10_000
        f = tls.makefile("rwb")
        f.write(b"line\n")
        f.flush()
        assert f.readline() == b"LINE\n"
        f.close()
    sl.run()
    listener.close()
    assert len(ticks) == 5


def test_certificate_failure_is_a_verification_error(certs):
    server_ctx, _ = contexts(certs)
    strict = gssl.create_default_context()  # does not trust the test CA
    listener = gs.create_server(("127.0.0.1", 0))

    def serve():
        raw, _ = listener.accept()
        try:
            server_ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            pass
        raw.close()

    sl.tasklet(serve)()
    with pytest.raises(ssl.SSLCertVerificationError):
        strict.wrap_socket(
            gs.create_connection(listener.getsockname()), server_hostname="localhost"
        )
    sl.run()
    listener.close()


# -- helpers -------------------------------------------------------------------


def tcp_pair():
    listener = gs.create_server(("127.0.0.1", 0))
    client = gs.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return server, client


def tls_pair(server_ctx, client_ctx, server_kw=None, **client_kw):
    """(server, client) SSLSockets over loopback TCP, the server side handshaking in
    a tasklet."""
    raw_s, raw_c = tcp_pair()
    box = []
    sl.tasklet(
        lambda: box.append(server_ctx.wrap_socket(raw_s, server_side=True, **(server_kw or {})))
    )()
    client = client_ctx.wrap_socket(raw_c, server_hostname="localhost", **client_kw)
    while not box:
        sl.sleep(0.001)
    return box[0], client


def in_tasklet(func, *args):
    """Runs func(*args) in a tasklet; a list that gets its result (or exception)."""
    box = []

    def run():
        try:
            box.append(func(*args))
        except BaseException as e:  # handed to the test
            box.append(e)

    sl.tasklet(run)()
    return box


# -- the socket's surface --------------------------------------------------------


def test_queries_and_server_side(certs):
    server_ctx, client_ctx = contexts(certs)
    server, client = tls_pair(server_ctx, client_ctx)
    with server, client:
        assert isinstance(client, ssl.SSLSocket) and isinstance(client, gs.socket)
        assert client.server_side is False and server.server_side is True
        assert client.server_hostname == "localhost"
        assert client.context is client_ctx and client._sslobj.context is client_ctx
        assert client._sslobj.owner is client
        assert client.cipher() == server.cipher() and client.version() == server.version()
        assert server.shared_ciphers()
        assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"
        der = client.getpeercert(binary_form=True)
        assert ssl.DER_cert_to_PEM_cert(der) == ssl.DER_cert_to_PEM_cert(
            ssl.PEM_cert_to_DER_cert((certs / "server.pem").read_text())
        )
        assert server.getpeercert() is None  # no client certificate asked for
        assert client.get_channel_binding("tls-unique") is not None
        assert client.pending() == 0
        with pytest.raises(NotImplementedError):
            client.dup()
        with pytest.raises(ValueError, match="non-zero flags"):
            client.recv(1, socket.MSG_PEEK)
    assert client._sslobj is None and client.version() is None
    with pytest.raises(TypeError, match="public constructor"):
        gssl.SSLSocket(gs.socket())


def test_connect_and_connect_ex_like_cpython(certs):
    server_ctx, client_ctx = contexts(certs)
    closed = gs.create_server(("127.0.0.1", 0))
    refused = closed.getsockname()
    closed.close()

    def outcome(ctx, make, address):
        with ctx.wrap_socket(make(), server_hostname="localhost") as s:
            try:
                return s.connect_ex(address)
            except OSError as e:
                return type(e).__name__

    std_ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    for address in (refused, ("no-such-host.invalid", 443)):
        assert outcome(client_ctx, gs.socket, address) == outcome(std_ctx, socket.socket, address)
    assert outcome(client_ctx, gs.socket, refused) == errno.ECONNREFUSED
    listener = gs.create_server(("127.0.0.1", 0))
    box = in_tasklet(lambda: server_ctx.wrap_socket(listener.accept()[0], server_side=True))
    with client_ctx.wrap_socket(gs.socket(), server_hostname="localhost") as tls:
        assert tls.connect_ex(listener.getsockname()) == 0
        assert tls.version() is not None  # connected, then the handshake
        with pytest.raises(ValueError, match="already-connected"):
            tls.connect(listener.getsockname())
    sl.run()
    box[0].close()
    listener.close()


def test_sni_callback_gets_the_sslsocket_as_cpython_passes_it(certs):
    server_ctx, client_ctx = contexts(certs)
    other = gssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.load_cert_chain(certs / "server.pem", certs / "server.key")
    calls = []

    def sni(sock, name, ctx):
        calls.append((type(sock), name, ctx))
        sock.context = other  # switching contexts mid-handshake, as CPython allows

    server_ctx.sni_callback = sni
    server, client = tls_pair(server_ctx, client_ctx)
    assert calls == [(gssl.SSLSocket, "localhost", server_ctx)]
    assert server.context is other
    # CPython's fd mode hands the callback the same kind of object: the SSLSocket
    seen = []
    std_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    std_server.load_cert_chain(certs / "server.pem", certs / "server.key")
    std_server.sni_callback = lambda sock, name, ctx: seen.append(isinstance(sock, ssl.SSLSocket))
    std_client = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: std_server.wrap_socket(b, server_side=True).close())
    t.start()
    std_client.wrap_socket(a, server_hostname="localhost").close()
    t.join()
    assert seen == [True]
    server.close()
    client.close()


def test_certificate_failure_carries_verify_code_and_the_peer_gets_the_alert(certs):
    server_ctx, _ = contexts(certs)
    strict = gssl.create_default_context()  # does not trust the test CA
    raw_s, raw_c = tcp_pair()
    box = in_tasklet(lambda: server_ctx.wrap_socket(raw_s, server_side=True))
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        strict.wrap_socket(raw_c, server_hostname="localhost")
    assert info.value.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert info.value.verify_message == "unable to get local issuer certificate"
    sl.run()
    # the client's alert reached the server before the failed call returned
    assert isinstance(box[0], ssl.SSLError) and box[0].reason == "TLSV1_ALERT_UNKNOWN_CA"


def test_unwrap_returns_the_socket_and_leaves_the_plaintext_after_it(certs):
    server_ctx, client_ctx = contexts(certs)
    server, client = tls_pair(server_ctx, client_ctx)

    def serve():
        assert server.recv(100) == b"STARTTLS over"
        plain = server.unwrap()
        plain.sendall(b"plain text")
        return plain

    box = in_tasklet(serve)
    client.sendall(b"STARTTLS over")
    plain = client.unwrap()
    assert plain is client and client._sslobj is None
    plain.settimeout(5)
    got = b""
    while len(got) < 10:
        got += plain.recv(100)  # the socket's own recv once unwrapped
    assert got == b"plain text"
    sl.run()
    box[0].close()
    plain.close()


def test_session_reuse(certs):
    server_ctx, client_ctx = contexts(certs)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server, client = tls_pair(server_ctx, client_ctx)
    session = client.session
    assert session is not None and not client.session_reused
    server.close()
    client.close()
    server, client = tls_pair(server_ctx, client_ctx, session=session)
    assert client.session_reused and server.session_reused
    server.close()
    client.close()


def test_sendfile_falls_back_to_send(certs, tmp_path):
    server_ctx, client_ctx = contexts(certs)
    server, client = tls_pair(server_ctx, client_ctx)
    data = os.urandom(300_000)
    (tmp_path / "f").write_bytes(data)

    def read_all():
        got = bytearray()
        while len(got) < len(data):
            got += server.recv(65536)
        return bytes(got)

    box = in_tasklet(read_all)
    with open(tmp_path / "f", "rb") as f:
        assert client.sendfile(f, offset=1000) == len(data) - 1000
    data = data[1000:]
    sl.run()
    assert box == [data]
    server.close()
    client.close()


@pytest.mark.parametrize("suppress", [True, False])
def test_ragged_eof(certs, suppress):
    server_ctx, client_ctx = contexts(certs)
    server, client = tls_pair(server_ctx, client_ctx, suppress_ragged_eofs=suppress)
    server.sendall(b"last")
    os.close(server.detach())  # TCP close without close_notify
    assert client.recv(10) == b"last"
    if suppress:
        assert client.recv(10) == b""
    else:
        with pytest.raises(ssl.SSLEOFError):
            client.recv(10)
    client.close()


def test_non_blocking_callers_get_want_errors_and_blocking_ones_never(certs):
    server_ctx, client_ctx = contexts(certs)
    raw_s, raw_c = tcp_pair()
    raw_c.setblocking(False)
    client = client_ctx.wrap_socket(
        raw_c, server_hostname="localhost", do_handshake_on_connect=False
    )
    with pytest.raises(ssl.SSLWantReadError) as info:
        client.do_handshake()  # the ClientHello went out; the answer is not there yet
    assert info.value.args[0] == ssl.SSL_ERROR_WANT_READ
    box = in_tasklet(lambda: server_ctx.wrap_socket(raw_s, server_side=True))
    while True:
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            sl.wait_fd(client.fileno(), True, False)
    while not box:
        sl.sleep(0.001)
    server = box[0]
    with pytest.raises(ssl.SSLWantReadError):
        client.recv(10)
    # a blocking reader in another tasklet waits instead
    box = in_tasklet(server.recv, 10)
    sl.sleep(0.01)
    assert box == []
    client.sendall(b"hi")
    sl.sleep(0.01)
    assert box == [b"hi"]
    # a non-blocking writer facing a full socket: SSLWantWriteError; the retry with
    # the same data reports its count, and the peer gets every byte exactly once
    chunks = [bytes([i]) * 65536 for i in range(1, 200)]
    sent = 0
    with pytest.raises(ssl.SSLWantWriteError):
        for chunk in chunks:
            assert client.send(chunk) == len(chunk)
            sent += 1
    assert sent < len(chunks) - 1
    retry = chunks[sent]

    def read_all():
        got = bytearray()
        while len(got) < (sent + 2) * 65536:
            got += server.recv(1 << 20)
        return bytes(got)

    box = in_tasklet(read_all)
    while True:
        try:
            assert client.send(retry) == len(retry)
            break
        except ssl.SSLWantWriteError:
            sl.wait_fd(client.fileno(), False, True)
    client.setblocking(True)
    client.sendall(b"\xff" * 65536)
    sl.run()
    assert box == [b"".join(chunks[: sent + 1]) + b"\xff" * 65536]
    server.close()
    client.close()


def test_two_tasklets_reading_one_tls_socket_share_its_records(certs):
    server_ctx, client_ctx = contexts(certs)
    server, client = tls_pair(server_ctx, client_ctx)
    client.settimeout(5)  # a reader left waiting fails the test instead of hanging it
    got = []

    def reader(n):
        while (data := client.recv(n)) != b"":
            got.append(data)

    for n in (7, 300):
        sl.tasklet(reader)(n)
    sl.sleep(0.01)  # both wait now
    records = [bytes([i % 250 + 1]) * (i % 700 + 1) for i in range(300)]
    for i, record in enumerate(records):
        server.sendall(record)  # one TLS record each
        if i % 7 == 0:
            sl.sleep(0)
    server.close()  # the readers see a (suppressed) ragged EOF
    sl.run()
    assert sorted(b"".join(got)) == sorted(b"".join(records))
    server.close()
    client.close()


def test_a_non_blocking_caller_spinning_on_select_lets_its_peer_run(certs):
    """asyncore's way: select() for writability returns at once, so it is the want-error
    that must give the peer tasklet its turn (with threads, the OS would)."""
    from stacklessuv import select as gselect

    server_ctx, client_ctx = contexts(certs)
    raw_s, raw_c = tcp_pair()
    box = in_tasklet(lambda: server_ctx.wrap_socket(raw_s, server_side=True))
    raw_c.setblocking(False)
    client = client_ctx.wrap_socket(
        raw_c, server_hostname="localhost", do_handshake_on_connect=False
    )
    for _ in range(10_000):
        gselect.select([client], [client], [], 5)
        try:
            client.do_handshake()
            break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
    else:
        pytest.fail("the handshake never completed")
    sl.run()
    box[0].close()
    client.close()


def stdlib_timeout_message(certs, op):
    """What CPython's own ssl (fd mode, real sockets) says when ``op`` times out."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    a, b = socket.socketpair()
    a.settimeout(0.01)
    tls = ctx.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
    try:
        with pytest.raises(TimeoutError) as info:
            op(tls)
    finally:
        tls.close()
        b.close()
    return str(info.value)


def test_timeouts_say_what_cpython_says(certs):
    server_ctx, client_ctx = contexts(certs)
    raw_s, raw_c = tcp_pair()  # nobody answers on raw_s
    raw_c.settimeout(0.05)
    client = client_ctx.wrap_socket(
        raw_c, server_hostname="localhost", do_handshake_on_connect=False
    )
    for op in (lambda s: s.do_handshake(), lambda s: s.recv(1), lambda s: s.sendall(b"x")):
        with pytest.raises(TimeoutError) as info:
            op(client)
        assert str(info.value) == stdlib_timeout_message(certs, op)
    assert str(info.value) == "The write operation timed out"
    client.close()
    raw_s.close()


def test_a_timeout_bounds_the_whole_tls_call_not_each_wait(certs):
    """A peer trickling a record a byte at a time cannot stretch a read past its
    timeout: CPython's _ssl.c sets one deadline per call (so does CPython's fd mode
    with this relay: TimeoutError after 0.2 s)."""
    server_ctx, client_ctx = contexts(certs)
    raw_c, relay_c = tcp_pair()
    relay_s, raw_s = tcp_pair()
    slow, stop = [], []

    def pump(src, dst, trickle):
        try:
            while not stop and (data := src.recv(65536)):
                if trickle and slow:
                    for i in range(len(data)):
                        if stop:
                            return
                        dst.sendall(data[i : i + 1])
                        sl.sleep(0.01)
                else:
                    dst.sendall(data)
        except OSError:
            pass

    sl.tasklet(pump)(relay_c, relay_s, False)
    sl.tasklet(pump)(relay_s, relay_c, True)
    box = in_tasklet(lambda: server_ctx.wrap_socket(raw_s, server_side=True))
    client = client_ctx.wrap_socket(raw_c, server_hostname="localhost")
    client.sendall(b"x")
    while not box:
        sl.sleep(0.001)
    server = box[0]
    assert server.recv(1) == b"x"  # the handshake's last records have gone through
    slow.append(1)
    server.sendall(b"y" * 1000)
    client.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="^The read operation timed out$"):
        client.recv(2000)
    assert 0.15 < time.monotonic() - t0 < 1.0
    stop.append(1)
    for s in (client, server, relay_c, relay_s):
        s.close()
    sl.run()


# -- under monkey.patch_all(), in a fresh interpreter --------------------------------


def run_patched(code, certs):
    src = textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", src, str(certs)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_patch_all_reaches_contexts_and_classes_made_before_it(certs):
    out = run_patched(
        """
        import socket, ssl, sys
        certs = sys.argv[1]
        StdSSLSocket = ssl.SSLSocket
        class Legacy(ssl.SSLSocket):  # a subclass made before patching
            pass
        early_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # made before patching
        early_server.load_cert_chain(certs + "/server.pem", certs + "/server.key")
        early_sock = socket.socket()  # a stdlib socket, not green
        from stacklessuv import monkey
        monkey.patch_all()
        import stacklessuv as sl
        from stacklessuv import socket as gs, ssl as gssl
        assert ssl.SSLSocket is gssl.SSLSocket and issubclass(ssl.SSLSocket, StdSSLSocket)
        assert ssl.SSLContext.sslsocket_class is gssl.SSLSocket
        assert gssl.create_default_context().sslsocket_class is gssl.SSLSocket  # no recursion
        client_ctx = ssl.create_default_context(cafile=certs + "/ca.pem")
        listener = socket.create_server(("127.0.0.1", 0))
        early_sock.connect(listener.getsockname())
        raw, _ = listener.accept()
        ticks = []
        sl.tasklet(lambda: [ticks.append(sl.sleep(0.001)) for _ in range(3)])()
        box = []
        sl.tasklet(lambda: box.append(early_server.wrap_socket(raw, server_side=True)))()
        tls = client_ctx.wrap_socket(early_sock, server_hostname="localhost")
        print(type(tls).__name__, isinstance(tls, StdSSLSocket), isinstance(tls, gs.socket))
        tls.sendall(b"ping")
        while not box:
            sl.sleep(0.001)
        print(box[0].recv(4).decode(), type(box[0]).__module__, len(ticks) > 0)
        # the deprecated module function goes through a stdlib SSLContext too
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        plain = ssl.wrap_socket(socket.socket())
        print(type(plain).__module__)
        # a subclass of the stdlib class made before patching still works (fd mode)
        legacy_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy_ctx.sslsocket_class = Legacy
        print(type(legacy_ctx.wrap_socket(socket.socket(), server_hostname="x")).__name__)
        for s in (tls, box[0], plain, listener):
            s.close()
        """,
        certs,
    )
    assert out == [
        "SSLSocket",
        "True",
        "True",
        "ping",
        "stacklessuv.ssl",
        "True",
        "stacklessuv.ssl",
        "Legacy",
    ]


def test_https_through_the_stdlib_under_patch_all(certs):
    """http.server and urllib in threads, which patch_all makes tasklets."""
    out = run_patched(
        """
        import http.server, ssl, sys, threading, urllib.request
        from stacklessuv import monkey
        monkey.patch_all()
        certs = sys.argv[1]
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"hello over tls"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass
        httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(certs + "/server.pem", certs + "/server.key")
        httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
        t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
        t.start()
        ctx = ssl.create_default_context(cafile=certs + "/ca.pem")
        url = f"https://localhost:{httpd.server_address[1]}/"
        for _ in range(3):
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                print(r.read().decode().replace(" ", "_"))
        httpd.shutdown()
        t.join()
        httpd.server_close()
        """,
        certs,
    )
    assert out == ["hello_over_tls"] * 3
