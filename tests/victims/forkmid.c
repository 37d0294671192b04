/* forkmid: a fork while another thread is in the middle of writing a ring
 * record, for tests/test_fork_midwrite.py.  A worker thread dups and
 * closes in a loop once gdb sets `go`; gdb holds it inside the agent's
 * ring write (its record claimed, not yet filled), sets `fork_now`, and
 * lets the main thread alone run on: it forks, and the child, in which
 * the worker does not exist, makes enough events to go round its ring
 * (HTRACE_MAX_TRACES is small) several times, then prints "CHILD DROPPED
 * <n>": the events the agent dropped meanwhile, which must be 0 (the
 * record the worker left half written is the child's to take over).  The
 * parent prints "CHILD EXIT <status>" and stops at checkpoint_two().
 *
 * Exit 77 (and "SKIP") without the agent. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "htrace/db.h"

#define NOINLINE __attribute__((noinline, noclone))
#define CHILD_PAIRS 3000 /* dup+close pairs of the child */

volatile int go, fork_now; /* set by gdb */

NOINLINE void checkpoint_one(void)
{
	__asm__ volatile("");
}

NOINLINE void checkpoint_two(void)
{
	__asm__ volatile("");
}

static void *worker(void *arg)
{
	(void)arg;
	while (!go)
		__asm__ volatile("pause");
	for (;;) {
		int fd = dup(0);
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static void child(const struct htrace_db *db)
{
	uint64_t before = __atomic_load_n(&db->events_dropped, __ATOMIC_RELAXED);
	for (int i = 0; i < CHILD_PAIRS; i++) {
		int fd = dup(0);
		if (fd >= 0)
			close(fd);
	}
	uint64_t after = __atomic_load_n(&db->events_dropped, __ATOMIC_RELAXED);
	printf("CHILD DROPPED %llu\n", (unsigned long long)(after - before));
	fflush(stdout);
	_exit(0);
}

int main(void)
{
	const struct htrace_db *db = dlsym(RTLD_DEFAULT, HTRACE_DB_SYMBOL);
	if (!db || db->magic != HTRACE_DB_MAGIC) {
		printf("SKIP forkmid: not started with the agent\n");
		return 77;
	}
	pthread_t thread;
	pthread_create(&thread, NULL, worker, NULL);
	checkpoint_one();
	while (!fork_now)
		__asm__ volatile("pause");
	pid_t pid = fork();
	if (pid == 0)
		child(db);
	int status = -1;
	if (pid > 0)
		waitpid(pid, &status, 0);
	printf("CHILD EXIT %d\n", status);
	fflush(stdout);
	checkpoint_two();
	return 0;
}
