"""The signal patch (monkey.patch_signal): each case in a fresh interpreter patched at
the top, compared with CPython where it matters. Real signals, sent to ourselves."""

import signal
import subprocess
import sys
import textwrap
import time

PATCH = "from stacklessuv import monkey; monkey.patch_all()\n"


def run(code, patched=True, timeout=60):
    src = (PATCH if patched else "") + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[:-1], out.stderr


def test_patched_names():
    lines, _ = run(
        """
        import signal, stacklessuv.signal as green
        names = ["pause", "pthread_kill", "set_wakeup_fd", "sigtimedwait", "sigwait", "sigwaitinfo"]
        print(all(getattr(signal, n) is getattr(green, n) for n in names))
        """
    )
    assert lines == ["True"]


def test_set_wakeup_fd_arguments_errors_and_returns_match_cpython():
    code = """
        import os, signal
        r, w = os.pipe()
        name = {r: "R", w: "W"}
        cases = [((r,), {}), ((), {}), ((1, 2), {}), ((w,), {"warn_on_full_buffer": 0}),
                 (("x",), {}), ((99,), {}), ((-5,), {}), ((2**40,), {}), ((1.5,), {}),
                 ((), {"fd": 3}), ((-1,), {"bogus": 1})]
        for args, kw in cases:
            try:
                print(signal.set_wakeup_fd(*args, **kw))
            except Exception as e:
                print(type(e).__name__, str(e).replace(str(r), "R").replace(str(w), "W"))
        os.set_blocking(w, False)
        os.set_blocking(r, False)
        print(signal.set_wakeup_fd(w), name[signal.set_wakeup_fd(r, warn_on_full_buffer=False)])
        print(name[signal.set_wakeup_fd(-1)], signal.set_wakeup_fd(-1))
        """
    patched = run(code)[0]
    assert patched == run(code, patched=False)[0]
    assert patched[-2:] == ["-1 W", "R -1"]


def test_set_wakeup_fd_off_the_main_os_thread_is_refused():
    lines, _ = run(
        """
        import signal, time
        from stacklessuv import monkey
        start = monkey.get_original("_thread", "start_new_thread")
        out = []
        def off_main():
            try:
                signal.set_wakeup_fd(-1)
            except ValueError as e:
                out.append(str(e))
        start(off_main, ())
        while not out:
            time.sleep(0.01)
        print(out[0])
        """
    )
    assert lines == ["set_wakeup_fd only works in main thread of the main interpreter"]


def test_program_wakeup_fd_gets_the_bytes_and_the_hub_still_wakes():
    lines, _ = run(
        """
        import os, signal, time, stacklessuv as s
        r, w = os.pipe()
        os.set_blocking(w, False)
        os.set_blocking(r, False)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGUSR1, lambda *a: print("handler", flush=True))
        signal.signal(signal.SIGUSR2, lambda *a: None)
        # the hub sleeps in libuv (nothing runnable) when the signals arrive
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        signal.signal(signal.SIGALRM, lambda *a: (os.kill(os.getpid(), signal.SIGUSR1),
                                                  os.kill(os.getpid(), signal.SIGUSR2)))
        deadline = time.monotonic() + 10
        got = b""
        while len(got) < 3 and time.monotonic() < deadline:
            s.wait_fd(r)
            got += os.read(r, 10)
        print(sorted(got) == sorted([signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2]))
        # With the program's fd in Python's place, nothing would end libuv's sleep.
        class Alarm(Exception):
            pass
        def alarm(*a):
            raise Alarm
        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        try:
            time.sleep(30)
        except Alarm:
            print("woke", time.monotonic() - t0 < 10)
        """
    )
    assert lines == ["handler", "True", "woke True"]


def test_wakeup_fd_full_buffer_warns_as_cpython():
    code = """
        import os, signal, socket, time
        a, b = socket.socketpair()
        a.setblocking(False)
        while True:
            try:
                a.send(b"x" * 4096)
            except BlockingIOError:
                break
        signal.signal(signal.SIGUSR1, lambda *a: None)
        for warn in (False, True):
            signal.set_wakeup_fd(a.fileno(), warn_on_full_buffer=warn)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            for _ in range(10):
                pass
            print("--", warn, flush=True)
        """
    for patched in (True, False):
        lines, err = run(code, patched=patched)
        assert lines == ["-- False", "-- True"]
        # One report, for warn_on_full_buffer=True only.
        assert err.count("Exception ignored when trying to write to the signal wakeup fd") == 1, (
            patched,
            err,
        )
        assert "BlockingIOError: [Errno 11] Resource temporarily unavailable" in err


