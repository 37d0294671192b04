"""What htrace's Python test scripts share: the environment `make check`
gives them, running htrace and reading its reports (JSON and text), and
running every test_* function of a script, one line per test (ok / FAIL /
skip name: why), a final count, and the exit status run.sh reads (0 all
passed, 1 a failure, 77 skipped)."""

import json
import os
import re
import struct
import subprocess

HTRACE = os.environ.get("HTRACE", "")  # the htrace binary
VICTIMS = os.environ.get("HTRACE_VICTIMS", "")  # the built victims (tests/victims)
BUILD = os.environ.get("HTRACE_BUILD", "")  # the build directory
AGENT = os.path.join(BUILD, "lib", "htrace", "libhtrace.so")
TIMEOUT = 60  # seconds an htrace command or a victim may take
DBLAYOUT = os.path.join(VICTIMS, "dblayout")  # prints the database's layout


class Failure(Exception):
    """A check of a test did not hold."""


class Skip(Exception):
    """A test cannot run here (not root, a tool missing): said, not failed."""


def expect(cond, message):
    if not cond:
        raise Failure(message)


def executable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


# ---- running htrace and reading its reports ----

def traced_env(**extra):
    """The environment of a program started with the agent preloaded and
    tracing on, for the commands on a running process."""
    env = dict(os.environ, LD_PRELOAD=AGENT, HTRACE_TRACE="1")
    env.update(extra)
    return env


def run_htrace(args, prefix=(), **kw):
    """htrace ARGS (behind the words of prefix, such as setpriv's), stdin
    from /dev/null, stdout and stderr captured as text, no descriptor of
    this script passed on but those of pass_fds."""
    return subprocess.run(list(prefix) + [HTRACE] + [str(a) for a in args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT, **kw)


def json_objects(text):
    """The objects of a --json report written to stdout or stderr."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def json_run(args, **kw):
    """Runs htrace run --json ARGS; returns (result, [process objects])."""
    result = run_htrace(["run", "--json"] + args, **kw)
    return result, json_objects(result.stderr)


def read_report(path):
    """The process objects of a JSON Lines report (htrace run --json -o)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise Failure(f"cannot read the report: {e}")


def only_process(objects):
    expect(len(objects) == 1, f"expected one process object, got {len(objects)}")
    return objects[0]


def functions(trace):
    """The function names of a JSON trace's frames, innermost first."""
    return [f.get("function") for f in trace["frames"]]


def check_kernel_agreement(process):
    """A process object agrees with the kernel: no descriptor untracked
    (open, unknown to htrace) or inconsistent (recorded open, closed)."""
    summary = process.get("summary", {})
    bad = {k: summary.get(k) for k in ("untracked", "inconsistent") if summary.get(k) != 0}
    odd = [h["handle"] for h in process.get("handles", []) if h.get("state") in bad]
    expect(not bad, f"pid {process.get('pid')} disagrees with the kernel: {bad} (handles {odd})")


def check_usage_error(args, status, fragment):
    """htrace ARGS exits with status and says why in one line on stderr."""
    result = run_htrace(args)
    lines = result.stderr.strip().splitlines()
    expect(result.returncode == status, f"htrace {args}: exit {result.returncode}, expected {status}")
    expect(len(lines) == 1 and fragment in lines[0],
           f"htrace {args}: stderr {result.stderr!r}, expected one line with {fragment!r}")


# ---- reading the text report (-diff, the per-handle listing) ----

HEADER_RE = re.compile(r"^Handle 0x([0-9a-fA-F]+) - (OPEN|CLOSE|BAD REFERENCE):(.*)$")
FRAME_RE = re.compile(r"^0x[0-9a-f]{16}: \S")
INLINED_RE = re.compile(r"^\S+!\S+ \(inlined\)")
# counts in hex, either case (WinDbg writes 0x7CC); "1 handle ... is" for one
CLOSING_RE = re.compile(r"^htrace: 0x([0-9a-fA-F]+) handles? opened since the snapshot (?:are|is) still open; "
                        r"0x([0-9a-fA-F]+) opened and 0x([0-9a-fA-F]+) closed since the snapshot\.$")
PARSED_RE = re.compile(r"^Parsed 0x([0-9a-fA-F]+) stack traces\.$")
DUMPED_RE = re.compile(r"^Dumped 0x([0-9a-fA-F]+) stack traces\.$")


def parse_traces(text):
    """[{handle, kind, header, frames}] from the text format, in order."""
    traces = []
    for line in text.splitlines():
        m = HEADER_RE.match(line)
        if m:
            traces.append({"handle": int(m.group(1), 16), "kind": m.group(2), "header": line,
                           "frames": []})
        elif traces and (FRAME_RE.match(line) or INLINED_RE.match(line)):
            traces[-1]["frames"].append(line)
    return traces


def has_frame(trace, function):
    """Whether a text trace has a frame of function (called or inlined)."""
    return any(f"!{function}+0x" in f or f"!{function} (inlined)" in f for f in trace["frames"])


def closing_counts(text):
    """(still open, opened, closed) from -diff's closing line."""
    found = [CLOSING_RE.match(l) for l in text.splitlines() if CLOSING_RE.match(l)]
    expect(len(found) == 1, f"expected one closing line in -diff output:\n{text}")
    return tuple(int(g, 16) for g in found[0].groups())


def parsed_dumped(text):
    """(parsed, dumped) from the two lines that end a listing."""
    lines = text.splitlines()
    parsed = [int(m.group(1), 16) for m in map(PARSED_RE.match, lines) if m]
    dumped = [int(m.group(1), 16) for m in map(DUMPED_RE.match, lines) if m]
    expect(len(parsed) == 1 and len(dumped) == 1, f"no single Parsed/Dumped pair in:\n{text}")
    expect(len(lines) >= 2 and PARSED_RE.match(lines[-2]) and DUMPED_RE.match(lines[-1]),
           f"output does not end with Parsed/Dumped:\n{text}")
    return parsed[0], dumped[0]


# ---- a target's trace database, in its memory ----

class TargetMemory:
    """A stopped process's memory, read and written through /proc/PID/mem."""

    def __init__(self, pid):
        self.file = open(f"/proc/{pid}/mem", "r+b", buffering=0)

    def read(self, addr, size):
        self.file.seek(addr)
        return self.file.read(size)

    def write(self, addr, data):
        self.file.seek(addr)
        self.file.write(data)

    def u64(self, addr):
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def close(self):
        self.file.close()


def database_address(pid):
    """Where the agent's htrace_db is in pid: the agent's lowest mapping
    plus the symbol's value (the agent is linked at 0)."""
    with open(f"/proc/{pid}/maps") as f:
        starts = [int(line.split("-")[0], 16) for line in f if line.rstrip().endswith("/libhtrace.so")]
    expect(starts, f"the agent is not mapped in process {pid}")
    symbols = subprocess.run(["nm", "-D", AGENT], capture_output=True, text=True).stdout
    value = re.search(r"^([0-9a-f]+) [BD] htrace_db$", symbols, re.M)
    expect(value, "nm does not show htrace_db in the agent")
    return min(starts) + int(value.group(1), 16)


def database_layout():
    """Offsets and sizes of the database (tests/victims/dblayout.c)."""
    return json.loads(subprocess.run([DBLAYOUT], capture_output=True, text=True, check=True).stdout)


# ---- running the tests ----

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


# what a test may raise that fails that test, not the whole script
TEST_ERRORS = (Failure, subprocess.TimeoutExpired, ValueError, KeyError, IndexError, TypeError,
               AttributeError, OSError)


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
