"""`python -m stacklessuv ...` runs a program as `python ...` does: each test runs the same
program both ways, in subprocesses in tmp_path, and compares what they print."""

import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import pytest

# Prints, as text without object addresses, what the program sees of how it was run.
REPORT = """\
import atexit, sys, __main__
print("argv", sys.argv)
print("path0", repr(sys.path[0]))
print("name", __name__, "file", globals().get("__file__"), "cached", globals().get("__cached__"))
print("loader", type(__loader__).__name__, "package", __package__)
print("spec", getattr(__spec__, "name", None), getattr(__spec__, "origin", None))
print("globals", list(globals()))
print("main is this module", sys.modules["__main__"] is __main__)
atexit.register(lambda: print("at exit __file__ is set:", hasattr(__main__, "__file__")))
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(cwd, *args, opts=(), stdin=None, merge=False):
    return subprocess.run(
        [sys.executable, *opts, *args],
        cwd=cwd,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
        timeout=60,
    )


def both(cwd, *args, **kwargs):
    """The program run by python, then by python -m stacklessuv."""
    plain = run(cwd, *args, **kwargs)
    patched = run(cwd, "-m", "stacklessuv", *args, **kwargs)
    return plain, patched


def same(cwd, *args, **kwargs):
    """Asserts that both runs print the same and end with the same status."""
    plain, patched = both(cwd, *args, **kwargs)
    assert (patched.stdout, patched.stderr) == (plain.stdout, plain.stderr)
    assert patched.returncode == plain.returncode
    return patched


@pytest.mark.parametrize("how", ["sub/main.py", "./sub/../sub/main.py", "absolute", "link.py"])
def test_script_sees_what_python_shows_it(tmp_path, how):
    write(tmp_path / "sub" / "helper.py", "VALUE = 'from the sibling'\n")
    write(tmp_path / "sub" / "main.py", REPORT + "import helper\nprint(helper.VALUE)\n")
    (tmp_path / "link.py").symlink_to(tmp_path / "sub" / "main.py")
    script = str(tmp_path / "sub" / "main.py") if how == "absolute" else how
    out = same(tmp_path, script, "a", "--b").stdout
    sub = os.path.realpath(tmp_path / "sub")
    file = os.path.join(tmp_path, script)
    assert f"argv {[script, 'a', '--b']!r}\npath0 {sub!r}\n" in out
    assert f"file {file} cached None\nloader SourceFileLoader package None\nspec None None\n" in out
    assert "main is this module True\nfrom the sibling\nat exit __file__ is set: False\n" in out


@pytest.mark.parametrize("opts", [(), ("-P",)])
def test_command_stdin_directory_and_zip(tmp_path, opts):
    write(tmp_path / "d" / "__main__.py", REPORT)
    with zipfile.ZipFile(tmp_path / "app.zip", "w") as z:
        z.writestr("__main__.py", REPORT)
    # __main__ holds the same names as python's: a fresh module, not the runner's
    program = REPORT + "import __main__; print(sorted(vars(__main__)))"
    out = same(tmp_path, "-c", program, "x", opts=opts)
    assert "argv ['-c', 'x']\n" in out.stdout
    assert "main is this module True" in out.stdout
    assert "file <stdin>" in same(tmp_path, "-", "y", opts=opts, stdin=REPORT).stdout
    assert f"path0 '{tmp_path}/d'" in same(tmp_path, "d", "z", opts=opts).stdout
    assert f"spec __main__ {tmp_path}/app.zip/__main__.py" in same(tmp_path, "app.zip").stdout


def test_module_in_a_package(tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "import sys\nprint('importing pkg', sys.argv)\n")
    write(tmp_path / "pkg" / "helper.py", "VALUE = 'relative import'\n")
    program = REPORT + "from .helper import VALUE\nprint(VALUE, __spec__.name)\n"
    write(tmp_path / "pkg" / "mod.py", program + "raise SystemExit(sys.argv[1])\n")
    out = same(tmp_path, "-m", "pkg.mod", "x", "-y")
    origin = str(tmp_path / "pkg" / "mod.py")
    assert out.stdout.startswith(f"importing pkg ['-m', 'x', '-y']\nargv {[origin, 'x', '-y']!r}")
    assert f"path0 {str(tmp_path)!r}\n" in out.stdout
    assert "relative import pkg.mod\nat exit __file__ is set: True" in out.stdout
    assert out.stderr == "x\n" and out.returncode == 1


PICKLER = """\
import atexit, pickle, sys, threading, time

class Point:
    pass

def dump(where):
    assert sys.modules["__main__"].Point is Point
    print(where, len(pickle.loads(pickle.dumps(Point())).__dict__), sys.argv[1:], flush=True)

def after_the_body():
    # threading._shutdown stops the main thread once the body is over (and python has
    # printed any uncaught exception). Polled: under the thread patch, joining the main
    # thread from another one breaks threading._shutdown (AssertionError in _stop).
    while threading.main_thread().is_alive():
        time.sleep(0.01)
    dump("thread")

