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

/* A number from the environment within [lo, hi], or fallback. */
static unsigned env_number(const char *name, unsigned fallback, unsigned lo, unsigned hi)
{
	const char *text = getenv(name);
	if (!text || !*text)
		return fallback;
	char *end;
	unsigned long value = strtoul(text, &end, 0);
	if (*end || value < lo || value > hi)
		return fallback;
	return (unsigned)value;
}

static void read_exe_path(void)
{
	long n = RAW3(SYS_readlink, "/proc/self/exe", htrace_db.exe, sizeof(htrace_db.exe) - 1);
	htrace_db.exe[n > 0 ? n : 0] = '\0';
}

/* The ring and depot are mapped now, tracing or not (mapped memory costs
 * nothing until written), so that `htrace -p PID -enable` can start
 * tracing by writing the database, even while the process is stopped. */
static void prepare_tracing(void)
{
	const char *trace = getenv("HTRACE_TRACE");
	unsigned max_traces = env_number("HTRACE_MAX_TRACES", DEFAULT_MAX_TRACES, 0, MAX_MAX_TRACES);
	unsigned depth = env_number("HTRACE_STACK_DEPTH", DEFAULT_STACK_DEPTH, 1, HTRACE_MAX_DEPTH);
	if (engine_reserve(max_traces, depth, trace && strcmp(trace, "1") == 0) < 0)
		agent_fail("cannot map memory for the trace ring and stack depot");
	const char *on_error = getenv("HTRACE_ON_ERROR");
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
