"""The green socket module, on real loopback sockets, checked against CPython's own
sockets where behaviour is compared."""

import array
import errno
import gc
import os
import socket as stdlib
import tempfile
import threading
import time

import pytest

import stacklessuv as sl
from stacklessuv import socket as gs


def tcp_pair():
    """A connected pair of green TCP sockets on loopback."""
    srv = gs.create_server(("127.0.0.1", 0))
    c = gs.create_connection(srv.getsockname())
    s, _ = srv.accept()
    srv.close()
    return c, s


def open_fds():
    gc.collect()  # an earlier test's garbage must not close fds during a count
    return len(os.listdir("/proc/self/fd"))


def test_every_public_name_of_socket_is_there():
    missing = [n for n in stdlib.__all__ if not hasattr(gs, n)]
    assert missing == []
    assert issubclass(gs.socket, stdlib.socket)
    assert gs.timeout is TimeoutError and gs.error is OSError
    assert gs.SocketType is stdlib.SocketType  # the C type, as in CPython


def test_fileno_is_the_real_fd_and_repr_is_cpythons():
    s = gs.socket()
    try:
        fd = s.fileno()
        assert os.fstat(fd)  # a real descriptor
        assert f"fd={fd}" in repr(s)
        assert s.family == stdlib.AF_INET and s.type == stdlib.SOCK_STREAM
    finally:
        s.close()
    assert s.fileno() == -1 and "[closed]" in repr(s)


def test_echo_between_many_tasklets():
    srv = gs.create_server(("127.0.0.1", 0))
    addr = srv.getsockname()

    def handle(conn):
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    def serve(n):
        for _ in range(n):
            conn, _ = srv.accept()
            sl.tasklet(handle)(conn)

    results = {}

    def client(i):
        with gs.create_connection(addr) as c:
            got = []
            for j in range(20):
                msg = b"%d:%d;" % (i, j)
                c.sendall(msg)
                got.append(c.recv(1024))
            results[i] = b"".join(got)

    sl.tasklet(serve)(50)
    for i in range(50):
        sl.tasklet(client)(i)
    sl.run()
    srv.close()
    assert len(results) == 50
    for i, data in results.items():
        assert data == b"".join(b"%d:%d;" % (i, j) for j in range(20))


def test_recv_returns_at_most_bufsize_and_loses_nothing():
    a, b = tcp_pair()
    with a, b:
        payload = os.urandom(100_000)

        def writer():
            a.sendall(payload)
            a.shutdown(stdlib.SHUT_WR)

        sl.tasklet(writer)()
        chunks = []
        while chunk := b.recv(7):
            assert len(chunk) <= 7
            chunks.append(chunk)
        assert b"".join(chunks) == payload


def test_completion_read_reads_no_more_than_asked():
    a, b = tcp_pair()
    with a, b:
        got = []
        sl.tasklet(lambda: got.append(b.recv(10)))()
        sl.schedule()  # the reader parks with a completion read of 10 bytes
        assert b._io.has_stream_handle
        a.sendall(b"x" * 1000)
        sl.run()
        assert got == [b"x" * 10]
        time.sleep(0.01)
        assert b.ioctl(gs.FIONREAD, 0) == 990  # the rest is still in the kernel
        assert b.recv(2000) == b"x" * 990


def test_recv_into_fills_the_callers_buffer():
    a, b = tcp_pair()
    with a, b:
        buf = bytearray(16)
        view = memoryview(buf)[4:]
        sl.tasklet(lambda: (sl.sleep(0.01), a.sendall(b"hello")))()
        n = b.recv_into(view, 5)
        assert n == 5 and buf[4:9] == b"hello"
        arr = array.array("i", [0, 0])
        a.sendall(b"\x01\x00\x00\x00")
        assert b.recv_into(arr) == 4 and arr[0] == 1


def test_msg_peek_and_msg_waitall():
    a, b = tcp_pair()
    with a, b:
        sl.tasklet(lambda: (sl.sleep(0.01), a.sendall(b"abc")))()
        assert b.recv(10, stdlib.MSG_PEEK) == b"abc"
        assert b.recv(10) == b"abc"

        def trickle():
            for ch in b"wxyz":
                sl.sleep(0.005)
                a.send(bytes([ch]))

        sl.tasklet(trickle)()
        assert b.recv(4, stdlib.MSG_WAITALL) == b"wxyz"


