"""Stackless scheduling semantics: order, run/switch/insert/remove, kill, throw,
exception propagation, deadlock detection."""

import greenlet
import pytest

import stacklessuv as s


def test_getcurrent_in_module_code_is_the_main_tasklet():
    cur = s.getcurrent()
    assert isinstance(cur, s.tasklet)
    assert cur is s.getmain()
    assert cur.is_main and cur.is_current and cur.alive
    assert s.getruncount() == 1


def test_tasklets_run_in_fifo_order():
    log = []

    def worker(name, n):
        for i in range(n):
            log.append((name, i))
            s.schedule()

    for name in "abc":
        s.tasklet(worker)(name, 2)
    assert s.getruncount() == 4
    s.run()
    assert log == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    assert s.getruncount() == 1


def test_schedule_returns_retval_or_current():
    got = []

    def f():
        got.append(s.schedule("x"))
        got.append(s.schedule() is s.getcurrent())

    s.tasklet(f)()
    s.run()
    assert got == ["x", True]


def test_tasklet_states():
    def f():
        s.schedule()

    t = s.tasklet(f)
    assert not t.alive and not t.scheduled and not t.blocked
    t()
    assert t.alive and t.scheduled and not t.paused
    t.remove()
    assert t.alive and t.paused and not t.scheduled
    t.insert()
    assert t.scheduled
    s.run()
    assert not t.alive and not t.scheduled


def test_bind_and_setup():
    got = []
    t = s.tasklet()
    t.bind(got.append)
    t.setup(1)
    s.run()
    assert got == [1]
    # bind with args: alive but paused until inserted
    t2 = s.tasklet().bind(got.append, (2,))
    assert t2.alive and t2.paused
    t2.insert()
    s.run()
    assert got == [1, 2]
    with pytest.raises(TypeError):
        s.tasklet(42)
    with pytest.raises(TypeError):
        s.tasklet().setup()


def test_setup_twice_is_an_error():
    t = s.tasklet(lambda: None)()
    with pytest.raises(RuntimeError):
        t.setup()
    s.run()


def test_run_runs_target_now_and_caller_next():
    log = []

    def f(name):
        log.append(name)

    a = s.tasklet(f)("a")
    b = s.tasklet(f)("b")
    c = s.tasklet(f)("c")
    c.run()
    log.append("main")
    s.run()
    # c ran at once; what followed c in the circular queue (main) comes next, then a, b.
    assert log == ["c", "main", "a", "b"]
    assert not (a.alive or b.alive or c.alive)


def test_switch_pauses_the_caller():
    log = []

    def f():
        log.append("f")
        main.insert()  # resume the paused main tasklet

    main = s.getcurrent()
    t = s.tasklet(f)()
    t.switch()
    log.append("main")
    assert log == ["f", "main"]
    s.run()


def test_remove_blocked_or_current_is_an_error():
    ch = s.channel()
    t = s.tasklet(ch.receive)()
    s.schedule()
    assert t.blocked
    with pytest.raises(RuntimeError):
        t.remove()
    with pytest.raises(RuntimeError):
        s.getcurrent().remove()
    ch.send(None)


def test_kill_raises_tasklet_exit_and_the_tasklet_dies_quietly():
    log = []

    def f():
        try:
            s.schedule()
            log.append("not reached")
        except s.TaskletExit:
            log.append("exit")
            raise

    t = s.tasklet(f)()
    s.schedule()  # let it start
    t.kill()
    assert log == ["exit"]
    assert not t.alive
    s.run()


def test_kill_unstarted_and_dead_tasklets():
    t = s.tasklet(lambda: pytest.fail("must not run"))()
    t.kill()
    assert not t.alive
    s.run()
    t.kill()  # dead: nothing happens


def test_kill_blocked_tasklet_leaves_channel_balanced():
    ch = s.channel()
    t = s.tasklet(ch.receive)()
    s.schedule()
    assert ch.balance == -1 and t.blocked
    t.kill()
    assert ch.balance == 0 and not t.alive and not t.blocked


def test_kill_pending_only_makes_it_runnable():
    log = []

    def f():
        try:
            s.schedule_remove()
        except s.TaskletExit:
            log.append("exit")

    t = s.tasklet(f)()
    s.schedule()
    assert t.paused
    t.kill(pending=True)
    assert log == [] and t.scheduled
    s.run()
    assert log == ["exit"]


