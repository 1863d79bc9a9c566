"""Threads as tasklets (monkey.patch_thread/patch_queue), each case in a fresh
interpreter patched at the top, compared with CPython's real threads where it matters."""

import subprocess
import sys
import textwrap

PATCH = "from stacklessuv import monkey; monkey.patch_all()\n"


def run(code, patched=True):
    src = (PATCH if patched else "") + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[:-1], out.stderr


def test_threads_are_tasklets_on_one_os_thread_and_interleave():
    lines, _ = run(
        """
        import threading, time
        events, natives, idents = [], set(), set()
        def work(i):
            natives.add(threading.get_native_id())
            idents.add(threading.get_ident())
            events.append("start")
            time.sleep(0.05)
            events.append("end")
        threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        assert all(t.is_alive() for t in threads)
        for t in threads:
            t.join()
        assert not any(t.is_alive() for t in threads)
        print(events.index("end"), len(idents), natives == {threading.get_native_id()})
        print(threading.active_count(), threading.current_thread() is threading.main_thread())
        """
    )
    assert lines == ["50 50 True", "1 True"]


def test_lock_errors_match_cpython():
    code = """
        import _thread
        lock = _thread.allocate_lock()
        cases = [(False, 1), (True, -2), (True, 1e30), (True, 1e10), (True, "x"),
                 (True, float("nan"))]
        for args in cases:
            try:
                print(lock.acquire(*args))
                lock.release()
            except Exception as e:
                print(type(e).__name__, e)
        try:
            lock.release()
        except RuntimeError as e:
            print(e)
        r = _thread.RLock()
        for f in (r.release, r._release_save):
            try:
                f()
            except RuntimeError as e:
                print(e)
        with lock:
            print(lock.locked(), lock.acquire(False), lock.acquire(True, 0.01))
        print(lock.locked(), r.acquire(), r.acquire(False), r._is_owned(), r._release_save()[0])
        """
    assert run(code)[0] == run(code, patched=False)[0]


def test_lock_waiters_are_served_in_order_and_timeouts_give_up():
    lines, _ = run(
        """
        import threading, time, stacklessuv as sl
        lock = threading.Lock()
        lock.acquire()
        order = []
        def waiter(i):
            with lock:
                order.append(i)
        for i in range(5):
            threading.Thread(target=waiter, args=(i,)).start()
        print(lock.acquire(timeout=0.02))          # queued behind them: times out
        # a killed waiter must not take the lock with it
        victim = sl.tasklet(lock.acquire)()
        sl.schedule()
        victim.kill()
        lock.release()
        time.sleep(0.01)
        print(order, lock.locked())
        """
    )
    assert lines == ["False", "[0, 1, 2, 3, 4] False"]


def test_several_threads_may_join_one_thread_and_the_main_thread():
    code = """
        import threading, time
        worker = threading.Thread(target=time.sleep, args=(0.05,))
        worker.start()
        joined = []
        def join_worker(i):
            worker.join()
            joined.append(i)
        joiners = [threading.Thread(target=join_worker, args=(i,)) for i in range(3)]
        for j in joiners:
            j.start()
        worker.join()
        for j in joiners:
            j.join()
        print(sorted(joined))
        def join_main():
            threading.main_thread().join()
            print("main ended, its joiner ran", flush=True)
        threading.Thread(target=join_main).start()
        """
    lines, err = run(code)
    assert lines == run(code, patched=False)[0]
    assert lines == ["[0, 1, 2]", "main ended, its joiner ran"], err
    assert "Error" not in err, err


def test_a_released_lock_looks_unlocked_while_it_is_handed_to_a_waiter():
    lines, _ = run(
        """
        import threading, time
        lock = threading.Lock()
        lock.acquire()
        got = []
        t = threading.Thread(target=lambda: got.append(lock.acquire()))
        t.start()
        time.sleep(0.01)  # t waits
        lock.release()
        # As after a real release; t, first in line, still gets it before anyone else.
        print(lock.locked(), lock.acquire(False), got)
        t.join()
        print(got, lock.locked())
        """
    )
    assert lines == ["False False []", "[True] True"]


