/* server: a long-running multi-threaded victim for the live commands
 * (tests/test_live.py drives it through `htrace -p PID ...`).
 *
 * At start it launches NWORKERS worker threads and prints "READY <pid>".
 * Each worker loops: open /dev/null, close it at once, sleep ~2 ms, so the
 * process constantly makes hooked calls (the agent honours its mailbox on
 * a hooked call).  A worker never holds a descriptor between two
 * iterations, and never while parked.
 *
 * The main thread reads one command per line on stdin and answers exactly
 * one line on stdout ("OK ..." or "ERR ..."), flushed:
 *
 *   leak N      scenario_leak() opens N descriptors and keeps them, cycling
 *               through /dev/null, a pipe (both ends: 2 descriptors; a
 *               /dev/null instead when only one is left to open) and a unix
 *               socket; answers "OK fds a b c ..." (ascending order of
 *               opening)
 *   clean N     scenario_clean() opens and closes N descriptors (/dev/null,
 *               every tenth a socket); answers "OK"
 *   reuse       scenario_reuse(): opens /dev/null as X, closes X, opens
 *               /dev/null again as the same number X (dup2 onto X if the
 *               kernel gave another number) and keeps it; answers "OK X"
 *   reopen FD   scenario_reopen(): closes the open descriptor FD and opens
 *               /dev/null again as the same number (dup2 if need be), so
 *               that a number open at a snapshot is closed and reused after
 *               it; answers "OK FD"
 *   replace FD [HOW]  scenario_replace(): opens /dev/null and dup2()s it
 *               onto the open descriptor FD, which the kernel closes and
 *               reuses in one call, then closes the one it opened; answers
 *               "OK FD".  HOW: dup2 (the default), dup3 (with O_CLOEXEC),
 *               sys_dup2 or sys_dup3 (through syscall())
 *   stale       scenario_stale(): fopen()s /dev/null, closes its descriptor
 *               behind the FILE's back, opens /dev/null again as the same
 *               number and reads through the FILE (a stale use); keeps
 *               the FILE; answers "OK FD"
 *   staleuse    reads through that FILE again; answers "OK"
 *   quiet       parks the workers and answers "OK quiet" only once every
 *               worker is parked, holding no descriptor: from then on the
 *               only hooked calls are the commands' own, so -diff sees only
 *               what a scenario left open
 *   busy        lets the workers run again; answers "OK busy"
 *   pid         answers "OK <pid>"
 *   quit        answers "OK bye" and exits 0 (so does end of input)
 *
 * Anything else answers "ERR ...". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))
#define NWORKERS 4
#define MAX_LEAK 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER; /* workers wait here */
static pthread_cond_t settled = PTHREAD_COND_INITIALIZER; /* main waits here */
static int park; /* workers must park */
static int parked; /* workers parked now */

static void *worker_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&lock);
		while (park) {
			parked++;
			pthread_cond_broadcast(&settled);
			pthread_cond_wait(&wake, &lock);
			parked--;
		}
		pthread_mutex_unlock(&lock);
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
		usleep(2000);
	}
	return NULL;
}

static void set_parked(int on)
{
	pthread_mutex_lock(&lock);
	park = on;
	if (on) {
		while (parked < NWORKERS)
			pthread_cond_wait(&settled, &lock);
	} else {
		pthread_cond_broadcast(&wake);
	}
	pthread_mutex_unlock(&lock);
}

/* Returns how many descriptors it opened into fds (fewer on failure). */
static NOINLINE int scenario_leak(int n, int *fds)
{
	int got = 0;
	for (int kind = 0; got < n; kind = (kind + 1) % 3) {
		if (kind == 1 && n - got >= 2) {
			if (pipe(fds + got) < 0)
				break;
			got += 2;
		} else if (kind == 2) {
			int s = socket(AF_UNIX, SOCK_STREAM, 0);
			if (s < 0)
				break;
			fds[got++] = s;
		} else {
			int fd = open("/dev/null", O_RDONLY);
			if (fd < 0)
				break;
			fds[got++] = fd;
		}
	}
	__asm__ volatile("" ::: "memory");
	return got;
}

static NOINLINE int scenario_clean(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = i % 10 == 9 ? socket(AF_UNIX, SOCK_STREAM, 0) : open("/dev/null", O_RDONLY);
		if (fd < 0)
			return -1;
		close(fd);
	}
	__asm__ volatile("" ::: "memory");
	return 0;
}

/* Opens /dev/null as exactly the number fd (which is closed). */
static int open_as(int fd)
{
	int again = open("/dev/null", O_RDONLY);
	if (again < 0 || again == fd)
		return again;
	int r = dup2(again, fd);
	close(again);
	return r;
}

