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

from harness import VICTIMS, expect, run_test_functions, skip

FILES = ["bin/htrace", "lib/htrace/libhtrace.so", "include/htrace.h", "share/man/man1/htrace.1",
         "share/htrace/htrace-gdb.py"]
BUILD = os.environ.get("HTRACE_BUILD", "build")
VICTIM = os.path.join(VICTIMS, "behave")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_install(prefix):
    result = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", "install", f"PREFIX={prefix}"],
                            capture_output=True, text=True)
    expect(result.returncode == 0, f"make install: exit {result.returncode}\n{result.stderr}")


def run_installed(htrace):
    env = {k: v for k, v in os.environ.items() if k != "HTRACE_AGENT"}
    result = subprocess.run([htrace, "run", "--", VICTIM, "exit", "0"], capture_output=True,
                            text=True, env=env, timeout=60)
    expect(result.returncode == 0 and "Handle 0x3 - OPEN:" in result.stderr,
           f"{htrace} run: exit {result.returncode}\n{result.stderr}")


def test_install_files_in_place_and_agent_found_from_the_installed_and_the_moved_tree():
    with tempfile.TemporaryDirectory(prefix="htrace-install-") as tmp:
        prefix = os.path.join(tmp, "first")
        make_install(prefix)
        for f in FILES:
            expect(os.path.isfile(os.path.join(prefix, f)), f"{f} not installed")
        run_installed(os.path.join(prefix, "bin", "htrace"))
        moved = os.path.join(tmp, "elsewhere", "deeper")
        shutil.copytree(prefix, moved, symlinks=True)
        shutil.rmtree(prefix)
        run_installed(os.path.join(moved, "bin", "htrace"))
        link = os.path.join(tmp, "htrace-link")
        os.symlink(os.path.join(moved, "bin", "htrace"), link)
        run_installed(link)


def main():
    if not shutil.which("make"):
        return skip("install", "make not found")
    return run_test_functions(globals(), "install")


if __name__ == "__main__":
    sys.exit(main())
