#!/usr/bin/env python3
"""End-to-end tests of `htrace run` against real programs: how the program
ends (exit, _exit, abort, SIGSEGV, a thread), the exit status htrace gives,
the options, the leak report's stacks and its agreement with the kernel,
and bad input (one line on stderr, conventional exit status).

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory, for the example program).
Exit status: 0 all passed, 1 a failure, 77 htrace missing."""

import json
import os
import resource
import subprocess
import sys
import tempfile

from harness import (AGENT, BUILD, HTRACE, TIMEOUT, VICTIMS, Failure, Skip, check_kernel_agreement,
                     check_usage_error, expect, functions, json_run, only_process, run_htrace, run_tests,
                     traced_env)

BEHAVE = os.path.join(VICTIMS, "behave")


def leaked(process):
    return [h for h in process["handles"] if h["state"] == "leaked"]


def leak_fds(stdout):
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("LEAK ")]


def check_single_leak_from(process, stdout, function="leak_here"):
    fds = leak_fds(stdout)
    got = [h["handle"] for h in leaked(process)]
    expect(got == fds, f"leaked {got}, the victim leaked {fds}")
    for h in leaked(process):
        expect(function in functions(h["traces"][0]),
               f"fd {h['handle']}: {function} not in the OPEN stack {functions(h['traces'][0])}")
    check_kernel_agreement(process)


# ---- how the program ends, and htrace's exit status ----

def test_exit_status_is_the_programs():
    result, objs = json_run(["--", BEHAVE, "exit", "3"])
    expect(result.returncode == 3, f"exit status {result.returncode}, expected 3")
    p = only_process(objs)
    expect(p["status"] == {"exited": 3}, f"status {p['status']}")
    check_single_leak_from(p, result.stdout)


def test_underscore_exit_is_reported():
    result, objs = json_run(["--", BEHAVE, "_exit", "4"])
    expect(result.returncode == 4, f"exit status {result.returncode}, expected 4")
    check_single_leak_from(only_process(objs), result.stdout)


def test_sigsegv_reported_as_128_plus_signal():
    result, objs = json_run(["--", BEHAVE, "segv"])
    expect(result.returncode == 128 + 11, f"exit status {result.returncode}, expected 139")
    p = only_process(objs)
    expect(p["status"] == {"signal": 11}, f"status {p['status']}")
    check_single_leak_from(p, result.stdout)


def test_abort_reported_as_128_plus_sigabrt():
    result, objs = json_run(["--", BEHAVE, "abort"])
    expect(result.returncode == 128 + 6, f"exit status {result.returncode}, expected 134")
    check_single_leak_from(only_process(objs), result.stdout)


def test_leak_by_a_thread_after_main_thread_exited():
    result, objs = json_run(["--", BEHAVE, "mainexit"])
    expect(result.returncode == 0, f"exit status {result.returncode}")
    check_single_leak_from(only_process(objs), result.stdout)


def test_leak_by_a_second_thread_names_the_thread():
    result, objs = json_run(["--", BEHAVE, "thread"])
    p = only_process(objs)
    check_single_leak_from(p, result.stdout)
    expect(leaked(p)[0]["traces"][0]["tid"] != p["pid"], "the leak's tid is the main thread's")


def test_clean_program_reports_no_leak():
    result, objs = json_run(["--", BEHAVE, "clean"])
    p = only_process(objs)
    expect(result.returncode == 0, f"exit status {result.returncode}")
    expect(leaked(p) == [], f"leaks reported for a clean program: {leaked(p)}")
    expect(p["summary"]["events"] >= 2000 * 8, f"too few events recorded: {p['summary']}")


def test_error_exitcode_on_leaks_only():
    result = run_htrace(["run", "--error-exitcode=9", "--", BEHAVE, "exit", "0"])
    expect(result.returncode == 9, f"with a leak: exit status {result.returncode}, expected 9")
    result = run_htrace(["run", "--error-exitcode=9", "--", BEHAVE, "clean"])
    expect(result.returncode == 0, f"without a leak: exit status {result.returncode}, expected 0")


# ---- the report ----

def test_stack_through_code_without_frame_pointers():
    result, objs = json_run(["--", BEHAVE, "deep"])
    p = only_process(objs)
    check_single_leak_from(p, result.stdout)
    names = functions(leaked(p)[0]["traces"][0])
    # deep_bottom may be a tail call, absent from any stack
    want = ["leak_here"] + [f"deep_{i}" for i in range(20, 0, -1)] + ["main"]
    got = [n for n in names if n in want]
    expect(got == want, f"frames through -fomit-frame-pointer code: {names}")


def test_stack_depth_option_limits_frames():
    result, objs = json_run(["--stack-depth=3", "--", BEHAVE, "deep"])
    frames = leaked(only_process(objs))[0]["traces"][0]["frames"]
    expect(len(frames) == 3, f"{len(frames)} frames with --stack-depth=3")
    expect(frames[0]["function"] == "leak_here", f"innermost frame {frames[0]}")