def test_rlock_is_owned_per_tasklet():
    lines, _ = run(
        """
        import threading
        r = threading.RLock()
        r.acquire()
        seen = []
        def other():
            seen.append(r._is_owned())
            seen.append(r.acquire(blocking=False))
            try:
                r.release()
            except RuntimeError as e:
                seen.append(str(e))
        t = threading.Thread(target=other); t.start(); t.join()
        print(seen, r._is_owned())
        """
    )
    assert lines == ["[False, False, 'cannot release un-acquired lock'] True"]


def test_condition_event_semaphore_barrier_between_thread_tasklets():
    lines, _ = run(
        """
        import threading, time
        cond, items = threading.Condition(), []
        def consumer():
            with cond:
                cond.wait_for(lambda: items)
                print("got", items.pop())
        c = threading.Thread(target=consumer); c.start()
        time.sleep(0.01)
        with cond:
            items.append(1); cond.notify()
        c.join()
        ev = threading.Event()
        print(ev.wait(0.01), threading.Timer(0.01, ev.set).start(), ev.wait(5))
        sem, inside, peak = threading.BoundedSemaphore(3), [0], [0]
        def limited():
            with sem:
                inside[0] += 1; peak[0] = max(peak[0], inside[0]); time.sleep(0.01); inside[0] -= 1
        ts = [threading.Thread(target=limited) for _ in range(10)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print("peak", peak[0])
        barrier, passed = threading.Barrier(4), []
        def party():
            barrier.wait(); passed.append(1)
        ts = [threading.Thread(target=party) for _ in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print("barrier", len(passed))
        """
    )
    assert lines == ["got 1", "False None True", "peak 3", "barrier 4"]


def test_queues_and_thread_pool_executor():
    lines, _ = run(
        """
        import queue, threading, time
        from concurrent.futures import ThreadPoolExecutor
        for q in (queue.Queue(), queue.SimpleQueue(), queue.LifoQueue(), queue.PriorityQueue()):
            def produce():
                for i in range(3):
                    time.sleep(0.001); q.put(i)
            threading.Thread(target=produce).start()
            print(type(q).__name__, sorted(q.get(timeout=5) for _ in range(3)))
        try:
            queue.SimpleQueue().get(timeout=0.01)
        except queue.Empty:
            print("empty")
        main_native = threading.get_native_id()
        with ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda x: (time.sleep(0.01), threading.get_native_id())[1], range(9)))
        print(set(got) == {main_native}, len(got))
        """
    )
    assert lines == [
        "Queue [0, 1, 2]",
        "SimpleQueue [0, 1, 2]",
        "LifoQueue [0, 1, 2]",
        "PriorityQueue [0, 1, 2]",
        "empty",
        "True 9",
    ]


def test_simple_queue_matches_the_c_type():
    code = """
        import pickle, queue, _queue
        q = queue.SimpleQueue()
        print(type(q).__module__, type(q).__name__, queue.SimpleQueue is _queue.SimpleQueue)
        cases = [dict(timeout=-1), dict(block=False, timeout=-1), dict(timeout="x"),
                 dict(timeout=float("nan")), dict(timeout=10**30), dict(timeout=1e300),
                 dict(timeout=0), dict(timeout=0.001), dict(block=[]), dict(timeout=-1e-12),
                 dict(timeout=10**12)]
        for kw in cases:
            try:
                print(q.get(**kw))
            except Exception as e:
                print(type(e).__name__, e)
        for args, kw in (((1,), {}), ((), {"x": 1})):
            try:
                queue.SimpleQueue(*args, **kw)
            except TypeError as e:
                print(e)
        q.put(1, block=False, timeout=-5)
        q.put_nowait(2)
        print(q.qsize(), q.empty(), q.get_nowait(), q.get(False), q.empty())
        print(queue.SimpleQueue[int], type("Sub", (queue.SimpleQueue,), {})().qsize())
        try:
            pickle.dumps(q)
        except TypeError as e:
            print(e)
        """
    patched = run(code)[0]
    assert patched[0] == "_queue SimpleQueue True"
    assert patched == run(code, patched=False)[0]


