# htrace-gdb.py: the `htrace` command inside gdb, for the current inferior,
# as !htrace works inside WinDbg:
#
#   (gdb) source /usr/local/share/htrace/htrace-gdb.py
#   (gdb) htrace -enable
#   (gdb) htrace -snapshot
#   (gdb) htrace -diff
#   (gdb) htrace 0x1c
#
# It runs the htrace client (installed two directories up, in bin/, or the
# one named by $HTRACE) on the inferior's pid; the client reads the
# inferior's memory itself, which works while gdb holds it stopped.
import os
import subprocess
import sys

import gdb

# gdb's `source` defines no __file__: the code object knows where we are.
_HERE = os.path.dirname(os.path.realpath(sys._getframe().f_code.co_filename))


def _client():
    forced = os.environ.get("HTRACE")
    if forced:
        return forced
    return os.path.join(_HERE, "..", "..", "bin", "htrace")


class HtraceCommand(gdb.Command):
    """Handle traces of the current inferior, as WinDbg's !htrace.

htrace -enable [Max_Traces]   enable tracing and take a snapshot
htrace -snapshot              take a snapshot
htrace -diff                  handles opened since the snapshot and still open
htrace -disable               stop tracing, release the trace memory
htrace [Handle [Max_Traces]]  the traces of one handle (0 or none: all)
htrace -?                     help
Options --json and -o FILE are passed on.  The inferior must run with
libhtrace.so preloaded (set environment LD_PRELOAD .../libhtrace.so)."""

    def __init__(self):
        super().__init__("htrace", gdb.COMMAND_DATA)

    def invoke(self, argument, from_tty):
        args = gdb.string_to_argv(argument)
        if args and args[0] in ("-?", "-h", "--help"):
            result = subprocess.run([_client(), "--help"], capture_output=True, text=True)
            gdb.write(result.stdout)
            return
        inferior = gdb.selected_inferior()
        if inferior is None or inferior.pid <= 0:
            raise gdb.GdbError("htrace: no process: start the program first (run)")
        try:
            result = subprocess.run([_client(), "-p", str(inferior.pid)] + args,
                                    capture_output=True, text=True)
        except OSError as e:
            raise gdb.GdbError(f"htrace: cannot run {_client()}: {e}")
        gdb.write(result.stdout)
        if result.returncode != 0:
            # an error stops a gdb script, as a failing gdb command does
            raise gdb.GdbError(result.stderr.strip() or f"htrace exited {result.returncode}")
        if result.stderr:
            gdb.write(result.stderr, gdb.STDERR)


HtraceCommand()
