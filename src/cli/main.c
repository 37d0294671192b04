/* htrace: the command-line client.  Dispatches to `run` and to the commands
 * on a running process (live.c), prints the hook table and the help text,
 * and finds the agent library relative to its own location. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "htrace/apis.h"
#include "live.h"
#include "options.h"
#include "run.h"

#define AGENT_RELATIVE "/../lib/htrace/libhtrace.so"

static const char usage_text[] =
	"Usage: htrace run [OPTIONS] [--] PROG [ARGS...]\n"
	"       htrace [--json] [-o FILE] -p PID -enable [Max_Traces]\n"
	"       htrace [--json] [-o FILE] -p PID -snapshot | -diff | -disable\n"
	"       htrace [--json] [-o FILE] [--html FILE] -p PID [Handle [Max_Traces]]\n"
	"       htrace [--json] [-o FILE] [--html FILE] --group -p PID [-diff]\n"
	"       htrace [--json] [-o FILE] Handle PID [Max_Traces]\n"
	"       htrace --list-hooks\n"
	"       htrace -? | --help\n"
	"\n"
	"run traces every file descriptor PROG opens and closes, and when PROG ends\n"
	"(return from main, exit, _exit, abort or a fatal signal) reports each\n"
	"descriptor it opened and never closed, with the stack that opened it.\n"
	"Before each exec, posix_spawn, system or popen it reports the descriptors\n"
	"without O_CLOEXEC that pass into the new program, with their stacks, and\n"
	"the new program's report shows those stacks for what it inherited.\n"
	"\n"
	"Options of run:\n"
	"  --json                 JSON Lines, one object per process (see README)\n"
	"  --format=FORMAT        text (default), json (as --json), or folded: one\n"
	"                         line per opening stack, 'outer;...;inner count',\n"
	"                         for flame-graph tools (also on PID)\n"
	"  -o, --output FILE      write the report to FILE instead of stderr\n"
	"  --error-exitcode=N     exit with N when leaks or bad references were found\n"
	"  -v, --verbose          also list the descriptors PROG inherited\n"
	"  --history              every recorded event (OPEN, CLOSE, BAD REFERENCE),\n"
	"                         closed handles too\n"
	"  --max-traces=N         events kept in the ring (default 65536)\n"
	"  --stack-depth=N        frames kept per stack, 1-64 (default 24)\n"
	"  -f, --follow-forks     trace and report every process of the tree\n"
	"  --type=LIST            only handles of these types (file,socket,pipe,...)\n"
	"  --path=GLOB            only handles whose target matches GLOB\n"
	"  --stack=REGEX          only traces with a frame matching REGEX (extended\n"
	"                         regex on module!function and the source file)\n"
	"  --older-than=DURATION  only handles opened longer ago (90s, 15m, 2h, 1d)\n"
	"                         These four filters apply to the commands on PID too.\n"
	"  --group                leaks grouped by opening stack, biggest first, and\n"
	"                         counted by opening function\n"
	"  --on-error=MODE        at a BAD REFERENCE (a descriptor used or closed when\n"
	"                         not open, or behind its FILE/DIR): report (default)\n"
	"                         records it; abort raises SIGABRT at the call\n"
	"  --html FILE            also write the report as a self-contained web page:\n"
	"                         flame graph of the open handles by stack, table of\n"
	"                         the handles; with -f, FILE.PID for other processes\n"
	"\n"
	"Commands on a running process PID (started with `htrace run`, or with\n"
	"LD_PRELOAD=.../lib/htrace/libhtrace.so; HTRACE_TRACE=1 starts tracing;\n"
	"without it the agent records nothing until -enable):\n"
	"  -enable [Max_Traces]   enable tracing and take the first snapshot; the\n"
	"                         descriptors opened before it are untracked\n"
	"  -snapshot              take a snapshot\n"
	"  -diff                  handles opened since the last snapshot and still\n"
	"                         open, with their OPEN traces, and BAD REFERENCEs\n"
	"  -disable               stop tracing and release the trace memory; the\n"
	"                         agent records nothing until the next -enable\n"
	"  [Handle [Max_Traces]]  traces of one handle (0 or none: all), newest first\n"
	"  Handle PID [Max_Traces] the same, in WinDbg's kernel-mode order\n"
	"  --group                (alone) the open handles grouped by opening stack,\n"
	"                         then the untracked ones (all, with tracing off);\n"
	"                         (with -diff) the new handles grouped\n"
	"  --html FILE            (with the listing, -diff or --group) also the\n"
	"                         report as a web page\n"
	"Reports go to stdout (or -o FILE); --json gives the schema of run's report.\n"
	"\n"
	"Numbers are decimal, or hexadecimal with 0x (unlike WinDbg, where handles\n"
	"are hexadecimal by default).\n"
	"\n"
	"Exit status of run: PROG's own, 128+N when a signal N killed it, N with\n"
	"--error-exitcode=N when leaks (at exit or across an exec) or bad references\n"
	"were found; 1 when htrace itself fails (agent library not found, PROG cannot\n"
	"be started, a trace database missing or not trustworthy, the agent stopped\n"
	"tracing); 2 for bad usage (including an -o FILE or --html FILE that cannot be\n"
	"written); 126 when PROG cannot be executed, 127 when it is not found.\n"
	"Exit status of the commands on PID: 0 done, 1 failed (no such process, no\n"
	"agent, permission refused, incompatible agent, tracing not enabled, -diff\n"
	"before any snapshot), 2 bad usage.  See htrace(1).\n";

static void print_hooks(void)
{
	for (unsigned api = 1; api < HTRACE_API_COUNT; api++)
		printf("%-24s %s\n", htrace_api_name(api), htrace_api_what(api));
}

/* HTRACE_AGENT, else ../lib/htrace/libhtrace.so from our own executable. */
static int find_agent(char *path, size_t len)
{
	snprintf(path, len, "%s", "libhtrace.so");
	const char *forced = getenv("HTRACE_AGENT");
	if (forced && *forced) {
		snprintf(path, len, "%s", forced);
	} else {
		char self[PATH_MAX - sizeof(AGENT_RELATIVE)];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0)
			return -1;
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(path, len, "%s%s", self, AGENT_RELATIVE);
	}
	char resolved[PATH_MAX];
	if (!realpath(path, resolved) || access(resolved, R_OK) != 0)
		return -1;
	snprintf(path, len, "%s", resolved);
	return 0;
}