def test_tasklet_exit_is_a_system_exit():
    assert issubclass(s.TaskletExit, SystemExit)


def test_raise_exception_in_tasklet():
    got = []

    def f():
        try:
            s.schedule()
        except KeyError as e:
            got.append(e.args)

    t = s.tasklet(f)()
    s.schedule()
    t.raise_exception(KeyError, "k", 1)
    assert got == [("k", 1)]
    s.run()


def test_throw_with_instance_and_pending():
    got = []

    def f():
        try:
            s.schedule_remove()
        except ValueError as e:
            got.append(str(e))

    t = s.tasklet(f)()
    s.schedule()
    t.throw(ValueError("v"), pending=True)
    assert got == []
    s.run()
    assert got == ["v"]
    with pytest.raises(RuntimeError):
        t.throw(ValueError)


def test_uncaught_exception_is_raised_in_main():
    def f():
        raise ZeroDivisionError("boom")

    s.tasklet(f)()
    with pytest.raises(ZeroDivisionError, match="boom"):
        s.run()


def test_uncaught_exception_interrupts_main_blocked_on_a_channel():
    ch = s.channel()

    def f():
        raise LookupError("from tasklet")

    s.tasklet(f)()
    with pytest.raises(LookupError):
        ch.receive()
    assert ch.balance == 0


def test_exception_in_tasklet_while_main_sleeps():
    def f():
        s.sleep(0.01)
        raise KeyError("late")

    s.tasklet(f)()
    with pytest.raises(KeyError):
        s.sleep(5)


def test_deadlock_is_a_runtime_error_not_a_hang():
    ch = s.channel()
    with pytest.raises(RuntimeError, match="Deadlock"):
        ch.receive()
    assert ch.balance == 0


def test_deadlock_message_counts_other_blocked_tasklets():
    a, b = s.channel(), s.channel()
    t = s.tasklet(a.receive)()
    with pytest.raises(RuntimeError, match=r"1 other tasklet\(s\) are blocked"):
        b.receive()
    t.kill()


def test_schedule_remove_with_nothing_else_is_a_deadlock():
    with pytest.raises(RuntimeError, match="Deadlock"):
        s.schedule_remove()


def test_run_returns_when_only_channel_blocked_tasklets_remain():
    ch = s.channel()
    t = s.tasklet(ch.receive)()
    s.run()
    assert t.blocked
    t.kill()


def test_run_only_from_main():
    errors = []

    def f():
        try:
            s.run()
        except RuntimeError as e:
            errors.append(e)

    s.tasklet(f)()
    s.run()
    assert len(errors) == 1


def test_schedule_callback_sees_switches():
    seen = []

    def cb(prev, nxt):
        seen.append((prev, nxt))

    assert s.set_schedule_callback(cb) is None
    try:
        t = s.tasklet(lambda: None)()
        s.run()
    finally:
        assert s.set_schedule_callback(None) is cb
    assert (s.getmain(), t) in seen
    assert (t, None) in seen
    assert s.get_schedule_callback() is None


def test_atomic_sets_and_restores_the_flag():
    cur = s.getcurrent()
    assert not cur.atomic
    with s.atomic():
        assert cur.atomic
    assert not cur.atomic


def test_bare_greenlet_can_block_on_the_hub():
    log = []

    def body():
        log.append("start")
        s.sleep(0.01)
        log.append(("inside", s.getcurrent().is_main))
        return "done"

    g = greenlet.greenlet(body)
    assert g.switch() == "done"
    assert log == ["start", ("inside", False)]
    assert s.getcurrent() is s.getmain()


def test_bare_greenlet_blocking_while_tasklets_run():
    log = []

    def ticker():
        for i in range(3):
            log.append(i)
            s.sleep(0.001)

    s.tasklet(ticker)()

    def body():
        s.sleep(0.05)
        return "ok"

    assert greenlet.greenlet(body).switch() == "ok"
    assert log == [0, 1, 2]
    s.run()


def test_tempval_and_repr():
    t = s.tasklet(lambda: None)
    assert "unbound" in repr(t)
    t()
    assert "scheduled" in repr(t)
    s.run()
    assert "dead" in repr(t)
    assert "main" in repr(s.getmain())


def test_ten_thousand_tasklets():
    count = 0

    def f():
        nonlocal count
        s.schedule()
        count += 1

    for _ in range(10_000):
        s.tasklet(f)()
    s.run()
    assert count == 10_000
