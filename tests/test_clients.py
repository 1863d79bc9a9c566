"""Third-party clients, unmodified, under monkey.patch_all(): requests/urllib3, redis-py,
ftplib (FTP_TLS too) and smtplib (STARTTLS too) against real servers on loopback.

Each client program runs in a fresh, patched interpreter and runs many clients at once as
threads (which the patch makes tasklets on one OS thread); it checks every result and
prints a JSON report the test asserts on: the results, the OS threads the clients ran on,
and that their requests overlapped (the servers delay replies and count how many are in
flight at once). The servers run unpatched in their own processes (redis-server is the real
one), with a CA and a server certificate made at test time. Nothing here skips: a missing
client or server package is a failure (scripts/bootstrap.sh installs them).
"""

import contextlib
import email
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

TIMEOUT = 120
PATCH = "from stacklessuv import monkey; monkey.patch_all()\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    key = "-newkey rsa:2048 -nodes -days 2".split()
    openssl("req", "-x509", *key, *"-keyout ca.key -out ca.pem".split(), "-subj", "/CN=test CA")
    openssl("req", *key[:3], *"-keyout server.key -out server.csr -subj /CN=localhost".split())
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    sign = "-CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf"
    openssl("x509", "-req", *"-in server.csr -out server.pem".split(), *sign.split())
    return d


def run_patched(code, *args, tmp_path=None):
    """Runs a client program in a fresh interpreter: patch_all() at the top, or, with
    tmp_path, written to a file there and run by `python -m stacklessuv`. Returns the JSON
    report on its last line of output."""
    src = textwrap.dedent(code)
    if tmp_path is None:
        cmd = [sys.executable, "-c", PATCH + src]
    else:
        script = tmp_path / "client.py"
        script.write_text(src)
        cmd = [sys.executable, "-m", "stacklessuv", str(script)]
    out = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@contextlib.contextmanager
def server_process(code, *args, log):
    """An unpatched server program in its own process; it prints one JSON line (its ports)
    when it is ready. Terminated (then killed) on exit."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    killer = threading.Timer(30, proc.kill)  # a server that never gets ready
    killer.start()
    try:
        line = proc.stdout.readline()
        killer.cancel()
        assert line, f"server did not start:\n{open(log).read()}"
        yield json.loads(line)
        assert proc.poll() is None, f"server died:\n{open(log).read()}"
    finally:
        killer.cancel()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def check_common(report, clients):
    """What every client program reports: every result correct, all clients on the one OS
    thread of the program, and requests in flight at once (counted by the server, or the
    client for redis)."""
    assert report["ok"] == [True] * clients, report
    assert report["native_ids"] == 1, report
    assert report["max_inflight"] > 1, report


# -- 1. requests (urllib3) against http.server, HTTP and HTTPS ------------------------

HTTP_SERVER = """
import http.server, json, ssl, sys, threading, time
certs = sys.argv[1]

def make(tls):
    stats = {"connections": 0, "requests": 0, "inflight": 0, "max_inflight": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool can reuse
        def setup(self):
            super().setup()
            with lock:
                stats["connections"] += 1
        def do_GET(self):
            if self.path == "/stats":
                body = dict(stats)
            else:
                with lock:
                    stats["requests"] += 1
                    stats["inflight"] += 1
                    stats["max_inflight"] = max(stats["max_inflight"], stats["inflight"])
                time.sleep(0.2)
                with lock:
                    stats["inflight"] -= 1
                body = {"path": self.path, "tls": isinstance(self.connection, ssl.SSLSocket)}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs + "/server.pem", certs + "/server.key")
        accept = server.get_request
        def get_request():  # the handshake runs in the connection's thread
            sock, addr = accept()
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
        server.get_request = get_request
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]

print(json.dumps({"http": make(False), "https": make(True)}), flush=True)
threading.Event().wait()
"""

REQUESTS_CLIENT = """
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
import requests, urllib3

ports, ca = json.loads(sys.argv[1]), sys.argv[2]
N = 50
natives = set()
report = {}
for scheme in ("http", "https"):
    base = f"{scheme}://localhost:{ports[scheme]}"
    session = requests.Session()
    session.mount(f"{scheme}://", requests.adapters.HTTPAdapter(pool_maxsize=N))

    def get(i):
        natives.add(threading.get_native_id())
        # verify per request: requests lets REQUESTS_CA_BUNDLE override session.verify
        r = session.get(f"{base}/item/{i}", verify=ca, timeout=30)
        r.raise_for_status()
        return r.json() == {"path": f"/item/{i}", "tls": scheme == "https"}

    ok = []
    for _ in range(2):  # the second round reuses the pooled connections
        with ThreadPoolExecutor(N) as pool:
            ok.append(all(pool.map(get, range(N))))
    report[scheme] = session.get(f"{base}/stats", verify=ca, timeout=30).json()
    report[scheme]["ok"] = ok
    session.close()

