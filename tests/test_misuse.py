#!/usr/bin/env python3
"""BAD REFERENCE: each victim bug (tests/victims/misuse.c) must be reported
with the stack of the offending call in bug_<mode>, and the owner's OPEN
trace where a FILE or DIR is involved; a clean program that makes
thousands of correct calls reports nothing; --on-error=abort stops the
program at the call; --error-exitcode fires; -diff and the per-handle
listing show the event.

Env: HTRACE, HTRACE_VICTIMS, HTRACE_BUILD.  Exit 0 pass, 1 fail, 77 skip."""

import os
import subprocess
import sys
import time

from harness import HTRACE, VICTIMS, expect, functions, json_run, run_htrace, run_tests, traced_env

MISUSE = os.path.join(VICTIMS, "misuse")

# mode: (api of the BAD REFERENCE, flag expected on it, API that opened the owner or None)
BUGS = {
    "readclosed": ("read", None, None),
    "doubleclose": ("close", None, None),
    "fileclose": ("close", "owned", "fopen"),
    "dup2file": ("dup2", "owned", "fopen"),
    "stalefile": ("fgets", "stale", "fopen"),
    "staledir": ("readdir", "stale", "opendir"),
    "pollclosed": ("poll", None, None),
}


def run_one_report(args):
    """htrace run --json ARGS: (result, the one process object)."""
    result, objs = json_run(args)
    expect(len(objs) == 1, f"expected one report: {result.stderr[-500:]}")
    return result, objs[0]


def bad_fd(stdout):
    fds = [int(l.split()[1]) for l in stdout.splitlines() if l.startswith("BAD ")]
    expect(len(fds) == 1, f"victim printed {stdout!r}")
    return fds[0]


def traces_of(process, fd):
    return [t for h in process["handles"] if h["handle"] == fd for t in h["traces"]]


def check_bug(mode):
    api, flag, owner_api = BUGS[mode]
    result, p = run_one_report(["--", MISUSE, mode])
    expect(result.returncode == 0, f"{mode}: exit {result.returncode}")
    fd = bad_fd(result.stdout)
    traces = traces_of(p, fd)
    bad = [t for t in traces if t["kind"] == "BAD_REFERENCE" and t["api"] == api]
    expect(bad, f"{mode}: no BAD_REFERENCE by {api} on fd {fd}: "
                f"{[(t['kind'], t['api']) for t in traces]}")
    expect(f"bug_{mode}" in functions(bad[0]), f"{mode}: stack {functions(bad[0])}")
    if flag:
        expect(bad[0][flag] is True, f"{mode}: the event is not marked {flag}: {bad[0]}")
    if owner_api:
        opens = [t for t in traces if t["kind"] == "OPEN" and t["api"] == owner_api]
        expect(opens and f"bug_{mode}" in functions(opens[0]),
               f"{mode}: the owner's OPEN by {owner_api} is not shown with its stack")
    expect(p["summary"]["bad_references"] >= 1, f"{mode}: summary {p['summary']}")


def test_each_bug_is_reported_with_its_stacks():
    for mode in BUGS:
        check_bug(mode)


def test_fclose_after_close_reports_both_calls():
    result, p = run_one_report(["--", MISUSE, "fileclose"])
    fd = bad_fd(result.stdout)
    bad = [t["api"] for t in traces_of(p, fd) if t["kind"] == "BAD_REFERENCE"]
    expect(sorted(bad) == ["close", "fclose"], f"bad references {bad}, expected close and fclose")


def test_clean_program_reports_nothing():
    result, p = run_one_report(["--", MISUSE, "clean"])
    expect(result.returncode == 0, f"exit {result.returncode}")
    expect(p["summary"]["bad_references"] == 0 and p["summary"]["events"] >= 2000 * 6,
           f"summary {p['summary']}")


def test_on_error_abort_stops_at_the_call():
    result, p = run_one_report(["--on-error=abort", "--", MISUSE, "readclosed"])
    expect(result.returncode == 128 + 6 and p["status"] == {"signal": 6},
           f"exit {result.returncode}, status {p['status']}")
    expect(p["summary"]["bad_references"] == 1, f"summary {p['summary']}")
    result, p = run_one_report(["--on-error=report", "--", MISUSE, "readclosed"])
    expect(result.returncode == 0, f"--on-error=report: exit {result.returncode}")


def test_error_exitcode_fires_on_bad_references():
    result = run_htrace(["run", "--error-exitcode=7", "--", MISUSE, "readclosed"])
    expect(result.returncode == 7, f"exit {result.returncode}, expected 7")


def test_bad_on_error_value_is_a_usage_error():
    result = run_htrace(["run", "--on-error=explode", MISUSE])
    expect(result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1,
           f"exit {result.returncode}: {result.stderr!r}")


def test_diff_and_listing_show_the_bad_reference():
    proc = subprocess.Popen([MISUSE, "readclosed", "wait"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=traced_env())
    try:
        pid = int(proc.stdout.readline().split()[1])
        snap = run_htrace(["-p", pid, "-snapshot"])
        expect(snap.returncode == 0, f"-snapshot: {snap.stderr}")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        fd = bad_fd(proc.stdout.readline())
        time.sleep(0.1)
        diff = run_htrace(["-p", pid, "-diff"])
        expect(f"Handle 0x{fd:x} - BAD REFERENCE: [read, thread" in diff.stdout,
               f"-diff:\n{diff.stdout}{diff.stderr}")
        listing = run_htrace(["-p", pid, fd])
        kinds = [l.split(" - ")[1].split(":")[0] for l in listing.stdout.splitlines()
                 if l.startswith("Handle ")]
        expect(kinds[:3] == ["BAD REFERENCE", "CLOSE", "OPEN"], f"listing kinds {kinds}")
    finally:
        proc.kill()
        proc.wait()


def test_group_shows_a_misused_closed_handle_once():
    """--group lists the misused handles the groups leave out; a closed one
    has its own section at exit, and must not be printed a second time."""
    counts = {}
    for args in ([], ["--group"]):
        result = run_htrace(["run"] + args + ["--", MISUSE, "doubleclose"])
        fd = bad_fd(result.stdout)
        counts[" ".join(args) or "plain"] = sum(
            1 for l in result.stderr.splitlines() if l.startswith(f"Handle 0x{fd:x} - BAD REFERENCE"))
    expect(counts == {"plain": 1, "--group": 1},
           f"BAD REFERENCE blocks of the double-closed handle, by report: {counts}")


def main():
    return run_tests(globals(), "misuse", HTRACE)


if __name__ == "__main__":
    sys.exit(main())
