/* Start-up of the agent (libhtrace.so): fills in the database header that
 * the client looks for, learns the descriptors the image inherited and the
 * loaded objects, prepares the unwinder and, when HTRACE_TRACE=1, turns
 * tracing on.  Also the fork handler, and the one way the agent gives up:
 * agent_fail stops tracing and says why, and the program runs on. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "exec.h"

#define DEFAULT_MAX_TRACES 65536u
#define MAX_MAX_TRACES (64u << 20)
#define DEFAULT_STACK_DEPTH 24u

AGENT_EXPORT struct htrace_db htrace_db __attribute__((aligned(64))) = {
	.version = HTRACE_DB_VERSION,
	.size = sizeof(struct htrace_db),
};
extern struct htrace_db htrace_db_here __attribute__((alias("htrace_db"))) AGENT_HIDDEN;

AGENT_TLS struct agent_thread agent_self;
AGENT_TLS int htrace_in_vfork;

void agent_fail(const char *why)
{
	strncpy(htrace_db.failure, why, sizeof(htrace_db.failure) - 1);
	__atomic_or_fetch(&htrace_db.state, HTRACE_STATE_FAILED, __ATOMIC_RELEASE);
}

void agent_after_fork_child(void)
{
	agent_self.tid = 0;
	agent_self.unwinding = 0;
	forksafe_in_child();
	modules_fork_child();
	stack_fork_child();
	htrace_db.pid = (int32_t)RAW0(SYS_getpid);
	engine_fork_child();
}

/* One line on stderr for a variable of ours whose value the agent cannot
 * use: "htrace: ignoring NAME=VALUE (why): what it does instead".  The
 * program runs on; no stdio, no malloc. */
void agent_env_ignored(const char *name, const char *value, const char *why, const char *instead)
{
	char line[320];
	size_t n = 0;
	const char *parts[] = { "htrace: ignoring ", name, "=", value, " (", why, "): ", instead };
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		size_t most = i == 3 ? 64 : sizeof(line); /* a long value is cut, with "..." */
		const char *c = parts[i];
		for (; *c && n < sizeof(line) - 4 && (size_t)(c - parts[i]) < most; c++)
			line[n++] = *c;
		for (int dot = 0; *c && dot < 3 && n < sizeof(line) - 1; dot++)
			line[n++] = '.';
	}
	line[n++] = '\n';
	RAW3(SYS_write, 2, line, n);
}

/* A number from the environment within [lo, hi], or fallback (said on
 * stderr when the variable is set to something else). */
static unsigned env_number(const char *name, unsigned fallback, unsigned lo, unsigned hi,
			   const char *why, const char *instead)
{
	const char *text = getenv(name);
	if (!text || !*text)
		return fallback;
	char *end;
	unsigned long value = strtoul(text, &end, 0);
	if (*end || value < lo || value > hi || *text == '-' || *text == ' ') {
		agent_env_ignored(name, text, why, instead);
		return fallback;
	}
	return (unsigned)value;
}

/* Whether the variable is set to one of the words of choices (NULL
 * ended), or unset or empty; said on stderr when it is set to another. */
static int env_word_known(const char *name, const char *const *choices, const char *why,
			  const char *instead)
{
	const char *text = getenv(name);
	if (!text || !*text)
		return 1;
	for (; *choices; choices++)
		if (!strcmp(text, *choices))
			return 1;
	agent_env_ignored(name, text, why, instead);
	return 0;
}

static void read_exe_path(void)
{
	long n = RAW3(SYS_readlink, "/proc/self/exe", htrace_db.exe, sizeof(htrace_db.exe) - 1);
	htrace_db.exe[n > 0 ? n : 0] = '\0';
}

/* The ring and depot are mapped now, tracing or not (mapped memory costs
 * nothing until written), so that `htrace -p PID -enable` can start
 * tracing by writing the database, even while the process is stopped. */
_Static_assert(DEFAULT_MAX_TRACES == 65536 && MAX_MAX_TRACES == 67108864 &&
		       DEFAULT_STACK_DEPTH == 24 && HTRACE_MAX_DEPTH == 64,
	       "prepare_tracing's messages name these numbers");

static void prepare_tracing(void)
{
	static const char *const trace_words[] = { "0", "1", NULL };
	static const char *const on_error_words[] = { "report", "abort", NULL };
	const char *trace = getenv("HTRACE_TRACE");
	env_word_known("HTRACE_TRACE", trace_words, "neither 1 nor 0",
		       "tracing stays off until htrace -p PID -enable");
	unsigned max_traces = env_number("HTRACE_MAX_TRACES", DEFAULT_MAX_TRACES, 0, MAX_MAX_TRACES,
					 "not a number from 0 to 67108864", "the ring keeps 65536 events");
	unsigned depth = env_number("HTRACE_STACK_DEPTH", DEFAULT_STACK_DEPTH, 1, HTRACE_MAX_DEPTH,
				    "not a number from 1 to 64", "stacks keep up to 24 frames");
	if (engine_reserve(max_traces, depth, trace && strcmp(trace, "1") == 0) < 0)
		agent_fail("cannot map memory for the trace ring and stack depot");
	const char *on_error = getenv("HTRACE_ON_ERROR");
	env_word_known("HTRACE_ON_ERROR", on_error_words, "neither report nor abort",
		       "a BAD REFERENCE is only recorded");
	htrace_db.on_error_abort = on_error && strcmp(on_error, "abort") == 0;
}

void agent_init(void)
{
	static int started;
	if (__atomic_exchange_n(&started, 1, __ATOMIC_ACQ_REL))
		return;
	htrace_db.api_hash = htrace_api_hash();
	htrace_db.pid = (int32_t)RAW0(SYS_getpid);
	read_exe_path();
	hooks_resolve();
	hooks_exec_init();
	engine_init();
	modules_refresh();
	engine_scan_inherited();
	forksafe_init();
	stack_init();
	hooks_process_init();
	pthread_atfork(forksafe_before_fork, NULL, agent_after_fork_child);
	prepare_tracing();
	exec_adopt();
	__atomic_store_n(&htrace_db.magic, HTRACE_DB_MAGIC, __ATOMIC_RELEASE);
}

__attribute__((constructor(101))) static void agent_constructor(void)
{
	agent_init();
}
