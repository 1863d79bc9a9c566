"""Runs one CPython test module (optionally under patch_all) and streams one JSON line
per test: {"start": id} before it runs, {"id", "outcome"} after. A test that hangs is
cut off by faulthandler (the process exits); run.py then restarts us past it.

    python compat_tests/child.py MODULE --patched|--unpatched [--skip-file F] [--only-file F]
                                 [--test-timeout S]
"""

import argparse
import faulthandler
import json
import os
import sys
import unittest

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--patched", action="store_true")
ap.add_argument("--unpatched", action="store_true")
ap.add_argument("--skip-file")
ap.add_argument("--only-file", help="run only the test ids listed in this file")
ap.add_argument("--test-timeout", type=float, default=60)
args = ap.parse_args()

if args.patched:
    from stacklessuv import monkey

    monkey.patch_all()

import test.support  # noqa: E402

test.support.use_resources = ["network"]
skip = set()
if args.skip_file:
    with open(args.skip_file) as f:
        skip = {line.strip() for line in f if line.strip()}

# Results get a private copy of stdout; whatever the tests print goes to stderr (the log).
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)


def emit(**kw):
    out.write(json.dumps(kw) + "\n")
    out.flush()


class Result(unittest.TextTestResult):
    def startTest(self, test):
        emit(start=test.id())
        faulthandler.dump_traceback_later(args.test_timeout, exit=True, file=sys.stderr)
        super().startTest(test)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        emit(id=test.id(), outcome="pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        emit(id=test.id(), outcome="fail", detail=self._exc_info_to_string(err, test)[-2000:])

    def addError(self, test, err):
        super().addError(test, err)
        emit(id=test.id(), outcome="error", detail=self._exc_info_to_string(err, test)[-2000:])

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        emit(id=test.id(), outcome="skip")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        emit(id=test.id(), outcome="pass")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        emit(id=test.id(), outcome="fail", detail="unexpected success")


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


loader = unittest.TestLoader()
module = __import__(f"test.{args.module}", fromlist=["*"])
suite = loader.loadTestsFromModule(module)  # honours the module's load_tests
tests = [t for t in flatten(suite) if t.id() not in skip]
if args.only_file:
    with open(args.only_file) as f:
        only = {line.strip() for line in f if line.strip()}
    tests = [t for t in tests if t.id() in only]
# Errors raised while loading show up as _FailedTest cases; keep them.
runner = unittest.TextTestRunner(stream=open("/dev/null", "w"), resultclass=Result, verbosity=0)
runner.run(unittest.TestSuite(tests))
emit(done=True)
