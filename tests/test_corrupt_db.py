#!/usr/bin/env python3
"""The client against a corrupt trace database: a running target's
database (tests/victims/server.c with the agent preloaded, tracing on) is
corrupted in place, part by part, by a seeded random mutator, and the live
commands that only read it are run on each corruption with the client
built with AddressSanitizer (build/tests/asan/htrace).

Each command must either report (exit 0; with --json, lines that parse)
or refuse in one line on stderr starting "htrace: " (exit 1): never crash,
never read past what it copied, never hang, never write to the target.
The corruptions cover the header, the descriptor table's top array and
slots, the ring and the agent's count of its records handed out, the
depot, its hash buckets and the module table, with single bytes, bit
flips, words set to edge values, pointers moved and runs of bytes that
end no string.

The target is stopped (SIGSTOP) meanwhile, so that its agent never sees
a corrupted database: after the last corruption its bytes are put back
and it must run on, its descriptors as before.

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory: the agent, the ASan client);
HTRACE_CORRUPT_SEED and HTRACE_CORRUPT_TRIALS (default 6 and 300) for a
longer search.
Exit status: 0 all passed, 1 a failure, 77 something missing."""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

from harness import (AGENT, BUILD, DBLAYOUT, HTRACE, TIMEOUT, VICTIMS, TargetMemory,
                     database_address, database_layout, expect, run_tests)
from test_live import Server, wait_state

ASAN_HTRACE = os.path.join(BUILD, "tests", "asan", "htrace")
# fixed by default, so that a failure can be run again as it was
SEED = int(os.environ.get("HTRACE_CORRUPT_SEED", "6"))
TRIALS = int(os.environ.get("HTRACE_CORRUPT_TRIALS", "300"))
EDGE_VALUES = [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
               1 << 32, 1 << 63, (1 << 63) - 1, (1 << 64) - 1]
POINTER_MOVES = [-4096, -64, -8, -1, 1, 8, 64, 4096, 1 << 20, 1 << 30]


def database_regions(memory, db, layout):
    """Name -> (address, size) of each part of the database worth
    corrupting, as the agent left them."""
    header = memory.read(db, layout["db_size"])
    u64 = lambda field: struct.unpack_from("<Q", header, layout[field])[0]
    u32 = lambda field: struct.unpack_from("<I", header, layout[field])[0]
    events = min(u32("ring_capacity"), u64("next_seq"))
    fdtab = u64("fdtab_addr")
    return {
        "header": (db, layout["db_size"]),
        "fdtab top": (fdtab, 64),
        "slots": (memory.u64(fdtab), 64 * layout["slot_size"]),  # descriptors 0-63
        "ring": (u64("ring_addr"), events * layout["event_size"]),
        "ring count": (u64("ring_taken_addr"), 8),  # records handed out
        "depot": (u64("depot_addr"), u64("depot_used")),
        "buckets": (u64("buckets_addr"), min(u32("nbuckets"), 4096) * 4),
        "modules": (u64("modules_addr"), u32("module_count") * layout["module_size"]),
    }


def one_mutation(rng, memory, addr, size):
    """Changes a byte, a bit, a word of [addr, addr+size) (set to an edge
    value or moved like a pointer), or fills a run of up to 300 bytes with
    one non-zero byte (a string without its end); returns (offset, new
    bytes)."""
    kind = rng.randrange(5)
    if kind == 4:
        offset = rng.randrange(size)
        new = bytes([rng.randrange(1, 256)]) * min(rng.randrange(16, 300), size - offset)
    elif kind < 2 or size < 8:
        offset = rng.randrange(size)
        old = memory.read(addr + offset, 1)[0]
        new = bytes([rng.randrange(256)]) if kind == 0 else bytes([old ^ 1 << rng.randrange(8)])
    else:
        offset = min(rng.randrange(size) & ~7, size - 8)
        if kind == 2:
            new = struct.pack("<Q", rng.choice(EDGE_VALUES))
        else:
            moved = memory.u64(addr + offset) + rng.choice(POINTER_MOVES)
            new = struct.pack("<Q", moved % (1 << 64))
    memory.write(addr + offset, new)
    return offset, new[:8].hex() + (f"..({len(new)} bytes)" if len(new) > 8 else "")


def read_only_commands(pid, html):
    return [["-p", pid], ["--json", "-p", pid], ["--group", "-p", pid],
            ["--json", "--group", "-p", pid], ["-p", pid, "5"], ["-p", pid, "0x4", "3"],
            ["-p", pid, "-diff"], ["--json", "-p", pid, "-diff"], ["--group", "-p", pid, "-diff"],
            ["--format=folded", "-p", pid], ["--html", html, "-p", pid],
            ["--path=*null*", "--stack=main", "-p", pid], ["--type=socket,pipe", "-p", pid], ["--older-than=1s", "-p", pid]]


def run_client(args):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([ASAN_HTRACE] + [str(a) for a in args], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=TIMEOUT, env=env)