def test_timeouts_and_modes_match_cpython():
    a, b = tcp_pair()
    ra, rb = stdlib.socketpair()
    with a, b, ra, rb:
        for s in (b, rb):
            s.setblocking(False)
            assert s.gettimeout() == 0.0 and not s.getblocking() and s.timeout == 0.0
            with pytest.raises(BlockingIOError) as e:
                s.recv(1)
            assert e.value.errno == errno.EAGAIN
            s.settimeout(0.05)
            assert s.gettimeout() == 0.05 and s.getblocking()
            with pytest.raises(TimeoutError, match="timed out") as e:
                s.recv(1)
            assert e.value.args == ("timed out",)
            s.setblocking(True)
            assert s.gettimeout() is None
        for bad in (-1, "x"):
            with pytest.raises(Exception) as mine:
                b.settimeout(bad)
            with pytest.raises(Exception) as theirs:
                rb.settimeout(bad)
            assert type(mine.value) is type(theirs.value)
            assert mine.value.args == theirs.value.args


def test_a_timeout_parks_only_the_caller():
    a, b = tcp_pair()
    ticks = []

    def ticker():
        for _ in range(10):
            ticks.append(time.monotonic())
            sl.sleep(0.01)

    with a, b:
        b.settimeout(0.1)
        sl.tasklet(ticker)()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            b.recv(1)
        elapsed = time.monotonic() - t0
        assert 0.1 <= elapsed + 0.001 < 0.1 + 1.0
        assert len(ticks) >= 8  # the other tasklet kept running during the wait
        sl.run()


def test_setdefaulttimeout_applies_to_new_sockets():
    assert gs.getdefaulttimeout() is None
    gs.setdefaulttimeout(0.25)
    try:
        s = gs.socket()
        assert s.gettimeout() == 0.25
        s.close()
    finally:
        gs.setdefaulttimeout(None)
    s = gs.socket()
    assert s.gettimeout() is None
    s.close()


def test_sendall_timeout_bounds_the_whole_call():
    # The peer drains a little every 20 ms, so no single wait comes near the timeout:
    # only a deadline for the whole call (CPython's) can end this 64 MiB sendall early.
    a, b = tcp_pair()
    stop = []

    def trickle_reader():
        while not stop:
            b.recv(16 * 1024)
            sl.sleep(0.02)

    with a, b:
        sl.tasklet(trickle_reader)()
        a.settimeout(0.3)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            a.sendall(b"x" * (64 * 1024 * 1024))
        stop.append(1)
        assert time.monotonic() - t0 < 10  # per-wait timeouts would take minutes
        a.close()
        sl.run()


def test_waiters_on_one_socket_are_served_in_fifo_order():
    a, b = tcp_pair()
    got = []
    with a, b:
        for name in "pqr":
            sl.tasklet(lambda n: got.append((n, b.recv(1))))(name)
        sl.schedule()
        a.sendall(b"123")
        sl.run()
        assert got == [("p", b"1"), ("q", b"2"), ("r", b"3")]


def test_readers_woken_by_wait_readable_read_with_msg_dontwait():
    # The pattern of the green TLS socket: wait for readability, then a non-blocking
    # recv. The woken reader must read; it used to defer to the other queued reader,
    # which deferred back (a livelock that never read the data).
    a, b = tcp_pair()
    got = []

    def reader(name):
        for attempt in range(1, 101):
            b._io.wait_readable()
            try:
                got.append((name, b._io.recv(5, gs.MSG_DONTWAIT), attempt))
                return
            except BlockingIOError:
                pass
        got.append((name, "no data after 100 wake-ups", attempt))

    with a, b:
        for name in "pq":
            sl.tasklet(reader)(name)
        sl.schedule()
        a.sendall(b"helloworld")
        sl.run()
        assert got == [("p", b"hello", 1), ("q", b"world", 1)]


@pytest.mark.parametrize("call", ["recv", "recv_into"])
def test_readers_of_one_socket_take_turns(call):
    # Readers queue in order; one woken for data another got (recv_into completes into
    # the first reader's own buffer) queues again in its old place, not at the back.
    a, b = tcp_pair()
    got = []

    def reader(name):
        for _ in range(3):
            if call == "recv":
                got.append(name + b.recv(1).decode())
            else:
                buf = bytearray(1)
                b.recv_into(buf)
                got.append(name + buf.decode())

    with a, b:
        for name in "pqr":
            sl.tasklet(reader)(name)
        sl.schedule()
        for i, byte in enumerate(b"123456789"):
            a.sendall(bytes([byte]))
            for _ in range(1000):  # one byte at a time: until some reader has it
                if len(got) > i:
                    break
                sl.sleep(0.001)
        sl.run()
    assert got == ["p1", "q2", "r3", "p4", "q5", "r6", "p7", "q8", "r9"]