def test_simple_queue_get_parks_only_its_tasklet_and_serves_getters_in_order():
    lines, _ = run(
        """
        import queue, threading, time
        from stacklessuv import monkey
        q, got = queue.SimpleQueue(), []
        def getter(name):
            got.append((name, q.get()))
        threads = [threading.Thread(target=getter, args=(n,)) for n in "abc"]
        for t in threads:
            t.start()
            time.sleep(0.01)  # a, b, c queue up in that order
        print("waiting", got)
        for i in range(3):
            q.put(i)
        for t in threads:
            t.join()
        print(got)
        # A real OS thread's put wakes a tasklet waiting in get().
        real_start = monkey.get_original("_thread", "start_new_thread")
        real_start(lambda: (time.sleep(0.05), q.put("from a real thread")), ())
        print(q.get(timeout=10))
        """
    )
    assert lines == ["waiting []", "[('a', 0), ('b', 1), ('c', 2)]", "from a real thread"]


def test_simple_queue_passes_cpythons_own_tests_including_reentrant_put():
    lines, err = run(
        """
        import queue, sys, unittest
        from test import test_queue
        class GreenSimpleQueueTest(test_queue.BaseSimpleQueueTest, unittest.TestCase):
            queue = queue
            def setUp(self):
                self.type2test = queue.SimpleQueue
                super().setUp()
            # put() called from __del__ in the middle of put()/get() (bpo-14976)
            test_reentrancy = test_queue.CSimpleQueueTest.test_reentrancy
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(GreenSimpleQueueTest)
        result = unittest.TextTestRunner(stream=sys.stderr).run(suite)
        print(result.testsRun, result.wasSuccessful())
        """
    )
    assert lines == ["8 True"], err


def test_a_getter_killed_while_waiting_loses_no_item():
    lines, _ = run(
        """
        import queue, stacklessuv as s
        q, got = queue.SimpleQueue(), []
        a = s.tasklet(lambda: got.append(("a", q.get())))()
        b = s.tasklet(lambda: got.append(("b", q.get())))()
        s.sleep(0.01)
        q.put(1)   # handed to a, which is killed before it runs
        a.kill()
        s.sleep(0.01)
        q.put(2)
        s.sleep(0.01)
        print(sorted(got), q.qsize())
        """
    )
    assert lines == ["[('b', 1)] 1"]


def test_a_simple_queue_in_a_reference_cycle_is_collected():
    lines, _ = run(
        """
        import gc, queue, weakref
        q = queue.SimpleQueue()
        q.put(q)   # the cycle goes through the queue's items
        ref = weakref.ref(q)
        del q
        gc.collect()
        print(ref() is None)
        """
    )
    assert lines == ["True"]


def test_globals_are_finalized_at_exit_open_files_flushed_and_del_run(tmp_path):
    path = tmp_path / "out.txt"
    code = f"""
        f = open({str(path)!r}, "w")
        f.write("buffered, never closed")
        class D:
            def __del__(self):
                print("__del__ ran")
        d = D()
        """
    assert run(code)[0] == run(code, patched=False)[0] == ["__del__ ran"]
    assert path.read_text() == "buffered, never closed"


def test_after_fork_only_the_forking_thread_runs_in_the_child():
    code = """
        import os, threading, time
        parent = os.getpid()
        def chatter():
            try:
                for _ in range(20):
                    time.sleep(0.01)
                    if os.getpid() != parent:
                        os.write(1, b"the parent's thread ran in the child\\n")
            finally:
                if os.getpid() != parent:
                    os.write(1, b"its finally block ran in the child\\n")
        t = threading.Thread(target=chatter, daemon=True)
        t.start()
        time.sleep(0.02)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            time.sleep(0.3)
            done = threading.Event()
            threading.Thread(target=done.set).start()  # new threads work
            msg = f"child: {threading.active_count()} thread(s), new one ran: {done.wait(10)}\\n"
            os.write(w, msg.encode())
            os._exit(0)
        t.join()
        os.close(w)
        print(os.read(r, 200).decode().strip())
        print("child exit", os.waitpid(pid, 0)[1])
        """
    lines = run(code)[0]
    assert lines == run(code, patched=False)[0]
    assert lines == ["child: 1 thread(s), new one ran: True", "child exit 0"]