def test_wakeup_fd_set_before_the_hub_is_kept():
    lines, _ = run(
        """
        import os, signal
        r, w = os.pipe()
        os.set_blocking(w, False)
        os.set_blocking(r, False)
        signal.set_wakeup_fd(w)
        from stacklessuv import monkey
        monkey.patch_all()
        import stacklessuv as s
        signal.signal(signal.SIGUSR1, lambda *a: None)
        s.tasklet(lambda: (s.sleep(0.02), os.kill(os.getpid(), signal.SIGUSR1)))()
        signal.pause()   # the hub's pipe is installed: the signal ends the pause
        s.sleep(0.01)
        print(os.read(r, 10) == bytes([signal.SIGUSR1]), signal.set_wakeup_fd(-1) == w)
        """,
        patched=False,
    )
    assert lines == ["True True"]


def test_pause_parks_only_its_tasklet_and_returns_after_the_handler():
    lines, _ = run(
        """
        import os, signal, time, stacklessuv as s
        events = []
        signal.signal(signal.SIGUSR1, lambda *a: events.append("handler"))
        def ticker():
            for i in range(3):
                time.sleep(0.01)
                events.append(i)
            os.kill(os.getpid(), signal.SIGUSR1)
        s.tasklet(ticker)()
        print(signal.pause(), events)
        """
    )
    assert lines == ["None [0, 1, 2, 'handler']"]


def test_pause_in_a_thread_and_a_raising_handler_reach_main():
    lines, _ = run(
        """
        import os, signal, threading, time
        class Stop(Exception):
            pass
        def handler(*a):
            raise Stop
        signal.signal(signal.SIGUSR1, handler)
        out = []
        t = threading.Thread(target=lambda: out.append(signal.pause()))
        t.start()
        try:
            time.sleep(0.05)     # the thread is in pause(), the hub idle
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(10)
        except Stop:
            print("main got Stop")
        t.join()
        print(out)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            signal.signal(signal.SIGALRM, handler)
            signal.pause()
        except Stop:
            print("pause in main raised Stop")
        """
    )
    assert lines == ["main got Stop", "[None]", "pause in main raised Stop"]


def test_pause_keeps_run_going_until_the_signal():
    lines, _ = run(
        """
        import os, signal, stacklessuv as s
        signal.signal(signal.SIGUSR1, lambda *a: None)
        done = []
        s.tasklet(lambda: done.append(signal.pause()))()
        def ticker():
            for i in range(3):
                s.sleep(0.01)
                done.append(i)
        s.tasklet(ticker)()
        # a real OS thread sends the signal later: nothing on this hub could
        from stacklessuv import monkey
        start = monkey.get_original("_thread", "start_new_thread")
        real_sleep = monkey.get_original("time", "sleep")
        start(lambda: (real_sleep(0.3), os.kill(os.getpid(), signal.SIGUSR1)), ())
        s.run()
        print(done)
        """
    )
    assert lines == ["[0, 1, 2, None]"]


