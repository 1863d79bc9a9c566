"""python -m stacklessuv [--no-<patch>] script.py args...
python -m stacklessuv [--no-<patch>] -m package.module args...

Runs a program with stacklessuv.monkey.patch_all() applied first, with sys.argv and
__main__ as the program would see them when run directly.
"""

import runpy
import sys

from stacklessuv import monkey

PATCHES = ("socket", "dns", "time", "select", "ssl", "thread", "queue", "signal", "os")
USAGE = __doc__.strip()


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {name: True for name in PATCHES}
    while args and args[0].startswith("--no-"):
        name = args.pop(0)[len("--no-") :]
        if name not in flags:
            sys.exit(f"unknown patch {name!r}; known: {', '.join(PATCHES)}\n\n{USAGE}")
        flags[name] = False
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return
    monkey.patch_all(**flags)
    if args[0] == "-m":
        if len(args) < 2:
            sys.exit(USAGE)
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
