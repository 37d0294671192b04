#!/usr/bin/env python3
"""End-to-end tests of the live commands, `htrace -p PID -enable | -snapshot
| -diff | -disable | [Handle [Max_Traces]]` and the kernel-mode form
`htrace HANDLE PID [MAX_TRACES]`, against a running multi-threaded program
(tests/victims/server.c) started with the agent preloaded and tracing off.

The server has worker threads that open and close /dev/null every ~2 ms.
Its `quiet` command parks them (holding no descriptor) and `busy` lets them
run again; a test parks them before a -diff whose exact content it checks,
since a worker's descriptor open at that instant would rightly be new.

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory: the agent, the fake agents).
Exit status: 0 all passed, 1 a failure, 77 htrace or the victim missing."""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import (AGENT, BUILD, DUMPED_RE, FRAME_RE, HEADER_RE, HTRACE, INLINED_RE, PARSED_RE,
                     TIMEOUT, VICTIMS, Failure, Skip, TargetMemory, check_kernel_agreement,
                     closing_counts, database_address, database_layout, expect, functions,
                     has_frame, json_objects, parse_traces, parsed_dumped, run_htrace, run_tests,
                     traced_env)

SERVER = os.path.join(VICTIMS, "server")
BAD_VERSION_AGENT = os.path.join(BUILD, "tests", "fakes", "bad_version", "libhtrace.so")
MiB = 1 << 20

OPEN_HEADER_RE = re.compile(r"^Handle 0x([0-9a-fA-F]+) - OPEN: (\S+) (.+?)(?: \([^()]*\))? \[(\w+), thread (\d+)\]$")
# the age in a header changes from one reading to the next
AGE_RE = re.compile(r"opened [0-9.]+ (?:s|min|h) ago")


# ---- the victim ----

class Server:
    """The server victim: started with the agent preloaded (tracing off
    unless env says otherwise), one command line in, one answer line out."""

    def __init__(self, agent=True, env=None, program=SERVER):
        full = {k: v for k, v in os.environ.items()
                if k not in ("LD_PRELOAD", "HTRACE_TRACE", "HTRACE_MAX_TRACES")}
        if agent:
            full["LD_PRELOAD"] = AGENT
        full.update(env or {})
        self.proc = subprocess.Popen([program], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=full)
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            ready = self._answer("start")
            expect(ready == f"READY {self.pid}", f"server said {ready!r} at start")
        except BaseException:
            self.stop()
            raise

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _answer(self, what):
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise Failure(f"server: no answer to {what!r} in {TIMEOUT} s")
        expect(line is not None, f"server ended (status {self.proc.poll()}) instead of answering {what!r}")
        return line

    def send(self, command):
        """Sends a command without waiting (for a stopped server)."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def ask(self, command):
        self.send(command)
        line = self._answer(command)
        expect(line.startswith("OK"), f"server: {command!r} answered {line!r}")
        return line.split()[1:]

    def collect(self, command):
        """Reads the answer to a command sent earlier with send()."""
        line = self._answer(command)
        expect(line.startswith("OK"), f"server: {command!r} answered {line!r}")
        return line.split()[1:]

    def leak(self, n):
        words = self.ask(f"leak {n}")
        expect(words[0] == "fds" and len(words) == n + 1, f"leak {n} answered {words}")
        return [int(w) for w in words[1:]]

    def check_alive(self):
        """The target runs on unharmed: not stopped, still answering."""
        expect(proc_state(self.pid) not in ("T", "t"), f"server left stopped ({proc_state(self.pid)})")
        expect(self.ask("pid") == [str(self.pid)], "server does not answer pid")

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.reader.join(5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Sleeper:
    """`sleep 30`, optionally with a library preloaded, once it is loaded."""

    def __init__(self, preload=None):
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "HTRACE_TRACE")}
        if preload:
            env["LD_PRELOAD"] = preload
        self.proc = subprocess.Popen(["sleep", "30"], env=env, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        want = preload or "libc.so"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{self.pid}/maps") as f:
                if want in f.read():
                    return
            time.sleep(0.01)
        raise Failure(f"sleep never mapped {want}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


# ---- /proc ----

def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state(pid, states, seconds=10):
    deadline = time.monotonic() + seconds
    while proc_state(pid) not in states:
        expect(time.monotonic() < deadline, f"pid {pid} never reached state {states}")
        time.sleep(0.01)


def memory(pid):
    """VmRSS, RssAnon, RssFile, RssShmem in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


