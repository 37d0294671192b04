/* htrace benchmark program: runs ONE workload and prints its time per
 * operation, so that bench/run.py can run the same binary untraced, with
 * the agent preloaded (tracing off or on), under valgrind and under strace.
 *
 *   bench [--threads N] [--deep] [--hold N] WORKLOAD ITERATIONS
 *       WORKLOAD is one of
 *         open    open("/dev/null") + close
 *         socket  socket(AF_INET, SOCK_STREAM) + close
 *         pipe    pipe + close of both ends
 *         dup     dup + dup2 (onto a descriptor kept open) + close
 *         fopen   fopen("/dev/null") + fclose
 *       --threads N  the same loop in N threads at once, ITERATIONS each;
 *                    the time per operation is the mean of the threads'
 *                    own loop times / ITERATIONS (wall_ns: from the first
 *                    thread's start to the last one's end)
 *       --deep       every call made from a stack about 20 frames deeper
 *                    (bench/deep.c, built without frame pointers)
 *       --hold N     open N descriptors first and keep them open
 *                    (RLIMIT_NOFILE raised as needed; exit 77 if it can't)
 *       --turns IN,OUT,K  takes turns with other bench processes: the
 *                    measured loop is cut into K batches, and before each
 *                    one the process waits for a byte on descriptor IN,
 *                    after it writes one to OUT (bench/run.py joins the
 *                    configurations of a repetition in a ring of pipes,
 *                    so that they alternate every few milliseconds and a
 *                    change of the machine's speed hits them alike); the
 *                    time per operation counts only the batches
 *     prints: RESULT ns_per_op=X ops=ITERATIONS threads=N wall_ns=W ...
 *             agent=A stacks=S
 *       where A is 1 when the agent is loaded and S is 1 when it recorded
 *       the stack of a descriptor opened after the loop (tracing on), so
 *       that the driver can check the configuration was in effect
 *
 *   bench memory EVENTS
 *       EVENTS open and close events (EVENTS/2 open+close pairs of
 *       /dev/null) made from 100 distinct call paths; prints VmRSS before
 *       and after: MEMORY events=E rss_before_kib=B rss_after_kib=A
 *
 *   bench hold-traced COUNT [PATHS]
 *       opens COUNT descriptors of /dev/null from PATHS distinct call paths
 *       (default 100000 and 1000; PATHS at most 1000) and keeps them open,
 *       prints READY count=C paths=P and sleeps until killed.  Needs
 *       RLIMIT_NOFILE >= COUNT + 100: raises it (the hard limit too, when
 *       privileged), or says SKIP and exits 77.
 *
 * Exit status: 0 done, 1 a call failed, 2 bad usage, 77 skipped (a limit
 * could not be raised).  Every operation checks its result. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <htrace.h>

#include "deep.h"

#define NOIPA __attribute__((noinline, noipa))
#define MAX_THREADS 64

static void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Makes the soft RLIMIT_NOFILE at least `need`, raising the hard limit as
 * well when the process may (root).  Returns 0, or -1 with a message. */
