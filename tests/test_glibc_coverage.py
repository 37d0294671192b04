#!/usr/bin/env python3
"""Checks htrace's hook table against glibc's exported symbol list: every
public libc function whose name says it may create or close a descriptor
must be interposed (`htrace --list-hooks`) or be listed below with the
reason it needs no hook.  A new glibc that adds such a function fails this
test until the table or the list is updated.

Env: HTRACE (the htrace binary).  Exit: 0 pass, 1 fail, 77 no nm or libc."""

import re
import shutil
import subprocess
import sys

from harness import HTRACE, executable, skip

CANDIDATE = re.compile(
    r"^_?_?(open|creat|socket|accept|pipe|dup|fcntl|eventfd|timerfd_create|signalfd|"
    r"epoll_create|inotify_init|fanotify_init|memfd|pidfd|posix_openpt|getpt|shm_open|"
    r"mq_open|mq_close|mk(o)?stemp|tmpfile|fopen|fdopen|freopen|fclose|fcloseall|opendir|"
    r"fdopendir|closedir|popen|pclose|recvm|close|openpty|forkpty|login_tty|daemon|"
    r"userfaultfd|fsopen|fsmount|fspick|open_tree|clone)")

# Matching names that create or close no descriptor of the calling process.
NOT_DESCRIPTOR_CALLS = {
    "open_memstream": "a FILE over memory, no descriptor",
    "open_wmemstream": "a FILE over memory, no descriptor",
    "fopencookie": "a FILE over callbacks, no descriptor",
    "openlog": "syslog's socket is opened lazily by glibc-internal calls (untracked)",
    "closelog": "closes syslog's internal socket (untracked)",
    "duplocale": "a locale object",
    "__duplocale": "a locale object",
    "create_module": "obsolete kernel-module call (ENOSYS)",
}


def libc_path():
    out = subprocess.run(["ldd", "/bin/sh"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libc.so" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    return None


def exported_functions(path):
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True,
                         text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in ("T", "W", "i") and "GLIBC_PRIVATE" not in fields[2]:
            names.add(fields[2].split("@")[0])
    return names


def main():
    if not executable(HTRACE):
        return skip("glibc_coverage", f"HTRACE={HTRACE!r} is not executable")
    libc = libc_path()
    if not libc or not shutil.which("nm"):
        return skip("glibc_coverage", "cannot find libc or nm")
    hooks = {l.split()[0] for l in subprocess.run([HTRACE, "--list-hooks"], capture_output=True,
                                                  text=True, check=True).stdout.splitlines()}
    candidates = sorted(n for n in exported_functions(libc) if CANDIDATE.match(n))
    missing = [n for n in candidates if n not in hooks and n not in NOT_DESCRIPTOR_CALLS]
    stale = [n for n in NOT_DESCRIPTOR_CALLS if n in hooks]
    for name in missing:
        print(f"FAIL {name}: exported by {libc}, neither hooked nor explained")
    for name in stale:
        print(f"FAIL {name}: hooked but also listed as needing no hook")
    print(f"{len(candidates)} descriptor-related libc exports checked, {len(missing)} not covered")
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