# a certificate the CA did not sign fails verification, as it must
try:
    requests.get(f"https://localhost:{ports['https']}/item/0", timeout=30)
    report["unverified"] = "no error"
except requests.exceptions.SSLError as e:
    report["unverified"] = "CERTIFICATE_VERIFY_FAILED" in str(e)
report["native_ids"] = len(natives)
report["same_thread"] = natives == {threading.get_native_id()}
print(json.dumps(report))
"""


def test_requests_http_and_https_with_a_pooled_session(certs, tmp_path):
    with server_process(HTTP_SERVER, certs, log=tmp_path / "server.log") as ports:
        report = run_patched(
            REQUESTS_CLIENT, json.dumps(ports), certs / "ca.pem", tmp_path=tmp_path
        )
    print(report)
    assert report["native_ids"] == 1 and report["same_thread"], report
    assert report["unverified"] is True, report
    for scheme in ("http", "https"):
        r = report[scheme]
        assert r["ok"] == [True, True], r
        assert r["requests"] == 100, r
        assert 1 < r["connections"] <= 50, r  # 101 requests over at most 50 pooled connections
        assert r["max_inflight"] > 1, r


# -- 2. redis-py against redis-server -------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_port(tmp_path):
    exe = shutil.which("redis-server")
    assert exe, "redis-server not on PATH (scripts/bootstrap.sh installs Debian's redis-server)"
    for _ in range(3):  # another process may take the free port before redis binds it
        port = free_port()
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(tmp_path / "redis.log", "w") as log:
            proc = subprocess.Popen(
                [exe, *args, "--dir", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64) == b"+PONG\r\n":
                        break
            except OSError:
                time.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
            continue
        try:
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    pytest.fail(f"redis-server did not start:\n{(tmp_path / 'redis.log').read_text()}")


REDIS_CLIENT = """
import json, sys, threading, time
import redis

r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=30)
N, BLOCKED = 50, 20
natives = set()

def wait_blocked(n):  # until the server reports n clients blocked in BLPOP
    deadline = time.monotonic() + 20
    while r.info("clients")["blocked_clients"] < n:
        assert time.monotonic() < deadline, f"fewer than {n} clients blocked"
        time.sleep(0.01)

def start(target, *args):
    t = threading.Thread(target=target, args=args)
    t.start()
    return t

# one thread blocks in BLPOP while the others work; another thread's LPUSH wakes it
woken = []
def blocker():
    natives.add(threading.get_native_id())
    woken.append(r.blpop("wake", timeout=30))
b = start(blocker)
wait_blocked(1)

ok = [None] * N
def worker(i):
    natives.add(threading.get_native_id())
    good = r.set(f"k{i}", i) and r.get(f"k{i}") == str(i).encode()
    r.incr("counter")
    with r.pipeline() as p:  # MULTI/EXEC
        p.set(f"p{i}", 2 * i).incr(f"p{i}").get(f"p{i}")
        good = good and p.execute() == [True, 2 * i + 1, str(2 * i + 1).encode()]
    ok[i] = bool(good)
workers = [start(worker, i) for i in range(N)]
for t in workers:
    t.join()
blpop_parked = b.is_alive() and not woken
start(r.lpush, "wake", "hello").join()
b.join()

# many BLPOPs blocked in the server at once, each woken by its own LPUSH: commands in
# flight together (counted by the server). The workers above may not overlap at all: a
# tasklet switches only when it waits, and redis on loopback may answer before it reads.
got = [None] * BLOCKED
def pop(i):
    natives.add(threading.get_native_id())
    got[i] = r.blpop(f"q{i}", timeout=30)
poppers = [start(pop, i) for i in range(BLOCKED)]
wait_blocked(BLOCKED)
blocked_at_once = r.info("clients")["blocked_clients"]
for i in range(BLOCKED):
    start(r.lpush, f"q{i}", f"v{i}")
for t in poppers:
    t.join()