static int ensure_nofile(rlim_t need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		die("getrlimit");
	if (rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max < need) {
		struct rlimit up = {need, need};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return 0;
		printf("SKIP: need RLIMIT_NOFILE >= %llu but the hard limit is %llu and cannot be raised (%s)\n",
		       (unsigned long long)need, (unsigned long long)rl.rlim_max, strerror(errno));
		return -1;
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl)) {
		printf("SKIP: cannot raise the soft RLIMIT_NOFILE to %llu (%s)\n",
		       (unsigned long long)rl.rlim_max, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the workloads: one operation each ---- */

/* Turns taken with other processes (--turns); batches 1 and no descriptors
 * when alone. */
struct turns {
	int in, out;
	long batches;
};

struct worker {
	int workload;
	int deep;
	long iterations; /* of the batch being run */
	long warmup;
	int dup_base;   /* dup: the descriptor duplicated */
	int dup_target; /* dup: the number dup2 writes over, kept open */
	pthread_barrier_t *barrier;
	pthread_t thread;
	uint64_t start_ns, end_ns; /* of its measured loop */
};

enum { W_OPEN, W_SOCKET, W_PIPE, W_DUP, W_FOPEN };
static const char *const workload_names[] = {"open", "socket", "pipe", "dup", "fopen"};

static void one_op(struct worker *w)
{
	switch (w->workload) {
	case W_OPEN: {
		int fd = open("/dev/null", O_RDONLY);
		if (fd < 0)
			die("open /dev/null");
		if (close(fd))
			die("close");
		break;
	}
	case W_SOCKET: {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket");
		if (close(fd))
			die("close");
		break;
	}
	case W_PIPE: {
		int p[2];
		if (pipe(p))
			die("pipe");
		if (close(p[0]) || close(p[1]))
			die("close");
		break;
	}
	case W_DUP: {
		int fd = dup(w->dup_base);
		if (fd < 0)
			die("dup");
		if (dup2(w->dup_base, w->dup_target) != w->dup_target)
			die("dup2");
		if (close(fd))
			die("close");
		break;
	}
	case W_FOPEN: {
		FILE *f = fopen("/dev/null", "r");
		if (!f)
			die("fopen /dev/null");
		if (fclose(f))
			die("fclose");
		break;
	}
	}
}

/* The loop; with --deep it runs at the bottom of the 20-frame chain. */
static long run_loop(void *arg)
{
	struct worker *w = arg;
	for (long i = 0; i < w->iterations; i++)
		one_op(w);
	return 0;
}

static long run_warmup(void *arg)
{
	struct worker *w = arg;
	for (long i = 0; i < w->warmup; i++)
		one_op(w);
	return 0;
}

static void run_measured(struct worker *w)
{
	if (w->deep)
		deep_call(run_loop, w);
	else
		run_loop(w);
}

static void setup_worker(struct worker *w)
{
	if (w->workload == W_DUP) {
		w->dup_base = open("/dev/null", O_RDONLY);
		w->dup_target = w->dup_base < 0 ? -1 : dup(w->dup_base);
		if (w->dup_base < 0 || w->dup_target < 0)
			die("open /dev/null for dup");
	}
	/* the same stack as the measured loop, so that the agent has seen it */
	if (w->deep)
		deep_call(run_warmup, w);
	else
		run_warmup(w);
}

/* A worker thread: each batch starts when every thread and the main one
 * are at the barrier, and the main thread reads the clocks of the batch
 * after the second barrier. */
static void *thread_main(void *arg)
{
	struct worker *w = arg;
	setup_worker(w);
	for (;;) {
		pthread_barrier_wait(w->barrier);
		if (!w->iterations)
			return NULL;
		w->start_ns = now_ns();
		run_measured(w);
		w->end_ns = now_ns();
		pthread_barrier_wait(w->barrier);
	}
}

static void wait_turn(const struct turns *t)
{
	char c;
	if (t->in >= 0 && read(t->in, &c, 1) != 1)
		die("read the turn");
}

static void give_turn(const struct turns *t)
{
	char c = 't';
	if (t->out >= 0 && write(t->out, &c, 1) != 1)
		die("write the turn");
}

/* Batch b's share of the iterations (the batches differ by one at most). */
static long batch_size(long iterations, long batches, long b)
{
	return iterations * (b + 1) / batches - iterations * b / batches;
}

/* The measured loop of one thread, in batches: its wall time. */
static uint64_t measure_alone(struct worker *w, long iterations, const struct turns *t)
{
	uint64_t total = 0;
	for (long b = 0; b < t->batches; b++) {
		w->iterations = batch_size(iterations, t->batches, b);
		wait_turn(t);
		uint64_t t0 = now_ns();
		run_measured(w);
		total += now_ns() - t0;
		give_turn(t);
	}
	return total;
}

/* The time of each thread's own loop, summed over the batches into
 * *busy (the mean over the threads) and *span (from the first thread's
 * start to the last one's end).  Each thread reads the clock itself: a
 * thread woken late by the barrier starts late, which the span counts
 * but the threads' own times do not (measured here: tens of microseconds
 * a batch, which diluted the ratios towards 1 and made most of their
 * spread); a scheduler that runs them one at a time (valgrind's) lengthens
 * each thread's time by the other's all the same. */
static void measure_threads(struct worker *workers, int threads, long iterations,
			    const struct turns *t, pthread_barrier_t *barrier, uint64_t *busy,
			    uint64_t *span)
{
	uint64_t own = 0;
	*span = 0;
	for (long b = 0; b < t->batches; b++) {
		for (int i = 0; i < threads; i++)
			workers[i].iterations = batch_size(iterations, t->batches, b);
		wait_turn(t);
		pthread_barrier_wait(barrier);
		pthread_barrier_wait(barrier);
		uint64_t t0 = UINT64_MAX, t1 = 0;
		for (int i = 0; i < threads; i++) {
			own += workers[i].end_ns - workers[i].start_ns;
			if (workers[i].start_ns < t0)
				t0 = workers[i].start_ns;
			if (workers[i].end_ns > t1)
				t1 = workers[i].end_ns;
		}
		*span += t1 - t0;
		give_turn(t);
	}
	for (int i = 0; i < threads; i++)
		workers[i].iterations = 0; /* the workers' signal to end */
	pthread_barrier_wait(barrier);
	*busy = own / (uint64_t)threads;
}

static int workload_main(int workload, long iterations, int threads, int deep, long hold,
			 const struct turns *turns)
{
	if (hold > 0) {
		if (ensure_nofile((rlim_t)hold + 64 + 4 * (rlim_t)threads))
			return 77;
		for (long i = 0; i < hold; i++)
			if (open("/dev/null", O_RDONLY) < 0)
				die("open /dev/null to hold");
	}
	long warmup = iterations / 10;
	if (warmup > 10000)
		warmup = 10000;
	if (warmup < 1)
		warmup = 1;

	struct worker workers[MAX_THREADS];
	uint64_t busy, wall;
	if (threads == 1) {
		struct worker *w = &workers[0];
		*w = (struct worker){.workload = workload, .deep = deep, .warmup = warmup};
		setup_worker(w);
		busy = wall = measure_alone(w, iterations, turns);
	} else {
		pthread_barrier_t barrier;
		pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
		for (int t = 0; t < threads; t++) {
			workers[t] = (struct worker){.workload = workload, .deep = deep, .warmup = warmup,
						     .barrier = &barrier};
			errno = pthread_create(&workers[t].thread, NULL, thread_main, &workers[t]);
			if (errno)
				die("pthread_create");
		}
		measure_threads(workers, threads, iterations, turns, &barrier, &busy, &wall);
		for (int t = 0; t < threads; t++)
			pthread_join(workers[t].thread, NULL);
		pthread_barrier_destroy(&barrier);
	}
	int agent = htrace_fd_state != NULL, stacks = 0;
	if (agent) {
		int fd = open("/dev/null", O_RDONLY);
		if (fd < 0)
			die("open /dev/null");
		stacks = (htrace_fd_state(fd) & HTRACE_FD_HAS_STACK) != 0;
		close(fd);
	}
	printf("RESULT ns_per_op=%.2f ops=%ld threads=%d wall_ns=%llu workload=%s deep=%d hold=%ld agent=%d stacks=%d\n",
	       (double)busy / (double)iterations, iterations, threads, (unsigned long long)wall,
	       workload_names[workload], deep, hold, agent, stacks);
	return 0;
}

/* ---- distinct call paths: pa[i % 10] -> pb[i / 10 % 10] -> pc[i / 100 % 10] -> leaf ----
 * Each level's call site is in a different function, so each of the 1000
 * combinations is a different stack.  As in deep.c, work after each call
 * keeps it from being a tail call. */

struct path {
	unsigned i;
	long (*leaf)(struct path *);
	int fd;
};

typedef long (*path_fn)(struct path *);
static const path_fn pa_tab[10], pb_tab[10], pc_tab[10];

#define PATH_LEVEL(lvl, k, call)                        \
	NOIPA static long lvl##k(struct path *p)        \
	{                                               \
		long r = call;                          \
		__asm__ volatile("" : "+r"(r));         \
		return r + k;                           \
	}
#define PATH_LEVELS(lvl, call)                                                                    \
	PATH_LEVEL(lvl, 0, call) PATH_LEVEL(lvl, 1, call) PATH_LEVEL(lvl, 2, call)                \
	PATH_LEVEL(lvl, 3, call) PATH_LEVEL(lvl, 4, call) PATH_LEVEL(lvl, 5, call)                \
	PATH_LEVEL(lvl, 6, call) PATH_LEVEL(lvl, 7, call) PATH_LEVEL(lvl, 8, call)                \
	PATH_LEVEL(lvl, 9, call)

PATH_LEVELS(pc, p->leaf(p))
PATH_LEVELS(pb, pc_tab[p->i / 100 % 10](p))
PATH_LEVELS(pa, pb_tab[p->i / 10 % 10](p))

static const path_fn pa_tab[10] = {pa0, pa1, pa2, pa3, pa4, pa5, pa6, pa7, pa8, pa9};
static const path_fn pb_tab[10] = {pb0, pb1, pb2, pb3, pb4, pb5, pb6, pb7, pb8, pb9};
static const path_fn pc_tab[10] = {pc0, pc1, pc2, pc3, pc4, pc5, pc6, pc7, pc8, pc9};

static long call_path(struct path *p)
{
	return pa_tab[p->i % 10](p);
}

NOIPA static long leaf_open_close(struct path *p)
{
	(void)p;
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0)
		die("open /dev/null");
	if (close(fd))
		die("close");
	return 0;
}

NOIPA static long leaf_open(struct path *p)
{
	p->fd = open("/dev/null", O_RDONLY);
	if (p->fd < 0)
		die("open /dev/null");
	return 0;
}

static long vm_kib(const char *field)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		die("open /proc/self/status");
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		die("read /proc/self/status");
	buf[n] = 0;
	size_t len = strlen(field);
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, field, len) && line[len] == ':')
			return strtol(line + len + 1, NULL, 10);
	return -1;
}