def test_reader_woken_by_wait_readable_keeps_its_place_for_a_blocking_recv():
    a, b = tcp_pair()
    got = []

    def waits_then_reads():
        b._io.wait_readable()
        got.append(("p", b.recv(1)))

    with a, b:
        sl.tasklet(waits_then_reads)()
        sl.tasklet(lambda: got.append(("q", b.recv(1))))()
        sl.schedule()
        a.sendall(b"12")
        sl.run()
        assert got == [("p", b"1"), ("q", b"2")]


@pytest.mark.parametrize("call", ["recv", "recv_into"])
@pytest.mark.parametrize("mode", ["MSG_DONTWAIT", "timeout 0"])
def test_nonblocking_recv_reads_what_is_there_while_another_tasklet_waits(call, mode):
    # As CPython's: a non-blocking recv returns the data the kernel has, and raises
    # EAGAIN only when there is none. It never queues, so it never waits for its turn.
    a, b = tcp_pair()
    got = []

    def waiter():
        b._io.wait_readable()  # parked on the socket's reader queue, in any mode
        got.append(b.recv(5, gs.MSG_DONTWAIT))

    def recv_now():
        flags = gs.MSG_DONTWAIT if mode == "MSG_DONTWAIT" else 0
        if call == "recv":
            return b.recv(5, flags)
        buf = bytearray(5)
        return bytes(buf[: b.recv_into(buf, 5, flags)])

    with a, b:
        t = sl.tasklet(waiter)()
        sl.schedule()
        assert t.blocked
        if mode == "timeout 0":
            b.setblocking(False)
        a.sendall(b"hello")
        assert recv_now() == b"hello"
        with pytest.raises(BlockingIOError) as e:
            recv_now()
        assert e.value.errno == errno.EAGAIN
        a.sendall(b"world")
        sl.run()
        assert got == [b"world"]


def test_writers_on_one_socket_do_not_interleave_lost_bytes():
    a, b = tcp_pair()
    with a, b:
        blob = {name: name.encode() * 300_000 for name in "uv"}
        for name in "uv":
            sl.tasklet(a.sendall)(blob[name])
        received = bytearray()

        def reader():
            while len(received) < 600_000:
                received.extend(b.recv(65536))

        sl.tasklet(reader)()
        sl.run()
        assert sorted(received) == sorted(blob["u"] + blob["v"])


def recv_recording_errno(sock, errors):
    """A tasklet body: recv, and record the errno it fails with."""
    try:
        sock.recv(1)
    except OSError as e:
        errors.append(e.errno)


def test_close_wakes_every_waiter_with_ebadf():
    a, b = tcp_pair()
    errors = []
    with a:
        sl.tasklet(recv_recording_errno)(b, errors)
        sl.tasklet(recv_recording_errno)(b, errors)
        sl.schedule()
        t0 = time.monotonic()
        b.close()
        sl.run()
        assert errors == [errno.EBADF, errno.EBADF]
        assert time.monotonic() - t0 < 5


def test_killing_a_blocked_reader_leaves_the_socket_usable():
    a, b = tcp_pair()
    with a, b:
        t = sl.tasklet(b.recv)(10)
        sl.schedule()
        assert t.blocked
        t.kill()
        a.sendall(b"still here")
        assert b.recv(10) == b"still here"


def test_eof_reset_refused_and_broken_pipe_like_cpython():
    # EOF
    a, b = tcp_pair()
    a.close()
    assert b.recv(10) == b""
    b.close()
    # refused
    probe = stdlib.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    for mod in (gs, stdlib):
        with mod.socket() as s, pytest.raises(ConnectionRefusedError) as e:
            s.connect(("127.0.0.1", port))
        assert e.value.errno == errno.ECONNREFUSED
        with mod.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    # reset: the peer closes with unread data, which sends RST
    a, b = tcp_pair()
    b.sendall(b"unread")
    time.sleep(0.01)
    a.close()
    sl.sleep(0.01)
    with pytest.raises(ConnectionResetError):
        b.recv(10)
        b.recv(10)
    b.close()
    # write after the peer closed
    a, b = tcp_pair()
    a.close()
    sl.sleep(0.01)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(100):
            b.sendall(b"x" * 65536)
    b.close()


