#!/usr/bin/env python3
"""htrace benchmark driver (issue 6): runs bench/bench.c's workloads under
each configuration and prints ONE table, then the overhead budget, each
line judged from the figures of this same run.

Configurations: untraced (and untraced again, an A/A comparison that shows
the noise); the agent preloaded with tracing off; tracing on
(HTRACE_TRACE=1: stacks on every OPEN and CLOSE, default depth and
Max_Traces); `valgrind --track-fds=yes`; `strace -f -k -e trace=%desc -o
/dev/null` (on a short run: the bench reports time per operation, so the
figures compare).

Every figure is a median over repetitions.  Within a repetition the
native configurations of a workload (untraced, untraced again, tracing
off, tracing on) run at once, taking turns: their loops are cut into
batches of about 1.3 ms, and a byte passed round a ring of pipes lets one
batch run at a time, in a ring order shuffled at each repetition (a fixed
seed, so a run can be repeated).  The machine's speed, which on a shared
virtual machine comes and goes over tenths of a second, then hits them
alike: in trials on the 2-CPU machine of the README the repetitions'
ratios spread half to a third as widely (interquartile range 0.03-0.09
on dup+dup2+close, against 0.07-0.26 for runs one after the other).  What
is left is mostly each process's own luck (where its pages and code
land), which only more repetitions average out.  valgrind and strace run
on their own in the same shuffled order.  Each ratio is the median of the
per-repetition ratios to the untraced run of the same repetition.  A
ratio over its budget line is shown with the 95% confidence interval of
its median (distribution-free: two order statistics of the repetitions'
ratios), which tells whether the miss is beyond this run's noise; the
verdict itself is the median's.  Runs of about 0.13 s: halving them made
the repetitions' ratios spread more widely, not less.

Usage: run.py [--quick] [--smoke] [--reps N] [--json FILE] [--client-only] [--guest]
  --quick   (or QUICK=1 in the environment) few iterations and repetitions,
            the whole run in well under a minute; nothing else is skipped
  --smoke   each configuration once with tiny iteration counts, runs in
            parallel: proves that everything builds and runs, measures
            nothing (used by tests/test_bench_quick.py)
  --reps N  repetitions of the native configurations (default 21; quick 2)
  --json FILE  also write every sample to FILE
  --client-only  only the client check (the last budget line)
  --guest   the client check in a qemu guest too (bench/guest.py), even
            where this machine could hold its descriptors; a full run
            goes there by itself when this machine's RLIMIT_NOFILE is
            too low for 100,000 descriptors, and also measures the size
            this machine allows in the guest, to show how far software
            emulation moves the ratio

Env: HTRACE (the client), HTRACE_AGENT (libhtrace.so), HTRACE_BENCH (the
bench binary); each defaults to its place under build/.

A benchmark is not a test: the exit status is 0 whatever the timings, 1
only when something broke (a run crashed or printed no result, the bench
binary is missing).  A missing tool skips its column with a note."""

import argparse
import atexit
import hashlib
import concurrent.futures
import json
import math
import os
import platform
import random
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import guest  # bench/guest.py: the client check in a qemu guest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HTRACE = os.environ.get("HTRACE") or os.path.join(ROOT, "build", "bin", "htrace")
AGENT = os.environ.get("HTRACE_AGENT") or os.path.join(ROOT, "build", "lib", "htrace", "libhtrace.so")
BENCH = os.environ.get("HTRACE_BENCH") or os.path.join(ROOT, "build", "bench", "bench")

# The agent's defaults (README, "Memory" and "Environment").
DEFAULT_MAX_TRACES = 65536
RING_EVENT_BYTES = 40
DEPOT_BYTES = 4 << 20
MiB = 1 << 20
AGENT_DESC = ""

WORKLOADS = [("open", "open+close /dev/null"), ("socket", "socket+close (AF_INET TCP)"),
             ("pipe", "pipe+close both ends"), ("dup", "dup+dup2+close"), ("fopen", "fopen+fclose /dev/null")]
HOLD = 10000
NATIVE_SECONDS = 0.13  # seconds of one untraced run in a full bench
# batches of a native run, which take turns with the other native
# configurations of the same repetition (bench --turns): about 1.3 ms each
TURN_BATCHES = {"full": 100, "quick": 20, "smoke": 2}
NATIVE = ("untraced", "again", "off", "on")
CLIENT_REPS = {"full": 3, "quick": 1, "smoke": 1}  # of each client check's commands
MODE_FLAGS = {"full": "", "quick": "--quick", "smoke": "--smoke"}
GUEST_SECONDS = {"full": 1800, "quick": 600, "smoke": 300}  # a guest's longest run


class Row:
    def __init__(self, workload, label, args, variant):
        self.workload, self.label, self.args, self.variant = workload, label, args, variant
        self.iterations = {}  # config -> iterations per run
        self.samples = {}  # config -> [ns per op, one per repetition]
        self.ratios = {}  # config -> [ratio to untraced of the same repetition]
        self.notes = {}  # config -> "skipped ..." or "ERROR ..."


