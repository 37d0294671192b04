#!/usr/bin/env python3
"""`make install PREFIX=DIR` puts htrace, its agent, the public header and
the man page under DIR, and the installed htrace finds its agent relative
to its own location, wherever DIR is (also after the tree is moved).

Env: HTRACE_BUILD (the build directory), HTRACE_VICTIMS (built victims).
Exit: 0 pass, 1 fail, 77 make missing."""

import os
import shutil
import subprocess
import sys
import tempfile

FILES = ["bin/htrace", "lib/htrace/libhtrace.so", "include/htrace.h", "share/man/man1/htrace.1",
         "share/htrace/htrace-gdb.py"]


def run_installed(htrace, victim):
    env = {k: v for k, v in os.environ.items() if k != "HTRACE_AGENT"}
    result = subprocess.run([htrace, "run", "--", victim, "exit", "0"], capture_output=True,
                            text=True, env=env, timeout=60)
    if result.returncode != 0 or "Handle 0x3 - OPEN:" not in result.stderr:
        raise AssertionError(f"{htrace} run: exit {result.returncode}\n{result.stderr}")


def main():
    if not shutil.which("make"):
        print("skip: make not found")
        return 77
    build = os.environ.get("HTRACE_BUILD", "build")
    victim = os.path.join(os.environ.get("HTRACE_VICTIMS", ""), "behave")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="htrace-install-") as tmp:
        prefix = os.path.join(tmp, "first")
        result = subprocess.run(["make", "-s", "-C", root, f"BUILD={build}", "install",
                                 f"PREFIX={prefix}"], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"FAIL make install: {result.stderr}")
            return 1
        try:
            for f in FILES:
                assert os.path.isfile(os.path.join(prefix, f)), f"{f} not installed"
            run_installed(os.path.join(prefix, "bin", "htrace"), victim)
            moved = os.path.join(tmp, "elsewhere", "deeper")
            shutil.copytree(prefix, moved, symlinks=True)
            shutil.rmtree(prefix)
            run_installed(os.path.join(moved, "bin", "htrace"), victim)
            link = os.path.join(tmp, "htrace-link")
            os.symlink(os.path.join(moved, "bin", "htrace"), link)
            run_installed(link, victim)
        except AssertionError as e:
            print(f"FAIL install: {e}")
            return 1
    print("ok install: files in place, agent found from the installed and the moved tree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