def test_default_stack_depth_is_at_least_16():
    result, objs = json_run(["--", BEHAVE, "deep"])
    frames = leaked(only_process(objs))[0]["traces"][0]["frames"]
    expect(len(frames) >= 16, f"only {len(frames)} frames by default")


def test_frames_have_file_and_line():
    result, objs = json_run(["--", BEHAVE, "exit", "0"])
    frame = leaked(only_process(objs))[0]["traces"][0]["frames"][0]
    expect(frame["module"] == "behave" and frame["function"] == "leak_here", f"frame {frame}")
    expect((frame["file"] or "").endswith("behave.c") and frame["line"] > 0, f"frame {frame}")
    expect(frame["guess"] is False and frame["pc"].startswith("0x"), f"frame {frame}")


def test_group_counts_leaks_by_stack_and_function():
    result, objs = json_run(["--group", "--", BEHAVE, "many", "6"])
    p = only_process(objs)
    groups = p["groups"]
    expect(sorted(fd for g in groups for fd in g["handles"]) == leak_fds(result.stdout),
           f"groups {groups}")
    expect([g["count"] for g in groups] == sorted((g["count"] for g in groups), reverse=True),
           f"groups not biggest first: {[g['count'] for g in groups]}")
    expect(all(g["frames"][0]["function"] == "leak_here" for g in groups), f"groups {groups}")
    expect(p["functions"][0]["function"] == "leak_here" and p["functions"][0]["count"] == 6,
           f"functions {p['functions']}")


def test_filters_by_type_path_stack_and_age():
    leaky = os.path.join(BUILD, "examples", "leaky")
    def shown(args):
        result, objs = json_run(args + ["--", leaky])
        return sorted((h["type"], h["target"] if h["type"] == "file" else "")
                      for h in leaked(only_process(objs)))
    everything = shown([])
    expect(len(everything) == 5, f"unfiltered: {everything}")
    expect(shown(["--type=pipe,socket"]) == [t for t in everything if t[0] in ("pipe", "socket")],
           f"--type: {shown(['--type=pipe,socket'])}")
    expect(shown(["--path=/etc/*"]) == [t for t in everything if t[1].startswith("/etc/")]
           and len(shown(["--path=/etc/*"])) == 3, f"--path: {shown(['--path=/etc/*'])}")
    expect([t[0] for t in shown(["--stack=connect_backend"])] == ["socket"],
           f"--stack: {shown(['--stack=connect_backend'])}")
    expect(shown(["--type=file", "--stack=spawn_helper_pipe"]) == [], "filters do not combine")
    result, objs = json_run(["--older-than=1s", "--", BEHAVE, "aged"])
    first = leak_fds(result.stdout)[0]
    got = [h["handle"] for h in leaked(only_process(objs))]
    expect(got == [first], f"--older-than=1s shows {got}, expected only the first leak {first}")
    for bad in ("--older-than=soon", "--older-than=250000d", "--stack=(", "--type="):
        result = run_htrace(["run", bad, BEHAVE])
        expect(result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1,
               f"{bad}: exit {result.returncode} {result.stderr!r}")
    result = run_htrace(["run", "--stack=a", "--stack=b", BEHAVE])
    expect(result.returncode == 2 and "--stack given twice" in result.stderr
           and len(result.stderr.strip().splitlines()) == 1,
           f"--stack twice: exit {result.returncode} {result.stderr!r}")


def test_json_report_is_utf8_when_a_leaked_file_name_is_not():
    # a path from the target may be in any encoding: the report stays valid
    # UTF-8 JSON, the bytes that are not UTF-8 given as U+FFFD
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        result = run_htrace(["run", "--json", "-o", report, "--", BEHAVE, "badname", tmp])
        expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
        with open(report, "rb") as f:
            data = f.read()
        try:
            objs = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, ValueError) as e:
            raise Failure(f"the report is not UTF-8 JSON ({e}): {data[:300]!r}")
        fd = leak_fds(result.stdout)[0]
        by_fd = {h["handle"]: h for h in leaked(only_process(objs))}
        expect(by_fd[fd]["target"] == os.path.join(tmp, "leak-\ufffd\ufffd.txt"),
               f"target {by_fd[fd]['target']!r}")


def test_handles_show_open_flags_and_age():
    result, objs = json_run(["--", BEHAVE, "aged"])
    first, second = leak_fds(result.stdout)
    by_fd = {h["handle"]: h for h in leaked(only_process(objs))}
    expect(by_fd[first]["flags"] == ["O_RDONLY"], f"flags {by_fd[first]['flags']}")
    expect(by_fd[first]["age_ns"] >= 1_000_000_000 > by_fd[second]["age_ns"] >= 0,
           f"ages {by_fd[first]['age_ns']} {by_fd[second]['age_ns']}")
    text = run_htrace(["run", "--", BEHAVE, "aged"]).stderr
    expect(any("(O_RDONLY, opened 1." in l for l in text.splitlines()), f"text:\n{text}")


