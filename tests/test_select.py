"""Green select/poll/selectors: truthful readiness, tasklets keep running."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

import stacklessuv as sl
from stacklessuv import select as gselect
from stacklessuv import socket as gs


def test_select_on_a_pipe_and_a_socket_waits_greenly():
    r, w = os.pipe()
    a, b = gs.socketpair()
    try:
        ticks = []
        sl.tasklet(lambda: [ticks.append(sl.sleep(0.005)) for _ in range(4)])()
        sl.tasklet(lambda: (sl.sleep(0.03), a.send(b"x")))()
        t0 = time.monotonic()
        rl, wl, xl = gselect.select([r, b], [], [], 5)
        assert rl == [b] and wl == [] and xl == []
        assert time.monotonic() - t0 < 1
        assert len(ticks) == 4  # the ticker ran while select waited
        rl, wl, _ = gselect.select([r, b], [w], [], 0)
        assert rl == [b] and wl == [w]
        b.recv(1)
        assert gselect.select([r, b], [], [], 0) == ([], [], [])
        t0 = time.monotonic()
        assert gselect.select([r], [], [], 0.05) == ([], [], [])
        assert time.monotonic() - t0 >= 0.045
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()
        sl.run()


def test_select_errors_match_cpython():
    import select as real

    for args in ([[-1], [], []], [["x"], [], []], [[], [], [], -1]):
        with pytest.raises(Exception) as mine:
            gselect.select(*args)
        with pytest.raises(Exception) as theirs:
            real.select(*args)
        assert type(mine.value) is type(theirs.value)


def test_select_reports_bytes_a_socket_has_not_read():
    a, b = gs.socketpair()
    with a, b:
        a.sendall(b"0123456789")
        assert b.recv(3) == b"012"
        assert gselect.select([b], [], [], 0)[0] == [b]  # 7 bytes remain readable


def test_poll_object():
    r, w = os.pipe()
    try:
        p = gselect.poll()
        p.register(r, gselect.POLLIN)
        assert p.poll(0) == []
        sl.tasklet(lambda: (sl.sleep(0.01), os.write(w, b"y")))()
        assert p.poll(1000) == [(r, gselect.POLLIN)]
        p.modify(r, gselect.POLLOUT)
        p.unregister(r)
        with pytest.raises(KeyError):
            p.unregister(r)
    finally:
        os.close(r)
        os.close(w)
        sl.run()


def test_patched_selectors_default_selector_is_green():
    code = """
        from stacklessuv import monkey
        monkey.patch_all()
        import os, selectors, select, time
        import stacklessuv as sl
        assert not hasattr(select, "epoll")
        assert selectors.DefaultSelector is selectors.PollSelector
        assert issubclass(selectors.EpollSelector, selectors.PollSelector)  # asked by name
        r, w = os.pipe()
        sel = selectors.EpollSelector()
        sel.register(r, selectors.EVENT_READ, "data")
        ticks = []
        sl.tasklet(lambda: [ticks.append(time.sleep(0.005)) for _ in range(3)])()
        sl.tasklet(lambda: (time.sleep(0.03), os.write(w, b"z")))()
        events = sel.select(timeout=5)
        assert [(k.fd, k.data, ev) for k, ev in events] == [(r, "data", selectors.EVENT_READ)]
        assert len(ticks) == 3
        print("ok")
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_polling_without_waiting_lets_other_tasklets_run():
    # A loop that polls with timeout 0 until a pipe is readable must not starve the
    # tasklet that writes it (threads would have been preempted).
    r, w = os.pipe()
    try:
        sl.tasklet(lambda: os.write(w, b"x"))()
        spins = 0
        while not gselect.select([r], [], [], 0)[0]:
            spins += 1
            assert spins < 1000
        p = gselect.poll()
        p.register(r, gselect.POLLIN)
        os.read(r, 1)
        sl.tasklet(lambda: os.write(w, b"y"))()
        spins = 0
        while not p.poll(0):
            spins += 1
            assert spins < 1000
    finally:
        os.close(r)
        os.close(w)


def test_waiting_leaves_the_fds_blocking_flag_alone():
    # O_NONBLOCK belongs to the open file description, shared with forked children: a
    # wait must not flip it (libuv's poll handle sets it).
    r, w = os.pipe()
    try:
        sl.tasklet(lambda: (time.sleep(0.01), os.write(w, b"x")))()
        assert gselect.select([r], [], [], 5)[0] == [r]
        assert os.get_blocking(r) and os.get_blocking(w)
        os.read(r, 1)
        sl.tasklet(lambda: (time.sleep(0.01), os.write(w, b"y")))()
        assert sl.wait_fd(r, True, False) == (True, False)
        assert os.get_blocking(r)
        os.set_blocking(r, False)
        assert gselect.select([r], [], [], 0) == ([r], [], [])
        assert not os.get_blocking(r)
    finally:
        os.close(r)
        os.close(w)