static int memory_main(long events)
{
	long before = vm_kib("VmRSS");
	struct path p = {.leaf = leaf_open_close};
	uint64_t t0 = now_ns();
	for (long i = 0; i < events / 2; i++) {
		p.i = (unsigned)(i % 100); /* pc[0] every time: 100 paths */
		call_path(&p);
	}
	uint64_t t1 = now_ns();
	long after = vm_kib("VmRSS");
	printf("MEMORY events=%ld paths=100 rss_before_kib=%ld rss_after_kib=%ld hwm_kib=%ld ns_per_event=%.2f\n",
	       events / 2 * 2, before, after, vm_kib("VmHWM"), (double)(t1 - t0) / (double)(events / 2 * 2));
	return 0;
}

static int hold_traced_main(long count, long paths)
{
	if (ensure_nofile((rlim_t)count + 100)) {
		fflush(stdout);
		return 77;
	}
	struct path p = {.leaf = leaf_open};
	uint64_t t0 = now_ns();
	for (long i = 0; i < count; i++) {
		p.i = (unsigned)(i % paths);
		call_path(&p);
	}
	uint64_t t1 = now_ns();
	printf("READY count=%ld paths=%ld ns_per_open=%.2f\n", count, paths, (double)(t1 - t0) / (double)count);
	fflush(stdout);
	for (;;)
		pause();
}