def test_duplicated_descriptors_show_their_shared_description():
    result, objs = json_run(["--", os.path.join(VICTIMS, "apicall"), "dup"])
    opened = [l.split() for l in result.stdout.splitlines() if l.startswith("EXPECT OPEN")]
    original, duplicate = int(opened[0][2]), int(opened[1][2])
    by_fd = {h["handle"]: h for h in leaked(only_process(objs))}
    expect(by_fd[original].get("shares_description_with") == duplicate
           and by_fd[duplicate].get("shares_description_with") == original,
           f"dup'ed {original} and {duplicate}: {by_fd}")
    text = run_htrace(["run", "--", os.path.join(VICTIMS, "apicall"), "dup"]).stderr
    expect(f"shares its open file description with 0x{original:x})" in text, f"text:\n{text}")
    result, objs = json_run(["--", BEHAVE, "many", "2"])
    expect(all("shares_description_with" not in h for h in leaked(only_process(objs))),
           "two separate opens of /dev/null are said to share a description")


def test_dup2_onto_an_open_descriptor_records_close_and_open_at_the_call():
    # one dup2 onto an open number: an implicit CLOSE and an OPEN, both with
    # the stack of the dup2 call (they share one capture), after the
    # older OPEN with its own stack
    result, objs = json_run(["--history", "--", os.path.join(VICTIMS, "apicall"), "dup2"])
    replaced = [h for h in only_process(objs)["handles"]
                if any(t["kind"] == "CLOSE" for t in h["traces"])]
    expect(len(replaced) == 1, f"expected one replaced descriptor: {only_process(objs)['handles']}")
    newest, close, older = replaced[0]["traces"][:3]
    expect((newest["kind"], newest["api"]) == ("OPEN", "dup2"), f"newest {newest['kind']} {newest['api']}")
    expect((close["kind"], close["api"], close["implicit"]) == ("CLOSE", "dup2", True),
           f"then {close['kind']} {close['api']} implicit={close['implicit']}")
    expect(functions(newest)[0] == "call_dup2" and functions(close) == functions(newest),
           f"CLOSE {functions(close)} and OPEN {functions(newest)} not both at call_dup2")
    expect(functions(older)[0] == "open_null", f"older OPEN {functions(older)}")
    expect(close["seq"] < newest["seq"], "the CLOSE is not recorded before the OPEN")


def test_syscall_dup2_onto_itself_in_the_low_32_bits_records_nothing():
    # syscall(SYS_dup2, fd, fd | 1 << 32) is dup2(fd, fd) to the kernel,
    # which takes the numbers as unsigned int: no implicit CLOSE and no
    # OPEN; the only CLOSE by syscall(dup2) is the one onto the open number
    result, objs = json_run(["--history", "--", os.path.join(VICTIMS, "apicall"), "syscall(dup2)"])
    closes = [(h["handle"], t["kind"]) for h in only_process(objs)["handles"] for t in h["traces"]
              if t["api"] == "syscall(dup2)" and t["kind"] == "CLOSE"]
    expect(len(closes) == 1, f"CLOSE events by syscall(dup2): {closes}, expected one (onto the open number)")


def test_folded_stacks_for_flame_graphs():
    leaky = os.path.join(BUILD, "examples", "leaky")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "leaks.folded")
        result = run_htrace(["run", "--format=folded", "-o", out, "--", leaky])
        expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
        with open(out) as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
    counts = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        expect(frames[0].endswith("!_start") and count.isdigit(), f"folded line {line!r}")
        counts[frames[-1]] = int(count)
    expect(counts == {"leaky!open_config": 3, "leaky!connect_backend": 1,
                      "leaky!spawn_helper_pipe": 1}, f"leaf counts {counts}")


def test_threads_writing_the_ring_at_once_lose_no_event():
    """Each thread writes its events into runs of records of the ring of
    its own: 4 threads making 24,000 events at once into a ring that holds
    them all must leave every one of them there, none dropped or
    overwritten; into a ring of 2,048 events, about the last 2,048 stay: at
    most 63 records short for each thread's unfilled run."""
    bench = os.path.join(BUILD, "bench", "bench")
    _, objs = json_run(["--", bench, "--threads", "4", "open", "3000"])
    s = only_process(objs)["summary"]
    expect(s["events"] >= 24000 and s["events_overwritten"] == 0 and s["events_dropped"] == 0,
           f"a ring of 65536 events: {s}")
    _, objs = json_run(["--max-traces=2048", "--", bench, "--threads", "4", "open", "3000"])
    s = only_process(objs)["summary"]
    kept = s["events"] - s["events_overwritten"]
    # a thread delayed while the ring goes round (4 threads, 2 CPUs) may see
    # its record taken over: that event is dropped, and counted
    expect(2048 - 5 * 63 <= kept <= 2048 and s["events_dropped"] <= s["events"] // 1000,
           f"a ring of 2048 events: {s}")


