#!/usr/bin/env python3
"""The agent's own unwinder (src/agent/unwind.c) against libunwind: with
HTRACE_UNWIND=check the agent takes every stack with both and says at exit
how many stacks its unwinder took, gave up on, or found stale (objects
loaded or unloaded), and every stack where the two differ.  Runs the
unwinder victim's modes (deep recursion, threads on every kind of stack,
signal handlers (on an alternate signal stack: no stack, counted), a
coroutine (also in a thread), plugins loaded and
unloaded at the same address by one thread or three, fork, two callers of
the same frames in turn, two callers whose frames moved while their
callees' did not, a loop that keeps its counter in rbp) and the benchmark; checks there is no difference and that the fast path is taken
where it should be.  Also checks that reports are
the same with HTRACE_UNWIND=libunwind.

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory: the agent, the plugins, the benchmark).
Exit status: 0 all passed, 1 a failure, 77 htrace missing."""

import os
import re
import subprocess
import shutil
import sys

from harness import (AGENT, BUILD, HTRACE, TIMEOUT, VICTIMS, Skip, expect, json_run, only_process,
                     run_tests, traced_env)

UNWINDER = os.path.join(VICTIMS, "unwinder")
BENCH = os.path.join(BUILD, "bench", "bench")
PLUGINS = [os.path.join(BUILD, "tests", "plugins", f"libplugin_{v}.so") for v in ("fp", "nofp")]
REPORT_RE = re.compile(r"^htrace: unwind check: pid (\d+): fast (\d+), gave up (\d+), stale (\d+), "
                       r"libunwind stale (\d+), mismatches (\d+), joined (\d+), recent (\d+), "
                       r"known (\d+)$")
FIELDS = ("fast", "gave_up", "stale", "libunwind_stale", "mismatches", "joined", "recent", "known")


def checked_run(args, each=None):
    """Runs args traced with HTRACE_UNWIND=check; returns the counts of
    every process, added up, after checking that no stack differed.  With
    each, a list, it gets the counts of each process too."""
    result = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=TIMEOUT, env=traced_env(HTRACE_UNWIND="check"))
    expect(result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr}")
    mismatches = [l for l in result.stderr.splitlines() if "unwind mismatch" in l]
    expect(not mismatches, f"{args}: the two unwinders differ:\n" + "\n".join(mismatches[:5]))
    reports = [REPORT_RE.match(l) for l in result.stderr.splitlines() if REPORT_RE.match(l)]
    expect(reports, f"{args}: no unwind check report on stderr:\n{result.stderr}")
    processes = [{f: int(m.group(i + 2)) for i, f in enumerate(FIELDS)} for m in reports]
    if each is not None:
        each.extend(processes)
    counts = {f: sum(p[f] for p in processes) for f in FIELDS}
    expect(counts["mismatches"] == 0, f"{args}: {counts}")
    expect(counts["fast"] > 0, f"{args}: the agent's unwinder took no stack: {counts}")
    return counts, result.stdout


def always_fast(args, each=None):
    counts, stdout = checked_run(args, each)
    expect(counts["gave_up"] == 0, f"{args}: the agent's unwinder gave up: {counts}")
    return counts, stdout


def test_agent_frames_are_plain_frame_pointer_frames():
    """The unwinder skips the agent's own frames along the rbp chain, which
    holds only while every agent function that calls another sets up rbp
    as its frame pointer and none realigns its stack (an `and $-N, %rsp`
    prologue)."""
    if not shutil.which("objdump"):
        raise Skip("objdump (binutils) is not installed")
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", AGENT], capture_output=True,
                          text=True, timeout=TIMEOUT).stdout
    functions = re.split(r"\n(?=[0-9a-f]+ <[^>]+>:\n)", text)
    expect(len(functions) > 100, f"only {len(functions)} functions found in {AGENT}")
    realign, no_frame = [], []
    for body in functions:
        name = re.match(r"[0-9a-f]+ <([^>]+)>:", body)
        if (not name or "@plt" in name.group(1) or name.group(1).endswith(".cold")
                or name.group(1).startswith((".plt", "_init"))):  # .cold: a part of a function
            continue
        if re.search(r"\sand\s+\$0x[0-9a-f]+,%rsp$", body, re.M):
            realign.append(name.group(1))
        if re.search(r"\scall\s", body) and not re.search(r"\smov\s+%rsp,%rbp$", body, re.M):
            no_frame.append(name.group(1))
    expect(not realign, f"agent functions that realign the stack: {realign[:10]}")
    expect(not no_frame, f"agent functions that call without a frame pointer: {no_frame[:10]}")


