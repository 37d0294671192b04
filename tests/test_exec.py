#!/usr/bin/env python3
"""Tests of leaks across exec against a real program (tests/victims/
execleak.c): `htrace run` reports, at each exec, the descriptors open
without O_CLOEXEC with the stacks that opened them, and the new image's
report shows those stacks for its inherited descriptors.  Each report is
checked against what the programs themselves find in /proc/self/fd.

Env: HTRACE, HTRACE_VICTIMS, HTRACE_BUILD.  Exit: 0 pass, 1 fail, 77 skip."""

import os
import subprocess
import sys

from harness import (AGENT, HTRACE, TIMEOUT, VICTIMS, Skip, check_kernel_agreement, expect, functions,
                     json_run, run_htrace, run_tests, traced_env)

VICTIM = os.path.join(VICTIMS, "execleak")
LEAKY = {"open_leaky_log", "open_leaky_socket"}


def close_extra_fds():
    """Descriptors above 2 that this test inherited would pass too."""
    return {"close_fds": True, "stdin": subprocess.DEVNULL}


def run_victim(mode, *options):
    """htrace run --json OPTIONS -- execleak MODE: (result, [objects])."""
    return json_run([*options, "--", VICTIM, mode])


def opened_by(stdout):
    """{fd: function} from the victim's OPEN lines."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("OPEN "):
            _, fd, function = line.split()
            out[int(fd)] = function
    return out


def kernel_fds(stdout):
    """What the last image found open in /proc/self/fd (above 2)."""
    return sorted(int(line.split()[1]) for line in stdout.splitlines() if line.startswith("FD "))


def exec_reports(objects):
    return [o for o in objects if "exec" in o]


def exit_reports(objects):
    return [o for o in objects if o.get("status")]


def leaky_fds(stdout):
    return sorted(fd for fd, fn in opened_by(stdout).items() if fn in LEAKY)


def check_exec_report(report, stdout, spawn=False):
    """The report before the exec lists exactly the leaky descriptors, each
    with the stack of the function that opened it."""
    opened = opened_by(stdout)
    got = sorted(h["handle"] for h in report["handles"])
    expect(got == leaky_fds(stdout), f"exec report lists {got}, the leaky ones are "
           f"{leaky_fds(stdout)} (all opened: {opened})")
    expect(report["exec"]["passing"] == len(got), f"passing {report['exec']['passing']}")
    expect(report["exec"]["posix_spawn"] == spawn, f"posix_spawn {report['exec']['posix_spawn']}")
    expect(report["exec"]["path"] == VICTIM, f"path {report['exec']['path']!r}")
    for h in report["handles"]:
        expect("O_CLOEXEC" not in h["flags"], f"fd {h['handle']} has O_CLOEXEC: {h['flags']}")
        expect(opened[h["handle"]] in functions(h["traces"][0]),
               f"fd {h['handle']}: {opened[h['handle']]} not in {functions(h['traces'][0])}")


def check_child_report(child, stdout, parent_pid):
    """The new image's report (made with -v) shows the old image's stacks
    for the descriptors it inherited from it, not for the standard streams,
    and agrees with its /proc/self/fd."""
    opened = opened_by(stdout)
    listed = {h["handle"]: h for h in child["handles"] if h["state"] == "inherited"}
    expect(all(fd in listed and not listed[fd]["traces"][0]["previous_image"] for fd in (0, 1, 2)),
           f"standard streams: {[listed.get(fd) for fd in (0, 1, 2)]}")
    inherited = {fd: h for fd, h in listed.items() if fd > 2}
    expect(sorted(inherited) == kernel_fds(stdout) == leaky_fds(stdout),
           f"inherited {sorted(inherited)}, kernel {kernel_fds(stdout)}, leaky {leaky_fds(stdout)}")
    for fd, h in inherited.items():
        trace = h["traces"][0]
        expect(trace["previous_image"], f"fd {fd}: not marked as from the previous image")
        expect(opened[fd] in functions(trace), f"fd {fd}: {opened[fd]} not in {functions(trace)}")
    expect(child["exec_from"]["pid"] == parent_pid, f"exec_from {child['exec_from']}")
    expect(child["exec_from"]["exe"] == VICTIM, f"exec_from {child['exec_from']}")
    check_kernel_agreement(child)


def check_exec_then_child(mode):
    result, objects = run_victim(mode, "-v")
    expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr[-500:]}")
    execs, ends = exec_reports(objects), exit_reports(objects)
    expect(len(execs) == 1 and len(ends) == 1, f"{len(execs)} exec and {len(ends)} exit reports")
    check_exec_report(execs[0], result.stdout)
    check_child_report(ends[0], result.stdout, execs[0]["pid"])
    expect("ENV " not in result.stdout, f"handover variables reached the program: {result.stdout}")


def test_execv_reports_leaky_descriptors_and_child_shows_their_stacks():
    check_exec_then_child("exec")


def test_execve_hands_over_the_stacks():
    check_exec_then_child("execve")


def test_execl_hands_over_the_stacks():
    check_exec_then_child("execl")


def test_fexecve_hands_over_the_stacks():
    result, objects = run_victim("fexecve", "-v")
    expect(result.returncode == 0, f"exit {result.returncode}")
    execs, ends = exec_reports(objects), exit_reports(objects)
    expect(len(execs) == 1 and execs[0]["exec"]["path"].startswith("descriptor "),
           f"exec reports {[e.get('exec') for e in execs]}")
    check_child_report(ends[0], result.stdout, execs[0]["pid"])


def test_posix_spawn_child_shows_the_parents_stacks():
    result, objects = run_victim("spawn", "-f", "-v")
    expect(result.returncode == 0, f"exit {result.returncode}")
    execs, ends = exec_reports(objects), exit_reports(objects)
    expect(len(execs) == 1 and len(ends) == 2, f"{len(execs)} exec, {len(ends)} exit reports")
    check_exec_report(execs[0], result.stdout, spawn=True)
    child = [o for o in ends if o["pid"] != execs[0]["pid"]]
    expect(len(child) == 1, "no report of the spawned child")
    check_child_report(child[0], result.stdout, execs[0]["pid"])


def check_shell_start(mode):
    """system() and popen() get the report before their shell starts (no
    hand-over: the child's inherited descriptors have no stack)."""
    result, objects = run_victim(mode)
    expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr[-300:]}")
    execs = exec_reports(objects)
    expect(len(execs) == 1, f"{len(execs)} exec reports")
    report = execs[0]
    expect(report["exec"]["shell"] and not report["exec"]["posix_spawn"], f"exec {report['exec']}")
    expect(report["exec"]["path"].startswith("/bin/sh -c exec ") and
           report["exec"]["path"].endswith(" child"), f"path {report['exec']['path']!r}")
    opened = opened_by(result.stdout)
    got = sorted(h["handle"] for h in report["handles"])
    expect(got == leaky_fds(result.stdout), f"report lists {got}, leaky {leaky_fds(result.stdout)}")
    for h in report["handles"]:
        expect(opened[h["handle"]] in functions(h["traces"][0]), f"fd {h['handle']}: wrong stack")
    expect(kernel_fds(result.stdout) == got,
           f"the shell's child has {kernel_fds(result.stdout)}, the report said {got}")