print(json.dumps({
    "ok": ok,
    "counter": int(r.get("counter")),
    "blpop_parked_while_others_ran": blpop_parked,
    "woken": [[x.decode() for x in w] for w in woken],
    "blocked_at_once": blocked_at_once,
    "popped": all(g == (f"q{i}".encode(), f"v{i}".encode()) for i, g in enumerate(got)),
    "native_ids": len(natives),
    "same_thread": natives == {threading.get_native_id()},
    "max_inflight": blocked_at_once,
}))
"""


def test_redis_commands_pipelines_and_blocking_pops(redis_port):
    report = run_patched(REDIS_CLIENT, redis_port)
    print(report)
    check_common(report, 50)
    assert report["same_thread"], report
    assert report["counter"] == 50, report
    assert report["blpop_parked_while_others_ran"] is True, report
    assert report["woken"] == [["wake", "hello"]], report
    assert report["blocked_at_once"] == 20 and report["popped"] is True, report


# -- 3. ftplib (FTP and FTP_TLS) against pyftpdlib -----------------------------------

FTP_SERVER = """
import json, logging, os, sys, threading, time
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler  # TLS_FTPHandler needs pyopenssl
from pyftpdlib.servers import ThreadedFTPServer

root, certs, stats_file = sys.argv[1:]
logging.basicConfig(level=logging.WARNING)
authorizer = DummyAuthorizer()
authorizer.add_user("user", "secret", root, perm="elradfmwMT")
lock = threading.Lock()
stats = {"inflight": 0, "max_inflight": 0, "transfers": 0, "protected": 0}

class Slow:  # each transfer command waits a little, counting those waiting at once
    def slow(self):
        with lock:
            stats["transfers"] += 1
            stats["protected"] += bool(getattr(self, "_prot", False))
            stats["inflight"] += 1
            stats["max_inflight"] = max(stats["max_inflight"], stats["inflight"])
        time.sleep(0.1)
        with lock:
            stats["inflight"] -= 1
            with open(stats_file + ".tmp", "w") as f:
                json.dump(stats, f)
            os.replace(stats_file + ".tmp", stats_file)
    def ftp_STOR(self, *args, **kw):
        self.slow()
        return super().ftp_STOR(*args, **kw)
    def ftp_RETR(self, *args, **kw):
        self.slow()
        return super().ftp_RETR(*args, **kw)

class Plain(Slow, FTPHandler):
    authorizer = authorizer

class TLS(Slow, TLS_FTPHandler):
    authorizer = authorizer
    certfile, keyfile = certs + "/server.pem", certs + "/server.key"
    tls_control_required = tls_data_required = True

plain = ThreadedFTPServer(("127.0.0.1", 0), Plain)  # a thread per session
tls = ThreadedFTPServer(("127.0.0.1", 0), TLS)
print(json.dumps({"plain": plain.address[1], "tls": tls.address[1]}), flush=True)
plain.serve_forever()  # both servers share the default IOLoop
"""

FTP_CLIENT = """
import ftplib, hashlib, io, json, os, ssl, sys, threading

ports, ca = json.loads(sys.argv[1]), sys.argv[2]
N = 8  # sessions of each kind
seed = open(sys.argv[3], "rb").read()
natives = set()

def session(i, tls):
    natives.add(threading.get_native_id())
    if tls:
        ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=ca), timeout=30)
        ftp.connect("localhost", ports["tls"])
        ftp.login("user", "secret")  # AUTH TLS first
        ftp.prot_p()  # data connections over TLS too
    else:
        ftp = ftplib.FTP(timeout=30)
        ftp.connect("127.0.0.1", ports["plain"])
        ftp.login("user", "secret")
    name = f"{'tls' if tls else 'plain'}-{i}.bin"
    data = os.urandom(100_000 + i)
    ftp.storbinary(f"STOR {name}", io.BytesIO(data))
    back, mine = io.BytesIO(), io.BytesIO()
    ftp.retrbinary(f"RETR {name}", back.write)
    ftp.retrbinary("RETR seed.bin", mine.write)  # everyone downloads the same file at once
    ok = back.getvalue() == data and mine.getvalue() == seed and ftp.size(name) == len(data)
    ok = ok and name in ftp.nlst()
    ftp.quit()
    return name, hashlib.sha256(data).hexdigest(), ok

results = []
threads = [
    threading.Thread(target=lambda i=i, tls=tls: results.append(session(i, tls)))
    for i in range(N) for tls in (False, True)
]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({
    "ok": [ok for _, _, ok in results],
    "uploaded": {name: digest for name, digest, _ in results},
    "native_ids": len(natives),
}))
"""


def test_ftplib_plain_and_tls_sessions_against_pyftpdlib(certs, tmp_path):
    root = tmp_path / "ftp"
    root.mkdir()
    (root / "seed.bin").write_bytes(os.urandom(300_000))
    stats_file = tmp_path / "stats.json"
    args = (root, certs, stats_file)
    with server_process(FTP_SERVER, *args, log=tmp_path / "server.log") as ports:
        report = run_patched(FTP_CLIENT, json.dumps(ports), certs / "ca.pem", root / "seed.bin")
    stats = json.loads(stats_file.read_text())
    print(report, stats)
    report["max_inflight"] = stats["max_inflight"]
    check_common(report, 16)
    # the server has every upload as sent, and saw 3 transfers per session, TLS ones protected
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.glob("*-*.bin")}
    assert on_disk == report["uploaded"] and len(on_disk) == 16
    assert stats["transfers"] == 48 and stats["protected"] == 24, stats


# -- 4. smtplib (plain and STARTTLS) against aiosmtpd ---------------------------------

SMTP_SERVER = """
import asyncio, json, os, ssl, sys, uuid
from aiosmtpd.smtp import SMTP

