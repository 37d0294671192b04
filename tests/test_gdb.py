#!/usr/bin/env python3
"""The `htrace` command inside gdb: gdb in batch mode runs
tests/victims/gdbvictim.c with the agent preloaded (tracing off), stops at
checkpoint_one(), enables tracing there with `htrace -enable`, continues to
checkpoint_two() past leaky_part(), which leaks two descriptors, and asks
`htrace -diff` and `htrace 0`.  The diff must list exactly those two
descriptors, each with an OPEN stack naming leaky_part; the listing must
show them and end with the Parsed/Dumped lines.  A second run, traced from
the start, holds leaky_part's open() in the agent's unwinder while tracing
is disabled and enabled again: that open belongs to no tracing period.  A
third (`gdbvictim release`) holds the agent's release of the trace memory
while tracing is enabled again and another thread leaks a descriptor,
which must come out untracked rather than under a stack the release
threw away.

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory: the agent and share/htrace/htrace-gdb.py).
Exit status: 0 passed, 1 failed, 77 gdb, htrace or the victim missing, or
gdb not allowed to debug here."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import (AGENT, BUILD, HTRACE, VICTIMS, Failure, Skip, closing_counts, expect, has_frame,
                     parse_traces, parsed_dumped, run_tests, skip)

VICTIM = os.path.join(VICTIMS, "gdbvictim")
GDB_SCRIPT = os.path.join(BUILD, "share", "htrace", "htrace-gdb.py")
TIMEOUT = 120

CANNOT_DEBUG = ("ptrace: Operation not permitted", "Couldn't get registers",
                "Cannot insert breakpoint", "could not trace the inferior")


def preamble(trace):
    """gdb's settings, the agent preloaded (tracing on from the start or
    off) and the htrace command loaded."""
    return f"""set pagination off
set confirm off
set width 0
set startup-with-shell off
set environment LD_PRELOAD {AGENT}
{"set environment HTRACE_TRACE 1" if trace else "unset environment HTRACE_TRACE"}
source {GDB_SCRIPT}
"""


def gdb_commands():
    return preamble(trace=False) + """break checkpoint_one
break checkpoint_two
run
echo ===ENABLE===\\n
htrace -enable
continue
echo ===DIFF===\\n
htrace -diff
echo ===ALL===\\n
htrace 0
echo ===END===\\n
kill
"""


def period_race_commands():
    """Tracing on from the start; the open() of leaky_part is held inside
    the agent's unwinder while tracing is disabled and enabled again, then
    let go; `htrace --json --group` lists every handle at checkpoint_two."""
    return preamble(trace=True) + """break checkpoint_one
run
break unwind_fast
continue
echo ===HELD===\\n
bt 3
htrace -disable
htrace -enable
delete
break checkpoint_two
continue
echo ===WORKER===\\n
echo ===GROUP===\\n
htrace --json --group
echo ===END===\\n
kill
"""


ENGINE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "agent", "engine.c")


def release_line():
    """The line of release_trace_memory (engine.c, inlined: no symbol)
    after its test of the tracing bit, where it starts giving the memory
    back."""
    with open(ENGINE_SOURCE) as f:
        for number, line in enumerate(f, 1):
            if "depot_forget_recent(); /* first:" in line:
                return number
    raise Failure(f"no release point (the line marked \"depot_forget_recent(); /* first:\") "
                  f"in {ENGINE_SOURCE}: the test must be told where release_trace_memory starts")


def release_race_commands():
    """`gdbvictim release`, traced from the start: -disable, then the main
    thread's close(1000) serves it and is held in release_trace_memory,
    past its test of the tracing bit, while -enable runs and the worker
    alone leaks a descriptor; then everything runs on to checkpoint_three."""
    return preamble(trace=True) + f"""break checkpoint_one