BAD_CALLS = [
    ("recv", (-1,)),
    ("recv", ("x",)),
    ("recv", (1.5,)),
    ("recv_into", (b"immutable",)),
    ("recv_into", (bytearray(2), 5)),
    ("recv_into", (bytearray(2), -1)),
    ("send", ("text",)),
    ("sendall", ("text",)),
    ("send", (b"x", "flags")),
    ("sendto", (b"x", ("127.0.0.1", "port"))),
    ("connect", (("127.0.0.1",),)),
    ("connect", ("not a tuple",)),
    ("bind", ((1, 2, 3),)),
]


@pytest.mark.parametrize(("method", "args"), BAD_CALLS)
def test_bad_arguments_raise_what_cpython_raises(method, args):
    def outcome(mod):
        with mod.socket() as s:
            s.settimeout(0.01)
            try:
                getattr(s, method)(*args)
            except Exception as e:
                return type(e), e.args
            return None

    assert outcome(gs) == outcome(stdlib)


@pytest.mark.parametrize("method", ["recv", "send", "accept", "getpeername"])
def test_closed_socket_errors_match_cpython(method):
    def outcome(mod):
        s = mod.socket()
        s.close()
        args = {"recv": (1,), "send": (b"x",)}.get(method, ())
        with pytest.raises(OSError) as e:
            getattr(s, method)(*args)
        return type(e.value), e.value.errno

    assert outcome(gs) == outcome(stdlib)


def test_flood_into_an_unread_socket_stays_bounded():
    a, b = tcp_pair()

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    raw = stdlib.socket(fileno=os.dup(a.fileno()))  # a real thread floods through a dup
    raw.setblocking(True)
    a.close()
    stop = threading.Event()

    def flood():
        raw.settimeout(0.05)
        chunk = b"f" * 65536
        while not stop.is_set():
            try:
                raw.send(chunk)
            except TimeoutError:
                continue
            except OSError:
                return

    before = rss_kib()
    th = threading.Thread(target=flood)
    th.start()
    with b:
        got = b.recv(10)  # we ask for 10 bytes while the peer floods
        sl.sleep(0.3)
        after = rss_kib()
        stop.set()
        th.join()
        raw.close()
        assert got == b"f" * 10
    assert after - before < 8 * 1024  # bounded by kernel buffers, not by the flood


def test_thousand_connect_close_cycles_leak_no_fds():
    srv = gs.create_server(("127.0.0.1", 0))
    addr = srv.getsockname()

    def acceptor():
        for _ in range(1000):
            conn, _ = srv.accept()
            conn.recv(1)
            conn.close()

    sl.tasklet(acceptor)()
    sl.schedule()
    before = open_fds()
    for _ in range(1000):
        c = gs.create_connection(addr)
        c.sendall(b"x")
        c.close()
    sl.run()
    gc.collect()
    assert open_fds() == before
    srv.close()


