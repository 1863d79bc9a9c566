"""Green TLS between tasklets, with a CA and a server certificate made at test time."""

import shutil
import ssl
import subprocess

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
