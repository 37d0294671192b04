/* gdbvictim: the program tests/test_gdb.py debugs.  gdb stops it at
 * checkpoint_one() (tracing is enabled there), it leaks two descriptors in
 * leaky_part() (printing "LEAK <fd>" for each), and gdb stops it again at
 * checkpoint_two(), where `htrace -diff` must show exactly those two.
 *
 * `gdbvictim release`: a worker thread spins until gdb sets `go`, then
 * leaks one descriptor (worker_leak, "LEAK <fd>") and stops at
 * checkpoint_two(); the main thread, after checkpoint_one(), closes a
 * number that is not open (a hooked call, where the agent serves a waiting
 * -disable), joins the worker and stops at checkpoint_three(). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

NOINLINE void checkpoint_one(void)
{
	__asm__ volatile("");
}

NOINLINE void checkpoint_two(void)
{
	__asm__ volatile("");
}

NOINLINE int leaky_part(void)
{
	int file = open("/dev/null", O_RDONLY);
	int sock = socket(AF_UNIX, SOCK_STREAM, 0);
	printf("LEAK %d\nLEAK %d\n", file, sock);
	fflush(stdout);
	return file < 0 || sock < 0;
}

NOINLINE void checkpoint_three(void)
{
	__asm__ volatile("");
}

volatile int go; /* set by gdb */

NOINLINE static void worker_leak(void)
{
	int fd = open("/dev/null", O_RDONLY);
	printf("LEAK %d\n", fd);
	fflush(stdout);
}

static void *worker(void *arg)
{
	(void)arg;
	while (!go)
		__asm__ volatile("pause");
	worker_leak();
	checkpoint_two();
	return NULL;
}

static int release_mode(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0)
		return 1;
	checkpoint_one();
	close(1000); /* not open: a hooked call that serves the mailbox */
	pthread_join(t, NULL);
	checkpoint_three();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "release") == 0)
		return release_mode();
	checkpoint_one();
	int failed = leaky_part();
	checkpoint_two();
	return failed;
}
