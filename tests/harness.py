"""What htrace's Python test scripts share: running every test_* function
of a script, one line per test (ok / FAIL name: why), a final count, and
the exit status run.sh reads (0 all passed, 1 a failure, 77 skipped)."""

import json
import os
import subprocess


class Failure(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Failure(message)


def executable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def read_report(path):
    """The process objects of a JSON Lines report (htrace run --json -o)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise Failure(f"cannot read the report: {e}")


def run_tests(namespace, suite, htrace):
    """Runs the test_* functions of namespace (a module's globals())."""
    if not (htrace and os.access(htrace, os.X_OK)):
        print(f"skip {suite}: HTRACE={htrace!r} is not executable")
        return 77
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok {name}")
        except (Failure, subprocess.TimeoutExpired, ValueError, KeyError, IndexError) as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"{len(tests) - failed} ok, {failed} failed of {len(tests)} {suite} tests")
    return 1 if failed else 0