/* ---- command line ---- */

static int usage(void)
{
	fprintf(stderr, "usage: bench [--threads N] [--deep] [--hold N] [--turns IN,OUT,K]\n"
			"             open|socket|pipe|dup|fopen ITERATIONS\n"
			"       bench memory EVENTS\n"
			"       bench hold-traced COUNT [PATHS]\n");
	return 2;
}

static int number(const char *text, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > max) {
		fprintf(stderr, "bench: bad number '%s' (%ld to %ld)\n", text, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* --turns IN,OUT,K */
static int parse_turns(const char *text, struct turns *t)
{
	char in[32], out[32], k[32];
	long v[3];
	if (sscanf(text, "%31[^,],%31[^,],%31s", in, out, k) != 3 || number(in, 0, 1 << 20, &v[0]) ||
	    number(out, 0, 1 << 20, &v[1]) || number(k, 1, 1 << 20, &v[2])) {
		fprintf(stderr, "bench: --turns wants IN,OUT,K (descriptors, batches): '%s'\n", text);
		return -1;
	}
	*t = (struct turns){(int)v[0], (int)v[1], v[2]};
	return 0;
}

int main(int argc, char **argv)
{
	long threads = 1, hold = 0;
	int deep = 0, i = 1;
	struct turns turns = {-1, -1, 1};
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--deep"))
			deep = 1;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			if (number(argv[++i], 1, MAX_THREADS, &threads))
				return 2;
		} else if (!strcmp(argv[i], "--hold") && i + 1 < argc) {
			if (number(argv[++i], 0, 1L << 24, &hold))
				return 2;
		} else if (!strcmp(argv[i], "--turns") && i + 1 < argc) {
			if (parse_turns(argv[++i], &turns))
				return 2;
		} else
			return usage();
	}
	if (argc - i < 2)
		return usage();
	const char *mode = argv[i];
	long n;
	if (number(argv[i + 1], 1, 1L << 40, &n))
		return 2;
	if (!strcmp(mode, "memory"))
		return argc - i == 2 ? memory_main(n) : usage();
	if (!strcmp(mode, "hold-traced")) {
		long paths = 1000;
		if (argc - i > 3 || (argc - i == 3 && number(argv[i + 2], 1, 1000, &paths)))
			return usage();
		return hold_traced_main(n, paths);
	}
	if (argc - i != 2)
		return usage();
	if (n < turns.batches) {
		fprintf(stderr, "bench: %ld iterations cannot make %ld batches (--turns)\n", n, turns.batches);
		return 2;
	}
	for (int w = 0; w < (int)(sizeof(workload_names) / sizeof(*workload_names)); w++)
		if (!strcmp(mode, workload_names[w]))
			return workload_main(w, n, (int)threads, deep, hold, &turns);
	return usage();
}