def test_short_lived_threads_leave_the_ring_nearly_whole():
    """500 threads one after the other, 2 events each: every thread leaves
    its first run (8 records) after one event pair; 1,000 events fit in a
    ring of 4,096 in spite of the 3,000 records left unused, and a ring of
    1,024 keeps at least the last pair of each of the last 128 threads."""
    _, objs = json_run(["--max-traces=4096", "--", BEHAVE, "churn", "500"])
    s = only_process(objs)["summary"]
    kept = s["events"] - s["events_overwritten"]
    expect(s["events"] >= 1000 and kept == s["events"] and s["events_dropped"] == 0,
           f"500 short threads, a ring of 4096: {s}")
    _, objs = json_run(["--max-traces=1024", "--", BEHAVE, "churn", "500"])
    s = only_process(objs)["summary"]
    kept = s["events"] - s["events_overwritten"]
    expect(kept >= 1024 // 8 * 2 and s["events_dropped"] == 0, f"500 short threads, a ring of 1024: {s}")


def test_leaks_survive_a_ring_smaller_than_the_events():
    result, objs = json_run(["--max-traces=4", "--", BEHAVE, "many", "50"])
    p = only_process(objs)
    expect(p["summary"]["events_overwritten"] >= 46, f"summary {p['summary']}")
    fds = leak_fds(result.stdout)
    got = [h["handle"] for h in leaked(p)]
    expect(got == fds, f"leaked {got}, expected {fds}")
    for h in leaked(p):
        expect("leak_here" in functions(h["traces"][0]), f"fd {h['handle']} lost its stack")


def raw_fd(stdout):
    return [int(l.split()[1]) for l in stdout.splitlines() if l.startswith("RAW ")][0]


def test_raw_syscall_descriptor_listed_as_untracked():
    for mode in ("raw", "rawthread"):
        result, objs = json_run(["--", BEHAVE, mode])
        p = only_process(objs)
        fd = raw_fd(result.stdout)
        untracked = [h for h in p["handles"] if h["state"] == "untracked"]
        expect([h["handle"] for h in untracked] == [fd] and p["summary"]["untracked"] == 1,
               f"{mode}: untracked {untracked}, summary {p['summary']}, expected fd {fd}")
        expect(untracked[0]["type"] == "chardev" and untracked[0]["target"] == "/dev/null",
               f"{mode}: untracked handle details {untracked[0]}")


def test_vfork_child_not_reported_with_parents_database():
    result, objs = json_run(["-f", "--", BEHAVE, "vfork"])
    parent = [p for p in objs if p["pid"] != 0 and p.get("error") is None]
    child = [p for p in objs if p.get("error")]
    expect(len(objs) == 2 and len(parent) == 1 and len(child) == 1,
           f"expected the parent's report and the vfork child's note: {objs}")
    expect("vfork" in child[0]["error"] and child[0]["handles"] == [], f"child: {child[0]}")
    check_single_leak_from(parent[0], result.stdout)


def test_fork_child_takes_stacks_while_a_parent_thread_held_the_loader_lock():
    result, objs = json_run(["-f", "--", BEHAVE, "forklock"])
    expect(result.returncode == 0, f"exit {result.returncode} (the child hung or failed)\n{result.stderr[-500:]}")
    children = [p for p in objs if p["pid"] != objs[-1]["pid"]]
    expect(len(objs) == 2 and len(children) == 1, f"expected parent and child: {objs}")
    check_single_leak_from(children[0], result.stdout)


def test_cancelled_close_keeps_the_descriptor_open():
    result, objs = json_run(["--", BEHAVE, "cancelclose"])
    expect("NOT CANCELLED" not in result.stdout, "the victim was not cancelled in close()")
    expect(result.returncode == 0, f"the descriptor was closed after all: exit {result.returncode}")
    check_single_leak_from(only_process(objs), result.stdout)


def test_closefrom_negative_closes_everything():
    result, objs = json_run(["-v", "--", BEHAVE, "closefrom"])
    p = only_process(objs)
    expect(p["handles"] == [] and p["summary"]["inconsistent"] == 0,
           f"after closefrom(-1): {p['handles']} {p['summary']}")


def check_fork_child_has_its_own_database(mode):
    result, objs = json_run(["-f", "--", BEHAVE, mode])
    expect(result.returncode == 0 and len(objs) == 2, f"{mode}: exit {result.returncode}: {objs}")
    child = objs[0]
    expect(child.get("error") is None, f"{mode} child: {child.get('error')}")
    check_single_leak_from(child, result.stdout)


def test_clone_child_has_its_own_database():
    check_fork_child_has_its_own_database("clonefork")


def test_child_of_syscall_fork_has_its_own_database():
    check_fork_child_has_its_own_database("sysfork")


def test_pidfd_received_with_scm_pidfd_is_a_descriptor_opened_by_recvmsg():
    result, objs = json_run(["--", BEHAVE, "pidfdmsg"])
    if "SKIP" in result.stdout:
        raise Skip("the kernel has no SO_PASSPIDFD (Linux 6.5)")
    p = only_process(objs)
    check_single_leak_from(p, result.stdout, function="receive_pidfd")
    expect(leaked(p)[0]["traces"][0]["api"] == "recvmsg", f"{leaked(p)[0]['traces'][0]}")


def test_descriptor_of_a_fanotify_event_is_one_opened_by_read():
    result, objs = json_run(["--", BEHAVE, "fanotify"])
    if "SKIP" in result.stdout:
        raise Skip(result.stdout.strip())
    p = only_process(objs)
    check_single_leak_from(p, result.stdout, function="read_fanotify_events")
    expect(leaked(p)[0]["traces"][0]["api"] == "read", f"{leaked(p)[0]['traces'][0]}")


def check_fanotify_events_read_into_iovecs(mode, api):
    """Both events' descriptors, one in each iovec, are leaks opened by api."""
    result, objs = json_run(["--", BEHAVE, mode])
    if "SKIP" in result.stdout:
        raise Skip(result.stdout.strip())
    p = only_process(objs)
    expect(len(leak_fds(result.stdout)) == 2, f"the victim read not two events: {result.stdout!r}")
    check_single_leak_from(p, result.stdout, function=f"{api}_fanotify_events")
    for h in leaked(p):
        expect(h["traces"][0]["api"] == api, f"fd {h['handle']}: {h['traces'][0]}")


def test_descriptors_of_fanotify_events_read_with_readv_are_opened_by_readv():
    check_fanotify_events_read_into_iovecs("fanotifyreadv", "readv")


def test_descriptors_of_fanotify_events_read_with_preadv2_are_opened_by_preadv2():
    check_fanotify_events_read_into_iovecs("fanotifypreadv2", "preadv2")


def test_descriptors_of_fanotify_events_read_with_preadv64v2_are_opened_by_preadv64v2():
    check_fanotify_events_read_into_iovecs("fanotifypreadv64v2", "preadv64v2")


def test_range_closed_in_an_unshared_table_is_not_applied_to_the_process():
    result, objs = json_run(["--", BEHAVE, "unshare"])
    p = only_process(objs)
    check_single_leak_from(p, result.stdout)
    expect(p["summary"]["tables_unshared"] == 1, f"summary {p['summary']}")
    result, objs = json_run(["--", BEHAVE, "unsharesolo"])
    p = only_process(objs)
    expect(result.returncode == 0 and leaked(p) == [] and p["summary"]["inconsistent"] == 0
           and p["summary"]["tables_unshared"] == 0,
           f"close_range UNSHARE by the only thread: {p['handles']} {p['summary']}")


def test_inherited_descriptors_are_not_leaks():
    r, w = os.pipe()
    try:
        result, objs = json_run(["--", BEHAVE, "exit", "0"], pass_fds=(r, w))
        p = only_process(objs)
        expect(r not in [h["handle"] for h in leaked(p)], "an inherited pipe is reported leaked")
        expect(p["summary"]["inherited"] >= 5, f"summary {p['summary']}")
        expect(all(h["state"] != "inherited" for h in p["handles"]), "inherited listed without -v")
        result, objs = json_run(["-v", "--", BEHAVE, "exit", "0"], pass_fds=(r, w))
        p = only_process(objs)
        inherited = {h["handle"]: h for h in p["handles"] if h["state"] == "inherited"}
        expect(r in inherited and w in inherited, f"--verbose lists {sorted(inherited)}")
        expect(inherited[r]["type"] == "pipe", f"inherited pipe shown as {inherited[r]['type']}")
    finally:
        os.close(r)
        os.close(w)


def test_text_report_in_seed_format():
    result = run_htrace(["run", "--", BEHAVE, "exit", "0"])
    fd = leak_fds(result.stdout)[0]
    lines = result.stderr.splitlines()
    header = f"Handle 0x{fd:x} - OPEN: chardev /dev/null (O_RDONLY, opened "
    idx = [i for i, l in enumerate(lines) if l.startswith(header)]
    expect(idx, f"no line starting {header!r} in:\n{result.stderr}")
    frame = lines[idx[0] + 1]
    expect(frame.startswith("0x") and ": behave!leak_here+0x" in frame and "[behave.c:" in frame,
           f"first frame line {frame!r}")
    expect(any(l.startswith("htrace: 1 leaked handle,") for l in lines), "no summary line")


def test_output_file_option():
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "report.json")
        result = run_htrace(["run", "--json", "-o", out, "--", BEHAVE, "exit", "0"])
        expect(result.stderr == "", f"stderr not empty with -o: {result.stderr!r}")
        with open(out) as f:
            p = json.loads(f.readline())
        expect(len(leaked(p)) == 1, f"report in file: {p}")