def make_rows():
    rows = [Row(w, desc, [], "1 thread") for w, desc in WORKLOADS]
    rows += [Row(w, f"{desc}, 2 threads", ["--threads", "2"], "2 threads") for w, desc in WORKLOADS]
    rows += [Row(w, f"{desc}, 20 frames deep", ["--deep"], "deep") for w, desc in WORKLOADS]
    rows.append(Row("open", f"open+close /dev/null, {HOLD:,} held", ["--hold", str(HOLD)], "held"))
    return rows


# "again" is the untraced run made a second time (an A/A comparison): its
# ratio shows how far from 1.00× noise alone takes a ratio on this machine.
CONFIGS = ["untraced", "again", "off", "on", "valgrind", "strace"]
TOOLS = ("valgrind", "strace")
HEADINGS = {"untraced": "untraced", "again": "untraced again (A/A)", "off": "agent loaded, tracing off",
            "on": "tracing on",
            "valgrind": "valgrind --track-fds=yes", "strace": "strace -f -k -e trace=%desc"}


def snapshot_binaries():
    """Copies the agent and the bench binary to a private directory, so that
    the whole run measures one build even when the build tree is rebuilt
    meanwhile (a preload of a half-written library is silently ignored by
    the loader).  Returns a description of the agent measured."""
    global AGENT, BENCH
    tmp = tempfile.mkdtemp(prefix="htrace-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    bench = os.path.join(tmp, "bench")
    shutil.copy2(BENCH, bench)
    BENCH = bench
    if not os.path.exists(AGENT):
        return "agent missing"
    agent = os.path.join(tmp, "lib", "htrace", "libhtrace.so")
    os.makedirs(os.path.dirname(agent))
    shutil.copy2(AGENT, agent)
    with open(agent, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.stat(agent).st_mtime))
    desc = f"{AGENT} built {built}, sha256 {digest}… (a copy is measured)"
    AGENT = agent
    return desc


def clean_env():
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("HTRACE_")}
    env.pop("HTRACE", None)
    return env


def command(config, args):
    env = clean_env()
    prefix = []
    if config in ("off", "on"):
        env["LD_PRELOAD"] = AGENT
        if config == "on":
            env["HTRACE_TRACE"] = "1"
    elif config == "valgrind":
        prefix = ["valgrind", "--track-fds=yes"]
    elif config == "strace":
        prefix = ["strace", "-f", "-k", "-e", "trace=%desc", "-o", "/dev/null"]
    return prefix + [BENCH] + args, env


class Broken(Exception):
    pass


def run_once(config, args, timeout):
    """Runs the bench once; returns ("ok", ns_per_op), ("skip", reason) or
    ("error", message)."""
    cmd, env = command(config, args)
    try:
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "error", f"timed out after {timeout} s: {' '.join(cmd)}"
    except OSError as e:
        return "error", f"cannot run {cmd[0]}: {e}"
    return parse_result(config, cmd, p)


def run_in_turns(configs, args, batches, timeout):
    """Runs one process of each configuration at once, joined in a ring of
    pipes in the order given: each runs a batch of its loop when the byte
    comes round to it (bench --turns), so that the configurations alternate
    every millisecond or so and a change of the machine's speed, which
    comes and goes over tenths of a second here, hits them alike.  Returns
    {config: result}, each as run_once's; when one process fails or
    skips, the others, whose turn would never come, are stopped and
    reported as ("stopped", why): no figure, and no fault of theirs."""
    n = len(configs)
    pipes = [os.pipe() for _ in configs]
    procs, results = {}, {}
    try:
        for i, config in enumerate(configs):
            rin, wout = pipes[i][0], pipes[(i + 1) % n][1]
            cmd, env = command(config, ["--turns", f"{rin},{wout},{batches}"] + args)
            try:
                procs[config] = (cmd, subprocess.Popen(cmd, env=env, pass_fds=(rin, wout),
                                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE, text=True))
            except OSError as e:
                results[config] = ("error", f"cannot run {cmd[0]}: {e}")
        if results:
            raise Broken(next(iter(results.values()))[1])
        os.write(pipes[0][1], b"t")
        wait_ring(procs, results, timeout)
    except Broken as e:
        for config in configs:
            results.setdefault(config, ("stopped", str(e)))
    finally:
        for _, p in procs.values():
            if p.poll() is None:
                p.kill()
            p.communicate()  # reaps it and closes its pipes
        for r, w in pipes:
            os.close(r)
            os.close(w)
    return results


def wait_ring(procs, results, timeout):
    """Collects the ring's processes as they end; raises Broken when one
    ended without its result or the time ran out."""
    deadline, failed = time.monotonic() + timeout, None
    while len(results) < len(procs):
        for config, (cmd, p) in procs.items():
            if config not in results and p.poll() is not None:
                results[config] = parse_result(config, cmd, p)
                if results[config][0] == "error":
                    raise Broken(f"{HEADINGS[config]} failed: {results[config][1]}")
                if results[config][0] == "skip" and not failed:
                    # a skip (a limit) comes before the first turn, to all
                    # alike: the others have a moment to say so too
                    failed = f"{HEADINGS[config]} skipped: {results[config][1]}"
                    deadline = min(deadline, time.monotonic() + 5)
        if time.monotonic() > deadline:
            raise Broken(failed or f"timed out after {timeout} s")
        time.sleep(0.005)