outdir, certs = sys.argv[1:]
stats = {"inflight": 0, "max_inflight": 0}

class Handler:  # each message waits a little before it is accepted, then goes to a file
    async def handle_DATA(self, server, session, envelope):
        stats["inflight"] += 1
        stats["max_inflight"] = max(stats["max_inflight"], stats["inflight"])
        await asyncio.sleep(0.1)
        stats["inflight"] -= 1
        message = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "content": envelope.content.decode(),
        }
        for name, data in ((f"{uuid.uuid4().hex}.json", message), ("stats.json", stats)):
            with open(os.path.join(outdir, name + ".tmp"), "w") as f:
                json.dump(data, f)
            os.replace(os.path.join(outdir, name + ".tmp"), os.path.join(outdir, name))
        return "250 Message accepted for delivery"

async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs + "/server.pem", certs + "/server.key")
    loop = asyncio.get_running_loop()
    handler = Handler()
    plain = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    tls = await loop.create_server(
        lambda: SMTP(handler, tls_context=ctx, require_starttls=True), "127.0.0.1", 0
    )
    ports = {"plain": plain.sockets[0].getsockname()[1], "tls": tls.sockets[0].getsockname()[1]}
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

SMTP_CLIENT = """
import json, smtplib, ssl, sys, threading
from email.message import EmailMessage

ports, ca = json.loads(sys.argv[1]), sys.argv[2]
N = 10  # senders of each kind
natives = set()

def send(i, tls):
    natives.add(threading.get_native_id())
    kind = "tls" if tls else "plain"
    msg = EmailMessage()
    msg["From"], msg["To"] = f"sender{i}@example.com", f"rcpt{i}@example.com"
    msg["Subject"] = f"{kind} {i}"
    msg.set_content(f"message {kind} {i}\\n" + "line of text\\n" * 2000)
    with smtplib.SMTP("localhost", ports[kind], timeout=30) as smtp:
        smtp.ehlo()
        if tls:
            smtp.starttls(context=ssl.create_default_context(cafile=ca))
            smtp.ehlo()
        refused = smtp.send_message(msg, to_addrs=[f"rcpt{i}@example.com", "cc@example.com"])
    return refused == {}

results = []
threads = [
    threading.Thread(target=lambda i=i, tls=tls: results.append(send(i, tls)))
    for i in range(N) for tls in (False, True)
]
for t in threads:
    t.start()
for t in threads:
    t.join()

# the STARTTLS server refuses mail over the plain channel
with smtplib.SMTP("localhost", ports["tls"], timeout=30) as smtp:
    try:
        smtp.sendmail("a@example.com", ["b@example.com"], "Subject: no\\r\\n\\r\\nno\\r\\n")
        refused = "accepted"
    except smtplib.SMTPSenderRefused as e:
        refused = e.smtp_code
print(json.dumps({"ok": results, "native_ids": len(natives), "plain_refused": refused}))
"""


def test_smtplib_plain_and_starttls_against_aiosmtpd(certs, tmp_path):
    box = tmp_path / "mail"
    box.mkdir()
    with server_process(SMTP_SERVER, box, certs, log=tmp_path / "server.log") as ports:
        report = run_patched(SMTP_CLIENT, json.dumps(ports), certs / "ca.pem")
    stats = json.loads((box / "stats.json").read_text())
    print(report, stats)
    report["max_inflight"] = stats["max_inflight"]
    check_common(report, 20)
    assert report["plain_refused"] == 530, report
    received = {}
    for path in box.glob("*.json"):
        if path.name != "stats.json":
            m = json.loads(path.read_text())
            m["message"] = email.message_from_string(m["content"])
            received[m["message"]["Subject"]] = m
    assert set(received) == {f"{kind} {i}" for kind in ("plain", "tls") for i in range(10)}
    for subject, m in received.items():
        kind, i = subject.split()
        assert m["tls"] == (kind == "tls"), m
        assert m["from"] == m["message"]["From"] == f"sender{i}@example.com", m
        assert m["to"] == [f"rcpt{i}@example.com", "cc@example.com"], m
        body = m["message"].get_payload().replace("\r\n", "\n")
        assert body == f"message {kind} {i}\n" + "line of text\n" * 2000, m