def test_deep_recursion_beyond_the_frames_kept():
    always_fast([UNWINDER, "recurse"])


def test_threads_on_glibc_small_and_given_stacks():
    always_fast([UNWINDER, "threads"])


def test_fork_children():
    each = []
    always_fast([UNWINDER, "fork"], each)
    expect(len(each) == 5 and all(p["fast"] > 0 for p in each),
           f"the parent and its 4 children must each take stacks themselves: {each}")


def test_memo_of_the_last_walk_notices_a_different_caller_above_the_same_frames():
    counts, _ = always_fast([UNWINDER, "outer"])
    expect(counts["joined"] > 0, f"no stack took its outer frames from the memo: {counts}")


def test_memo_of_the_last_walk_notices_frames_that_moved_above_the_same_frames():
    # the other caller's return addresses are still on the stack, unwritten:
    # only a saved rbp read on the way out tells the frames apart
    counts, stdout = always_fast([UNWINDER, "moved"])
    expect("DONE moved" in stdout, f"the victim did not run its rounds: {stdout}")
    expect(counts["joined"] > 0, f"no stack took its outer frames from the memo: {counts}")


def test_memo_serves_stacks_under_a_loop_counter_kept_in_rbp():
    # 1,000 rounds of an open and a close: all but the first few stacks of
    # each call site must come from the thread's recent stacks, which they
    # do only when the memo joins them at the loop's frame, whose rbp
    # differs every round but is not used to unwind it
    counts, stdout = always_fast([UNWINDER, "rbpcount"])
    expect("DONE rbpcount" in stdout, f"the victim did not run its rounds: {stdout}")
    expect(counts["recent"] >= 1900,
           f"stacks under the loop were not found among the thread's recent ones: {counts}")
    # and, from the second round on, without a walk: the first frame's
    # caller is the memo's (checked against the walk, as mismatches)
    expect(counts["known"] >= 1900,
           f"stacks under the loop were walked instead of known from the last walk: {counts}")


def test_plugins_unloaded_and_loaded_at_the_same_address():
    counts, stdout = always_fast([UNWINDER, "plugins"] + PLUGINS)
    expect(counts["stale"] > 0, f"loads and unloads went unnoticed: {counts}")
    same = re.search(r"^SAME_ADDRESS (\d+)$", stdout, re.M)
    expect(same and int(same.group(1)) > 0,
           f"no plugin was loaded again at the address of the one unloaded: {stdout}")


def test_plugins_loaded_and_unloaded_by_three_threads_at_once():
    # a capture may give up when another thread loads or unloads meanwhile
    counts, _ = checked_run([UNWINDER, "plugthreads"] + PLUGINS)
    expect(counts["stale"] > 0, f"loads and unloads went unnoticed: {counts}")


def test_signal_handlers_are_left_to_libunwind():
    counts, _ = checked_run([UNWINDER, "signals"])
    expect(counts["gave_up"] > 0, f"a signal frame was not given up on: {counts}")


def test_stacks_on_an_alternate_signal_stack_are_skipped_and_counted():
    # libunwind may need more stack than a small alternate one has left, so
    # the 100 handlers on it (each 2 opens and 2 closes) get no stack, and
    # say so; the 100 on the thread's own stack get theirs
    _, objs = json_run(["--", UNWINDER, "signals"])
    s = only_process(objs)["summary"]
    expect(s["stacks_skipped"] == 400, f"stacks skipped on the alternate stack: {s}")