def parse_result(config, cmd, p):
    """A bench process's result: p is a CompletedProcess, or a Popen that
    has ended."""
    if isinstance(p, subprocess.Popen):
        stdout, stderr = p.communicate()
        p = subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)
    m = re.search(r"^RESULT ns_per_op=([0-9.]+) .* agent=(\d) stacks=(\d)$", p.stdout, re.M)
    if p.returncode == 0 and m:
        want = {"off": ("1", "0"), "on": ("1", "1")}.get(config, ("0", "0"))
        if (m.group(2), m.group(3)) != want:
            return "error", (f"the configuration was not in effect (agent loaded {m.group(2)}, stacks "
                             f"recorded {m.group(3)}): {' '.join(cmd)}")
        return "ok", float(m.group(1))
    skip = re.search(r"^SKIP: (.*)$", p.stdout, re.M)
    if p.returncode == 77 and skip:
        return "skip", skip.group(1)
    tail = (p.stderr.strip().splitlines() or ["(no output)"])[-3:]
    return "error", f"exit {p.returncode}: {' '.join(cmd)}: {' | '.join(tail)}"


# ---- the machine ----

def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ncpu = len(os.sched_getaffinity(0))
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / (1 << 20):.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    libc = " ".join(platform.libc_ver())
    return f"nproc {ncpu}, {cpu}{mem}, Linux {platform.release()} {platform.machine()}, {libc}"


def tool_version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def htrace_revision():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "include"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if not rev:
        return "unknown"
    return rev + (" with uncommitted changes in src/ or include/" if dirty else "")


# ---- the workloads ----

def check_configs(notes):
    """Which configurations can run; notes say why a column is skipped."""
    available = ["untraced", "again"]
    if os.path.exists(AGENT):
        available += ["off", "on"]
    else:
        notes.append(f"agent {AGENT} not found: the 'tracing off' and 'tracing on' columns are skipped")
    if shutil.which("valgrind"):
        available.append("valgrind")
    else:
        notes.append("valgrind not installed: its column is skipped (scripts/install-deps.sh installs it)")
    if not shutil.which("strace"):
        notes.append("strace not installed: its column is skipped (scripts/install-deps.sh installs it)")
    else:
        p = subprocess.run(["strace", "-f", "-k", "-e", "trace=%desc", "-o", "/dev/null", "true"],
                           capture_output=True, text=True)
        if p.returncode == 0:
            available.append("strace")
        else:
            notes.append(f"strace -k does not work here ({p.stderr.strip()[:120]}): its column is skipped")
    return available