static NOINLINE int scenario_reuse(void)
{
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || close(fd) < 0)
		return -1;
	int r = open_as(fd);
	__asm__ volatile("" ::: "memory");
	return r;
}

static NOINLINE int scenario_reopen(int fd)
{
	if (fd < 3 || fcntl(fd, F_GETFD) < 0 || close(fd) < 0)
		return -1;
	int r = open_as(fd);
	__asm__ volatile("" ::: "memory");
	return r;
}

/* dup2 onto fd, the way how says (see replace above). */
static int replace_onto(int other, int fd, const char *how)
{
	if (!strcmp(how, "dup2"))
		return dup2(other, fd);
	if (!strcmp(how, "dup3"))
		return dup3(other, fd, O_CLOEXEC);
	if (!strcmp(how, "sys_dup2"))
		return (int)syscall(SYS_dup2, other, fd);
	if (!strcmp(how, "sys_dup3"))
		return (int)syscall(SYS_dup3, other, fd, O_CLOEXEC);
	return -1;
}

static NOINLINE int scenario_replace(int fd, const char *how)
{
	if (fd < 3 || fcntl(fd, F_GETFD) < 0)
		return -1;
	int other = open("/dev/null", O_RDONLY);
	if (other < 0)
		return -1;
	int r = replace_onto(other, fd, how);
	close(other);
	__asm__ volatile("" ::: "memory");
	return r;
}

static FILE *stale_file;

static NOINLINE int scenario_stale(void)
{
	if (stale_file || !(stale_file = fopen("/dev/null", "r")))
		return -1;
	int fd = fileno(stale_file);
	if (close(fd) < 0 || open_as(fd) != fd)
		return -1;
	char c;
	if (fread(&c, 1, 1, stale_file) != 0) /* /dev/null: end of file at once */
		return -1;
	return fd;
}

static NOINLINE int scenario_stale_use(void)
{
	char c;
	clearerr(stale_file);
	return stale_file && fread(&c, 1, 1, stale_file) == 0 ? 0 : -1;
}

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* A scenario's descriptor, or that it failed (for its argument n, if any). */
static void answer_fd(int fd, const char *command, long n)
{
	if (fd >= 0)
		answer("OK %d", fd);
	else if (n >= 0)
		answer("ERR %s %ld failed", command, n);
	else
		answer("ERR %s failed", command);
}

static int fds[MAX_LEAK];

int main(void)
{
	pthread_t t;
	for (int i = 0; i < NWORKERS; i++)
		if (pthread_create(&t, NULL, worker_main, NULL) != 0) {
			fprintf(stderr, "server: cannot start worker %d\n", i);
			return 1;
		}
	answer("READY %d", (int)getpid());

	char line[256], word[32], how[32];
	while (fgets(line, sizeof line, stdin)) {
		long n = 0;
		int args = sscanf(line, "%31s %ld %31s", word, &n, how);
		if (args < 1) {
			answer("ERR empty command");
		} else if (!strcmp(word, "leak") && args == 2 && n >= 0 && n <= MAX_LEAK) {
			int got = scenario_leak((int)n, fds);
			if (got < n) {
				answer("ERR opened only %d of %ld descriptors", got, n);
				continue;
			}
			printf("OK fds");
			for (int i = 0; i < got; i++)
				printf(" %d", fds[i]);
			answer("%s", "");
		} else if (!strcmp(word, "clean") && args == 2 && n >= 0) {
			if (scenario_clean(n) < 0)
				answer("ERR clean failed");
			else
				answer("OK");
		} else if (!strcmp(word, "reuse")) {
			answer_fd(scenario_reuse(), word, -1);
		} else if (!strcmp(word, "reopen") && args == 2) {
			answer_fd(scenario_reopen((int)n), word, n);
		} else if (!strcmp(word, "replace") && args >= 2) {
			answer_fd(scenario_replace((int)n, args == 3 ? how : "dup2"), word, n);
		} else if (!strcmp(word, "stale")) {
			answer_fd(scenario_stale(), word, -1);
		} else if (!strcmp(word, "staleuse")) {
			if (scenario_stale_use() < 0)
				answer("ERR no stale FILE");
			else
				answer("OK");
		} else if (!strcmp(word, "quiet")) {
			set_parked(1);
			answer("OK quiet");
		} else if (!strcmp(word, "busy")) {
			set_parked(0);
			answer("OK busy");
		} else if (!strcmp(word, "pid")) {
			answer("OK %d", (int)getpid());
		} else if (!strcmp(word, "quit")) {
			answer("OK bye");
			return 0;
		} else {
			answer("ERR unknown command: %s", word);
		}
	}
	return 0;
}
