"""monkey patching and `python -m stacklessuv`, each in a fresh interpreter."""

import subprocess
import sys
import textwrap


def run(code, *args):
    out = subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)] if code else [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_patch_all_makes_stdlib_sockets_green():
    out = run(
        """
        import socket, time
        original = socket.socket
        from stacklessuv import monkey
        monkey.patch_all()
        monkey.patch_all()  # idempotent
        import stacklessuv as sl
        from stacklessuv import socket as green
        assert socket.socket is green.socket and monkey.get_original("socket", "socket") is original
        assert socket.SocketType is original.__mro__[1]  # still the C type
        assert monkey.is_patched("socket") and monkey.is_patched("time")
        assert all(map(monkey.is_patched, ("ssl", "thread", "queue")))
        # socket's own helpers now make green sockets
        srv = socket.create_server(("127.0.0.1", 0))
        assert isinstance(srv, green.socket)
        ticks = []
        sl.tasklet(lambda: [ticks.append(time.sleep(0.01)) for _ in range(5)])()
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        s.settimeout(0.2)
        try:
            s.recv(1)
        except TimeoutError:
            pass
        assert len(ticks) == 5  # time.sleep and the recv wait ran side by side
        # name lookups through the patched module, including on the thread pool
        assert socket.gethostbyname(socket.gethostname())
        assert socket.gethostbyaddr("127.0.0.1")[0]
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_python_m_stacklessuv_runs_a_script(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(
            """
            import socket, sys
            print(__name__, sys.argv[1:], socket.socket.__module__)
            """
        )
    )
    out = run(None, "-m", "stacklessuv", str(script), "a", "b")
    assert out.split() == ["__main__", "['a',", "'b']", "stacklessuv.socket"]
    out = run(None, "-m", "stacklessuv", "--no-socket", str(script))
    assert out.split()[-1] == "socket"


def test_python_m_stacklessuv_runs_a_module(tmp_path):
    program = "import time, sys\nprint(time.sleep.__module__, sys.argv)\n"
    (tmp_path / "pkgmod.py").write_text(program)
    out = subprocess.run(
        [sys.executable, "-m", "stacklessuv", "-m", "pkgmod", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "stacklessuv._uv"
    assert "'x'" in out.stdout


def test_green_time_sleep_takes_and_refuses_what_cpythons_does():
    code = """
        import decimal, fractions, time
        cases = [(10**20,), (1e300,), (-1,), (float("nan"),), ("1",), (fractions.Fraction(1, 2),),
                 (decimal.Decimal("0.1"),), (9223372036.9,), (True,), (-1e-10,), (-0.0,),
                 (0,), (0.001,), (), (1, 2)]
        for args in cases:
            try:
                print(time.sleep(*args))
            except (TypeError, ValueError, OverflowError) as e:
                print(type(e).__name__, e)
        try:
            time.sleep(secs=1)
        except TypeError as e:
            print(e)
        """
    patched = run("from stacklessuv import monkey; monkey.patch_all()\n" + textwrap.dedent(code))
    assert patched == run(code)