atexit.register(dump, "atexit")
threading.Thread(target=after_the_body).start()
sys.argv.append("set by the program")
if sys.argv[1] == "raise":
    raise ValueError("uncaught")
"""


@pytest.mark.parametrize("how", ["return", "raise"])
def test_program_classes_pickle_after_the_body(tmp_path, how):
    write(tmp_path / "prog.py", PICKLER)
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "prog.py", PICKLER)
    for program in (["prog.py"], ["-m", "pkg.prog"]):
        out = same(tmp_path, *program, how, merge=True)  # in python's order
        lines = out.stdout.splitlines()
        assert lines[-2:] == [
            f"{where} 0 ['{how}', 'set by the program']" for where in ("thread", "atexit")
        ]
        assert out.returncode == (1 if how == "raise" else 0)


PROGRAMS = {
    "uncaught": """\
        import helper

        def f():
            try:
                helper.fail()
            except ZeroDivisionError as e:
                raise RuntimeError("while handling") from e

        f()
        """,
    "syntax error": "x = (\n",
    "exit code": "import sys; sys.exit(3)",
    "exit message": "import sys\nsys.exit('bye')\n",
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "own excepthook": "import sys\nsys.excepthook = lambda *a: print('hook', a[0])\n1 / 0\n",
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_tracebacks_and_exit_statuses(tmp_path, name):
    write(tmp_path / "helper.py", "def fail():\n    return 1 / 0\n")
    write(tmp_path / "prog.py", PROGRAMS[name])
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "prog.py", "from . import helper\n" + PROGRAMS[name])
    write(tmp_path / "pkg" / "helper.py", "def fail():\n    return 1 / 0\n")
    for program in (["prog.py"], ["-m", "pkg.prog"], ["-c", PROGRAMS[name]]):
        out = same(tmp_path, *program)
        assert "stacklessuv" not in out.stderr
    expected = {"exit code": 3, "KeyboardInterrupt": -signal.SIGINT, "syntax error": 1}
    assert out.returncode == expected.get(name, 1)


def test_sigint_ends_the_program_as_in_python(tmp_path):
    write(
        tmp_path / "prog.py",
        """\
        import atexit, os, signal, threading, time
        atexit.register(print, "atexit ran")
        threading.Thread(target=print, args=("thread ran",)).start()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
        """,
    )
    plain, patched = both(tmp_path, "prog.py")
    assert patched.returncode == plain.returncode == -signal.SIGINT
    assert patched.stdout == plain.stdout == "thread ran\natexit ran\n"
    assert patched.stderr.splitlines()[-1] == "KeyboardInterrupt"


def test_missing_script(tmp_path):
    for script in ("missing.py", str(tmp_path / "missing.py"), ".", ""):
        plain, patched = both(tmp_path, "--", script)
        if script.endswith(".py"):
            assert patched.stderr == plain.stderr
            assert f"can't open file '{tmp_path}/missing.py': [Errno 2]" in patched.stderr
            assert patched.returncode == plain.returncode == 2
        else:  # a directory without __main__.py
            assert patched.stderr == plain.stderr and patched.returncode == plain.returncode == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--foo", "prog.py"], "unknown option --foo"),
        (["-x"], "unknown option -x"),
        (["--no-sockets", "prog.py"], "unknown patch 'sockets'"),
        (["-m"], "argument expected for the -m option"),
        (["--no-socket", "-c"], "argument expected for the -c option"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    out = run(tmp_path, "-m", "stacklessuv", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr and "usage: python -m stacklessuv" in out.stderr
    assert "Traceback" not in out.stderr


def test_options_end_at_the_program_or_double_dash(tmp_path):
    write(tmp_path / "-dash.py", "import socket, sys\nprint(socket.socket.__module__, sys.argv)\n")
    out = run(tmp_path, "-m", "stacklessuv", "--no-socket", "--", "-dash.py", "--no-time", "-h")
    assert out.stdout == "socket ['-dash.py', '--no-time', '-h']\n"
    out = run(tmp_path, "-m", "stacklessuv", "-cimport sys; print(sys.argv)", "--foo")
    assert out.stdout == "['-c', '--foo']\n"
    for args in (["-h"], ["--no-dns", "--help"], []):
        out = run(tmp_path, "-m", "stacklessuv", *args)
        assert out.returncode == 0 and out.stdout.startswith("usage: python -m stacklessuv")


def test_compiled_script(tmp_path):
    write(tmp_path / "prog.py", REPORT + "1 / 0\n")
    subprocess.run([sys.executable, "-m", "py_compile", "prog.py"], cwd=tmp_path, check=True)
    (tmp_path / "prog.pyc").write_bytes(next((tmp_path / "__pycache__").iterdir()).read_bytes())
    assert "loader SourcelessFileLoader" in same(tmp_path, "prog.pyc").stdout
    (tmp_path / "bad.pyc").write_text("print()")
    assert "Bad magic number" in same(tmp_path, "bad.pyc").stderr