def test_logging_from_threads_through_a_queue_listener_and_a_clean_exit(tmp_path):
    lines, err = run(
        f"""
        import logging, logging.handlers, queue, threading
        q = queue.Queue()
        handler = logging.FileHandler({str(tmp_path / "log")!r})
        listener = logging.handlers.QueueListener(q, handler)
        listener.start()
        log = logging.getLogger("t")
        log.addHandler(logging.handlers.QueueHandler(q))
        log.propagate = False
        def work(i):
            for j in range(50):
                log.warning("%d %d", i, j)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        listener.stop()
        handler.close()
        print(len(set(open({str(tmp_path / "log")!r}).read().splitlines())))
        """
    )
    assert lines == ["500"]
    assert err == ""  # logging's handler weakrefs die at exit without errors


def test_uncaught_exceptions_go_to_the_hooks_and_the_program_goes_on():
    lines, stderr = run(
        """
        import threading, _thread, sys, time
        seen = []
        threading.excepthook = lambda args: seen.append(("thread", args.exc_type.__name__))
        t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()
        sys.unraisablehook = lambda u: seen.append((u.err_msg, u.exc_type.__name__))
        _thread.start_new_thread(lambda: int("x"), ())
        _thread.start_new_thread(sys.exit, ())
        time.sleep(0.01)
        print(seen)
        """
    )
    assert lines == [
        "[('thread', 'ZeroDivisionError'), "
        "('Exception ignored in thread started by', 'ValueError')]"
    ]


def test_thread_local_is_per_tasklet_and_dies_with_it():
    lines, _ = run(
        """
        import threading, weakref, gc
        import stacklessuv as sl
        loc = threading.local()
        loc.x = "main"
        class Value: pass
        refs = []
        def worker():
            print("worker sees", getattr(loc, "x", None))
            loc.x = v = Value()
            refs.append(weakref.ref(v))
        t = threading.Thread(target=worker); t.start(); t.join()
        sl.tasklet(worker)(); sl.run()
        gc.collect()
        print(loc.x, [r() is None for r in refs])
        """
    )
    assert lines == ["worker sees None", "worker sees None", "main [True, True]"]


def test_thread_local_keeps_no_data_of_an_ended_thread_and_matches_cpythons_errors():
    code = """
        import copy, gc, threading, weakref
        L = threading.local()
        class Obj:
            pass
        def keep(o):
            L.obj = o
        refs = []
        for _ in range(3):
            o = Obj()
            refs.append(weakref.ref(o))
            t = threading.Thread(target=keep, args=(o,))
            t.start()
            t.join()
            del o, t
            gc.collect()
        print([r() is None for r in refs])
        class Sub(threading.local):
            pass
        for obj in (L, Sub()):
            for call in (lambda: copy.copy(obj), lambda: setattr(obj, "__dict__", {})):
                try:
                    call()
                except (TypeError, AttributeError) as e:
                    print(type(e).__name__, e)
        """
    lines = run(code)[0]
    assert lines == run(code, patched=False)[0]
    assert lines[0] == "[True, True, True]"


def test_plain_tasklets_get_a_dummy_thread_that_is_not_kept():
    lines, _ = run(
        """
        import threading, weakref
        import stacklessuv as sl
        refs = []
        def f():
            th = threading.current_thread()
            refs.append(weakref.ref(th))
            print(th.name.startswith("Dummy-"), th is threading.current_thread())
        sl.tasklet(f)(); sl.run()
        print(refs[0]() is None, len(threading._active))
        """
    )
    assert lines == ["True True", "True 1"]


def test_locks_made_before_patching_are_swapped_for_green_ones():
    lines, _ = run(
        """
        import logging, threading
        handler = logging.StreamHandler()
        logging.getLogger().addHandler(handler)
        from stacklessuv import monkey, _uv
        monkey.patch_all()
        print(isinstance(handler.lock, _uv.RLock), isinstance(logging._lock, _uv.RLock))
        # a tasklet holding the handler's lock while it waits must not block the others
        import time
        done = []
        def holder():
            with handler.lock:
                time.sleep(0.02); done.append("holder")
        def other():
            with handler.lock:
                done.append("other")
        a = threading.Thread(target=holder); b = threading.Thread(target=other)
        a.start(); b.start(); a.join(); b.join()
        print(done)
        """,
        patched=False,
    )
    assert lines == ["True True", "['holder', 'other']"]