def test_ctrl_c_ends_pause_in_main():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PATCH
            + textwrap.dedent(
                """
                import signal
                print("ready", flush=True)
                try:
                    signal.pause()
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert out.strip() == "interrupted", err
    finally:
        proc.kill()
        proc.wait()


def test_sigwait_family_parks_only_the_tasklet():
    lines, _ = run(
        """
        import os, signal, time, stacklessuv as s
        U1, U2 = signal.SIGUSR1, signal.SIGUSR2
        signal.pthread_sigmask(signal.SIG_BLOCK, [U1, U2])
        ticks = []
        def ticker():
            for i in range(3):
                time.sleep(0.01)
                ticks.append(i)
            signal.raise_signal(U2)     # pending for this thread only
        s.tasklet(ticker)()
        print(repr(signal.sigwait([U1, U2])), ticks)
        s.tasklet(lambda: (time.sleep(0.02), os.kill(os.getpid(), U1)))()
        info = signal.sigwaitinfo(iter([U1]))
        print(info.si_signo == U1, info.si_pid == os.getpid())
        t0 = time.monotonic()
        print(signal.sigtimedwait([U1], 0.05), time.monotonic() - t0 >= 0.05)
        s.tasklet(lambda: (time.sleep(0.02), os.kill(os.getpid(), U1)))()
        print(signal.sigtimedwait([U1], 30).si_signo == U1)
        os.kill(os.getpid(), U2)
        print(signal.sigtimedwait([U2], 0).si_signo == U2)
        """
    )
    assert lines == [
        "<Signals.SIGUSR2: 12> [0, 1, 2]",
        "True True",
        "None True",
        "True",
        "True",
    ]


def test_sigwait_family_errors_match_cpython():
    code = """
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        cases = [
            ("sigtimedwait", ([1], "x")), ("sigtimedwait", ([1], -1)),
            ("sigtimedwait", ([1], float("nan"))), ("sigtimedwait", ([1], 1e300)),
            ("sigtimedwait", ([1], 2**70)), ("sigtimedwait", ([1], 10**10)),
            ("sigtimedwait", ([0], 1)), ("sigtimedwait", ([0], -1)), ("sigtimedwait", ([], -1)),
            ("sigtimedwait", (5, 1)), ("sigtimedwait", (["a"], 1)), ("sigtimedwait", ([1], None)),
            ("sigtimedwait", ([1], -1e-10)), ("sigtimedwait", ([signal.SIGUSR1], 0.001)),
            ("sigtimedwait", ([1],)), ("sigwait", ()), ("sigwait", ([1], 2)), ("sigwait", ("xy",)),
            ("sigwait", ([0],)), ("sigwaitinfo", ([100],)), ("sigwaitinfo", (None,)),
            ("pause", (1,)), ("pthread_kill", ()),
        ]
        for name, args in cases:
            try:
                print(name, getattr(signal, name)(*args))
            except Exception as e:
                print(name, type(e).__name__, e)
        """
    assert run(code)[0] == run(code, patched=False)[0]


def test_alarm_handler_interrupts_green_recv_and_sleep_promptly():
    lines, _ = run(
        """
        import signal, socket, time
        class Alarm(Exception):
            pass
        def handler(*a):
            raise Alarm
        signal.signal(signal.SIGALRM, handler)
        a, b = socket.socketpair()
        for what, call in (("recv", lambda: a.recv(10)), ("sleep", lambda: time.sleep(30))):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            t0 = time.monotonic()
            try:
                call()
            except Alarm:
                print(what, "interrupted", time.monotonic() - t0 < 10)
        signal.alarm(1)
        try:
            a.recv(10)
        except Alarm:
            print("alarm interrupted")
        """
    )
    assert lines == ["recv interrupted True", "sleep interrupted True", "alarm interrupted"]


def test_custom_sigint_handler_still_runs_while_the_hub_sleeps():
    lines, _ = run(
        """
        import os, signal, time, stacklessuv as s
        got = []
        signal.signal(signal.SIGINT, lambda *a: got.append("int"))
        s.tasklet(lambda: (time.sleep(0.02), os.kill(os.getpid(), signal.SIGINT)))()
        time.sleep(0.2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        s.tasklet(lambda: (time.sleep(0.02), os.kill(os.getpid(), signal.SIGINT)))()
        try:
            time.sleep(30)
        except KeyboardInterrupt:
            got.append("KeyboardInterrupt")
        print(got)
        """
    )
    assert lines == ["['int', 'KeyboardInterrupt']"]


def test_pthread_kill_of_a_thread_tasklet_signals_its_os_thread():
    lines, _ = run(
        """
        import signal, threading, time
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append("usr1"))
        def worker():
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            time.sleep(0.02)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        time.sleep(0.02)
        print(got)
        """
    )
    assert lines == ["['usr1', 'usr1']"]


def test_fork_keeps_the_program_wakeup_fd_and_pausers():
    lines, _ = run(
        """
        import os, signal, time, stacklessuv as s
        r, w = os.pipe()
        os.set_blocking(w, False)
        os.set_blocking(r, False)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGUSR1, lambda *a: None)
        paused = []
        s.tasklet(lambda: paused.append(signal.pause()))()
        time.sleep(0.01)  # the tasklet is in pause()
        pid = os.fork()
        if pid == 0:
            s.tasklet(lambda: (time.sleep(0.02), os.kill(os.getpid(), signal.SIGUSR1)))()
            time.sleep(0.2)
            ok = paused == [None] and os.read(r, 10) == bytes([signal.SIGUSR1])
            ok = ok and signal.set_wakeup_fd(-1) == w
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(status, paused)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        print(paused)
        """
    )
    assert lines == ["0 []", "[None]"]


def test_asyncio_signal_handlers_under_the_patch():
    lines, _ = run(
        """
        import asyncio, os, signal
        async def main():
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "usr1")
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
            print(await asyncio.wait_for(fut, 10))
        asyncio.run(main())
        print(signal.set_wakeup_fd(-1))  # asyncio took its fd back
        """
    )
    assert lines == ["usr1", "-1"]


def test_a_handlers_exception_goes_to_the_main_thread_not_the_thread_that_ran():
    code = """
        import os, signal, threading
        class Interrupted(Exception):
            pass
        def on_usr1(signum, frame):
            raise Interrupted("from the handler")
        signal.signal(signal.SIGUSR1, on_usr1)
        events = []
        def worker():
            os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs before the next line
            events.append("worker went on")
        t = threading.Thread(target=worker)
        try:
            t.start()
            t.join()
        except Interrupted as e:
            events.append(f"main got: {e}")
        t.join()
        print(sorted(events))
        """
    assert run(code)[0] == run(code, patched=False)[0]
    assert run(code)[0] == ["['main got: from the handler', 'worker went on']"]


def test_sys_exit_in_a_sigterm_handler_ends_the_program_from_any_thread():
    code = """
        import os, signal, sys, threading, time
        def on_term(signum, frame):
            print("exiting", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        def worker():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        t = threading.Thread(target=worker, daemon=True)
        t.start()
        t.join()
        print("not reached")
        """
    assert run(code)[0] == run(code, patched=False)[0] == ["exiting"]


def test_waiting_for_a_signal_handler_to_set_an_event_is_not_a_deadlock():
    code = """
        import signal, threading
        stop = threading.Event()
        signal.signal(signal.SIGALRM, lambda *a: stop.set())
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        print(stop.wait(), "after the signal")
        """
    assert run(code)[0] == run(code, patched=False)[0] == ["True after the signal"]


def test_signal_and_getsignal_give_the_programs_handlers_and_refuse_threads():
    code = """
        import signal, threading
        def handler(*a):
            pass
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        print(signal.signal(signal.SIGUSR1, handler), signal.getsignal(signal.SIGUSR1) is handler)
        previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        print(previous is handler, signal.getsignal(signal.SIGUSR1))
        def in_thread():
            for call in (lambda: signal.signal(signal.SIGUSR1, handler),
                         lambda: signal.set_wakeup_fd(-1)):
                try:
                    call()
                except ValueError as e:
                    print(e)
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        """
    assert run(code)[0] == run(code, patched=False)[0]


def test_a_keyboard_interrupt_a_thread_raises_itself_stays_in_that_thread():
    code = """
        import threading
        def worker():
            raise KeyboardInterrupt("from the worker")
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        print("main went on")
        """
    lines, err = run(code)
    assert lines == run(code, patched=False)[0] == ["main went on"]
    assert "Exception in thread" in err and "KeyboardInterrupt: from the worker" in err


def test_ctrl_c_traceback_shows_only_the_programs_frames():
    code = """
        import os, signal, time
        def f():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        f()
        """
    outcomes = []
    # The same line numbers in both: a blank line where the patch line is.
    for src in (PATCH + textwrap.dedent(code), "\n" + textwrap.dedent(code)):
        cmd = [sys.executable, "-c", src]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        outcomes.append((out.returncode, out.stderr))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1].endswith("KeyboardInterrupt\n")