run release
htrace -disable
break engine.c:{release_line()}
continue
echo ===HELD===\\n
bt 2
htrace -enable
delete
set var go = 1
break checkpoint_two
set scheduler-locking on
thread 2
continue
echo ===WORKER===\\n
set scheduler-locking off
delete
break checkpoint_three
continue
echo ===GROUP===\\n
htrace --json --group
echo ===END===\\n
kill
"""


def run_gdb(gdb, commands=None):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUGINFOD_URLS", "LD_PRELOAD")}
    env["HTRACE"] = HTRACE
    with tempfile.NamedTemporaryFile("w", suffix=".gdb") as script:
        script.write(commands or gdb_commands())
        script.flush()
        result = subprocess.run([gdb, "-nx", "-batch", "-x", script.name, VICTIM],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, timeout=TIMEOUT)
    return result.stdout


def section(output, start, end):
    """The text between the lines start and end."""
    lines = output.splitlines()
    expect(start in lines and end in lines, f"gdb did not get from {start} to {end}:\n{output}")
    return "\n".join(lines[lines.index(start) + 1:lines.index(end)])


def check(output):
    fds = sorted(int(l.split()[1]) for l in output.splitlines() if re.match(r"^LEAK \d+$", l))
    expect(len(fds) == 2, f"the victim did not leak two descriptors:\n{output}")

    enabled = section(output, "===ENABLE===", "===DIFF===")
    expect(any(l.startswith("htrace: tracing enabled in process ") for l in enabled.splitlines()),
           f"no 'tracing enabled' line after `htrace -enable`:\n{output}")

    diff = section(output, "===DIFF===", "===ALL===")
    traces = parse_traces(diff)
    expect([t["handle"] for t in traces] == fds and all(t["kind"] == "OPEN" for t in traces),
           f"`htrace -diff` lists {[(t['handle'], t['kind']) for t in traces]}, leaked {fds}:\n{output}")
    for t in traces:
        expect(has_frame(t, "leaky_part"), f"fd {t['handle']}: no leaky_part frame in {t['frames']}")
    expect(closing_counts(diff)[0] == 2, f"`htrace -diff` closing line:\n{diff}")

    listing = section(output, "===ALL===", "===END===")
    traces = parse_traces(listing)
    for fd in fds:
        opens = [t for t in traces if t["handle"] == fd and t["kind"] == "OPEN"]
        expect(opens and has_frame(opens[0], "leaky_part"),
               f"`htrace 0` lacks the OPEN of fd {fd}:\n{output}")
    parsed, dumped = parsed_dumped(listing)
    expect(dumped == len(traces) and parsed >= dumped,
           f"`htrace 0`: Parsed {parsed}, Dumped {dumped}, {len(traces)} traces shown:\n{output}")


def test_htrace_command_in_gdb():
    expect(os.path.exists(GDB_SCRIPT), f"{GDB_SCRIPT} not built")
    output = run_gdb(shutil.which("gdb"))
    if any(s in output for s in CANNOT_DEBUG) and "===ENABLE===" not in output:
        raise Skip(f"gdb cannot debug a program here:\n{output[-500:]}")
    check(output)


def run_held(commands, held_in, held_what):
    """Runs gdb on commands whose section ===HELD=== (up to ===WORKER===)
    must show the victim held in held_in while tracing was enabled again;
    returns the descriptors the victim printed as leaked and the states of
    the handles `htrace --json --group` gave in ===GROUP===."""
    expect(os.path.exists(GDB_SCRIPT), f"{GDB_SCRIPT} not built")
    output = run_gdb(shutil.which("gdb"), commands)
    if any(s in output for s in CANNOT_DEBUG) and "===HELD===" not in output:
        raise Skip(f"gdb cannot debug a program here:\n{output[-500:]}")
    held = section(output, "===HELD===", "===WORKER===")
    expect(held_in in held and "tracing enabled" in held,
           f"{held_what} was not held in {held_in} across -enable:\n{output}")
    fds = [int(l.split()[1]) for l in output.splitlines() if re.match(r"^LEAK \d+$", l)]
    objs = [json.loads(l) for l in section(output, "===GROUP===", "===END===").splitlines()
            if l.startswith("{")]
    expect(len(objs) == 1, f"`htrace --json --group` gave {len(objs)} objects:\n{output}")
    return fds, {h["handle"]: h["state"] for h in objs[0]["handles"]}


def test_open_held_across_disable_and_enable_belongs_to_no_period():
    """An open() whose hook was taking its stack when tracing was disabled
    and enabled again (gdb holds it in the agent's unwinder meanwhile) is
    numbered after the new period began: it must not be recorded as an
    OPEN of that period (the descriptor is untracked), while the socket
    opened after it is a leak with its stack."""
    fds, states = run_held(period_race_commands(), "unwind_fast", "the open()")
    expect(len(fds) == 2 and states.get(fds[0]) == "untracked" and states.get(fds[1]) == "leaked",
           f"file and socket {fds}: {states}")


def test_descriptor_recorded_while_the_memory_is_given_back_is_untracked():
    """A -disable's memory release under way (gdb holds it past its test
    of the tracing bit) while -enable runs and another thread leaks a
    descriptor: the release then empties the depot that thread's stack
    was stored in, so what the new period recorded before the release
    ended must be stale (untracked), not a leak under a stack that now
    belongs to another call."""
    fds, states = run_held(release_race_commands(), "release_trace_memory", "the release")
    expect(len(fds) == 1 and states.get(fds[0]) == "untracked",
           f"fd {fds}, opened while the release was under way: {states}")


def main():
    if not shutil.which("gdb"):
        return skip("gdb", "gdb is not installed")
    needs = [("the gdbvictim victim", VICTIM), ("the agent", AGENT)]
    return run_tests(globals(), "gdb", HTRACE, needs)


if __name__ == "__main__":
    sys.exit(main())