def test_udp_between_tasklets():
    a = gs.socket(gs.AF_INET, gs.SOCK_DGRAM)
    b = gs.socket(gs.AF_INET, gs.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        got = []
        sl.tasklet(lambda: got.append(a.recvfrom(100)))()
        sl.schedule()
        assert a._io.has_stream_handle
        b.sendto(b"dgram", a.getsockname())
        sl.run()
        assert got == [(b"dgram", b.getsockname())]
        a.settimeout(0.02)
        with pytest.raises(TimeoutError):
            a.recvfrom(1)
        buf = bytearray(3)
        b.sendto(b"truncated", ("localhost", a.getsockname()[1]))
        n, addr = a.recvfrom_into(buf)
        assert (n, bytes(buf), addr) == (3, b"tru", b.getsockname())


def test_unix_socketpair_and_fd_passing():
    a, b = gs.socketpair()
    with a, b:
        assert a.family == gs.AF_UNIX
        r, w = os.pipe()
        try:
            got = []
            sl.tasklet(lambda: got.append(b.recvmsg(10, gs.CMSG_SPACE(4))))()
            sl.schedule()
            a.sendmsg([b"fd"], [(gs.SOL_SOCKET, gs.SCM_RIGHTS, array.array("i", [w]))])
            sl.run()
            data, ancdata, _flags, _addr = got[0]
            assert data == b"fd"
            passed = array.array("i", ancdata[0][2])[0]
            os.write(passed, b"through the passed fd")
            os.close(passed)
            assert os.read(r, 100) == b"through the passed fd"
        finally:
            os.close(r)
            os.close(w)


def test_makefile_text_and_binary_and_fd_lifetime():
    a, b = tcp_pair()
    with a:
        rf = b.makefile("r", encoding="utf-8", newline="")
        wf = a.makefile("wb", buffering=0)

        def writer():
            wf.write(b"line one\r\nline two\n")
            sl.sleep(0.01)
            wf.write(b"tail")
            wf.close()
            a.shutdown(stdlib.SHUT_WR)

        sl.tasklet(writer)()
        assert rf.readline() == "line one\r\n"
        assert rf.readline() == "line two\n"
        fd = b.fileno()
        b.close()  # the file object still holds the fd open
        assert os.fstat(fd)
        assert rf.read() == "tail"
        rf.close()
        with pytest.raises(OSError):
            os.fstat(fd)


def test_sendfile_uses_the_syscall():
    a, b = tcp_pair()
    data = os.urandom(3 * 1024 * 1024 + 17)
    with a, b, tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        received = bytearray()

        def reader():
            while len(received) < len(data):
                received.extend(b.recv(1 << 16))

        sl.tasklet(reader)()
        # the sendfile path itself, not the send() fallback
        assert a._sendfile_use_sendfile(f) == len(data)
        sl.run()
        assert received == data
        assert f.tell() == len(data)


def test_dns_answers_match_the_system_resolver():
    cases = [
        ("localhost", 80),
        ("localhost", "http"),
        ("127.0.0.1", 0),
        (None, 8080),
        ("::1", 443),
    ]
    for host, port in cases:
        for kw in ({}, {"type": stdlib.SOCK_STREAM}, {"flags": stdlib.AI_PASSIVE}):
            assert gs.getaddrinfo(host, port, **kw) == stdlib.getaddrinfo(host, port, **kw)
    for args in [("name.invalid", 80), ("localhost", "no-such-service"), (None, None)]:
        with pytest.raises(stdlib.gaierror) as mine:
            gs.getaddrinfo(*args)
        with pytest.raises(stdlib.gaierror) as theirs:
            stdlib.getaddrinfo(*args)
        assert mine.value.args == theirs.value.args
    assert gs.getnameinfo(("127.0.0.1", 80), 0) == stdlib.getnameinfo(("127.0.0.1", 80), 0)
    assert gs.gethostbyname("localhost") == stdlib.gethostbyname("localhost")
    assert gs.gethostbyname_ex("localhost") == stdlib.gethostbyname_ex("localhost")
    assert gs.gethostbyaddr("127.0.0.1") == stdlib.gethostbyaddr("127.0.0.1")
    assert gs.getfqdn() == stdlib.getfqdn()


def test_dns_lookup_lets_other_tasklets_run():
    in_lookup, ticks_during_lookups, stop = [], [], []

    def ticker():
        while not stop:
            if in_lookup:
                ticks_during_lookups.append(1)
            sl.sleep(0)

    sl.tasklet(ticker)()
    for _ in range(20):
        in_lookup.append(1)
        gs.getaddrinfo("localhost", 80)
        in_lookup.clear()
    stop.append(1)
    sl.run()
    # every lookup parked the caller at least once, so the ticker ran during each
    assert len(ticks_during_lookups) >= 20


def test_ioctl_subset():
    s = gs.socket()
    with s:
        assert s.ioctl(gs.SIO_KEEPALIVE_VALS, (1, 30_000, 5_000)) is None
        assert s.getsockopt(gs.SOL_SOCKET, gs.SO_KEEPALIVE) == 1
        assert s.getsockopt(gs.IPPROTO_TCP, gs.TCP_KEEPIDLE) == 30
        assert s.getsockopt(gs.IPPROTO_TCP, gs.TCP_KEEPINTVL) == 5
        assert s.ioctl(gs.SIO_LOOPBACK_FAST_PATH, True) is None
        s.ioctl(gs.FIONBIO, 1)
        assert s.gettimeout() == 0.0
        s.ioctl(gs.FIONBIO, 0)
        assert s.gettimeout() is None
        with pytest.raises(ValueError, match="SIO_KEEPALIVE_VALS"):
            s.ioctl(gs.SIO_RCVALL, 1)


def test_detach_leaves_the_fd_open_and_usable():
    a, b = tcp_pair()
    with a:
        sl.tasklet(lambda: (sl.sleep(0.01), a.sendall(b"one")))()
        assert b.recv(3) == b"one"  # b now has libuv handles
        fd = b.detach()
        assert b.fileno() == -1
        plain = stdlib.socket(fileno=fd)
        a.sendall(b"two")
        plain.settimeout(1)
        assert plain.recv(3) == b"two"
        plain.close()


def test_dup_and_fromfd_are_green():
    a, b = tcp_pair()
    with a, b:
        d = b.dup()
        f = gs.fromfd(b.fileno(), gs.AF_INET, gs.SOCK_STREAM)
        with d, f:
            assert isinstance(d, gs.socket) and isinstance(f, gs.socket)
            sl.tasklet(lambda: (sl.sleep(0.01), a.sendall(b"hi")))()
            assert d.recv(2) == b"hi"


def test_create_connection_all_errors():
    probe = stdlib.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ExceptionGroup) as eg:
        gs.create_connection(("127.0.0.1", port), all_errors=True)
    assert isinstance(eg.value.exceptions[0], ConnectionRefusedError)
    with pytest.raises(ConnectionRefusedError):
        gs.create_connection(("127.0.0.1", port))


