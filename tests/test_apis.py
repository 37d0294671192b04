#!/usr/bin/env python3
"""Checks that htrace records every API it interposes: each name printed by
`htrace --list-hooks` must have a test in the apicall victim, which performs
the call for real under `htrace run --json --history` and says what must
have been recorded (EXPECT lines); the report must hold exactly that, agree
with the kernel (no untracked or inconsistent descriptor), and show the
apicall function that made the call as the first frame outside libc.
A call that apicall makes on a descriptor that is not open (or through a
stale FILE/DIR) must be recorded as a BAD_REFERENCE trace with that stack.

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (directory of built victims).
Exit status: 0 all passed or skipped, 1 a failure, 77 htrace missing."""

import concurrent.futures
import os
import subprocess
import sys
import tempfile

from harness import HTRACE, VICTIMS, Failure, check_kernel_agreement, executable, read_report, skip

# APIs that fork: the expected events are in another process's object.
FORKING_APIS = {"daemon", "forkpty", "login_tty"}
LIBC_MODULE_PREFIXES = ("libc.so", "libc-", "ld-linux", "libpthread", "librt", "libutil", "libdl")
RUN_TIMEOUT_SECONDS = 30
PARALLEL_RUNS = 4


def output_lines(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout.splitlines()


def hooked_apis(htrace):
    names = []
    for line in output_lines([htrace, "--list-hooks"]):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            names.append(fields[0])
    return names


def test_function(api):
    """The apicall function that performs api: syscall(openat) -> call_syscall_openat."""
    return "call_" + api.replace("(", "_").replace(")", "")


def is_under_test(trace_api, api):
    return trace_api == api or (api == "syscall" and trace_api.startswith("syscall("))


# ---- reading apicall's output and htrace's report ----

def parse_expectations(lines):
    """{pid: [(kind, fd, value)]} from EXPECT lines, in order."""
    expectations, pid = {}, None
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and fields[:2] == ["EXPECT", "PID"]:
            pid = int(fields[2])
            expectations.setdefault(pid, [])
        elif len(fields) == 4 and fields[0] == "EXPECT" and fields[1] in ("OPEN", "CLOSE", "OWNER", "BAD"):
            if pid is None:
                raise Failure(f"apicall printed {line!r} before EXPECT PID")
            expectations[pid].append((fields[1], int(fields[2]), fields[3]))
        else:
            raise Failure(f"unexpected apicall output {line!r}")
    if not expectations:
        raise Failure("apicall printed no EXPECT line")
    return expectations


def handles_by_fd(process):
    by_fd = {}
    for handle in process.get("handles", []):
        by_fd.setdefault(handle["handle"], []).append(handle)
    return by_fd


def traces_of(entries):
    return [t for e in entries for t in e.get("traces", [])]


def describe_traces(traces):
    return ", ".join(f"{t.get('kind')} {t.get('api')}" for t in traces) or "none"


def first_own_frame(trace):
    for frame in trace.get("frames", []):
        module = os.path.basename(frame.get("module") or "")
        if not module.startswith(LIBC_MODULE_PREFIXES):
            return frame
    return None


# ---- checks ----

def check_event(by_fd, kind, fd, api):
    entries = by_fd.get(fd)
    if not entries:
        raise Failure(f"fd {fd}: not in the report (expected {kind} {api})")
    traces = traces_of(entries)
    if not any(t.get("kind") == kind and t.get("api") == api for t in traces):
        raise Failure(f"fd {fd}: no {kind} trace by {api} (traces: {describe_traces(traces)})")


def check_bad_reference(by_fd, fd, api, api_under_test):
    """A BAD_REFERENCE trace by api on fd, made by the function under test."""
    traces = traces_of(by_fd.get(fd, []))
    bad = [t for t in traces if t.get("kind") == "BAD_REFERENCE" and t.get("api") == api]
    if not bad:
        raise Failure(f"fd {fd}: no BAD_REFERENCE trace by {api} (traces: {describe_traces(traces)})")
    function = test_function(api_under_test)
    failures = []
    for trace in bad:
        try:
            check_caller(fd, trace, function)
            return
        except Failure as e:
            failures.append(e)
    raise Failure(f"BAD_REFERENCE by {api}: {failures[0]}")


def check_owner(by_fd, fd, owner):
    owners = [e.get("owner") for e in by_fd.get(fd, [])]
    if owner not in owners:
        raise Failure(f"fd {fd}: owner {owners or 'absent'}, expected {owner}")


def check_still_open(by_fd, fd, api, api_under_test):
    leaked = [e for e in by_fd.get(fd, []) if e.get("state") == "leaked"]
    if not leaked:
        states = [e.get("state") for e in by_fd.get(fd, [])]
        raise Failure(f"fd {fd}: state {states}, expected leaked")
    opens = [t for t in traces_of(leaked) if t.get("kind") == "OPEN"]
    if not opens or opens[0].get("api") != api:
        raise Failure(f"fd {fd}: newest OPEN is not by {api} (traces: {describe_traces(traces_of(leaked))})")
    if is_under_test(api, api_under_test):
        check_caller(fd, opens[0], test_function(api_under_test))


def check_caller(fd, trace, function):
    frame = first_own_frame(trace)
    name = (frame or {}).get("function") or ""
    if name != function and not name.startswith(function + "."):
        raise Failure(f"fd {fd}: first frame outside libc is {name or frame}, expected {function}")


def check_closed(by_fd, fd):
    if any(e.get("state") == "leaked" for e in by_fd.get(fd, [])):
        raise Failure(f"fd {fd}: still leaked after its CLOSE")


def check_process(process, expectations, api_under_test):
    by_fd = handles_by_fd(process)
    last_event = {}
    for kind, fd, value in expectations:
        if kind == "OWNER":
            check_owner(by_fd, fd, value)
        elif kind == "BAD":  # not an OPEN or CLOSE: leaves the fd's state as it was
            check_bad_reference(by_fd, fd, value, api_under_test)
        else:
            check_event(by_fd, kind, fd, value)
            last_event[fd] = (kind, value)
    for fd, (kind, api) in last_event.items():
        if kind == "OPEN":
            check_still_open(by_fd, fd, api, api_under_test)
        else:
            check_closed(by_fd, fd)


def check_report(processes, expectations, api):
    by_pid = {p.get("pid"): p for p in processes}
    for process in processes:
        check_kernel_agreement(process)
    for pid, expected in expectations.items():
        if pid not in by_pid:
            raise Failure(f"no object for pid {pid} (report has {sorted(by_pid)})")
        check_process(by_pid[pid], expected, api)


# ---- running one API ----

def run_apicall(htrace, apicall, api, report):
    cmd = [htrace, "run", "--json", "--history", "-o", report]
    if api in FORKING_APIS:
        cmd.append("-f")
    cmd += ["--", apicall, api]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise Failure(f"timed out after {RUN_TIMEOUT_SECONDS} s: {' '.join(cmd)}")


def skip_reason(result):
    if result.returncode == 77:
        for line in result.stdout.splitlines():
            if line.startswith("SKIP"):
                return line[len("SKIP"):].strip()
    return None


def check_api(htrace, apicall, tested, workdir, api):
    """Returns (verdict, api, reason) with verdict ok, FAIL or skip."""
    if api not in tested:
        return "FAIL", api, f"no test in apicall (add {test_function(api)} to tests/victims/apicall.c)"
    report = os.path.join(workdir, test_function(api) + ".json")
    try:
        result = run_apicall(htrace, apicall, api, report)
        reason = skip_reason(result)
        if reason is not None:
            return "skip", api, reason
        if result.returncode != 0:
            raise Failure(f"exit status {result.returncode}: {result.stderr.strip()[-400:]}")
        check_report(read_report(report), parse_expectations(result.stdout.splitlines()), api)
    except Failure as e:
        return "FAIL", api, str(e)
    return "ok", api, ""


def print_verdict(verdict, api, reason):
    print(f"{verdict} {api}: {reason}" if reason else f"{verdict} {api}", flush=True)


def main():
    if not executable(HTRACE):
        return skip("apis", f"HTRACE={HTRACE!r} is not an executable htrace binary")
    apicall = os.path.join(VICTIMS, "apicall")
    if not executable(apicall):
        print(f"FAIL: {apicall} not built (set HTRACE_VICTIMS)")
        return 1
    try:
        apis = hooked_apis(HTRACE)
        tested = set(output_lines([apicall, "--list"]))
    except (Failure, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {e}")
        return 1
    if not apis:
        print("FAIL: htrace --list-hooks printed nothing")
        return 1
    with tempfile.TemporaryDirectory(prefix="htrace-test-apis-") as workdir:
        with concurrent.futures.ThreadPoolExecutor(PARALLEL_RUNS) as pool:
            verdicts = list(pool.map(lambda api: check_api(HTRACE, apicall, tested, workdir, api), apis))
    for verdict in verdicts:
        print_verdict(*verdict)
    counts = {v: sum(1 for x in verdicts if x[0] == v) for v in ("ok", "FAIL", "skip")}
    print(f"{counts['ok']} ok, {counts['FAIL']} failed, {counts['skip']} skipped of {len(apis)} APIs")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
