#!/usr/bin/env python3
"""The bench's guest (bench/guest.py) must not rot either: a full `make
bench` goes there for the client check when this machine cannot hold
100,000 descriptors.  A guest must boot, let its root raise the
descriptor limit beyond this machine's, and run `bench/run.py --smoke
--client-only --guest` to the end: the report then has the guest's
figures for the client and lsof, and no error.  Nothing here looks at a
timing.

Env: HTRACE (the client), HTRACE_BUILD (the build directory: the agent and
bench/bench).  Exit 0 pass, 1 fail, 77 skip (qemu, a static busybox or
Debian's kernel package not at hand, or nothing built)."""

import os
import re
import resource
import subprocess
import sys

from harness import AGENT, BUILD, HTRACE, skip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import guest  # noqa: E402  (bench/guest.py)

BENCH = os.path.join(BUILD, "bench", "bench") if BUILD else ""
NR_OPEN = 1 << 20  # the kernel's default ceiling of RLIMIT_NOFILE


def limit_beyond_the_hosts():
    """Problems with a guest's root raising its hard descriptor limit
    beyond this machine's (where this machine's is below nr_open)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= NR_OPEN:
        print(f"note: this machine's hard limit ({hard}) is at nr_open: the guest cannot go beyond it")
        return []
    # beyond this machine's limit where the guest's nr_open (2^20) allows it
    want = min(NR_OPEN, max(hard * 2, 200_000))
    out, status, reason = guest.run(f"ulimit -Hn {want} && ulimit -Hn\n", timeout=600)
    if reason:
        return [f"no guest: {reason}"]
    if status != 0 or out.split()[-1:] != [str(want)]:
        return [f"the guest's root could not raise its hard limit to {want}: exit {status}, {out!r}"]
    return []


def smoke_client_check_in_the_guest():
    env = dict(os.environ, HTRACE_AGENT=AGENT, HTRACE_BENCH=BENCH, HTRACE=HTRACE)
    env.pop("QUICK", None)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--client-only",
                        "--guest"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=900)
    problems = []
    if p.returncode != 0:
        problems.append(f"run.py exited {p.returncode}")
    if not re.search(r"In a qemu guest under software emulation: htrace --group -p PID [\d.]+ s, .*"
                     r"lsof -p PID [\d.]+ s \([\d.]+×\)", p.stdout):
        problems.append("the report has no figures from the guest")
    if "### Errors" in p.stdout:
        problems.append("the report lists errors")
    if problems:
        print(p.stdout[-3000:])
        print(p.stderr[-2000:])
    return problems


def main():
    if not BUILD or not HTRACE or not os.access(BENCH, os.X_OK):
        return skip("bench_guest", "the client or the bench binary is not built (HTRACE_BUILD unset?)")
    tree, missing = guest.kernel_tree()
    if not tree:
        return skip("bench_guest", missing)
    problems = limit_beyond_the_hosts() + smoke_client_check_in_the_guest()
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("PASS: a guest raised its descriptor limit and ran the client check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