def test_a_socket_used_from_a_real_thread():
    a, b = tcp_pair()
    got = []
    with a, b:
        th = threading.Thread(target=lambda: got.append(b.recv(5)))
        th.start()
        time.sleep(0.05)
        a.sendall(b"hello")
        th.join(5)
        assert got == [b"hello"]


def test_a_waiting_socket_costs_no_extra_fd():
    a, b = tcp_pair()
    with a, b:
        before = open_fds()
        t = sl.tasklet(b.recv)(10)
        sl.schedule()
        assert t.blocked and b._io.has_stream_handle
        assert open_fds() == before  # libuv watches the socket's own fd
        a.sendall(b"x")
        sl.run()


def test_collecting_an_unclosed_waited_on_socket_is_safe():
    a, b = tcp_pair()
    sl.tasklet(lambda: (sl.sleep(0.01), a.sendall(b"x")))()
    assert b.recv(1) == b"x"  # b now has a libuv handle on its fd
    fd = b.fileno()
    with pytest.warns(ResourceWarning):
        del b
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
    # the number is free again; a new socket that gets it works on the same loop
    c, d = tcp_pair()
    with a, c, d:
        sl.tasklet(lambda: (sl.sleep(0.01), c.sendall(b"new")))()
        assert d.recv(3) == b"new"


def test_close_from_another_thread_wakes_the_waiter():
    a, b = tcp_pair()
    errors = []
    with a:
        sl.tasklet(recv_recording_errno)(b, errors)
        sl.schedule()
        fd = b.fileno()
        th = threading.Thread(target=b.close)
        th.start()
        sl.run()  # the reader is woken with EBADF by the release handed over to us
        th.join(5)
        assert errors == [errno.EBADF]
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_socket_outlives_the_thread_that_waited_on_it():
    a, b = tcp_pair()
    with a, b:
        th = threading.Thread(target=lambda: b.recv(1))
        th.start()
        time.sleep(0.05)
        a.sendall(b"1")
        th.join(5)
        # that thread's loop is gone; the fd is still b's and still works here
        sl.tasklet(lambda: (sl.sleep(0.01), a.sendall(b"2")))()
        assert b.recv(1) == b"2"


def test_a_connected_client_costs_one_fd():
    srv = gs.create_server(("127.0.0.1", 0))
    with srv:
        before = open_fds()
        c = gs.create_connection(srv.getsockname())
        s, _ = srv.accept()
        with c, s:
            assert open_fds() == before + 2  # the client and the accepted socket, no dups


@pytest.mark.skipif(not stdlib.has_ipv6, reason="no IPv6")
def test_ipv6_echo():
    try:
        srv = gs.create_server(("::1", 0), family=gs.AF_INET6)
    except OSError:
        pytest.skip("no ::1")
    with srv:
        addr = srv.getsockname()
        assert len(addr) == 4
        sl.tasklet(lambda: (lambda c: (c[0].sendall(c[0].recv(10)), c[0].close()))(srv.accept()))()
        with gs.create_connection(("::1", addr[1])) as c:
            c.sendall(b"six")
            assert c.recv(10) == b"six"
        sl.run()
