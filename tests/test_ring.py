#!/usr/bin/env python3
"""The ring of events under threads and signal handlers: runs the ringcheck
victim (tests/victims/ringcheck.c), whose two threads dup and close while
their signal handler does the same between any two instructions of their
ring writes, with a ring that never wraps; the victim then checks, from
the agent's database in its own memory, that every event number is in
exactly one whole record and none is dropped.  Also checks that the run
made enough events and took enough signals to mean something, and that
the victim refuses to judge a ring that could wrap.

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory: the agent).
Exit status: 0 all passed, 1 a failure, 77 htrace missing."""

import os
import re
import subprocess
import sys

from harness import AGENT, HTRACE, TIMEOUT, VICTIMS, Skip, expect, run_tests, traced_env

RINGCHECK = os.path.join(VICTIMS, "ringcheck")
RING_RECORDS = 1300000  # more than the victim's events (it says so when not)
MIN_EVENTS = 400000  # 2 threads x 100,000 dup+close pairs
MIN_SIGNALS = 300  # about 12,000 on 2 idle CPUs
MIN_CPUS = 2  # with one, the signalling main thread starves the workers
RESULT_RE = re.compile(r"^EVENTS (\d+) SIGNALS (\d+) RUNS_CHECKED (\d+)$", re.M)


def run_ringcheck(max_traces):
    return subprocess.run([RINGCHECK], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=TIMEOUT, env=traced_env(HTRACE_MAX_TRACES=str(max_traces)))


def test_every_event_in_one_whole_record_under_signals():
    if len(os.sched_getaffinity(0)) < MIN_CPUS:
        raise Skip(f"needs {MIN_CPUS} CPUs: the workers and the thread signalling them run at once")
    result = run_ringcheck(RING_RECORDS)
    expect(result.returncode == 0,
           f"ringcheck exited {result.returncode}:\n{result.stdout}{result.stderr}")
    match = RESULT_RE.search(result.stdout)
    expect(match, f"ringcheck printed no result line:\n{result.stdout}")
    events, signals, records = (int(g) for g in match.groups())
    expect(events >= MIN_EVENTS, f"only {events} events (expected at least {MIN_EVENTS})")
    expect(signals >= MIN_SIGNALS,
           f"only {signals} signal handlers ran (expected at least {MIN_SIGNALS}): "
           f"the handlers' events barely met the threads'")
    expect(records == RING_RECORDS, f"checked {records} records, asked for {RING_RECORDS}")
    return f"{events} events, {signals} signal handlers, none lost or doubled"


def test_ring_that_may_wrap_is_not_judged():
    result = run_ringcheck(65536)
    expect(result.returncode == 77 and "may wrap" in result.stdout,
           f"with a ring of 65536 records ringcheck exited {result.returncode}:\n{result.stdout}")


if __name__ == "__main__":
    sys.exit(run_tests(globals(), "ring", HTRACE, needs=[("ringcheck victim", RINGCHECK),
                                                         ("agent", AGENT)]))
