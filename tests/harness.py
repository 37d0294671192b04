"""What htrace's Python test scripts share: running every test_* function
of a script, one line per test (ok / FAIL / skip name: why), a final count,
and the exit status run.sh reads (0 all passed, 1 a failure, 77 skipped)."""

import json
import os
import subprocess


class Failure(Exception):
    """A check of a test did not hold."""


class Skip(Exception):
    """A test cannot run here (not root, a tool missing): said, not failed."""


# what a test may raise that fails that test, not the whole script
TEST_ERRORS = (Failure, subprocess.TimeoutExpired, ValueError, KeyError, IndexError, TypeError,
               AttributeError, OSError)


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


def skip(suite, reason):
    """Skips a whole script loudly: a line starting "skip" (run.sh shows
    it) and the exit status 77."""
    print(f"skip {suite}: {reason}")
    return 77


def run_tests(namespace, suite, htrace, needs=()):
    """Runs the test_* functions of namespace (a module's globals()), or
    skips the script when htrace is not executable or a path of needs,
    (what, path) pairs, does not exist."""
    if not executable(htrace):
        return skip(suite, f"HTRACE={htrace!r} is not executable")
    for what, path in needs:
        if not (path and os.path.exists(path)):
            return skip(suite, f"{what} ({path!r}) missing")
    return run_test_functions(namespace, suite)


def run_test_functions(namespace, suite):
    """Runs the test_* functions of namespace, in order.  Exit status 1 when
    one failed, 77 when every one was skipped, else 0."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    verdicts = [run_one_test(name, test) for name, test in tests]
    failed, skipped = verdicts.count("FAIL"), verdicts.count("skip")
    print(f"{verdicts.count('ok')} ok, {failed} failed, {skipped} skipped of {len(tests)} {suite} tests")
    if failed:
        return 1
    return 77 if tests and skipped == len(tests) else 0


def run_one_test(name, test):
    """Runs one test and prints its verdict: ok, FAIL or skip."""
    try:
        test()
    except Skip as e:
        print(f"skip {name}: {e}", flush=True)
        return "skip"
    except TEST_ERRORS as e:
        print(f"FAIL {name}: {describe_error(e)}", flush=True)
        return "FAIL"
    print(f"ok {name}", flush=True)
    return "ok"


def describe_error(error):
    """A Failure's message; any other error with its type, which the
    message alone often does not say (a KeyError is just the key)."""
    if isinstance(error, Failure):
        return str(error)
    return f"{type(error).__name__}: {error}"
