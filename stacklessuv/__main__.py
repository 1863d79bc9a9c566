"""python -m stacklessuv: run a program as `python` would, with stacklessuv's patches.

    python -m stacklessuv [--no-PATCH ...] [--] (script | dir | zip | -m mod | -c cmd | -) [args]

stacklessuv.monkey.patch_all() is applied first (without each --no-PATCH), then the program
runs as CPython 3.11's own command line runs it: same sys.argv, sys.path[0], __main__
(__file__, __loader__, __spec__, ...), tracebacks, exit statuses and error messages. The
program's module is a fresh one and stays sys.modules["__main__"], and sys.argv stays as
the program left it, until the interpreter exits: threads and atexit handlers still run
after the program body, and pickle looks classes up in __main__.

What differs from `python ...`, and why:
- stacklessuv, runpy and the patched stdlib modules are imported before the program
  starts: that is what the runner is for.
- The runner's frames are under the program's on the stack (traceback.print_stack() and
  inspect.stack() show them). The report of an uncaught exception leaves them out: the
  runner wraps sys.excepthook for that one call, as the interpreter reports the exception
  only after it left the runner (raising it on keeps python's exit status and shutdown).
- Interpreter options (-u, -X, -W, -O, -P, ...) go before `-m stacklessuv`, as for any
  module run with -m; sys.orig_argv shows the runner's command line.
- With no program the usage is printed (python would start its interactive prompt).
"""

import builtins
import io
import marshal
import os
import runpy
import sys
import types
from importlib.machinery import BuiltinImporter, SourceFileLoader, SourcelessFileLoader
from importlib.util import MAGIC_NUMBER
from pkgutil import get_importer

from stacklessuv import monkey

PATCHES = ("socket", "dns", "time", "select", "ssl", "thread", "queue", "signal", "os")
USAGE = f"""\
usage: python -m stacklessuv [--no-PATCH ...] [--] (script | dir | zip | -m mod | -c cmd | -) [args]

Runs the program as `python` would, after stacklessuv.monkey.patch_all().
--no-PATCH leaves one patch out: {", ".join(PATCHES)}."""


def _usage_error(message):
    sys.stderr.write(
        f"python -m stacklessuv: {message}\n{USAGE.splitlines()[0]}\n"
        "Try 'python -m stacklessuv --help' for more information.\n"
    )
    sys.exit(2)


def _parse(args):
    """The patch flags, how the program is given ("-m", "-c", "-" for stdin, or "file"),
    the module, command or path, and the program's arguments."""
    flags = dict.fromkeys(PATCHES, True)
    while args and args[0] not in ("-h", "--help"):
        arg = args.pop(0)
        if arg == "--":  # ends the options: a path (or - for stdin) follows
            if not args:
                break
            arg = args.pop(0)
        elif arg.startswith("--no-"):
            if arg[5:] not in flags:
                _usage_error(f"unknown patch {arg[5:]!r} (known: {', '.join(PATCHES)})")
            flags[arg[5:]] = False
            continue
        elif arg[:2] in ("-m", "-c"):  # as for python: "-m mod" or "-mmod"
            if arg in ("-m", "-c") and not args:
                _usage_error(f"argument expected for the {arg} option")
            return flags, arg[:2], arg[2:] or args.pop(0), args
        elif arg.startswith("-") and arg != "-":
            _usage_error(f"unknown option {arg}")
        return flags, "-" if arg == "-" else "file", arg, args
    print(USAGE)
    sys.exit(0)


def _show_program_frames(exc):
    """Make the interpreter's report of exc, which it prints with sys.excepthook once exc
    has left the runner, show only the program's frames, as python's report does."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is globals():
        tb = tb.tb_next
    hook = sys.excepthook  # the program may have set its own

    def excepthook(exc_type, value, traceback):
        sys.excepthook = hook
        if value is exc:
            traceback = sys.last_traceback = exc.__traceback__ = tb
        hook(exc_type, value, traceback)

    sys.excepthook = excepthook


def _compile(source, filename, namespace):
    """The program's code; for a script, also the loader python sets (it runs .pyc too)."""
    if filename not in ("<string>", "<stdin>"):
        if filename.endswith(".pyc") or source[:2] == MAGIC_NUMBER[:2]:
            namespace["__loader__"] = SourcelessFileLoader("__main__", filename)
            if source[:4] != MAGIC_NUMBER:
                raise RuntimeError("Bad magic number in .pyc file")
            return marshal.loads(source[16:])  # after the magic, flags, mtime and size
        namespace["__loader__"] = SourceFileLoader("__main__", filename)
    return compile(source, filename, "exec", dont_inherit=True)


def _forget(namespace, keys):
    """python takes a script's __file__ and __cached__ out of __main__ when it ends."""
    for key in keys:
        namespace.pop(key, None)


def main(argv=None):
    flags, kind, target, args = _parse(list(sys.argv[1:] if argv is None else argv))
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    # What python's own __main__ holds before the program runs.
    namespace.update(__annotations__={}, __builtins__=builtins, __loader__=BuiltinImporter)
    program_argv = [target, *args]
    source = None  # None: runpy runs target, as python does for -m, a directory or a zip
    path0 = ""  # the program's sys.path[0]; None: the cwd `python -m` put there, as for -m
    if kind == "-m":
        program_argv[0], path0 = "-m", None  # runpy makes argv[0] the module's path
    elif kind == "-c":
        program_argv[0], source, filename = "-c", target, "<string>"
    elif kind == "-":
        source, filename = sys.stdin.buffer.read(), "<stdin>"
    else:
        # python joins, without normalising ("" and "." are the cwd itself)
        filename = os.path.join(os.getcwd(), target) if target not in ("", ".") else os.getcwd()
        if get_importer(filename) is not None:  # a directory or zip file: its __main__
            kind, target, path0 = "dir", "__main__", filename
        else:
            try:
                with io.open_code(filename) as f:
                    source = f.read()
            except OSError as e:  # python's message and status
                sys.stderr.write(
                    f"{sys.orig_argv[0]}: can't open file {filename!r}: "
                    f"[Errno {e.errno}] {e.strerror}\n"
                )
                sys.exit(2)
            path0 = os.path.dirname(os.path.realpath(filename))

    # Patched before sys.path changes, so that the program's directory cannot shadow
    # the stdlib modules that the patches import.
    monkey.patch_all(**flags)
    if path0 is not None:
        if not sys.flags.safe_path:  # else `python -P -m stacklessuv` put no cwd there
            del sys.path[0]
        if kind == "dir" or not sys.flags.safe_path:  # python -P still adds a dir or zip
            sys.path.insert(0, path0)
    sys.argv = program_argv
    # The program's own module, left installed (as is sys.argv) until the interpreter
    # exits: threads and atexit handlers run after the program body.
    sys.modules["__main__"] = module
    file_keys = {"__file__": filename, "__cached__": None} if kind in ("-", "file") else {}
    namespace.update(file_keys)
    try:
        if source is None:
            runpy._run_module_as_main(target, alter_argv=kind == "-m")  # as python -m does
        else:
            exec(_compile(source, filename, namespace), namespace)
    except SystemExit:
        raise  # python exits from inside the run, leaving __file__ set
    except BaseException as exc:
        _show_program_frames(exc)
        _forget(namespace, file_keys)
        # Raised on, it is reported and ends the interpreter as in python: status 1, or
        # killed by SIGINT for KeyboardInterrupt, once threads and atexit handlers ran.
        raise
    _forget(namespace, file_keys)


if __name__ == "__main__":
    main()