def test_system_reports_the_descriptors_its_shell_inherits():
    check_shell_start("system")


def test_popen_reports_the_descriptors_its_shell_inherits():
    check_shell_start("popen")


def test_fork_child_exec_is_reported_with_minus_f():
    result, objects = run_victim("forkexec", "-f", "-v")
    expect(result.returncode == 0, f"exit {result.returncode}")
    execs, ends = exec_reports(objects), exit_reports(objects)
    expect(len(execs) == 1, f"{len(execs)} exec reports")
    parent = [o for o in ends if o["pid"] != execs[0]["pid"]]
    expect(len(parent) == 1, "the exec was not reported from the fork child")
    check_exec_report(execs[0], result.stdout)
    child = [o for o in ends if o["pid"] == execs[0]["pid"]][0]
    check_child_report(child, result.stdout, execs[0]["pid"])


def test_stacks_survive_two_execs():
    result, objects = run_victim("chain")
    expect(result.returncode == 0, f"exit {result.returncode}")
    execs, ends = exec_reports(objects), exit_reports(objects)
    expect(len(execs) == 2 and len(ends) == 1, f"{len(execs)} exec, {len(ends)} exit reports")
    opened = opened_by(result.stdout)
    second = sorted(h["handle"] for h in execs[1]["handles"])
    middle = [fd for fd, fn in opened.items() if fn == "open_in_middle"]
    expect(second == sorted(leaky_fds(result.stdout) + middle),
           f"second exec lists {second}; opened {opened}")
    final = {h["handle"]: h for h in ends[0]["handles"] if h["state"] == "inherited"}
    expect(sorted(final) == kernel_fds(result.stdout), f"final {sorted(final)}")
    for fd, fn in opened.items():
        if fn in LEAKY or fn == "open_in_middle":
            expect(fn in functions(final[fd]["traces"][0]), f"fd {fd}: {fn} lost after two execs")