def test_non_daemon_threads_are_joined_at_exit():
    lines, _ = run(
        """
        import threading, time
        def late():
            time.sleep(0.05); print("late thread done", flush=True)
        threading.Thread(target=late).start()
        threading.Thread(target=lambda: time.sleep(30), daemon=True).start()
        print("main done", flush=True)
        """
    )
    assert lines == ["main done", "late thread done"]


def test_a_real_os_thread_releases_a_lock_a_tasklet_waits_on():
    lines, _ = run(
        """
        import threading, time
        from stacklessuv import monkey
        real_start = monkey.get_original("_thread", "start_new_thread")
        lock = threading.Lock(); lock.acquire()
        def release_later():
            time.sleep(0.05)   # a real thread: its own hub
            lock.release()
        real_start(release_later, ())
        print(lock.acquire(timeout=10))
        """
    )
    assert lines == ["True"]


def test_threadpool_runs_blocking_c_code_without_blocking_the_hub():
    lines, _ = run(
        """
        import threading, time
        import stacklessuv as sl
        from stacklessuv import threadpool, monkey
        real_sleep = monkey.get_original("time", "sleep")
        ticks = []
        sl.tasklet(lambda: [ticks.append(time.sleep(0.005)) for _ in range(5)])()
        native = threadpool.run(lambda s: (real_sleep(s), threading.get_native_id())[1], 0.2)
        print(len(ticks), native != threading.get_native_id())
        try:
            threadpool.run(int, "x")
        except ValueError as e:
            print(e)
        """
    )
    assert lines == ["5 True", "invalid literal for int() with base 10: 'x'"]


def test_os_read_on_a_pipe_parks_only_the_tasklet():
    code = """
        import os, threading, time
        r, w = os.pipe()
        got = []
        def reader():
            got.append(os.read(r, 10))
        t = threading.Thread(target=reader); t.start()
        time.sleep(0.01)
        print(got, t.is_alive())
        os.write(w, b"hi"); t.join()
        print(got)
        os.set_blocking(r, False)
        try:
            os.read(r, 1)
        except BlockingIOError as e:
            print("EAGAIN", e.errno)
        with open(__import__("sys").executable, "rb") as f:
            print(len(os.read(f.fileno(), 4)))
        os.close(w)
        os.set_blocking(r, True)
        print(os.read(r, 1))
        """
    lines, _ = run(code)
    assert lines == ["[] True", "[b'hi']", "EAGAIN 11", "4", "b''"]


def test_waiting_on_a_lock_nobody_can_release_is_a_deadlock_not_a_hang():
    lines, _ = run(
        """
        import threading
        import stacklessuv as sl
        lock = threading.Lock()
        never = sl.channel()
        def holder():
            with lock:
                never.receive()
        threading.Thread(target=holder, daemon=True).start()
        try:
            lock.acquire()
        except RuntimeError as e:
            print(str(e).split(";")[0])
        """
    )
    assert lines == [
        "Deadlock: the last runnable tasklet cannot be blocked. The main tasklet waits on "
        "a lock (or the hub), and no tasklet is left that could release it"
    ]


def test_thread_patch_refuses_a_threading_without_the_internals_it_replaces():
    lines, _ = run(
        """
        import threading
        del threading._set_sentinel
        from stacklessuv import monkey
        try:
            monkey.patch_all()
        except RuntimeError as e:
            print(str(e).split(":", 1)[1].strip())
        from stacklessuv import _uv
        print(monkey.is_patched("thread"), isinstance(threading.Lock(), _uv.lock))
        """,
        patched=False,
    )
    assert lines == [
        "threading has no _set_sentinel; run with patch_all(thread=False) or --no-thread",
        "False False",
    ]


def test_process_pool_and_subprocess_under_the_patch():
    # Worker processes share pipes with us: a wait here must not make them non-blocking
    # there, and the pool's management thread-tasklet must not block the others.
    lines, _ = run(
        """
        import concurrent.futures, subprocess, sys, threading, time
        def square(x):
            return x * x
        ticks = []
        ticker = threading.Thread(target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(5)])
        ticker.start()
        with concurrent.futures.ProcessPoolExecutor(2) as ex:
            print(sum(ex.map(square, range(100))))
        out = subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True)
        ticker.join()
        print(out.stdout.decode().strip(), len(ticks))
        """
    )
    assert lines == ["328350", "child 5"]