def test_program_never_sees_htrace_options():
    result = run_htrace(["run", "--json", "--", BEHAVE, "args", "--json", "-o", "x"])
    expect(result.stdout.splitlines() == ["--json", "-o", "x"], f"program saw {result.stdout!r}")
    result = run_htrace(["run", BEHAVE, "args", "--verbose"])
    expect(result.stdout.splitlines() == ["--verbose"], f"program saw {result.stdout!r}")


def test_errno_preserved_by_hooks():
    result = run_htrace(["run", "--", BEHAVE, "errno"])
    expect("ERRNO OK" in result.stdout, f"errno checks: {result.stdout}")


def test_agent_adds_no_descriptor_or_thread():
    plain = subprocess.run([BEHAVE, "selfcheck"], capture_output=True, text=True, timeout=TIMEOUT)
    traced = run_htrace(["run", "--", BEHAVE, "selfcheck"])
    want = [l for l in plain.stdout.splitlines() if l.startswith("FDS")]
    got = [l for l in traced.stdout.splitlines() if l.startswith("FDS")]
    expect(want and got == want, f"without agent {want}, with agent {got}")


def test_agent_does_not_replace_the_programs_unwinder():
    if os.environ.get("HTRACE_SANITIZED"):
        raise Skip("the agent is built with a sanitizer, whose runtime brings libgcc_s into the scope")
    plain = subprocess.run([BEHAVE, "scope"], capture_output=True, text=True, timeout=TIMEOUT)
    traced = run_htrace(["run", "--", BEHAVE, "scope"])
    want = [l for l in plain.stdout.splitlines() if l.startswith("SCOPE")]
    got = [l for l in traced.stdout.splitlines() if l.startswith("SCOPE")]
    expect(got == want and "libunwind" not in got[0],
           f"_Unwind_RaiseException and backtrace: without agent {want}, with agent {got}")