def test_the_stop_before_exec_never_reaches_the_programs_sigurg_handler():
    check_exec_then_child("urghandler")
    result, _ = run_victim("urghandler")
    expect("SIGURG" not in result.stdout, "the program's SIGURG handler ran")


def test_exec_is_reported_with_sigurg_ignored_and_blocked():
    check_exec_then_child("urgignored")


def test_thousands_of_descriptors_pass_and_the_handover_stays_bounded():
    # 8,000 descriptors: the exec report lists them all; the hand-over is
    # capped (some 320 KiB), so the new program gets the stacks of the first
    # few thousand and the others as plain inherited ones, and runs
    result, objects = json_run(["-v", "--", VICTIM, "many", "8000"])
    if result.returncode == 77:
        raise Skip("RLIMIT_NOFILE cannot be raised to 8,064")
    expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr[-300:]}")
    execs, ends = exec_reports(objects), exit_reports(objects)
    expect(len(execs) == 1 and execs[0]["exec"]["passing"] == 8000, f"exec reports {len(execs)}")
    kernel = kernel_fds(result.stdout)
    expect(len(kernel) == 8000, f"the new program has {len(kernel)} descriptors above 2")
    inherited = {h["handle"]: h for h in ends[0]["handles"] if h["state"] == "inherited"}
    expect(set(kernel) <= set(inherited), "inherited descriptors missing from the report")
    with_stack = [fd for fd, h in inherited.items() if h["traces"][0]["previous_image"]]
    expect(1000 <= len(with_stack) < 8000 and ends[0]["exec_from"]["descriptors"] == len(with_stack),
           f"{len(with_stack)} stacks handed over, exec_from says {ends[0]['exec_from']}")


def test_filters_choose_what_the_exec_report_lists_not_what_it_counts():
    result, objects = run_victim("exec", "--type=socket")
    execs = exec_reports(objects)
    expect(len(execs) == 1, f"{len(execs)} exec reports")
    listed = [h["handle"] for h in execs[0]["handles"]]
    sockets = [fd for fd, fn in opened_by(result.stdout).items() if fn == "open_leaky_socket"]
    expect(listed == sockets, f"--type=socket lists {listed}, the socket is {sockets}")
    expect(execs[0]["exec"]["passing"] == len(leaky_fds(result.stdout)) == 2,
           f"passing {execs[0]['exec']['passing']}, leaky {leaky_fds(result.stdout)}")


def test_close_on_exec_descriptors_give_no_exec_report():
    result, objects = run_victim("cloexec", "-v")
    expect(result.returncode == 0, f"exit {result.returncode}")
    expect(not exec_reports(objects), "an exec report although every descriptor had O_CLOEXEC")
    ends = exit_reports(objects)
    expect(len(ends) == 1 and ends[0].get("exec_from", {}).get("exe") == VICTIM,
           f"no report of the executed child: {ends}")
    expect(kernel_fds(result.stdout) == [], f"the child has {kernel_fds(result.stdout)}")
    expect([h for h in ends[0]["handles"] if h["handle"] > 2] == [],
           f"the child's report lists {ends[0]['handles']}")


def test_text_report_names_the_program_and_the_opening_function():
    result = run_htrace(["run", "--", VICTIM, "exec"])
    text = result.stderr
    expect(f"executes {VICTIM}" in text, f"no exec header in:\n{text}")
    expect("2 descriptors without O_CLOEXEC pass into" in text, f"no count in:\n{text}")
    expect("before it executed this program" in text, f"no inherited origin in:\n{text}")
    at_exec, end, in_child = text.partition("exited with status")
    expect(end, f"no report of the child's exit in:\n{text}")
    expect("open_leaky_log" in at_exec and "open_leaky_log" in in_child,
           f"open_leaky_log not shown both at the exec and in the child's report:\n{text}")


def test_error_exitcode_fires_on_a_leak_across_exec():
    # the child leaks nothing of its own: only the exec can fire it
    result, _ = run_victim("cloexec", "--error-exitcode=9")
    expect(result.returncode == 0, f"nothing leaks, yet exit {result.returncode}")
    result, _ = run_victim("exec", "--error-exitcode=9")
    expect(result.returncode == 9, f"a leak across exec, yet exit {result.returncode}")


