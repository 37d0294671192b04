#!/usr/bin/env python3
"""Runs the stress victim (threads, SCM_RIGHTS, a signal handler, fork and
exec; see tests/victims/stress.c) under `htrace run -f --json` and checks the
report: every process agrees with the kernel (no untracked or inconsistent
descriptor), the final image and each forked child report exactly the one
descriptor they leaked on purpose, opened in leak_on_purpose().

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (directory of built victims).
Exit status: 0 pass, 1 fail, 77 htrace missing."""

import json
import os
import subprocess
import sys
import tempfile
import time

from harness import HTRACE, VICTIMS, Failure, check_kernel_agreement, executable, read_report, skip

TIMEOUT_SECONDS = 60
LEAK_FUNCTION = "leak_on_purpose"
EXPECTED_CHILDREN = 3


def run_stress(htrace, stress, report):
    cmd = [htrace, "run", "-f", "--json", "-o", report, "--", stress]
    started = time.monotonic()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise Failure(f"did not finish in {TIMEOUT_SECONDS} s: {' '.join(cmd)}")
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {result.returncode}\n"
                      f"stdout:\n{result.stdout}stderr:\n{result.stderr}")
    return result.stdout, elapsed


def parse_victim_output(stdout):
    """(final (pid, fd), [(pid, fd) of each child], stats line) from stress's stdout."""
    final, children, stats = None, [], ""
    for line in stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["FINAL"]:
            final = (int(fields[1]), int(fields[2]))
        elif fields[:1] == ["CHILD"]:
            children.append((int(fields[1]), int(fields[2])))
        elif fields[:1] == ["OPS"]:
            stats = line
        elif fields[:1] == ["SKIP"]:
            raise Failure(f"stress saw no agent under htrace: {line}")
    if final is None:
        raise Failure(f"stress printed no FINAL line:\n{stdout}")
    if len(children) != EXPECTED_CHILDREN:
        raise Failure(f"stress reported {len(children)} children, expected {EXPECTED_CHILDREN}")
    return final, children, stats


def last_object_of(processes, pid):
    """The object of pid's last image (after exec, the process is reported anew)."""
    objects = [p for p in processes if p.get("pid") == pid]
    if not objects:
        raise Failure(f"no object for pid {pid} (report has {sorted(p.get('pid') for p in processes)})")
    return objects[-1]


def opened_in_leak_function(handle):
    for trace in handle.get("traces", []):
        if trace.get("kind") == "OPEN":
            return any(f.get("function") == LEAK_FUNCTION for f in trace.get("frames", []))
    return False


def check_single_leak(process, fd, who):
    leaked = [h for h in process.get("handles", []) if h.get("state") == "leaked"]
    numbers = [h["handle"] for h in leaked]
    if numbers != [fd]:
        raise Failure(f"{who} (pid {process.get('pid')}): leaked handles {numbers}, expected [{fd}]")
    if not opened_in_leak_function(leaked[0]):
        raise Failure(f"{who}: the OPEN trace of fd {fd} has no frame in {LEAK_FUNCTION}: "
                      f"{json.dumps(leaked[0].get('traces'))[:600]}")
    status = process.get("status")
    if status != {"exited": 0}:
        raise Failure(f"{who}: status {status}, expected {{'exited': 0}}")


def check(htrace, stress):
    with tempfile.TemporaryDirectory(prefix="htrace-test-stress-") as workdir:
        report = os.path.join(workdir, "report.json")
        stdout, elapsed = run_stress(htrace, stress, report)
        processes = read_report(report)
    final, children, stats = parse_victim_output(stdout)
    for process in processes:
        check_kernel_agreement(process)
    check_single_leak(last_object_of(processes, final[0]), final[1], "final image")
    for pid, fd in children:
        check_single_leak(last_object_of(processes, pid), fd, f"child {pid}")
    return f"{stats}, {len(processes)} process objects, {elapsed:.1f} s"


def main():
    if not executable(HTRACE):
        return skip("stress", f"HTRACE={HTRACE!r} is not an executable htrace binary")
    stress = os.path.join(VICTIMS, "stress")
    if not executable(stress):
        print(f"FAIL stress: {stress} not built (set HTRACE_VICTIMS)")
        return 1
    try:
        print(f"ok stress: {check(HTRACE, stress)}")
    except Failure as e:
        print(f"FAIL stress: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
