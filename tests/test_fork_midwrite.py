#!/usr/bin/env python3
"""A fork while another thread is in the middle of writing a ring record:
gdb runs tests/victims/forkmid.c traced, with a ring of 2,048 records,
holds its worker thread inside the agent's ring write (the line after the
record's claim, found in src/agent/engine.c by its text), and lets the
main thread alone fork.  In the child the worker does not exist; its
record must not stay claimed for ever: the child goes round its ring
several times and must drop no event.

Env: HTRACE_VICTIMS (built victims), HTRACE_BUILD (the build directory:
the agent).
Exit status: 0 passed, 1 failed, 77 gdb or the victim missing, or gdb not
allowed to debug here."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import AGENT, HTRACE, TIMEOUT, VICTIMS, Failure, Skip, expect, run_tests

VICTIM = os.path.join(VICTIMS, "forkmid")
ENGINE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "agent",
                             "engine.c")
CLAIMED_MARK = "ATOMIC_STORE(&rec->seq, 0);"
CANNOT_DEBUG = ("ptrace: Operation not permitted", "Couldn't get registers",
                "warning: Error disabling address space randomization")


def claimed_line():
    """The line of ring_put just after the record's claim."""
    with open(ENGINE_SOURCE) as f:
        numbers = [n for n, line in enumerate(f, 1) if CLAIMED_MARK in line]
    if len(numbers) != 1:
        raise Failure(f"{len(numbers)} lines of {ENGINE_SOURCE} hold {CLAIMED_MARK!r}, expected 1: "
                      f"the test must be told where ring_put has claimed its record")
    return numbers[0]


def gdb_commands():
    return f"""set pagination off
set confirm off
set width 0
set startup-with-shell off
set detach-on-fork on
set follow-fork-mode parent
set environment LD_PRELOAD {AGENT}
set environment HTRACE_TRACE 1
set environment HTRACE_MAX_TRACES 2048
break checkpoint_one
run
set var go = 1
break engine.c:{claimed_line()}
continue
echo ===HELD===\\n
bt 3
delete
set var fork_now = 1
set scheduler-locking on
thread 1
break checkpoint_two
continue
echo ===END===\\n
kill
"""


def run_gdb(gdb):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUGINFOD_URLS", "LD_PRELOAD")}
    with tempfile.NamedTemporaryFile("w", suffix=".gdb") as script:
        script.write(gdb_commands())
        script.flush()
        result = subprocess.run([gdb, "-nx", "-batch", "-x", script.name, VICTIM],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, timeout=TIMEOUT)
    return result.stdout


def test_fork_child_takes_over_a_record_left_half_written():
    gdb = shutil.which("gdb")
    if not gdb:
        raise Skip("gdb is not installed")
    output = run_gdb(gdb)
    if any(marker in output for marker in CANNOT_DEBUG) and "===HELD===" not in output:
        raise Skip(f"gdb cannot debug a program here:\n{output[-500:]}")
    lines = output.splitlines()
    expect("===HELD===" in lines and "===END===" in lines, f"gdb did not get through:\n{output}")
    held = "\n".join(lines[lines.index("===HELD===") + 1:lines.index("===END===")])
    expect(re.search(r"^#0 .*ring_put", held, re.M),
           f"the worker was not held inside ring_put:\n{held}")
    dropped = re.search(r"^CHILD DROPPED (\d+)$", output, re.M)
    expect(dropped, f"the child printed no CHILD DROPPED line:\n{output}")
    expect(re.search(r"^CHILD EXIT 0$", output, re.M), f"the child did not exit 0:\n{output}")
    expect(dropped.group(1) == "0",
           f"the fork child dropped {dropped.group(1)} events: the record its parent's "
           f"worker had claimed stayed claimed in the child")
    return "no event dropped in the child"


if __name__ == "__main__":
    sys.exit(run_tests(globals(), "fork_midwrite", HTRACE,
                       needs=[("forkmid victim", VICTIM), ("agent", AGENT)]))