def descriptors(pid):
    """{fd: what it is}, inode numbers left out (they differ between runs)."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = re.sub(r"\[\d+\]", "[]", os.readlink(f"/proc/{pid}/fd/{name}"))
        except FileNotFoundError:
            pass
    return out


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


# ---- htrace ----

def ok(args):
    result = run_htrace(args)
    expect(result.returncode == 0,
           f"htrace {' '.join(map(str, args))}: exit {result.returncode}\n{result.stderr}")
    return result


def enable(server, *extra):
    result = ok(["-p", server.pid, "-enable"] + list(extra))
    lines = (result.stdout + result.stderr).strip().splitlines()
    want = f"htrace: tracing enabled in process {server.pid}"
    expect(len(lines) == 1 and lines[0].startswith(want),
           f"-enable printed {lines!r}, expected one line starting {want!r}")


def snapshot(server):
    ok(["-p", server.pid, "-snapshot"])


def one_json(result):
    objects = json_objects(result.stdout)
    expect(len(objects) == 1, f"expected one JSON object on stdout, got {len(objects)}:\n"
                              f"{result.stdout}{result.stderr}")
    return objects[0]


def json_diff(server):
    p = one_json(ok(["--json", "-p", server.pid, "-diff"]))
    expect(p["pid"] == server.pid and p["status"] is None, f"pid/status {p['pid']} {p['status']}")
    for key in ("opened_since_snapshot", "closed_since_snapshot", "still_open"):
        expect(key in p["summary"], f"summary lacks {key}: {p['summary']}")
    expect(p["summary"]["still_open"] == len(p["handles"]),
           f"still_open {p['summary']['still_open']} but {len(p['handles'])} handles listed")
    expect(all(h["state"] == "open" for h in p["handles"]), f"states {p['handles']}")
    numbers = [h["handle"] for h in p["handles"]]
    expect(numbers == sorted(numbers), f"handles not ascending: {numbers}")
    return p


def report_lines(text):
    """The lines that say what was recorded (headers, frames, counts), ages
    left out."""
    return [AGE_RE.sub("opened ... ago", l) for l in text.splitlines()
            if HEADER_RE.match(l) or FRAME_RE.match(l) or INLINED_RE.match(l)
            or PARSED_RE.match(l) or DUMPED_RE.match(l)]


def check_error(args, status, fragments, prefix=()):
    """One line on stderr containing one of fragments, exit status."""
    result = run_htrace(args, prefix)
    lines = result.stderr.strip().splitlines()
    shown = " ".join(map(str, args))
    expect(result.returncode == status if status else result.returncode != 0,
           f"htrace {shown}: exit {result.returncode}, expected {status or 'non-zero'}\n{result.stderr}")
    expect(len(lines) == 1 and any(f.lower() in lines[0].lower() for f in fragments),
           f"htrace {shown}: stderr {result.stderr!r}, expected one line with {' or '.join(fragments)!r}")
    expect("Handle 0x" not in result.stdout, f"htrace {shown}: a report on stdout despite the error")
    return lines[0]


# ---- -enable, -snapshot, -diff ----

def test_diff_gives_exactly_the_leaked_handles_while_workers_run():
    with Server() as s:
        enable(s)
        snapshot(s)
        fds = s.leak(4)  # /dev/null, a pipe's two ends, a socket
        s.ask("clean 200")
        s.ask("quiet")
        p = json_diff(s)
        got = {h["handle"]: h for h in p["handles"]}
        expect(sorted(got) == sorted(fds), f"-diff lists {sorted(got)}, the scenario leaked {fds}")
        expect([got[fd]["type"] for fd in fds] == ["chardev", "pipe", "pipe", "socket"],
               f"types {[got[fd]['type'] for fd in fds]}")
        expect(got[fds[0]]["target"] == "/dev/null", f"target {got[fds[0]]['target']}")
        for fd, h in got.items():
            open_traces = [t for t in h["traces"] if t["kind"] == "OPEN"]
            expect(open_traces, f"fd {fd}: no OPEN trace: {h['traces']}")
            t = open_traces[0]
            expect("scenario_leak" in functions(t), f"fd {fd}: scenario_leak not in {functions(t)}")
            expect(t["tid"] == s.pid, f"fd {fd}: opened by tid {t['tid']}, not the main thread")
        apis = [got[fd]["traces"][0]["api"] for fd in fds]
        expect(apis[0].startswith("open") and apis[1].startswith("pipe") and apis[3] == "socket",
               f"apis {apis}")
        summary = p["summary"]
        expect(summary["still_open"] == 4 and summary["opened_since_snapshot"] >= 4 + 200
               and summary["closed_since_snapshot"] >= 200, f"summary {summary}")
        s.check_alive()


def test_json_of_the_live_commands_is_utf8_when_the_program_path_is_not():
    """A program at a path that is not UTF-8: -enable --json and the listing
    --json still write UTF-8 JSON, the path's other bytes as U+FFFD."""
    with tempfile.TemporaryDirectory() as tmp:
        program = os.path.join(os.fsencode(tmp), b"server-\xff")
        shutil.copy(SERVER, program)
        s = Server(program=program)
        try:
            for args in (["--json", "-p", str(s.pid), "-enable"], ["--json", "-p", str(s.pid)]):
                result = subprocess.run([HTRACE] + args, capture_output=True, timeout=TIMEOUT)
                expect(result.returncode == 0, f"{args}: exit {result.returncode}: {result.stderr!r}")
                try:
                    obj = json.loads(result.stdout.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise Failure(f"{args}: not UTF-8 JSON ({e}): {result.stdout[:300]!r}")
                expect(obj["exe"] == os.path.join(tmp, "server-\ufffd"), f"{args}: exe {obj['exe']!r}")
        finally:
            s.stop()


def listing_by_handle(server):
    """Every handle open in the process (--group lists them all)."""
    p = one_json(ok(["--json", "--group", "-p", server.pid]))
    return p, {h["handle"]: h for h in p["handles"]}


def test_large_ring_not_yet_gone_round_is_read_only_where_written():
    """With the largest ring (67,108,864 events, 2.5 GiB mapped), a process
    that recorded a few hundred events: the client copies only the records
    handed out so far, in a few MiB, and still lists every leak."""
    with Server(env={"HTRACE_TRACE": "1", "HTRACE_MAX_TRACES": "67108864"}) as s:
        leaked = s.leak(6)
        s.ask("quiet")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            client = subprocess.Popen([HTRACE, "--json", "-p", str(s.pid)], stdout=out,
                                      stderr=err, stdin=subprocess.DEVNULL)
            watchdog = threading.Timer(TIMEOUT, client.kill)
            watchdog.start()
            _, status, usage = os.wait4(client.pid, 0)  # the client's own peak memory
            watchdog.cancel()
            out.seek(0)
            err.seek(0)
            code, text, said = os.waitstatus_to_exitcode(status), out.read().decode(), err.read()
        expect(code == 0, f"exit {code}: {said.decode()[:300]}")
        p = json_objects(text)[0]
        listed = {h["handle"] for h in p["handles"] if h["state"] == "leaked" and h["traces"]}
        expect(set(leaked) <= listed, f"leaks {leaked} not all listed with traces: {sorted(listed)}")
        peak = usage.ru_maxrss * 1024
        expect(peak < 64 * MiB, f"the client reached {peak // MiB} MiB: it copied the whole ring")


def test_descriptors_opened_while_tracing_was_off_are_untracked_after_enable():
    """Tracing off, a hook only calls libc: the agent records nothing, not
    even the open set.  After -enable, every descriptor the kernel has open
    is listed; those opened before are untracked, without traces, and only
    those opened since are leaks, with their stacks."""
    with Server() as s:
        s.ask("quiet")
        before = s.leak(3)
        enable(s)
        traced = s.leak(2)
        p, handles = listing_by_handle(s)
        kernel = sorted(int(n) for n in os.listdir(f"/proc/{s.pid}/fd"))
        expect(sorted(handles) == kernel, f"listed {sorted(handles)}, the kernel has {kernel}")
        for fd in before:
            h = handles[fd]
            expect(h["state"] == "untracked" and h["traces"] == [],
                   f"fd {fd}, opened while tracing was off: {h['state']}, traces {h['traces']}")
        for fd in traced:
            h = handles[fd]
            expect(h["state"] == "leaked" and any(f["function"] == "scenario_leak" for f in h["traces"][0]["frames"]),
                   f"fd {fd}, opened while tracing: {h['state']}, traces {h['traces']}")
        summary = p["summary"]
        expect(summary["untracked"] == len(kernel) - len(traced) and summary["leaked"] == len(traced),
               f"summary {summary}, the kernel has {kernel}, {traced} opened while tracing")


def test_dup2_onto_a_descriptor_opened_while_tracing_was_off_records_its_close():
    """A descriptor opened while tracing was off is untracked, but the
    kernel has it open: a dup2 onto it after -enable closes it inside the
    call, so its history shows that implicit CLOSE before the dup2's OPEN,
    both at the dup2, and the number is now a leak with that stack.  The
    same through dup3 and through syscall(SYS_dup2) and syscall(SYS_dup3)."""
    for how, api in (("dup2", "dup2"), ("dup3", "dup3"), ("sys_dup2", "syscall(dup2)"),
                     ("sys_dup3", "syscall(dup3)")):
        with Server() as s:
            s.ask("quiet")
            fd = s.leak(1)[0]
            enable(s)
            expect(s.ask(f"replace {fd} {how}") == [str(fd)], f"replace {fd} {how}")
            history = one_json(ok(["--json", "-p", s.pid, str(fd)]))
            traces = [t for h in history["handles"] for t in h["traces"]]
            kinds = [(t["kind"], t["api"], t["implicit"]) for t in traces]
            expect(kinds == [("OPEN", api, False), ("CLOSE", api, True)],
                   f"{how} onto fd {fd}: history {kinds}, expected the {api}'s OPEN after its implicit CLOSE")
            expect(traces[1]["seq"] < traces[0]["seq"], f"{how}: the CLOSE is not recorded before the OPEN")
            names = [[f["function"] for f in t["frames"]] for t in traces]
            expect(all("scenario_replace" in n for n in names), f"{how}: stacks {names}")
            p, handles = listing_by_handle(s)
            expect(handles[fd]["state"] == "leaked", f"fd {fd} after {how}: {handles[fd]['state']}")


def test_number_reused_while_tracing_was_off_is_not_given_the_old_stack():
    """A descriptor recorded in one tracing period, closed and opened again
    while tracing is off: after the next -enable its old OPEN is stale, and
    the number is untracked instead of a leak with the first one's stack."""
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fd = s.leak(1)[0]
        ok(["-p", s.pid, "-disable"])
        expect(s.ask(f"reopen {fd}") == [str(fd)], f"reopen {fd}")
        enable(s)
        p, handles = listing_by_handle(s)
        h = handles.get(fd, {})
        expect(h.get("state") == "untracked" and p["summary"]["leaked"] == 0,
               f"fd {fd}, reopened while tracing was off: {h}, summary {p['summary']}")


def test_enable_keeps_a_failure_the_agent_records_while_the_client_works():
    """-enable reads the target's database, then writes to it.  A failure
    the agent records in between (its FAILED bit of the state word) must
    stay: the client writes only its own byte of that word, then reads the
    word again and reports the failure (exit 1).  gdb stops the client at
    its first write, and the FAILED bit is set in the target's memory
    then, as the agent would."""
    if not shutil.which("gdb"):
        raise Skip("gdb is not installed (scripts/install-deps.sh installs it)")
    layout = database_layout()
    with Server() as s:
        s.ask("quiet")
        state_at = database_address(s.pid) + layout["state"]
        failed = layout["state_failed"]
        set_failed = (f"python m = open('/proc/{s.pid}/mem', 'r+b', buffering=0); m.seek({state_at}); "
                      f"v = int.from_bytes(m.read(4), 'little') | {failed}; m.seek({state_at}); "
                      f"m.write(v.to_bytes(4, 'little')); m.close()")
        gdb = subprocess.run(["gdb", "-nx", "-batch", "-ex", "set breakpoint pending on",
                              "-ex", "break process_vm_writev", "-ex", "run", "-ex", set_failed,
                              "-ex", "delete", "-ex", "continue",
                              "--args", HTRACE, "-p", str(s.pid), "-enable"],
                             capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        expect("Breakpoint 1," in gdb.stdout, f"the client made no write: {gdb.stdout[-400:]} {gdb.stderr[-400:]}")
        memory = TargetMemory(s.pid)
        state = int.from_bytes(memory.read(state_at, 4), "little")
        memory.close()
        expect(state & failed, f"state {state:#x} after -enable: the agent's FAILED bit {failed:#x} was undone")
        said = gdb.stdout + gdb.stderr
        expect("exited with code 01" in said and "stopped tracing" in said,
               f"-enable did not report the failure that came while it wrote: {said[-400:]}")
        listing = run_htrace(["-p", str(s.pid)])
        expect(listing.returncode == 1 and "stopped tracing" in listing.stderr + listing.stdout,
               f"htrace -p after the failure: exit {listing.returncode}, {listing.stderr.strip()[:200]}")


def test_events_of_an_earlier_tracing_period_are_not_listed():
    """-disable and -enable at once, before the agent could give the ring
    back: the first period's OPEN is still in the ring, but its descriptor
    is untracked now, and neither the listing nor its history shows it."""
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fd = s.leak(1)[0]
        ok(["-p", s.pid, "-disable"])
        enable(s)
        p, handles = listing_by_handle(s)
        h = handles.get(fd, {})
        expect(h.get("state") == "untracked" and h.get("traces") == [],
               f"fd {fd}, opened in the earlier period: {h}")
        history = one_json(ok(["--json", "-p", s.pid, str(fd)]))
        traces = [t for x in history["handles"] for t in x["traces"]]
        expect(traces == [], f"fd {fd}: the history shows the earlier period: {traces}")


def test_events_of_an_earlier_period_are_neither_recorded_nor_overwritten_now():
    """The summary counts this tracing period's events: after a period of
    2,000 events, -disable and -enable, a leak of 3 makes 3 events
    recorded and none overwritten in the ring (the earlier ones were
    discarded, not overwritten)."""
    with Server() as s:
        s.ask("quiet")
        enable(s)
        s.ask("clean 1000")
        ok(["-p", s.pid, "-disable"])
        enable(s)
        s.leak(3)
        summary = one_json(ok(["--json", "-p", s.pid]))["summary"]
        expect(summary["events"] == 3 and summary["events_overwritten"] == 0,
               f"after -disable and -enable, 3 events: summary {summary}")


def test_dup2_onto_a_stale_files_number_makes_it_reported_again():
    """A FILE whose descriptor was closed behind its back is reported at
    its first stale use, once; a dup2 onto that number puts a new
    descriptor there, and the next use is reported again."""
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fd = int(s.ask("stale")[0])
        reported = bad_references(s)
        s.ask("staleuse")
        expect(bad_references(s) == reported, "a second use of the same stale FILE was reported again")
        expect(s.ask(f"replace {fd}") == [str(fd)], f"replace {fd}")
        s.ask("staleuse")
        expect(bad_references(s) == reported + 1,
               f"the use after a dup2 onto {fd}: bad references {reported} -> {bad_references(s)}, "
               "expected one more")


def test_bad_reference_while_tracing_is_off_is_not_counted():
    """While tracing is off the hooks look at nothing, not even a failure:
    the stale scenario (a FILE's descriptor closed behind its back, the
    number reused, the FILE read) leaves no count then, and one or more
    when it runs with tracing on."""
    with Server() as s:
        s.ask("quiet")
        s.ask("stale")
        enable(s)
        expect(bad_references(s) == 0, "bad references counted while tracing was off")
    with Server() as s:
        s.ask("quiet")
        enable(s)
        s.ask("stale")
        expect(bad_references(s) >= 1, "the stale scenario with tracing on was not counted")


def bad_references(server):
    return one_json(ok(["--json", "-p", server.pid]))["summary"]["bad_references"]


def test_group_of_diff_and_of_all_open_handles():
    with Server() as s:
        enable(s)
        snapshot(s)
        fds = s.leak(4)
        s.ask("quiet")
        p = one_json(ok(["--json", "--group", "-p", s.pid, "-diff"]))
        grouped = sorted(fd for g in p["groups"] for fd in g["handles"])
        expect(grouped == sorted(fds), f"-diff --group groups {p['groups']}, leaked {fds}")
        leak_fns = [f for f in p["functions"] if f["function"] == "scenario_leak"]
        expect(leak_fns and leak_fns[0]["count"] == 4, f"functions {p['functions']}")
        p = one_json(ok(["--json", "--group", "-p", s.pid]))
        everything = sorted(fd for g in p["groups"] for fd in g["handles"])
        expect(set(fds) <= set(everything) and p["status"] is None,
               f"--group alone: {everything}, leaked {fds}")
        text = ok(["--group", "-p", s.pid, "-diff"]).stdout
        expect("Open handles by opening stack, biggest group first:" in text
               and "scenario_leak" in text, f"text:\n{text}")
        p = one_json(ok(["--json", "--type=socket", "-p", s.pid, "-diff"]))
        expect([h["type"] for h in p["handles"]] == ["socket"], f"--type=socket: {p['handles']}")
        p = one_json(ok(["--json", "--stack=no_such_function", "-p", s.pid, "-diff"]))
        expect(p["handles"] == [], f"--stack matching nothing: {p['handles']}")


def test_diff_text_format_and_exact_counts():
    with Server() as s:
        s.ask("quiet")
        enable(s)
        snapshot(s)
        fds = s.leak(4)
        out = ok(["-p", s.pid, "-diff"]).stdout
        traces = parse_traces(out)
        expect([t["handle"] for t in traces] == sorted(fds), f"-diff text lists {traces}, leaked {fds}")
        for t in traces:
            m = OPEN_HEADER_RE.match(t["header"])
            expect(m and int(m.group(5)) == s.pid, f"header {t['header']!r}")
            expect(t["frames"] and all(FRAME_RE.match(f) or INLINED_RE.match(f) for f in t["frames"]),
                   f"frames {t['frames']}")
            expect(has_frame(t, "scenario_leak"),
                   f"fd {t['handle']}: no scenario_leak frame in {t['frames']}")
            leak_frame = [f for f in t["frames"] if "server!scenario_leak" in f]
            expect(leak_frame and "server.c:" in leak_frame[0], f"frame {leak_frame} lacks server.c:line")
        expect(OPEN_HEADER_RE.match(traces[0]["header"]).group(2, 3) == ("chardev", "/dev/null"),
               f"header {traces[0]['header']!r}")
        expect(closing_counts(out) == (4, 4, 0), f"closing line counts {closing_counts(out)}, expected 4, 4, 0")
        p = json_diff(s)
        expect([h["handle"] for h in p["handles"]] == sorted(fds), f"JSON lists {p['handles']}")
        summary = p["summary"]
        expect((summary["still_open"], summary["opened_since_snapshot"], summary["closed_since_snapshot"])
               == (4, 4, 0), f"summary {summary}")
        # a new snapshot: nothing is new any more
        snapshot(s)
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect(parse_traces(out) == [] and closing_counts(out) == (0, 0, 0), f"after -snapshot:\n{out}")
        s.check_alive()


def test_diff_empty_after_thousands_opened_and_closed():
    with Server() as s:
        enable(s)
        snapshot(s)
        s.ask("clean 5000")
        s.ask("quiet")
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect(parse_traces(out) == [], f"-diff not empty after a clean scenario:\n{out}")
        still, opened, closed = closing_counts(out)
        expect(still == 0 and opened >= 5000 and closed >= 5000,
               f"closing line: {still} still open, {opened} opened, {closed} closed")
        p = json_diff(s)
        expect(p["handles"] == [] and p["summary"]["opened_since_snapshot"] >= 5000
               and p["summary"]["closed_since_snapshot"] >= 5000, f"JSON -diff {p}")
        s.check_alive()


def test_diff_reads_are_never_torn_while_workers_run():
    with Server() as s:
        enable(s)
        fds = s.leak(2)
        snapshot(s)
        fds += s.leak(2)
        for _ in range(20):
            p = json_diff(s)
            got = [h["handle"] for h in p["handles"]]
            expect(set(fds[2:]) <= set(got) and not set(fds[:2]) & set(got),
                   f"-diff lists {got}; new since the snapshot: {fds[2:]}")
            for h in p["handles"]:
                fn = functions(h["traces"][0])
                expect(("scenario_leak" in fn) if h["handle"] in fds else ("worker_main" in fn),
                       f"fd {h['handle']}: stack {fn}")
        s.check_alive()


# ---- per-handle history ----

def check_reuse_history(text, fd, opener_old="scenario_reuse", opener_new="scenario_reuse"):
    traces = parse_traces(text)
    expect(all(t["handle"] == fd for t in traces), f"traces of other handles: {traces}")
    expect([t["kind"] for t in traces] == ["OPEN", "CLOSE", "OPEN"],
           f"history of fd {fd}: {[t['kind'] for t in traces]}, expected OPEN, CLOSE, OPEN")
    expect(has_frame(traces[0], opener_new) and has_frame(traces[1], opener_new)
           and has_frame(traces[2], opener_old),
           f"stacks of fd {fd}: {[t['frames'] for t in traces]}")
    parsed, dumped = parsed_dumped(text)
    expect(dumped == 3 and parsed >= 3, f"Parsed 0x{parsed:x}, Dumped 0x{dumped:x}")


def test_reused_number_shows_open_close_open():
    with Server() as s:
        s.ask("quiet")
        enable(s)
        snapshot(s)
        fd = int(s.ask("reuse")[0])
        for spelling in (str(fd), f"0x{fd:x}"):
            check_reuse_history(ok(["-p", s.pid, spelling]).stdout, fd)
        text = ok(["-p", s.pid, fd, 2]).stdout
        expect([t["kind"] for t in parse_traces(text)] == ["OPEN", "CLOSE"], f"Max_Traces 2:\n{text}")
        expect(parsed_dumped(text)[1] == 2, f"Max_Traces 2:\n{text}")
        p = one_json(ok(["--json", "-p", s.pid, fd]))
        handles = [h for h in p["handles"] if h["handle"] == fd]
        expect(len(handles) == 1 and [t["kind"] for t in handles[0]["traces"]] == ["OPEN", "CLOSE", "OPEN"],
               f"JSON history: {p['handles']}")
        seqs = [t["seq"] for t in handles[0]["traces"]]
        expect(seqs == sorted(seqs, reverse=True), f"not newest first: seq {seqs}")
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect([t["handle"] for t in parse_traces(out)] == [fd], f"-diff after reuse:\n{out}")
        expect(closing_counts(out) == (1, 2, 1), f"closing line counts {closing_counts(out)}, expected 1, 2, 1")
        s.check_alive()


def test_number_closed_and_reopened_after_the_snapshot_counts_as_new():
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fd = s.leak(1)[0]
        snapshot(s)
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect(parse_traces(out) == [], f"-diff before the reopen:\n{out}")
        expect(int(s.ask(f"reopen {fd}")[0]) == fd, "reopen gave another number")
        out = ok(["-p", s.pid, "-diff"]).stdout
        traces = parse_traces(out)
        expect([t["handle"] for t in traces] == [fd] and has_frame(traces[0], "scenario_reopen"),
               f"-diff after the reopen of fd {fd}:\n{out}")
        expect(closing_counts(out) == (1, 1, 1), f"closing line counts {closing_counts(out)}, expected 1, 1, 1")
        check_reuse_history(ok(["-p", s.pid, fd]).stdout, fd, "scenario_leak", "scenario_reopen")
        s.check_alive()


def test_all_handles_listing():
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fds = s.leak(3)
        reused = int(s.ask("reuse")[0])
        for args in (["-p", s.pid], ["-p", s.pid, 0]):
            text = ok(args).stdout
            traces = parse_traces(text)
            seen = {t["handle"] for t in traces}
            expect(set(fds) | {reused} <= seen, f"htrace {args} lists {sorted(seen)}")
            parsed, dumped = parsed_dumped(text)
            expect(dumped == len(traces) and parsed >= dumped, f"Parsed 0x{parsed:x} Dumped 0x{dumped:x}, "
                                                               f"{len(traces)} traces shown")
        text = ok(["-p", s.pid, 0, 2]).stdout
        expect(len(parse_traces(text)) == 2 and parsed_dumped(text)[1] == 2, f"Max_Traces 2:\n{text}")
        s.check_alive()


def test_kernel_mode_form_gives_the_same():
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fd = int(s.ask("reuse")[0])
        s.leak(2)
        pairs = [([fd, s.pid], ["-p", s.pid, fd]),
                 ([fd, s.pid, 2], ["-p", s.pid, fd, 2]),
                 ([0, s.pid], ["-p", s.pid, 0])]
        for kernel, user in pairs:
            a, b = ok(kernel).stdout, ok(user).stdout
            expect(report_lines(a) and report_lines(a) == report_lines(b),
                   f"htrace {kernel} differs from htrace {user}:\n{a}\n---\n{b}")
        check_reuse_history(ok([fd, s.pid]).stdout, fd)
        a = one_json(ok(["--json", fd, s.pid]))
        b = one_json(ok(["--json", "-p", s.pid, fd]))
        for obj in (a, b):
            for h in obj["handles"]:
                h.pop("age_ns", None)
        expect(a == b, f"JSON differs:\n{a}\n{b}")
        s.check_alive()


# ---- a stopped target ----

def test_commands_work_on_a_stopped_target():
    with Server() as s:
        s.ask("quiet")
        os.kill(s.pid, signal.SIGSTOP)
        wait_state(s.pid, ("T",))
        enable(s)
        snapshot(s)
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect(parse_traces(out) == [] and closing_counts(out)[0] == 0, f"-diff while stopped:\n{out}")
        expect(proc_state(s.pid) == "T", f"htrace resumed the stopped target ({proc_state(s.pid)})")
        s.send("leak 2")
        os.kill(s.pid, signal.SIGCONT)
        fds = [int(w) for w in s.collect("leak 2")[1:]]
        os.kill(s.pid, signal.SIGSTOP)
        wait_state(s.pid, ("T",))
        out = ok(["-p", s.pid, "-diff"]).stdout
        traces = parse_traces(out)
        expect([t["handle"] for t in traces] == fds and all(has_frame(t, "scenario_leak") for t in traces),
               f"-diff while stopped, after leaking {fds}:\n{out}")
        text = ok(["-p", s.pid, fds[0]]).stdout
        expect([t["kind"] for t in parse_traces(text)] == ["OPEN"], f"listing while stopped:\n{text}")
        parsed_dumped(text)
        snapshot(s)
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect(parse_traces(out) == [] and closing_counts(out) == (0, 0, 0),
               f"-diff after a snapshot taken while stopped:\n{out}")
        expect(proc_state(s.pid) == "T", f"htrace resumed the stopped target ({proc_state(s.pid)})")
        os.kill(s.pid, signal.SIGCONT)
        new = s.leak(1)
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect([t["handle"] for t in parse_traces(out)] == new,
               f"after SIGCONT and leak {new}, -diff against the snapshot taken while stopped:\n{out}")
        s.check_alive()


# ---- -disable ----

def wait_memory(pid, good, seconds):
    deadline = time.monotonic() + seconds
    while True:
        m = memory(pid)
        if good(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


UNWINDER_CACHE_PER_THREAD = 256 * 1024


def test_disable_releases_the_trace_memory():
    """The default ring (65536 events of 48 bytes: 3 MiB) is written through
    by `clean 100000` (200000 events).  After -disable and some activity the
    target's VmRSS must come back to within 1 MiB of its value before
    -enable, plus two things that are not the database and that tracing
    leaves behind by design:
    - the growth of RssFile: code pages (the unwinder, libc, the agent's
      text) read in while tracing stay resident, shared with the files;
    - libunwind's per-thread frame cache that unw_backtrace creates in each
      thread that takes a stack (2^14 frames of 16 bytes = 256 KiB, written
      when created, freed only when the thread exits): 5 threads here."""
    with Server() as s:
        s.ask("clean 1000")
        time.sleep(0.5)
        before = memory(s.pid)
        enable(s)
        s.ask("clean 100000")
        during = memory(s.pid)
        expect(during["RssAnon"] >= before["RssAnon"] + 2 * MiB,
               f"tracing 200000 events grew RssAnon only from {before['RssAnon']} to {during['RssAnon']}")
        ok(["-p", s.pid, "-disable"])
        s.ask("clean 10")
        time.sleep(0.5)

        unwinder = threads(s.pid) * UNWINDER_CACHE_PER_THREAD

        def limit(m):
            return before["VmRSS"] + MiB + unwinder + max(0, m["RssFile"] - before["RssFile"])

        after = wait_memory(s.pid, lambda m: m["VmRSS"] <= limit(m), 5)
        expect(after["VmRSS"] <= limit(after),
               f"VmRSS before -enable {before}, tracing {during}, after -disable {after}: "
               f"more than 1 MiB (+{unwinder} of unwinder caches, "
               f"+{max(0, after['RssFile'] - before['RssFile'])} of file pages) above")
        expect(during["VmRSS"] - after["VmRSS"] >= 2 * MiB,
               f"VmRSS did not go measurably down: tracing {during}, after -disable {after}")
        check_error(["-p", s.pid, "-snapshot"], 1, ["not enabled"])
        check_error(["-p", s.pid, "-diff"], 1, ["not enabled"])
        # and it can be enabled again
        s.ask("quiet")
        enable(s)
        fds = s.leak(2)
        out = ok(["-p", s.pid, "-diff"]).stdout
        traces = parse_traces(out)
        expect([t["handle"] for t in traces] == fds and all(has_frame(t, "scenario_leak") for t in traces),
               f"-diff after -disable and -enable again:\n{out}")
        s.check_alive()


def test_stack_taken_again_after_disable_and_enable_is_stored_again():
    """-disable empties the stack depot; the same stack taken again after
    -enable must be stored again, not named by the id it had before (each
    thread remembers its last few stacks' ids)."""
    with Server() as s:
        s.ask("quiet")
        enable(s)
        s.leak(1)
        ok(["-p", s.pid, "-disable"])
        s.ask("clean 10")  # hooked calls: the agent empties the depot
        enable(s)
        fd = s.leak(1)[0]
        p = one_json(ok(["--json", "-p", s.pid]))
        traces = [h["traces"] for h in p["handles"] if h["handle"] == fd]
        functions = [f["function"] for f in traces[0][0]["frames"]] if traces else []
        expect("scenario_leak" in functions and "main" in functions,
               f"fd {fd}, leaked after -disable and -enable: frames {functions}")


# ---- nothing added to the target ----

def test_agent_and_commands_add_no_thread_or_descriptor():
    with Server(agent=False) as plain:
        plain.ask("quiet")
        plain.leak(4)
        plain.ask("reuse")
        want_fds, want_tasks = descriptors(plain.pid), threads(plain.pid)
    with Server() as s:
        s.ask("quiet")
        expect(descriptors(s.pid) == {0: "pipe:[]", 1: "pipe:[]", 2: "/dev/null"} and threads(s.pid) == want_tasks,
               f"with the agent, before any command: fds {descriptors(s.pid)}, {threads(s.pid)} threads")
        enable(s)
        snapshot(s)
        fd = s.leak(4)[0]
        s.ask("reuse")
        ok(["-p", s.pid, "-diff"])
        ok(["--json", "-p", s.pid, "-diff"])
        ok(["-p", s.pid, fd])
        ok(["-p", s.pid])
        ok([fd, s.pid])
        snapshot(s)
        got_fds, got_tasks = descriptors(s.pid), threads(s.pid)
        expect(got_fds == want_fds, f"descriptors without the agent {want_fds}, with it {got_fds}")
        expect(got_tasks == want_tasks, f"{want_tasks} threads without the agent, {got_tasks} with it")
        s.check_alive()


# ---- bad input ----

def test_state_commands_speak_json():
    with Sleeper(AGENT) as sleeper:
        for command, tracing in (("-enable", True), ("-snapshot", True), ("-disable", False)):
            obj = one_json(ok(["--json", "-p", sleeper.pid, command]))
            expect(obj["pid"] == sleeper.pid and obj["command"] == command[1:]
                   and obj["tracing"] is tracing and obj["status"] is None
                   and obj["exe"].endswith("sleep"), f"{command} --json: {obj}")


def free_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def every_command(pid):
    return [["-p", pid, "-enable"], ["-p", pid, "-snapshot"], ["-p", pid, "-diff"],
            ["-p", pid, "-disable"], ["-p", pid], ["-p", pid, 3], [3, pid]]


def test_no_such_process():
    for args in every_command(free_pid()):
        check_error(args, 1, ["no such process"])


def test_process_without_the_agent():
    with Sleeper() as target:
        for args in every_command(target.pid):
            check_error(args, 1, ["LD_PRELOAD", "htrace run"])
        expect(target.proc.poll() is None and proc_state(target.pid) not in ("T", "t"),
               "the process without the agent was harmed")


def test_state_commands_write_their_line_to_the_output_file():
    with Server() as server, tempfile.TemporaryDirectory(prefix="htrace-test-out-") as d:
        nowhere = os.path.join(d, "no", "such", "dir", "out")
        check_error(["-p", server.pid, "-o", nowhere, "-enable"], 2, ["cannot write"])
        check_error(["-p", server.pid, "-snapshot"], 1, ["not enabled"])  # nothing was done
        out = os.path.join(d, "state.json")
        for command in ("-enable", "-snapshot", "-disable"):
            result = ok(["--json", "-o", out, "-p", server.pid, command])
            expect(result.stdout == "", f"{command} -o FILE still wrote to stdout: {result.stdout!r}")
            with open(out) as f:
                said = json.loads(f.read())
            expect(said["command"] == command[1:] and said["pid"] == server.pid,
                   f"{command}: the file holds {said}")


def test_thread_id_names_its_process():
    with Server(env={"HTRACE_TRACE": "1"}) as server:
        fds = server.leak(1)
        others = [int(t) for t in os.listdir(f"/proc/{server.pid}/task") if int(t) != server.pid]
        expect(others, "the server has no thread but its main one")
        result = ok(["-p", others[0]])
        expect("vfork" not in result.stderr and f"Handle 0x{fds[0]:x} - OPEN" in result.stdout,
               f"htrace -p {others[0]} (a thread of {server.pid}):\n{result.stdout}{result.stderr}")


def test_process_in_a_pid_namespace_of_its_own_is_read():
    """The agent records the pid the process sees (1 here), not the host's."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-p", "-f", "--kill-child", "true"],
                                     capture_output=True).returncode:
        raise Skip("cannot make a PID namespace here (unshare -p -f --kill-child)")
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        raise Skip("no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN) to find the server")
    env = traced_env()
    outer = subprocess.Popen([unshare, "-p", "-f", "--kill-child", SERVER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        ready = outer.stdout.readline().split()
        expect(ready[:1] == ["READY"], f"the server in its namespace said {ready}")
        with open(f"/proc/{outer.pid}/task/{outer.pid}/children") as f:
            inner = int(f.read().split()[0])
        outer.stdin.write("leak 1\n")
        outer.stdin.flush()
        fd = int(outer.stdout.readline().split()[-1])
        result = ok(["-p", inner])
        expect("vfork" not in result.stderr and f"Handle 0x{fd:x} - OPEN" in result.stdout,
               f"htrace -p {inner} (pid {ready[1]} in its namespace):\n{result.stdout}{result.stderr}")
    finally:
        outer.kill()
        outer.wait()


def test_incompatible_agent_version():
    expect(os.path.exists(BAD_VERSION_AGENT), f"{BAD_VERSION_AGENT} not built")
    with Sleeper(BAD_VERSION_AGENT) as target:
        for args in every_command(target.pid):
            check_error(args, 1, ["incompatible"])
        expect(target.proc.poll() is None and proc_state(target.pid) not in ("T", "t"),
               "the process with an incompatible agent was harmed")


def test_permission_refused_names_ptrace_scope():
    if os.geteuid() != 0:
        raise Skip("needs root: runs htrace as nobody against a root-owned process")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise Skip("setpriv (util-linux) not installed")
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = run_htrace(["--help"], nobody)
    if probe.returncode != 0:
        raise Skip(f"user nobody cannot run {HTRACE}: {probe.stderr.strip()[:200]}")
    with Server() as s:
        s.ask("quiet")  # workers parked: their own short-lived descriptors do not count
        fds = descriptors(s.pid)
        for args in every_command(s.pid):
            line = check_error(args, 1, ["permission"], nobody)
            expect("ptrace_scope" in line, f"htrace {args} as nobody: {line!r} does not mention ptrace_scope")
        check_error(["-p", s.pid, "-snapshot"], 1, ["not enabled"])  # -enable did nothing
        expect(descriptors(s.pid) == fds, "the refused commands changed the target's descriptors")
        s.check_alive()


def test_malformed_handles_and_counts():
    with Server() as s:
        s.ask("quiet")
        enable(s)
        fds = descriptors(s.pid)
        for handle in ("abc", "-5", "-1", "0xzz", "12abc", "0x", "1.5", "3 "):
            check_error(["-p", s.pid, handle], 2, [""])
        check_error(["12abc", s.pid], 2, [""])
        check_error(["0xzz", s.pid], 2, [""])
        for args in (["-p", s.pid, 3, "abc"], ["-p", s.pid, 3, "-1"], ["-p", s.pid, "-enable", "abc"],
                     ["-p", s.pid, "-enable", "-1"], [3, s.pid, "x"]):
            check_error(args, None, [""])
        for args in (["--html", "-p", s.pid], ["-o", "-p", s.pid], ["-p", s.pid, "-o", "--json"]):
            check_error(args, 2, ["needs a file name, not '-"])
        expect(descriptors(s.pid) == fds, "bad input changed the target's descriptors")
        s.check_alive()


def test_tracing_not_enabled_and_diff_before_any_snapshot():
    with Server() as s:
        s.ask("quiet")  # the workers' own /dev/null comes and goes otherwise
        fds = descriptors(s.pid)
        check_error(["-p", s.pid, "-snapshot"], 1, ["not enabled"])
        check_error(["-p", s.pid, "-diff"], 1, ["not enabled"])
        check_error(["--json", "-p", s.pid, "-diff"], 1, ["not enabled"])
        expect(descriptors(s.pid) == fds, "the refused commands changed the target's descriptors")
        s.check_alive()
    # tracing on from the start (HTRACE_TRACE=1), but no snapshot yet
    with Server(env={"HTRACE_TRACE": "1"}) as s:
        check_error(["-p", s.pid, "-diff"], 1, ["snapshot"])
        check_error(["--json", "-p", s.pid, "-diff"], 1, ["snapshot"])
        ok(["-p", s.pid])
        snapshot(s)
        s.ask("quiet")
        fds = s.leak(1)
        out = ok(["-p", s.pid, "-diff"]).stdout
        expect([t["handle"] for t in parse_traces(out)] == fds, f"-diff after the first snapshot:\n{out}")
        s.check_alive()


def main():
    needs = [("the server victim", SERVER), ("the agent", AGENT)]
    return run_tests(globals(), "live", HTRACE, needs)


if __name__ == "__main__":
    sys.exit(main())
