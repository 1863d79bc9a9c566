"""The hub: timers, fd readiness, signals, threads and fork."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import stacklessuv as s
from stacklessuv import _uv


def test_sleep_is_accurate():
    for seconds in (0.01, 0.05, 0.1):
        t0 = time.monotonic()
        s.sleep(seconds)
        elapsed = time.monotonic() - t0
        assert seconds <= elapsed + 0.0005  # never early (allowing clock rounding)
        assert elapsed < seconds + 0.5  # and not lost (lateness depends on the machine)


def test_sleep_rejects_bad_values_like_time_sleep():
    with pytest.raises(ValueError, match="non-negative"):
        s.sleep(-1)
    with pytest.raises(ValueError):
        s.sleep(float("nan"))
    with pytest.raises(TypeError):
        s.sleep("1")
    with pytest.raises(OverflowError):
        s.sleep(1e300)


def test_sleepers_wake_in_deadline_order_concurrently():
    woke = []
    for delay in (0.05, 0.01, 0.03):
        s.tasklet(lambda d: (s.sleep(d), woke.append(d)))(delay)
    s.run()
    assert woke == [0.01, 0.03, 0.05]  # one after the other would wake 0.05 first


def test_ten_thousand_concurrent_sleepers():
    done = 0

    def sleeper():
        nonlocal done
        s.sleep(0.1)
        done += 1

    for _ in range(10_000):
        s.tasklet(sleeper)()
    t0 = time.monotonic()
    s.run()
    elapsed = time.monotonic() - t0
    assert done == 10_000
    assert elapsed < 2.0  # concurrent, not 10,000 x 0.1 s
    assert not _uv._loop_alive()  # every timer handle was closed


def test_schedule_spinner_does_not_starve_a_timer():
    stop = False
    spins = 0

    def spinner():
        nonlocal spins
        while not stop:
            spins += 1
            s.schedule()

    def timer():
        nonlocal stop
        s.sleep(0.02)
        stop = True

    s.tasklet(spinner)()
    s.tasklet(timer)()
    t0 = time.monotonic()
    s.run()
    assert stop  # a starved timer would never have let run() return
    assert time.monotonic() - t0 < 5
    assert spins > 0


def test_kill_sleeping_tasklet_cancels_its_timer():
    t = s.tasklet(s.sleep)(10)
    s.schedule()
    assert t.blocked
    t.kill()
    assert not t.alive
    assert not _uv._loop_alive()
    s.run()  # returns at once: nothing left waiting


def test_wait_fd_on_a_pipe():
    r, w = os.pipe()
    try:
        log = []

        def reader():
            log.append(s.wait_fd(r))
            log.append(os.read(r, 10))

        s.tasklet(reader)()
        s.schedule()
        assert log == []

        def writer():
            s.sleep(0.01)
            os.write(w, b"hi")

        s.tasklet(writer)()
        s.run()
        assert log == [(True, False), b"hi"]
        assert s.wait_fd(w, readable=False, writable=True) == (False, True)
        with pytest.raises(ValueError):
            s.wait_fd(w, readable=False)
    finally:
        os.close(r)
        os.close(w)


def test_wait_fd_on_a_bad_fd_is_an_oserror():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        s.wait_fd(r)


def test_a_second_os_thread_gets_its_own_hub():
    results = {}

    def thread_main():
        main = s.getcurrent()
        log = []
        s.tasklet(lambda: (s.sleep(0.01), log.append("t")))()
        s.run()
        results["log"] = log
        results["main_is_main"] = main.is_main
        results["main_differs"] = main is not main_of_first_thread

    main_of_first_thread = s.getmain()
    th = threading.Thread(target=thread_main)
    th.start()
    th.join(5)
    assert results == {"log": ["t"], "main_is_main": True, "main_differs": True}


def test_hubs_in_two_threads_sleep_in_parallel():
    spans = []

    def work():
        start = time.monotonic()
        for _ in range(5):
            s.sleep(0.02)
        spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for th in threads:
        th.start()
    work()
    for th in threads:
        th.join()
    # three hubs slept side by side: every span overlaps every other
    assert len(spans) == 3
    assert max(start for start, _ in spans) < min(end for _, end in spans)


def test_thread_result_wakes_the_hub_from_another_thread():
    r = s.ThreadResult()
    ticks = []

    def ticker():
        while not r.done():
            ticks.append(1)
            s.sleep(0.005)

    s.tasklet(ticker)()

    def worker():
        time.sleep(0.05)
        r.set_result("from thread")

    threading.Thread(target=worker).start()
    assert r.wait() == "from thread"
    assert len(ticks) >= 3  # the hub kept running tasklets meanwhile
    s.run()
    assert r.wait() == "from thread"  # a set result stays available
    with pytest.raises(RuntimeError):
        r.set_result(1)


def test_thread_result_exception_and_run_waits_for_it():
    r = s.ThreadResult()
    got = []

    def waiter():
        try:
            r.wait()
        except KeyError as e:
            got.append(e)

    s.tasklet(waiter)()
    threading.Timer(0.02, r.set_exception, (KeyError("k"),)).start()
    s.run()  # the waiting tasklet keeps run() going until the thread answers
    assert len(got) == 1


def test_thread_result_wait_on_the_wrong_thread():
    r = s.ThreadResult()
    errors = []

    def other():
        try:
            r.wait()
        except RuntimeError as e:
            errors.append(e)

    th = threading.Thread(target=other)
    th.start()
    th.join()
    assert len(errors) == 1


def run_script(code, timeout=20, **kw):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_ctrl_c_reaches_the_main_tasklet_while_the_hub_sleeps():
    proc = run_script(
        """
        import sys, time, stacklessuv as s
        def other():
            s.sleep(100)
        s.tasklet(other)()
        print("ready", flush=True)
        try:
            s.sleep(100)
        except KeyboardInterrupt:
            print("interrupted", time.monotonic(), flush=True)
        """
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # let the hub settle into epoll
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().split()
        assert line[:1] == ["interrupted"], proc.stderr.read()
        latency = float(line[1]) - sent
        assert latency < 1.0  # at once, not after the 100 s sleep (typically < 5 ms)
    finally:
        proc.kill()
        proc.wait()


def test_python_signal_handlers_still_run():
    proc = run_script(
        """
        import os, signal, stacklessuv as s
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append("usr1"))
        def later():
            s.sleep(0.02)
            os.kill(os.getpid(), signal.SIGUSR1)
        s.tasklet(later)()
        s.sleep(0.2)
        print(got)
        """
    )
    out, err = proc.communicate(timeout=20)
    assert out.strip() == "['usr1']", err


def test_fork_leaves_a_working_hub_in_the_child():
    proc = run_script(
        """
        import os, time, stacklessuv as s
        s.sleep(0.001)   # the hub exists before the fork
        ch = s.channel()
        def sleeper():
            s.sleep(0.02)
            ch.send("woke")
        s.tasklet(sleeper)()
        pid = os.fork()
        if pid == 0:
            s.tasklet(lambda: (s.sleep(0.01), ch.send("child")))()
            msgs = [ch.receive(), ch.receive()]
            os.write(1, ("child " + ",".join(sorted(msgs)) + "\\n").encode())
            os._exit(0)
        # One write(2) per line, so parent and child lines never interleave
        # (print() writes piece by piece when stdout is unbuffered).
        os.write(1, ("parent " + ch.receive() + "\\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(1, ("status %d\\n" % status).encode())
        """
    )
    out, err = proc.communicate(timeout=20)
    lines = sorted(out.split("\n"))
    assert "child child,woke" in lines, (out, err)
    assert "parent woke" in lines, (out, err)
    assert "status 0" in lines, (out, err)


def test_thread_exit_closes_the_threads_loop():
    s.sleep(0.001)

    def loop_fds():
        """fds of the kinds a hub opens: epoll, eventfd, pipes (its signal pipe is main-only)."""
        kinds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if "eventpoll" in target or "eventfd" in target:
                kinds.append(target)
        return sorted(kinds)

    before = loop_fds()
    for _ in range(20):
        th = threading.Thread(target=s.sleep, args=(0.001,))
        th.start()
        th.join()
    # The OS thread's TLS destructors (which close its loop) run just after join() returns.
    deadline = time.monotonic() + 5
    while loop_fds() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loop_fds() == before