def calibrate(rows, mode, errors):
    """Native iterations per row, so that an untraced run takes about the
    target time; valgrind and strace runs make fewer (they report time per
    operation, so the figures compare)."""
    if mode == "smoke":
        for r in rows:
            r.iterations = {"untraced": 200, "again": 200, "off": 200, "on": 200, "valgrind": 50, "strace": 5}
        return
    # seconds of an untraced run: native configurations, valgrind's (which
    # then makes a tenth of those iterations)
    target, tool_target = (NATIVE_SECONDS, 0.4) if mode == "full" else (0.04, 0.04)
    probe, strace_iters = (20000, 100) if mode == "full" else (3000, 15)

    def iterations(seconds, value):
        return int(min(max(seconds * 1e9 / value, probe), 5_000_000))

    for r in rows:
        status, value = run_once("untraced", r.args + [r.workload, str(probe)], 120)
        if status == "ok":
            iters, tool_iters = iterations(target, value), iterations(tool_target, value)
        else:
            if status == "error":
                errors.append(f"{r.label}: calibration: {value}")
            iters = tool_iters = probe
        r.iterations = {"untraced": iters, "again": iters, "off": iters, "on": iters,
                        "valgrind": max(tool_iters // 10, 200), "strace": strace_iters}


def measure(rows, configs, reps, tool_reps, mode, errors):
    timeout = 60 if mode == "smoke" else 600

    # each job gives (row, {config: result})
    def job(row, config):
        args = row.args + [row.workload, str(row.iterations[config])]
        return row, {config: run_once(config, args, timeout)}

    def turns_job(row, natives):
        """The native configurations of a row, taking turns (all have the
        same iterations).  Those stopped because another one skipped (a
        limit of its own) take their turns again without it."""
        args = row.args + [row.workload, str(row.iterations[natives[0]])]
        results = run_in_turns(natives, args, TURN_BATCHES[mode], timeout)
        skipped = [c for c in natives if results[c][0] == "skip"]
        again = [c for c in natives if results[c][0] == "stopped"]
        if skipped and again:
            results.update(run_in_turns(again, args, TURN_BATCHES[mode], timeout))
        return row, results

    def record(row, results, samples):
        for config, (status, value) in results.items():
            if status == "ok":
                samples[config] = value
            elif status == "stopped":  # another configuration failed: not this one's fault
                pass
            elif status == "skip":
                row.notes[config] = f"skipped: {value}"
            else:
                row.notes[config] = "ERROR"
                errors.append(f"{row.label}, {HEADINGS[config]}: {value}")

    if mode == "smoke":  # nothing is measured: run everything once, in parallel
        # the longest first, so that they overlap the rest: strace -k of the
        # 10,000 opens of the held row (about 1 ms each), then valgrind
        def cost(rc):
            r, c = rc
            return (c == "strace" and r.variant == "held") * 100 + (c == "valgrind") * 10 + (c == "strace")
        jobs = sorted(((r, c) for r in rows for c in configs if c in TOOLS), key=cost, reverse=True)
        per_row = {id(r): {} for r in rows}
        natives = [c for c in configs if c in NATIVE]
        with concurrent.futures.ThreadPoolExecutor(max(2, len(os.sched_getaffinity(0)))) as pool:
            ran = [pool.submit(job, *a) for a in jobs] + [pool.submit(turns_job, r, natives) for r in rows]
            for done in ran:
                row, results = done.result()
                record(row, results, per_row[id(row)])
        for r in rows:
            add_samples(r, per_row[id(r)])
        return

    for rep in range(reps):
        for r in rows:
            todo = [c for c in configs if (c not in TOOLS or rep < tool_reps) and c not in r.notes]
            random.Random(f"{rep}/{r.label}").shuffle(todo)
            natives = [c for c in todo if c in NATIVE]  # in the shuffled order
            samples = {}
            for config in todo:
                if config in TOOLS:
                    record(*job(r, config), samples)
                elif config == natives[0]:
                    record(*turns_job(r, natives), samples)
            add_samples(r, samples)
        print(f"  repetition {rep + 1}/{reps} done", file=sys.stderr, flush=True)


def add_samples(row, samples):
    for config, value in samples.items():
        row.samples.setdefault(config, []).append(value)
        if config != "untraced" and "untraced" in samples:
            row.ratios.setdefault(config, []).append(value / samples["untraced"])


def ratio(row, config):
    v = row.ratios.get(config)
    return statistics.median(v) if v else None


def median_interval(values, level=0.95):
    """A distribution-free confidence interval for the median of values:
    the order statistics k and n+1-k, k the largest rank whose interval
    still covers the median with probability at least level (the count of
    values below the median is binomial(n, 1/2)).  None below 6 values."""
    v, n = sorted(values), len(values)
    best = None
    for k in range(1, n // 2 + 1):
        outside = sum(math.comb(n, i) for i in range(k)) * 2 / 2 ** n
        if 1 - outside >= level:
            best = k
    return (v[best - 1], v[n - best]) if best else None


def fmt_over(row, config, limit):
    """An over-budget figure with the 95% interval of its median, and
    whether the budget lies inside it (then the miss is within the noise
    of this run)."""
    x, ci = ratio(row, config), median_interval(row.ratios.get(config, []))
    if not ci:
        return f"{row.label} {fmt_ratio(x)}"
    inside = "budget inside it" if ci[0] <= limit else "budget below it"
    return f"{row.label} {fmt_ratio(x)} (95% interval of the median {ci[0]:.2f}–{ci[1]:.2f}×, {inside})"


def fmt_ratio(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    return f"{x:.2f}×"


def fmt_ns(x):
    return f"{x:,.0f}"


# ---- memory ----

def measure_memory(mode, errors):
    """Returns a dict of the memory line's figures, or a reason string."""
    if not os.path.exists(AGENT):
        return "the agent is missing"
    events = {"full": 10_000_000, "quick": 1_000_000, "smoke": 20_000}[mode]
    env = clean_env()
    env.update(LD_PRELOAD=AGENT, HTRACE_TRACE="1")
    cmd = [BENCH, "memory", str(events)]
    try:
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        errors.append("memory: timed out")
        return "timed out"
    m = re.search(r"^MEMORY events=(\d+) paths=(\d+) rss_before_kib=(\d+) rss_after_kib=(\d+) hwm_kib=(\d+) "
                  r"ns_per_event=([0-9.]+)", p.stdout, re.M)
    if p.returncode != 0 or not m:
        errors.append(f"memory: exit {p.returncode}: {p.stderr.strip()[-300:]}")
        return "the run failed"
    events, paths, before, after, hwm = (int(m.group(i)) for i in range(1, 6))
    return {"events": events, "paths": paths, "before": before * 1024, "after": after * 1024,
            "hwm": hwm * 1024, "ns_per_event": float(m.group(6))}


# ---- the client ----

def group_supported():
    try:
        p = subprocess.run([HTRACE, "--help"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return "--group" in p.stdout + p.stderr


def start_holder(count, paths):
    """Starts `bench hold-traced`; returns (process, None) once READY, or
    (None, reason)."""
    env = clean_env()
    env.update(LD_PRELOAD=AGENT, HTRACE_TRACE="1")
    need = count + 100

    def raise_limit():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            if hard < need:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            elif soft < need:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # the bench says SKIP itself

    proc = subprocess.Popen([BENCH, "hold-traced", str(count), str(paths)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=raise_limit)
    line = proc.stdout.readline()
    if line.startswith("READY"):
        return proc, None
    proc.kill()
    out, err = proc.communicate()
    rc = proc.returncode
    if line.startswith("SKIP"):
        return None, line[5:].strip()
    return None, f"ERROR: exit {rc}: {(line + out + err).strip()[-300:]}"


def time_command(cmd):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, "timed out after 600 s"
    t = time.monotonic() - t0
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {p.stderr.strip()[-200:]}"
    return t, None


def client_check(count, paths, reps, errors):
    """Times the client and lsof on a process holding `count` traced
    descriptors.  Returns a dict, or a reason string when it could not run."""
    proc, reason = start_holder(count, paths)
    if not proc:
        if reason.startswith("ERROR"):
            errors.append(f"client check: bench hold-traced {count}: {reason}")
        return reason
    try:
        pid = str(proc.pid)
        cmds = {}
        if group_supported():
            cmds["htrace --group -p PID"] = [HTRACE, "--group", "-p", pid]
        cmds["htrace -p PID 0"] = [HTRACE, "-p", pid, "0"]
        if shutil.which("lsof"):
            cmds["lsof -p PID"] = ["lsof", "-p", pid]
        times = {name: [] for name in cmds}
        failed = {}
        names = list(cmds)
        for rep in range(reps):
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                if name in failed:
                    continue
                t, err = time_command(cmds[name])
                if err:
                    failed[name] = err
                    errors.append(f"client check: {name}: {err}")
                else:
                    times[name].append(t)
        return {"count": count, "paths": paths,
                "median": {n: statistics.median(v) for n, v in times.items() if v},
                "failed": failed, "lsof": "lsof -p PID" in cmds, "group": "htrace --group -p PID" in cmds}
    finally:
        proc.kill()
        proc.communicate()


def client_scale(count, reps, errors):
    """The client check at about a quarter and a half of count too, so that
    the trend towards the size asked for can be judged; the sizes that
    could not run are left out (errors has those that broke)."""
    sizes = [n for n in (count // 4 // 1000 * 1000, count // 2 // 1000 * 1000) if n >= 1000]
    return [c for c in (client_check(n, 1000, reps, errors) for n in sizes) if isinstance(c, dict)]


def client_sizes_in_guest(sizes, mode):
    """The client check at each size in a qemu guest (bench/guest.py), by
    this very script with --client-sizes; a list of dicts, or a reason."""
    script = "\n".join([
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"cd {shlex.quote(ROOT)}",
        f"HTRACE={shlex.quote(HTRACE)} HTRACE_AGENT={shlex.quote(AGENT)} HTRACE_BENCH={shlex.quote(BENCH)} "
        f"exec {shlex.quote(sys.executable)} bench/run.py {MODE_FLAGS[mode]} --client-sizes {','.join(map(str, sizes))}",
        ""])
    out, status, reason = guest.run(script, timeout=GUEST_SECONDS[mode])
    if reason:
        return reason
    try:
        results = [json.loads(line[len("CLIENT "):]) for line in out.splitlines() if line.startswith("CLIENT ")]
    except ValueError as e:
        return f"ERROR: in the guest, a CLIENT line that is not JSON ({e}): {out.strip()[-300:]}"
    broken = [line for line in out.splitlines() if line.startswith("CLIENT-ERROR ")]
    if status != 0 or broken or len(results) != len(sizes):
        return f"ERROR: in the guest, exit {status}: {(' '.join(broken) or out.strip())[-300:]}"
    return results


def client_in_guest(client, mode, errors):
    """The check at the size asked for (and at the size this machine
    allows, to compare) in a guest, whose figures become the line's."""
    sizes = [client["want"]] + ([client["info"]["count"]] if isinstance(client.get("info"), dict) else [])
    print(f"  client check in a qemu guest (software emulation): {', '.join(f'{n:,}' for n in sizes)} descriptors",
          file=sys.stderr, flush=True)
    got = client_sizes_in_guest(sizes, mode)
    if isinstance(got, str) and got.startswith("ERROR"):
        errors.append(f"client check in the guest: {got}")
    client["guest"] = got


def client_section(mode, force_guest, errors):
    """The client check: here when this machine allows the size asked for,
    else in a guest too, in full runs (and with --guest, in any run, and
    even where this machine allows it), with the check here at the most
    descriptors this machine allows, for information."""
    want = 2000 if mode == "smoke" else 100_000
    client, notes = {"want": want}, []
    if not os.access(HTRACE, os.X_OK) or not os.path.exists(AGENT):
        client["main"] = f"the htrace client or agent is missing ({HTRACE}, {AGENT})"
        return client, None
    creps = CLIENT_REPS[mode]
    client["main"] = client_check(want, 1000, creps, errors)
    if not isinstance(client["main"], dict) and not client["main"].startswith("ERROR"):
        print(f"bench: SKIPPED the client check at {want:,} descriptors here: {client['main']}", file=sys.stderr)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        count = (hard - 100) // 1000 * 1000 if hard != resource.RLIM_INFINITY else 0
        if count >= 1000:
            client["info"] = client_check(count, 1000, creps, errors)
            if isinstance(client["info"], dict):
                client["scale"] = client_scale(count, creps, errors)
        if mode == "full" or force_guest:
            client_in_guest(client, mode, errors)
        else:
            notes.append("the check in a qemu guest runs in full runs only (or with --guest)")
    elif force_guest:
        client_in_guest(client, mode, errors)
    if not group_supported():
        notes.append("`htrace --group` (issue 5) does not exist in this client yet")
    return client, "; ".join(notes) or None


def client_sizes_main(sizes, mode):
    """--client-sizes: the client check at each size, one line each
    (CLIENT and its JSON), for client_sizes_in_guest to read."""
    errors = []
    creps = CLIENT_REPS[mode]
    for count in sizes:
        got = client_check(count, 1000, creps, errors)
        if isinstance(got, dict):
            print("CLIENT " + json.dumps(got), flush=True)
        else:
            errors.append(f"bench hold-traced {count}: {got}")
    for e in errors:
        print("CLIENT-ERROR " + e, flush=True)
    return 1 if errors else 0


# ---- report ----

def verdict(ok):
    return "PASS" if ok else "MISS"


def budget(rows, configs, memory, client, client_note, mode):
    out = []
    by = {(r.workload, r.variant): r for r in rows}
    first = [r for r in rows if r.variant == "1 thread"]

    # 1. tracing off
    if "off" in configs:
        got = [(ratio(r, "off"), r.label) for r in rows if ratio(r, "off") is not None]
        if got:
            over = [fmt_over(r, "off", 1.03) for r in rows if (ratio(r, "off") or 0) > 1.03]
            worst = max(got)
            line = f"Agent loaded, tracing off, ≤ 1.03× on every workload: worst {fmt_ratio(worst[0])} ({worst[1]})"
            if over:
                line += f"; over on {len(over)} of {len(got)}: " + ", ".join(over)
            out.append((verdict(not over), line))
            aa = [ratio(r, "again") for r in rows if ratio(r, "again") is not None]
            if aa:
                out.append(("info", f"for scale, the A/A ratio (untraced against untraced) ranges from "
                                    f"{fmt_ratio(min(aa))} to {fmt_ratio(max(aa))} over the same workloads"))
    else:
        out.append(("SKIP", "Agent loaded, tracing off, ≤ 1.03×: the agent is missing"))

    # 2. tracing on
    if "on" in configs:
        r = by.get(("open", "1 thread"))
        x = ratio(r, "on") if r else None
        if x is not None:
            out.append((verdict(x <= 1.15), "Tracing on, ≤ 1.15× on open/close churn: " +
                        (fmt_ratio(x) if x <= 1.15 else fmt_over(r, "on", 1.15))))
        others = [r for r in rows
                  if not (r.workload == "open" and r.variant == "1 thread") and ratio(r, "on") is not None]
        got = [(ratio(r, "on"), r.label) for r in others]
        if got:
            over = [fmt_over(r, "on", 1.25) for r in others if ratio(r, "on") > 1.25]
            worst = max(got)
            line = (f"Tracing on, ≤ 1.25× on every other workload: worst {fmt_ratio(worst[0])} ({worst[1]})")
            if over:
                line += f"; over on {len(over)} of {len(got)}: " + ", ".join(over)
            out.append((verdict(not over), line))

        # 3. held descriptors
        few, held = by.get(("open", "1 thread")), by.get(("open", "held"))
        a, b = (ratio(few, "on") if few else None), (ratio(held, "on") if held else None)
        if a and b:
            out.append((verdict(b / a <= 1.05),
                        f"{HOLD:,} descriptors held, traced ratio within 1.05× of the ratio with few held: "
                        f"{fmt_ratio(b)} held vs {fmt_ratio(a)} few = {b / a:.3f}×"))
        else:
            out.append(("SKIP", f"{HOLD:,} descriptors held: {held.notes.get('on') or held.notes.get('untraced') if held else 'no figures'}"))

        # 4. threads
        got = []
        for r in first:
            two = by.get((r.workload, "2 threads"))
            a, b = ratio(r, "on"), (ratio(two, "on") if two else None)
            if a and b:
                got.append((b / a, r.workload, a, b))
        if got:
            worst = max(got)
            over = [f"{w} {q:.2f}× ({fmt_ratio(b)} vs {fmt_ratio(a)})" for q, w, a, b in got if q > 1.1]
            line = (f"2 threads, traced/untraced ratio within 1.1× of the 1-thread ratio: worst {worst[0]:.2f}× "
                    f"({worst[1]}: {fmt_ratio(worst[3])} with 2 threads vs {fmt_ratio(worst[2])} with 1)")
            if over:
                line += f"; over on {len(over)} of {len(got)}: " + ", ".join(over)
            out.append((verdict(not over), line))
    else:
        out.append(("SKIP", "Tracing on: the agent is missing"))

    # 5. memory
    if isinstance(memory, dict):
        growth = memory["after"] - memory["before"]
        ring = DEFAULT_MAX_TRACES * RING_EVENT_BYTES
        limit = ring + DEPOT_BYTES + MiB
        out.append((verdict(growth <= limit),
                    f"Memory: {memory['events']:,} events from {memory['paths']} call paths, tracing on, default "
                    f"Max_Traces: RSS {memory['before'] / MiB:.2f} → {memory['after'] / MiB:.2f} MiB, growth "
                    f"{growth / MiB:.2f} MiB ≤ ring {ring / MiB:.2f} MiB ({DEFAULT_MAX_TRACES} × "
                    f"{RING_EVENT_BYTES} B) + depot {DEPOT_BYTES / MiB:.0f} MiB + 1 MiB = {limit / MiB:.2f} MiB"
                    + (" (smoke: 20,000 events only)" if mode == "smoke" else
                       " (quick: 1,000,000 events, not 10,000,000)" if mode == "quick" else "")))
    else:
        out.append(("SKIP", f"Memory: {memory}"))

    # 6. client
    out += client_lines(client, client_note)
    return out


def client_times(c):
    """(the client's time, lsof's) of one check; None where missing."""
    key = "htrace --group -p PID" if c["group"] else "htrace -p PID 0"
    return c["median"].get(key), c["median"].get("lsof -p PID")


def client_figures(c):
    t, l = client_times(c)
    ratio = f" ({t / l:.2f}×)" if t is not None and l else ""
    return ", ".join(f"{n} {t:.2f} s" for n, t in c["median"].items()) + ratio


def client_trend(sizes):
    """The client's time over lsof's at each size measured, smallest first."""
    parts = []
    for c in sorted(sizes, key=lambda c: c["count"]):
        t, l = client_times(c)
        if t is not None and l:
            parts.append(f"{c['count']:,}: {t:.2f} s against {l:.2f} s ({t / l:.2f}×)")
    return "; ".join(parts)


def client_verdict(head, c):
    """The budget line judged from check c."""
    t, l = client_times(c)
    extra = "" if c["group"] else (" (--group does not exist in this client: the per-handle listing "
                                   "`htrace -p PID 0` is timed instead)")
    if not c["lsof"]:
        return ("SKIP", f"{head}: lsof is not installed; {client_figures(c)}{extra}")
    if t is None or l is None:
        return ("SKIP", f"{head}: a command failed ({c['failed']}){extra}")
    return (verdict(t <= l), f"{head}: {client_figures(c)}{extra}")


def client_host_lines(client):
    """What this machine measured when it could not hold the size asked for."""
    lines, informational = [], client.get("info")
    if isinstance(informational, dict):
        lines.append(("info", f"Here, on {informational['count']:,} descriptors from {informational['paths']:,} "
                              f"stacks (the most this machine allows): {client_figures(informational)}"))
        trend = client_trend(client.get("scale", []) + [informational])
        if trend and client.get("scale"):
            lines.append(("info", f"Here, the client against lsof -p PID by size, to judge the trend: {trend}"))
    elif informational:
        lines.append(("info", f"The scaled-down check could not run here either: {informational}"))
    return lines


def client_lines(client, note):
    main, in_guest, want = client.get("main"), client.get("guest"), client.get("want")
    head = f"Client: `htrace --group -p PID` ≤ `lsof -p PID` on {want:,} traced descriptors from 1,000 stacks"
    if isinstance(main, dict):
        lines = [client_verdict(head, main)]
    elif isinstance(in_guest, list):
        lines = [client_verdict(f"{head}, measured in a qemu guest under software emulation (here: {main})",
                                in_guest[0])]
    else:
        why = f"; nor in a qemu guest: {in_guest}" if in_guest else ""
        lines = [("SKIP", f"{head}: NOT MEASURED — {main}{why}")]
    if isinstance(main, dict) and isinstance(in_guest, str):
        lines.append(("info", f"In a qemu guest: not run — {in_guest}"))
    if isinstance(in_guest, list):
        if isinstance(main, dict):
            lines.append(("info", f"In a qemu guest under software emulation: {client_figures(in_guest[0])}"))
        for c in in_guest[1:]:
            lines.append(("info", f"In the guest on {c['count']:,} descriptors, to compare with the figure "
                                  f"here on as many: {client_figures(c)}"))
    if not isinstance(main, dict):
        lines += client_host_lines(client)
    if note:
        lines.append(("note", note))
    return lines


def print_heading(title, args, mode):
    cmd = "python3 bench/run.py" + "".join(f" {a}" for a in args)
    if os.environ.get("MAKELEVEL"):
        cmd = "make bench" + (" QUICK=1" if mode == "quick" else "") + f"  ({cmd})"
    print()
    print(f"## {title}")
    print()
    print(f"- command: `{cmd}`")
    print(f"- machine: {machine()}")


def print_budget_lines(lines, mode):
    for status, line in lines:
        if mode == "smoke" and status in ("PASS", "MISS"):
            status = "not judged: smoke run"
        tag = {"info": "    ", "note": "    "}.get(status, f"[{status}] ")
        print(f"- {tag}{line}")


def print_client_report(client, client_note, args, mode, elapsed):
    """--client-only: the client's budget line alone."""
    print_heading("htrace benchmark: the client check", args, mode)
    print(f"- htrace: {htrace_revision()}; agent {AGENT_DESC}")
    print(f"- wall time of the whole run: {elapsed:.0f} s")
    print()
    print_budget_lines(client_lines(client, client_note), mode)


def print_report(rows, configs, notes, memory, client, client_note, args, mode, reps, tool_reps, elapsed):
    print_heading("htrace benchmark", args, mode)
    versions = []
    if "valgrind" in configs:
        versions.append(tool_version(["valgrind", "--version"]))
    if "strace" in configs:
        versions.append(tool_version(["strace", "-V"]))
    if shutil.which("lsof"):
        m = re.search(r"revision: ([\d.]+)", subprocess.run(["lsof", "-v"], capture_output=True, text=True).stderr)
        versions.append("lsof " + (m.group(1) if m else "(version unknown)"))
    versions = [v for v in versions if v]
    if versions:
        print(f"- tools: {', '.join(versions)}")
    print(f"- htrace: {htrace_revision()}; agent {AGENT_DESC}")
    if mode == "smoke":
        print("- SMOKE RUN: every configuration once, tiny iteration counts, runs in parallel: "
              "the figures mean nothing")
    else:
        print(f"- {reps} repetitions (valgrind and strace: {tool_reps}); within each, the native configurations "
              f"run at once taking turns, {TURN_BATCHES[mode]} batches each, one batch at a time in a shuffled "
              "order (bench --turns), valgrind and strace on their own; ns/op is the median untraced time per "
              "operation, each ratio the median of the per-repetition ratios to the untraced run of the same "
              "repetition")
        print(f"- iterations per run: untraced, tracing off and on the same, "
              f"{f'~{NATIVE_SECONDS} s' if mode == 'full' else '~0.04 s'} untraced; valgrind a tenth of "
              f"{'~0.4 s' if mode == 'full' else 'those'}; strace "
              f"{rows[0].iterations.get('strace', '?')} (all report time per operation)")
    print(f"- wall time of the whole run: {elapsed:.0f} s")
    print()
    cols = [c for c in CONFIGS[1:] if c in configs]
    print("| workload | iterations | untraced ns/op | " + " | ".join(HEADINGS[c] for c in cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for r in rows:
        u = r.samples.get("untraced")
        ns = fmt_ns(statistics.median(u)) if u else r.notes.get("untraced", "–")
        cells = [r.notes[c] if c in r.notes and not r.ratios.get(c) else fmt_ratio(ratio(r, c)) for c in cols]
        print(f"| {r.label} | {r.iterations.get('untraced', 0):,} | {ns} | " + " | ".join(cells) + " |")
    print()
    print("untraced again (A/A): the untraced run made a second time in each repetition; how far its ratio "
          "strays from 1.00× is the noise of this machine.")
    for n in notes:
        print(f"Note: {n}")
    print()
    print("### Budget (issue 6), judged from this run")
    print()
    print_budget_lines(budget(rows, configs, memory, client, client_note, mode), mode)


def main():
    ap = argparse.ArgumentParser(description="htrace benchmark suite (issue 6)")
    ap.add_argument("--quick", action="store_true", help="few iterations and repetitions (also QUICK=1)")
    ap.add_argument("--smoke", action="store_true", help="run every configuration once, measure nothing")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 21, quick 2)")
    ap.add_argument("--json", metavar="FILE", help="also write every sample to FILE (JSON)")
    ap.add_argument("--client-only", action="store_true", help="only the client check")
    ap.add_argument("--guest", action="store_true",
                    help="the client check in a qemu guest too, even where this machine could hold its descriptors")
    ap.add_argument("--client-sizes", help=argparse.SUPPRESS)  # inside the guest
    opts = ap.parse_args()
    quick = opts.quick or os.environ.get("QUICK", "") not in ("", "0")
    mode = "smoke" if opts.smoke else "quick" if quick else "full"
    reps = opts.reps or {"full": 21, "quick": 2, "smoke": 1}[mode]
    tool_reps = min(reps, {"full": 3, "quick": 1, "smoke": 1}[mode])
    start = time.monotonic()
    if opts.client_sizes:
        return client_sizes_main([int(n) for n in opts.client_sizes.split(",")], mode)

    if not os.access(BENCH, os.X_OK):
        print(f"bench: the benchmark binary {BENCH} is missing (build it with `make bench`)", file=sys.stderr)
        return 1
    global AGENT_DESC
    AGENT_DESC = snapshot_binaries()
    errors, notes = [], []
    if opts.client_only:
        client, client_note = client_section(mode, opts.guest, errors)
        print_client_report(client, client_note, sys.argv[1:], mode, time.monotonic() - start)
        return report_errors(errors)
    configs = check_configs(notes)
    rows = make_rows()
    print(f"htrace bench ({mode}): {len(rows)} workloads × {len(configs)} configurations, "
          f"{reps} repetitions", file=sys.stderr, flush=True)
    calibrate(rows, mode, errors)
    measure(rows, configs, reps, tool_reps, mode, errors)

    print("  memory check", file=sys.stderr, flush=True)
    memory = measure_memory(mode, errors)

    print("  client check", file=sys.stderr, flush=True)
    client, client_note = client_section(mode, opts.guest, errors)
    print_report(rows, configs, notes, memory, client, client_note, sys.argv[1:], mode, reps, tool_reps,
                 time.monotonic() - start)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"mode": mode, "machine": machine(), "htrace": htrace_revision(),
                       "rows": [{"label": r.label, "args": r.args + [r.workload], "iterations": r.iterations,
                                 "ns_per_op": r.samples, "ratios": r.ratios, "notes": r.notes} for r in rows],
                       "memory": memory, "client": client, "errors": errors}, f, indent=1)
    return report_errors(errors)


def report_errors(errors):
    """The exit status: 1 when something broke, each said."""
    if not errors:
        return 0
    print()
    print("### Errors (something broke; not a timing)")
    for e in errors:
        print(f"- {e}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
