/* htmlvictim [--odd] [--wait] [FILE]: a victim for the --html tests that
 * leaks from three places:
 *
 *   leak_files    opens FILE (default /dev/null) 3 times
 *   leak_sockets  a listening TCP socket and a bound UDP socket on 127.0.0.1
 *   leak_pipe     a pipe, of which it closes the read end
 *
 * --odd  also opens /dev/null with a raw syscall instruction (untracked)
 *        and closes a tracked descriptor the same way (inconsistent)
 * --wait after leaking, prints "READY <pid>" and waits for a line on stdin
 *
 * Each leak prints "LEAK <fd> <function>"; the untracked descriptor prints
 * "RAW <fd>", the one closed behind the agent's back "GONE <fd>". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

static void say(const char *what, int fd, const char *function)
{
	printf("%s %d%s%s\n", what, fd, function ? " " : "", function ? function : "");
	fflush(stdout);
}

static NOINLINE void leak_files(const char *path)
{
	for (int i = 0; i < 3; i++)
		say("LEAK", open(path, O_RDONLY | O_CLOEXEC), "leak_files");
}

static int bound(int fd, int type)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		perror("bind");
	if (fd >= 0 && type == SOCK_STREAM && listen(fd, 1) < 0)
		perror("listen");
	return fd;
}

static NOINLINE void leak_sockets(void)
{
	say("LEAK", bound(socket(AF_INET, SOCK_STREAM, 0), SOCK_STREAM), "leak_sockets");
	say("LEAK", bound(socket(AF_INET, SOCK_DGRAM, 0), SOCK_DGRAM), "leak_sockets");
}

static NOINLINE void leak_pipe(void)
{
	int p[2];
	if (pipe(p) < 0)
		return;
	close(p[0]);
	say("LEAK", p[1], "leak_pipe");
}

static long raw_syscall3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

static void odd_descriptors(void)
{
	static const char path[] = "/dev/null";
	say("RAW", (int)raw_syscall3(2 /* open */, (long)path, O_RDONLY, 0), NULL);
	int fd = open("/dev/zero", O_RDONLY);
	raw_syscall3(3 /* close */, fd, 0, 0);
	say("GONE", fd, NULL);
}

int main(int argc, char **argv)
{
	int odd = 0, wait = 0, i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
		odd |= !strcmp(argv[i], "--odd");
		wait |= !strcmp(argv[i], "--wait");
	}
	leak_files(i < argc ? argv[i] : "/dev/null");
	leak_sockets();
	leak_pipe();
	if (odd)
		odd_descriptors();
	if (wait) {
		char line[64];
		printf("READY %d\n", (int)getpid());
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 0;
	}
	return 0;
}