def verdict(args, result):
    """None when the client reported or refused in one line; else what
    went wrong."""
    err = result.stderr.decode("utf-8", "replace")
    lines = [line for line in err.splitlines() if line.strip()]
    if result.returncode not in (0, 1) or "Sanitizer" in err or "runtime error" in err:
        return f"exit {result.returncode}: " + " | ".join(lines[:8])
    if result.returncode == 1 and (len(lines) != 1 or not lines[0].startswith("htrace: ")):
        return f"refused in {len(lines)} lines: " + " | ".join(lines[:4])
    if result.returncode == 0 and "--json" in args:
        try:
            for line in result.stdout.decode("utf-8").splitlines():
                json.loads(line)
        except ValueError as e:
            return f"JSON that does not parse: {e}"
    return None


def open_descriptors(pid):
    return {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def prepared_target():
    """The server with leaks before and after a snapshot, and a stale
    FILE, its workers parked."""
    server = Server(env={"HTRACE_TRACE": "1"})
    try:
        server.leak(12)
        result = subprocess.run([HTRACE, "-p", str(server.pid), "-snapshot"], capture_output=True,
                                text=True, timeout=TIMEOUT)
        expect(result.returncode == 0, f"-snapshot failed: {result.stderr.strip()}")
        server.leak(9)
        server.ask("clean 40")
        server.ask("stale")
        server.ask("quiet")
    except BaseException:
        server.stop()
        raise
    return server


def campaign(server, memory, db, html):
    """The trials; returns (problems, how many commands reported)."""
    layout = database_layout()
    regions = database_regions(memory, db, layout)
    empty = [name for name, (addr, size) in regions.items() if not addr or size <= 0]
    expect(not empty, f"parts of the database missing in the target: {empty}")
    saved = {name: memory.read(addr, size) for name, (addr, size) in regions.items()}
    commands = read_only_commands(server.pid, html)
    rng = random.Random(SEED)
    problems, reported = [], 0
    try:
        for trial in range(TRIALS):
            name = rng.choice(sorted(regions))
            addr, size = regions[name]
            changes = [one_mutation(rng, memory, addr, size) for _ in range(rng.choice([1, 1, 2, 3, 8]))]
            corrupted = {n: memory.read(a, s) for n, (a, s) in regions.items()}
            args = rng.choice(commands)
            result = run_client(args)
            wrong = verdict(args, result)
            if any(memory.read(a, s) != corrupted[n] for n, (a, s) in regions.items()):
                wrong = (wrong or "") + " and it wrote to the target's database"
            if wrong:
                problems.append(f"trial {trial}, {name} {changes}, htrace {' '.join(map(str, args))}: {wrong}")
            reported += result.returncode == 0
            for n, (a, s) in regions.items():
                memory.write(a, saved[n])
    finally:
        for n, (a, s) in regions.items():
            memory.write(a, saved[n])
    return problems, reported


def test_corrupt_database_never_crashes_the_client_and_leaves_the_target_running():
    server = prepared_target()
    html = tempfile.mktemp(suffix=".html")
    try:
        before = open_descriptors(server.pid)
        os.kill(server.pid, signal.SIGSTOP)
        wait_state(server.pid, ("T", "t"))
        db = database_address(server.pid)
        memory = TargetMemory(server.pid)
        # the intact database first: the campaign means nothing if even it is refused
        baseline = run_client(["--json", "-p", server.pid])
        expect(baseline.returncode == 0, f"the intact database was refused: "
               f"{baseline.stderr.decode()[:300]}")
        with_stacks = baseline.stdout.count(b'"kind":"OPEN","api":"open"')
        expect(with_stacks >= 21, f"the intact database lists {with_stacks} OPENs by open(), not "
               "the 21 descriptors the server leaked")
        try:
            problems, reported = campaign(server, memory, db, html)
        finally:
            memory.close()
        expect(not problems, f"{len(problems)} of {TRIALS} corruptions went wrong:\n    " +
               "\n    ".join(problems[:10]))
        # a corruption that every command refused would test nothing
        expect(reported >= TRIALS // 4, f"only {reported} of {TRIALS} corrupted databases were "
               "reported on; the others refused: the corruptions are too coarse to test reading")
        os.kill(server.pid, signal.SIGCONT)
        server.check_alive()
        expect(open_descriptors(server.pid) == before,
               "the target's descriptors changed while its database was read")
    finally:
        server.stop()
        if os.path.exists(html):
            os.unlink(html)


def main():
    needs = [("the ASan client", ASAN_HTRACE), ("the server victim", os.path.join(VICTIMS, "server")),
             ("the layout printer", DBLAYOUT), ("the agent", AGENT)]
    if not shutil.which("nm"):
        print("skip corrupt_db: nm (binutils) is missing: the database cannot be found")
        return 77
    if os.geteuid() != 0 and not os.access(f"/proc/{os.getpid()}/mem", os.W_OK):
        print("skip corrupt_db: cannot write a child's memory here")
        return 77
    return run_tests(globals(), "corrupt_db", HTRACE, needs)


if __name__ == "__main__":
    sys.exit(main())