def test_example_shows_the_opening_functions():
    leaky = os.path.join(BUILD, "examples", "leaky")
    result, objs = json_run(["--", leaky])
    p = only_process(objs)
    by_type = {}
    for h in leaked(p):
        names = functions(h["traces"][0])
        by_type.setdefault(h["type"], []).append(names)
    for kind, fn in (("file", "open_config"), ("socket", "connect_backend"), ("pipe", "spawn_helper_pipe")):
        expect(any(fn in names for names in by_type.get(kind, [])),
               f"no leaked {kind} opened in {fn}: {by_type}")
    expect(len(by_type.get("file", [])) == 3, f"expected 3 leaked files: {by_type}")


# ---- bad input ----

def test_agent_that_cannot_map_its_ring_stops_tracing_and_run_exits_1():
    """An agent that cannot map its ring at start (the address space is
    limited to 1 GiB, the ring asked for is 2.5 GiB) stops tracing: the
    program runs on to its own end, the report says why, lists what the
    program left open as untracked rather than calling it clean, and
    htrace run exits 1, not with the program's status."""
    def small_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    result, objs = json_run(["--max-traces=67108864", "--", BEHAVE, "exit", "3"],
                            preexec_fn=small_address_space)
    expect(result.returncode == 1, f"exit status {result.returncode}, expected 1; stderr {result.stderr[-400:]}")
    fds = leak_fds(result.stdout)
    expect(len(fds) == 1, f"the program did not run to its leak: stdout {result.stdout!r}")
    p = only_process(objs)
    expect("cannot map memory" in p.get("agent_failure", ""), f"agent_failure {p.get('agent_failure')!r}")
    states = {h["handle"]: h["state"] for h in p["handles"]}
    expect(states.get(fds[0]) == "untracked" and not leaked(p) and p["status"] == {"exited": 3},
           f"the leaked fd {fds[0]}: {states}, status {p['status']}")