def test_coroutine_stack_is_left_to_libunwind():
    counts, _ = checked_run([UNWINDER, "coroutine"])
    expect(counts["gave_up"] > 0, f"a stack of unknown bounds was walked: {counts}")


def test_thread_whose_first_stacks_are_on_a_coroutine_leaves_later_threads_fast():
    # the coroutine takes as many stacks as its thread then takes on its own
    # stack, and as the plain thread after it: only the coroutine's are given up
    counts, _ = checked_run([UNWINDER, "corothread"])
    expect(counts["gave_up"] > 0 and 2 * counts["gave_up"] == counts["fast"],
           f"expected the coroutine's stacks, and only those, given to libunwind: {counts}")


def test_benchmark_workloads():
    for args in (["open"], ["dup"], ["--deep", "open"], ["--threads", "2", "--deep", "dup"]):
        always_fast([BENCH] + args + ["2000"])


def frames_of_leak(unwinder):
    env = dict(os.environ, HTRACE_UNWIND=unwinder)
    result, objs = json_run(["--", os.path.join(VICTIMS, "behave"), "deep"], env=env)
    expect(result.returncode == 0, f"behave deep exited {result.returncode}")
    handles = only_process(objs)["handles"]
    expect(len(handles) == 1, f"expected one leak, got {len(handles)}")
    return [(f["module"], f["function"], f["offset"]) for f in handles[0]["traces"][0]["frames"]]


def test_reports_are_the_same_as_with_libunwind_alone():
    always_fast([os.path.join(VICTIMS, "behave"), "deep"])  # ours really takes this stack
    ours, theirs = frames_of_leak("fast"), frames_of_leak("libunwind")
    expect(ours == theirs, f"frames differ:\n{ours}\n{theirs}")
    expect(len(ours) >= 22, f"only {len(ours)} frames: {ours}")


def event_stacks(mode, unwinder):
    """Every event that `htrace run --history` recorded for the unwinder
    victim's mode, in order, with its frames (module, function, offset)."""
    env = {k: v for k, v in os.environ.items() if k != "HTRACE_UNWIND"}
    if unwinder:
        env["HTRACE_UNWIND"] = unwinder
    result, objs = json_run(["--history", "--", UNWINDER, mode], env=env)
    expect(result.returncode == 0, f"unwinder {mode} exited {result.returncode}")
    events = [(t["seq"], h["handle"], t["kind"],
               [(f["module"], f["function"], f["offset"]) for f in t["frames"]])
              for h in only_process(objs)["handles"] for t in h["traces"] if t["seq"]]
    return sorted(events)


def test_stacks_known_from_the_last_walk_are_libunwinds_in_the_default_mode():
    # HTRACE_UNWIND=check walks every stack, and so rewrites the memo that
    # the default mode keeps across the stacks it knows without a walk:
    # here the default mode itself is compared, event by event, where the
    # memo matters (a new caller above the same frames, frames moved, a
    # loop counter in rbp)
    for mode in ("outer", "moved", "rbpcount"):
        ours, theirs = event_stacks(mode, None), event_stacks(mode, "libunwind")
        expect(len(ours) >= 20, f"{mode}: only {len(ours)} events recorded")
        differ = [(a, b) for a, b in zip(ours, theirs) if a != b]
        expect(len(ours) == len(theirs) and not differ,
               f"{mode}: {len(differ)} of {len(ours)} events differ, first: {differ[:1]}")


if __name__ == "__main__":
    sys.exit(run_tests(globals(), "unwind", HTRACE,
                       needs=[("the unwinder victim", UNWINDER), ("the benchmark", BENCH)] +
                       [("a test plugin", p) for p in PLUGINS]))
