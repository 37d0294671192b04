/* behave MODE...: a victim whose end and leaks the run tests choose.
 *
 *   exit N      open and leak /dev/null in leak_here(), then exit(N)
 *   _exit N     the same, ending with _exit(N)
 *   segv        leak, then dereference NULL
 *   abort       leak, then abort()
 *   clean       open and close many descriptors, leak none, return 0
 *   deep        leak from 20 nested non-inlined calls (deep_1 .. deep_20)
 *   thread      a second thread leaks, the main thread returns
 *   mainexit    the main thread calls pthread_exit; a second thread leaks
 *               and then the process exits
 *   errno       checks that hooked calls leave errno as libc sets it
 *   selfcheck   prints how many descriptors and threads the process has
 *   args ...    prints its arguments, one per line
 *   many N      leaks N descriptors
 *   raw         opens /dev/null with a raw syscall instruction (untracked)
 *   rawthread   the same after a thread has come and gone
 *   vfork       leaks, then a vfork child _exits without exec
 * Each leak prints "LEAK <fd>" on stdout. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

static NOINLINE int leak_here(void)
{
	int fd = open("/dev/null", O_RDONLY);
	printf("LEAK %d\n", fd);
	fflush(stdout);
	return fd;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

#define DEEP(n, next)                                  \
	static NOINLINE int deep_##n(int x)            \
	{                                              \
		int r = next(x + 1);                   \
		__asm__ volatile("" ::: "memory");     \
		return r + 1;                          \
	}
static NOINLINE int deep_bottom(int x)
{
	(void)x;
	return leak_here();
}
DEEP(20, deep_bottom) DEEP(19, deep_20) DEEP(18, deep_19) DEEP(17, deep_18)
DEEP(16, deep_17) DEEP(15, deep_16) DEEP(14, deep_15) DEEP(13, deep_14)
DEEP(12, deep_13) DEEP(11, deep_12) DEEP(10, deep_11) DEEP(9, deep_10)
DEEP(8, deep_9) DEEP(7, deep_8) DEEP(6, deep_7) DEEP(5, deep_6)
DEEP(4, deep_5) DEEP(3, deep_4) DEEP(2, deep_3) DEEP(1, deep_2)

static void *thread_leak(void *arg)
{
	(void)arg;
	leak_here();
	return NULL;
}

static int clean(void)
{
	for (int i = 0; i < 2000; i++) {
		int p[2];
		int fd = open("/dev/null", O_RDONLY);
		if (fd < 0 || pipe(p) < 0)
			return 1;
		close(fd);
		close(p[0]);
		close(p[1]);
		FILE *f = fopen("/dev/null", "r");
		if (f)
			fclose(f);
	}
	return 0;
}

static int check(int cond, const char *what)
{
	if (!cond)
		printf("ERRNO FAIL %s (errno %d)\n", what, errno);
	return !cond;
}

static int errno_checks(void)
{
	int bad = 0;
	errno = 0;
	bad += check(open("/nonexistent/x", O_RDONLY) == -1 && errno == ENOENT, "open ENOENT");
	errno = 1234;
	int fd = open("/dev/null", O_RDONLY);
	bad += check(fd >= 0 && errno == 1234, "open success keeps errno");
	errno = 4321;
	bad += check(close(fd) == 0 && errno == 4321, "close success keeps errno");
	bad += check(close(fd) == -1 && errno == EBADF, "close EBADF");
	errno = 77;
	FILE *f = fopen("/dev/null", "r");
	bad += check(f && errno == 77, "fopen keeps errno");
	errno = 78;
	bad += check(fclose(f) == 0 && errno == 78, "fclose keeps errno");
	bad += check(dup2(12345, 3) == -1 && errno == EBADF, "dup2 EBADF");
	printf(bad ? "ERRNO BAD\n" : "ERRNO OK\n");
	return bad != 0;
}

static void *main_exit_thread(void *arg)
{
	(void)arg;
	usleep(100000);
	leak_here();
	exit(0);
}

/* open(2) straight to the kernel: no libc, no hook sees it. */
static int raw_open_devnull(void)
{
	long ret;
	static const char path[] = "/dev/null";
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(2L), "D"(path), "S"(0L), "d"(0L)
			 : "rcx", "r11", "memory");
	printf("RAW %ld\n", ret);
	return (int)ret;
}

static void *idle_thread(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "clean";
	int n = argc > 2 ? atoi(argv[2]) : 0;
	if (!strcmp(mode, "args")) {
		for (int i = 2; i < argc; i++)
			printf("%s\n", argv[i]);
		return 0;
	}
	if (!strcmp(mode, "selfcheck")) {
		leak_here(); /* takes a stack: the unwinder is set up by now */
		printf("FDS %d TASKS %d\n", count_entries("/proc/self/fd") - 1,
		       count_entries("/proc/self/task"));
		return 0;
	}
	if (!strcmp(mode, "clean"))
		return clean();
	if (!strcmp(mode, "errno"))
		return errno_checks();
	if (!strcmp(mode, "deep"))
		return deep_1(0) < 0;
	if (!strcmp(mode, "many")) {
		for (int i = 0; i < n; i++)
			leak_here();
		return 0;
	}
	pthread_t t;
	if (!strcmp(mode, "raw"))
		return raw_open_devnull() < 0;
	if (!strcmp(mode, "rawthread")) {
		pthread_create(&t, NULL, idle_thread, NULL);
		pthread_join(t, NULL);
		return raw_open_devnull() < 0;
	}
	if (!strcmp(mode, "vfork")) {
		leak_here();
		pid_t pid = vfork();
		if (pid == 0)
			_exit(0);
		return pid < 0;
	}
	if (!strcmp(mode, "thread")) {
		pthread_create(&t, NULL, thread_leak, NULL);
		pthread_join(t, NULL);
		return 0;
	}
	if (!strcmp(mode, "mainexit")) {
		pthread_create(&t, NULL, main_exit_thread, NULL);
		pthread_exit(NULL);
	}
	leak_here();
	if (!strcmp(mode, "exit"))
		exit(n);
	if (!strcmp(mode, "_exit"))
		_exit(n);
	if (!strcmp(mode, "segv"))
		*(volatile int *)0 = 1;
	if (!strcmp(mode, "abort"))
		abort();
	return 99;
}