def test_bad_input_gives_one_line_and_conventional_status():
    with tempfile.TemporaryDirectory() as d:
        not_exec = os.path.join(d, "data.txt")
        with open(not_exec, "w") as f:
            f.write("x")
        cases = [
            ([], 2, "no command"),
            (["frobnicate"], 2, "unknown command"),
            (["run"], 2, "no program"),
            (["run", "--"], 2, "no program"),
            (["run", "--bogus", BEHAVE], 2, "unknown option"),
            (["run", "--max-traces=abc", BEHAVE], 2, "--max-traces"),
            (["run", "--max-traces=-1", BEHAVE], 2, "--max-traces"),
            (["run", "--stack-depth=0", BEHAVE], 2, "--stack-depth"),
            (["run", "--stack-depth=65", BEHAVE], 2, "--stack-depth"),
            (["run", "--error-exitcode=x", BEHAVE], 2, "--error-exitcode"),
            (["run", "--error-exitcode"], 2, "--error-exitcode"),
            (["run", "-o"], 2, "-o"),
            (["run", "--html", "-p", BEHAVE], 2, "--html needs a file name, not '-p'"),
            (["run", "-o", "--json", BEHAVE], 2, "needs a file name, not '--json'"),
            (["run", "-o", os.path.join(d, "no", "such", "dir"), BEHAVE], 2, "cannot write"),
            (["run", os.path.join(d, "missing-program")], 127, "missing-program"),
            (["run", "htrace-no-such-command-anywhere"], 127, "htrace-no-such-command"),
            (["run", not_exec], 126, "data.txt"),
            (["run", d], 126, d),
        ]
        for args, status, fragment in cases:
            check_usage_error(args, status, fragment)


def fake_agent(variant):
    fake = os.path.join(BUILD, "tests", "fakes", variant, "libhtrace.so")
    expect(os.path.exists(fake), f"{fake} not built")
    return fake


def test_untrustworthy_database_refused_in_one_line():
    cases = {"bad_version": "incompatible agent", "bad_sizes": "corrupt",
             "not_ready": "has not started", "huge_reserve": "corrupt (sizes",
             "mailbox_end": "corrupt (request count", "bad_event": "no agent writes"}
    for variant, fragment in cases.items():
        env = dict(os.environ, HTRACE_AGENT=fake_agent(variant))
        result = run_htrace(["run", "--", BEHAVE, "exit", "5"], env=env)
        expect(result.returncode == 1, f"{variant}: exit {result.returncode}, expected 1")
        expect("LEAK" in result.stdout, f"{variant}: the program did not run: {result.stdout!r}")
        lines = [l for l in result.stderr.splitlines() if fragment in l]
        expect(len(lines) == 1 and "Handle" not in result.stderr,
               f"{variant}: expected one line with {fragment!r}:\n{result.stderr}")
        result, objs = json_run(["--", BEHAVE, "exit", "0"], env=env)
        p = only_process(objs)
        expect(fragment in (p.get("error") or "") and p["handles"] == [], f"{variant}: {p}")


def test_module_path_naming_a_fifo_neither_blocks_nor_symbolizes():
    with tempfile.TemporaryDirectory(prefix="htrace-test-fifo-") as d:
        fifo = os.path.join(d, "fifo-module")
        os.mkfifo(fifo)
        env = dict(os.environ, HTRACE_AGENT=fake_agent("odd_module"), HTRACE_FAKE_MODULE=fifo)
        result = run_htrace(["run", "--", BEHAVE, "exit", "0"], env=env)
    expect(result.returncode == 0, f"exit {result.returncode}:\n{result.stderr}")
    expect("Handle 0x3e8 - OPEN" in result.stderr and "fifo-module" in result.stderr,
           f"the fake descriptor's stack, in the module named by a FIFO, is not shown:\n"
           f"{result.stderr}")


def test_database_that_stays_half_written_refused_in_one_line():
    env = dict(os.environ, HTRACE_AGENT=fake_agent("torn"))
    result = run_htrace(["run", "--", BEHAVE, "exit", "0"], env=env)
    lines = [l for l in result.stderr.splitlines() if "stays half written" in l]
    expect(result.returncode == 1 and len(lines) == 1 and "Handle" not in result.stderr,
           f"exit {result.returncode}, expected 1 and one line:\n{result.stderr}")


def test_a_few_records_left_half_written_are_left_out():
    """As threads killed in the middle of a write leave: the report goes on."""
    env = dict(os.environ, HTRACE_AGENT=fake_agent("few_torn"))
    result = run_htrace(["run", "--", BEHAVE, "exit", "0"], env=env)
    expect(result.returncode == 0 and "half written" not in result.stderr
           and "htrace: 0 leaked handles" in result.stderr,
           f"exit {result.returncode}:\n{result.stderr}")