def test_failed_exec_keeps_errno_environment_and_descriptors():
    result, objects = run_victim("failexec")
    expect("ERRNO ENOENT ENVIRON same" in result.stdout, f"victim said {result.stdout!r}")
    ends = exit_reports(objects)
    leaked = [h["handle"] for h in ends[0]["handles"] if h["state"] == "leaked"]
    expect(len(ends) == 1 and leaked == leaky_fds(result.stdout) != [],
           f"after a failed exec: {ends[0]['handles']}, the victim opened {opened_by(result.stdout)}")
    expect(ends[0]["summary"]["inconsistent"] == 0, "the failed exec confused the table")


def test_without_htrace_run_the_agent_does_not_stop_the_program():
    # HTRACE_SUPERVISOR naming a process that is not our tracer: no stop,
    # no stray SIGURG (the victim's handler would print it); the program
    # runs to its end as without htrace
    for supervisor in ("1", str(os.getpid()), "garbage"):
        result = subprocess.run([VICTIM, "urghandler"], capture_output=True, text=True,
                                timeout=TIMEOUT, env=traced_env(HTRACE_SUPERVISOR=supervisor),
                                **close_extra_fds())
        expect(result.returncode == 0, f"supervisor {supervisor}: exit {result.returncode}")
        expect(kernel_fds(result.stdout) == leaky_fds(result.stdout),
               f"supervisor {supervisor}: child has {kernel_fds(result.stdout)}")
        expect("ENV " not in result.stdout, f"handover variables reached the program")
        expect("SIGURG" not in result.stdout, f"supervisor {supervisor}: a stray SIGURG")


def run_child_with(variables, fd):
    """execleak child under htrace run -v, inheriting fd, with variables in
    its environment; returns (fd's handle, the process object) after
    checking the program ran, never saw them, and agrees with the kernel."""
    result, objs = json_run(["-v", "--", VICTIM, "child"], env=dict(os.environ, **variables),
                            pass_fds=(fd,))
    expect(result.returncode == 0, f"{variables}: exit {result.returncode}")
    expect("ENV " not in result.stdout, f"{variables} reached the program: {result.stdout}")
    expect(kernel_fds(result.stdout) == [fd], f"child has {kernel_fds(result.stdout)}")
    expect(len(objs) == 1, f"{variables}: {len(objs)} reports")
    handles = {h["handle"]: h for h in objs[0]["handles"]}
    expect(handles[fd]["state"] == "inherited", f"{variables}: fd {fd} {handles[fd]}")
    return handles[fd], objs[0]


def test_bad_handover_variables_are_dropped_and_harm_nothing():
    # forged or stale hand-overs for a descriptor the program does inherit:
    # wrong device/inode, malformed numbers, absurd module ranges, too many
    # frames; the program must run, never see them, and show the descriptor
    # as inherited without a stack
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        st = os.fstat(fd)
        same = f"{st.st_dev:x}:{st.st_ino:x}:1:1:1"
        here = f"HTRACE_F{fd:x}"
        # the control: a well-formed hand-over for this descriptor is adopted
        good = {here: same + ":1800", "HTRACE_M0": "1000:2000:0:/bin/true",
                "HTRACE_FROM": "1:/bin/true"}
        handle, process = run_child_with(good, fd)
        expect(handle["traces"][0]["previous_image"] and process["exec_from"]["pid"] == 1,
               f"a well-formed hand-over was not adopted: {handle}, {process.get('exec_from')}")
        bad = [
            (here, "0:0:1:1:1:1234,5678"),  # not the descriptor there
            (here, "zz:!!"),  # not numbers
            ("HTRACE_M0", "10:5:0:/bin/true"),  # end below start
            ("HTRACE_M1", "0:ffffffffffffffff:0:/bin/true"),  # range too large
            ("HTRACE_FROM", "xyz"),
            ("HTRACE_M2", "1000:2000:0:/nonexistent/object"),  # no stack refers to it
            (here, same + ":" + ",".join(["1fff"] * 500)),  # beyond any stack, in no object
        ]
        for name, value in bad:
            handle, process = run_child_with({name: value}, fd)
            expect("exec_from" not in process, f"{name}={value}: {process.get('exec_from')}")
            expect(not handle["traces"][0]["previous_image"],
                   f"{name}={value}: fd {fd} got a forged stack")
    finally:
        os.close(fd)


def main():
    needs = [("the execleak victim", VICTIM), ("the agent", AGENT)]
    return run_tests(globals(), "exec", HTRACE, needs)


if __name__ == "__main__":
    sys.exit(main())