static int command_run(int argc, char **argv)
{
	struct run_options opt;
	int rc = options_parse_run(argc, argv, &opt);
	char agent[PATH_MAX];
	if (!rc && find_agent(agent, sizeof(agent)) < 0) {
		fprintf(stderr, "htrace: cannot find the agent library %s (set HTRACE_AGENT)\n", agent);
		rc = 1;
	} else if (!rc)
		rc = run_command(&opt, agent);
	filter_free(&opt.filter);
	return rc;
}

/* Options that may open a command on a running process. */
static int is_live_option(const char *arg)
{
	static const char *const names[] = { "-p", "--json", "-o", "--output", "--group", "--format",
					     "--type", "--path", "--stack", "--older-than", "--html" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t len = strlen(names[i]);
		if (!strncmp(arg, names[i], len) && (arg[len] == '\0' || (arg[len] == '=' && len > 2)))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("htrace: no command given (see htrace --help)\n", stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-?") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--list-hooks")) {
		print_hooks();
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return command_run(argc - 1, argv + 1);
	if (cmd[0] == '-' && !is_live_option(cmd)) {
		fprintf(stderr, "htrace: unknown option '%s' (see htrace --help)\n", cmd);
		return EXIT_USAGE;
	}
	struct live_options live;
	int rc = live_parse(argc - 1, argv + 1, &live);
	if (!rc)
		rc = live_run(&live);
	filter_free(&live.filter);
	return rc;
}