def available_memory():
    """MemAvailable of /proc/meminfo, in bytes (0 if unknown)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def test_ring_larger_than_one_read_of_the_kernel_is_read():
    """54,000,000 records (2.16 GB) are more than process_vm_readv moves at once."""
    if available_memory() < 4 << 30:
        raise Skip("needs 4 GiB of available memory: the client copies the 2.16 GB ring")
    result, objs = json_run(["--max-traces=54000000", "--", BEHAVE, "exit", "0"])
    p = only_process(objs)
    expect(not p.get("error") and "cannot read" not in result.stderr,
           f"the report failed: {p.get('error')!r} {result.stderr[-300:]}")
    expect(any(h.get("state") == "leaked" for h in p["handles"]), f"no leak reported: {p}")


def test_agent_variable_with_a_bad_value_is_said_in_one_line_and_the_program_runs_on():
    """A variable of the agent's set by hand to a value it cannot use: one
    line on the program's stderr naming it, the program's own output and
    status untouched; the values it knows say nothing."""
    bad = {"HTRACE_TRACE": "yes", "HTRACE_MAX_TRACES": "1e9", "HTRACE_STACK_DEPTH": "65",
           "HTRACE_ON_ERROR": "crash", "HTRACE_UNWIND": "fast"}
    good = {"HTRACE_TRACE": "0", "HTRACE_MAX_TRACES": "0x400", "HTRACE_STACK_DEPTH": "1",
            "HTRACE_ON_ERROR": "report", "HTRACE_UNWIND": "libunwind"}
    script = "exec 3</dev/null; echo ran; exit 3"
    for name, value in list(bad.items()) + list(good.items()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HTRACE_")}
        env.update(LD_PRELOAD=AGENT, **{name: value})
        result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, env=env, timeout=TIMEOUT)
        expect(result.returncode == 3 and result.stdout == "ran\n",
               f"{name}={value}: exit {result.returncode}, stdout {result.stdout!r}")
        said = result.stderr.splitlines()
        if bad.get(name) == value:
            expect(len(said) == 1 and said[0].startswith(f"htrace: ignoring {name}={value} ("),
                   f"{name}={value}: stderr {result.stderr!r}")
        else:
            expect(not said, f"{name}={value} is valid, yet stderr has {result.stderr!r}")


def test_clone3_probe_with_bad_arguments_leaves_the_program_running():
    """syscall(SYS_clone3, NULL, 0), as programs probing for clone3 call
    it: the hook must not read the flags through the pointer, also where a
    seccomp policy refuses the agent's safe copy (clone3nocopy)."""
    for mode in ("clone3probe", "clone3nocopy"):
        for tracing in ("1", "0"):
            env = traced_env(HTRACE_TRACE=tracing)
            result = subprocess.run([BEHAVE, mode], capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, env=env, timeout=TIMEOUT)
            if result.returncode == 77:
                raise Skip(f"{mode}: {result.stdout.strip()}")
            probes = [l for l in result.stdout.splitlines() if l.startswith("PROBE ")]
            expect(result.returncode == 0 and len(probes) == 2,
                   f"{mode}, HTRACE_TRACE={tracing}: exit {result.returncode}, {result.stdout!r}")


def test_ebadf_on_an_open_descriptor_of_the_wrong_mode_is_no_bad_reference():
    result, objs = json_run(["--on-error=abort", "--", BEHAVE, "wrongmode"])
    p = only_process(objs)
    expect(p["status"] == {"exited": 0} and p["summary"]["bad_references"] == 0,
           f"status {p['status']}, {p['summary']['bad_references']} bad references")
    said = [l for l in result.stdout.splitlines() if l.startswith("WRONGMODE ")]
    expect(said and int(said[0].split()[1]) >= 1, f"no EBADF on an open descriptor: {result.stdout!r}")


def test_failed_login_tty_records_nothing():
    result, objs = json_run(["--", BEHAVE, "logintty"])
    expect("LOGINTTY -1" in result.stdout, f"login_tty on /dev/null did not fail: {result.stdout!r}")
    p = only_process(objs)
    expect(p["summary"]["leaked"] == 0, f"a failed login_tty left leaks: "
           f"{[(h['handle'], h['state']) for h in p['handles'] if h['state'] == 'leaked']}")


def test_close_range_that_fails_closes_nothing_in_the_report():
    """close_range refused (ENOSYS, as before Linux 5.9, here by a seccomp
    filter): the leaked descriptor in its range stays a leak, with its stack."""
    result, objs = json_run(["--", BEHAVE, "closerangedenied"])
    if "SKIP" in result.stdout:
        raise Skip(result.stdout.strip())
    expect("CLOSERANGE -1 38" in result.stdout, f"close_range was not refused: {result.stdout!r}")
    fd = int(result.stdout.split("LEAK ")[1].split()[0])
    p = only_process(objs)
    states = {h["handle"]: h["state"] for h in p["handles"]}
    expect(states.get(fd) == "leaked", f"fd {fd} is {states.get(fd)!r} after a failed close_range")


def test_help_and_list_hooks():
    for flag in ("-?", "--help"):
        result = run_htrace([flag])
        expect(result.returncode == 0 and "htrace run" in result.stdout, f"{flag}: {result}")
    result = run_htrace(["--list-hooks"])
    names = [l.split()[0] for l in result.stdout.splitlines()]
    for name in ("open", "close", "dup2", "recvmsg", "closefrom", "syscall(userfaultfd)"):
        expect(name in names, f"--list-hooks lacks {name}")


def main():
    return run_tests(globals(), "run", HTRACE)


if __name__ == "__main__":
    sys.exit(main())
