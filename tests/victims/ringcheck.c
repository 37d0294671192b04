/* ringcheck: proves that no event is lost or written twice in the agent's
 * ring while signal handlers record events in the middle of the threads'
 * own recording.  Worker threads dup and close in a loop while the main
 * thread sends them SIGUSR1 a few microseconds apart; the handler dups and closes
 * too, so that its events land between any two instructions of a thread's
 * ring write (its run of records, the taking of a new run).  The ring is
 * made large enough (HTRACE_MAX_TRACES, set by tests/test_ring.py) never
 * to wrap; then, once the workers have ended, every
 * event number from 1 to the database's next_seq must be in exactly one
 * ring record, whole (seq == seq_end), and no record may name a number
 * past it.
 *
 * stdout: "EVENTS <n> SIGNALS <n> RUNS_CHECKED <n>" on success.  Exit 0 on
 * success, 1 on a lost, doubled or torn event, 77 without the agent or
 * with a ring too small for the run. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "htrace/db.h"

#define WORKERS 2
#define ITERATIONS 100000 /* dup+close pairs a worker makes */
#define SIGNAL_GAP_NS 3000 /* between two signals of the main thread */

static atomic_int done[WORKERS]; /* worker i has made its calls */
static atomic_long signals_handled;
static pthread_t workers[WORKERS];

static void on_usr1(int sig)
{
	(void)sig;
	int fd = dup(0);
	if (fd >= 0)
		close(fd);
	atomic_fetch_add_explicit(&signals_handled, 1, memory_order_relaxed);
}

static void *work(void *arg)
{
	atomic_int *finished = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (int i = 0; i < ITERATIONS; i++) {
		int fd = dup(0);
		if (fd < 0) {
			perror("ringcheck: dup");
			exit(1);
		}
		close(fd);
	}
	atomic_store(finished, 1);
	return NULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sends SIGUSR1 to the workers still at work, in turn, a few microseconds
 * apart (a spin: a sleep would last far longer), so that they also make
 * progress of their own; returns when all are done.  A worker is joined
 * only after this (a thread that has ended but is not joined yet takes
 * pthread_kill safely). */
static void signal_workers(void)
{
	for (unsigned n = 0, busy = WORKERS; busy; n++) {
		busy = 0;
		for (int i = 0; i < WORKERS; i++)
			busy += !atomic_load(&done[i]);
		if (!atomic_load(&done[n % WORKERS]))
			pthread_kill(workers[n % WORKERS], SIGUSR1);
		for (uint64_t until = now_ns() + SIGNAL_GAP_NS; now_ns() < until;)
			;
	}
}

static int block_usr1(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void run_workers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	block_usr1(); /* the main thread takes none; the workers unblock it */
	for (int i = 0; i < WORKERS; i++)
		pthread_create(&workers[i], NULL, work, &done[i]);
	signal_workers();
	for (int i = 0; i < WORKERS; i++)
		pthread_join(workers[i], NULL);
}

/* Each number from 1 to last in exactly one whole record: 0 if so. */
static int check_ring(const struct htrace_db *db, uint64_t last)
{
	const struct htrace_event *ring = (const struct htrace_event *)db->ring_addr;
	uint8_t *seen = calloc(last + 1, 1);
	if (!ring || !seen) {
		printf("ringcheck: no ring (or no memory for the check)\n");
		return 1;
	}
	int bad = 0;
	for (uint32_t i = 0; i < db->ring_capacity; i++) {
		const struct htrace_event *e = &ring[i];
		if (!e->seq && !e->seq_end)
			continue; /* never written: a run left before it was full */
		if (e->seq != e->seq_end || e->seq > last) {
			printf("ringcheck: record %u torn or from nowhere: seq %llu, seq_end %llu (last %llu)\n",
			       i, (unsigned long long)e->seq, (unsigned long long)e->seq_end,
			       (unsigned long long)last);
			bad = 1;
		} else if (seen[e->seq]++) {
			printf("ringcheck: event %llu written twice (record %u)\n",
			       (unsigned long long)e->seq, i);
			bad = 1;
		}
	}
	uint64_t missing = 0;
	for (uint64_t s = 1; s <= last; s++)
		if (!seen[s] && missing++ < 5)
			printf("ringcheck: event %llu is in no record\n", (unsigned long long)s);
	if (missing)
		printf("ringcheck: %llu of %llu events lost\n", (unsigned long long)missing,
		       (unsigned long long)last);
	free(seen);
	return bad || missing;
}

int main(void)
{
	const struct htrace_db *db = dlsym(RTLD_DEFAULT, HTRACE_DB_SYMBOL);
	if (!db || db->magic != HTRACE_DB_MAGIC || !htrace_db_tracing(db->state)) {
		printf("SKIP ringcheck: not started with the agent and tracing on\n");
		return 77;
	}
	uint64_t needed = (uint64_t)WORKERS * ITERATIONS * 2 * 3; /* and the handlers' */
	if (db->ring_capacity < needed) {
		printf("SKIP ringcheck: a ring of %u records may wrap; HTRACE_MAX_TRACES >= %llu\n",
		       db->ring_capacity, (unsigned long long)needed);
		return 77;
	}
	run_workers();
	uint64_t last = __atomic_load_n(&db->next_seq, __ATOMIC_ACQUIRE);
	if (db->events_dropped) {
		printf("ringcheck: %llu events dropped\n", (unsigned long long)db->events_dropped);
		return 1;
	}
	if (check_ring(db, last))
		return 1;
	printf("EVENTS %llu SIGNALS %ld RUNS_CHECKED %u\n", (unsigned long long)last,
	       atomic_load(&signals_handled), db->ring_capacity);
	return 0;
}
