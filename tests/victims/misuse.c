/* misuse MODE: commits one descriptor bug (or none) so that the tests can
 * check that htrace reports it as a BAD REFERENCE with the right stacks.
 *
 *   readclosed     read() from a descriptor that was closed
 *   doubleclose    close() twice
 *   fileclose      close(fileno(fp)), then fclose(fp)
 *   dup2file       dup2() over the descriptor of a FILE, then fclose
 *   stalefile      close(fileno(fp)), open() reuses the number, then
 *                  fgets(fp) reads from somebody else's descriptor
 *   staledir       the same with a DIR and readdir
 *   pollclosed     poll() on a closed descriptor (POLLNVAL)
 *   clean          thousands of correct operations, no bug
 * Each bug is made in a function named bug_<mode>, and prints
 * "BAD <fd>" for the descriptor number concerned.  `misuse MODE wait`
 * prints "READY <pid>", waits for a line on stdin before the bug, and for
 * another after it, so that live commands can look at it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BUG static __attribute__((noinline, noclone)) int

static int say_bad(int fd)
{
	printf("BAD %d\n", fd);
	fflush(stdout);
	return fd;
}

static __attribute__((noinline, noclone)) FILE *open_owner(void)
{
	return fopen("/dev/null", "r");
}

BUG bug_readclosed(void)
{
	char c;
	int fd = open("/dev/null", O_RDONLY);
	close(fd);
	say_bad(fd);
	return read(fd, &c, 1) < 0 ? 0 : 1;
}

BUG bug_doubleclose(void)
{
	int fd = open("/dev/null", O_RDONLY);
	close(fd);
	say_bad(fd);
	return close(fd) < 0 ? 0 : 1;
}

BUG bug_fileclose(void)
{
	FILE *fp = open_owner();
	int fd = fileno(fp);
	say_bad(fd);
	close(fd); /* behind the FILE's back */
	fclose(fp); /* would close whatever fd means by now */
	return 0;
}

BUG bug_dup2file(void)
{
	FILE *fp = open_owner();
	int other = open("/dev/zero", O_RDONLY);
	say_bad(fileno(fp));
	dup2(other, fileno(fp)); /* replaces the FILE's descriptor */
	close(other);
	fclose(fp);
	return 0;
}

BUG bug_stalefile(void)
{
	char line[64];
	FILE *fp = open_owner();
	int fd = fileno(fp);
	close(fd);
	int reused = open("/dev/zero", O_RDONLY); /* gets the same number */
	say_bad(reused);
	if (reused != fd)
		return 1;
	fgets(line, sizeof(line), fp); /* reads somebody else's descriptor */
	return 0;
}

BUG bug_staledir(void)
{
	DIR *dir = opendir("/");
	int fd = dirfd(dir);
	close(fd);
	int reused = open("/", O_RDONLY | O_DIRECTORY);
	say_bad(reused);
	if (reused != fd)
		return 1;
	readdir(dir);
	return 0;
}

BUG bug_pollclosed(void)
{
	int fd = open("/dev/null", O_RDONLY);
	close(fd);
	say_bad(fd);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLNVAL) ? 0 : 1;
}

static int clean(void)
{
	char buf[64];
	for (int i = 0; i < 2000; i++) {
		int fd = open("/dev/zero", O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof(buf)) != sizeof(buf))
			return 1;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		poll(&p, 1, 0);
		close(fd);
		FILE *fp = fopen("/dev/zero", "r");
		if (!fp || !fgets(buf, sizeof(buf), fp))
			return 1;
		fprintf(stdout, "%s", "");
		fclose(fp);
		DIR *dir = opendir("/");
		if (!dir || !readdir(dir))
			return 1;
		closedir(dir);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "clean";
	static const struct {
		const char *name;
		int (*run)(void);
	} bugs[] = {
		{ "readclosed", bug_readclosed }, { "doubleclose", bug_doubleclose },
		{ "fileclose", bug_fileclose },   { "dup2file", bug_dup2file },
		{ "stalefile", bug_stalefile },   { "staledir", bug_staledir },
		{ "pollclosed", bug_pollclosed }, { "clean", clean },
	};
	int wait = argc > 2 && !strcmp(argv[2], "wait");
	char line[16];
	if (wait) {
		printf("READY %d\n", (int)getpid());
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	for (size_t i = 0; i < sizeof(bugs) / sizeof(bugs[0]); i++)
		if (!strcmp(mode, bugs[i].name)) {
			int rc = bugs[i].run();
			if (wait && !fgets(line, sizeof(line), stdin))
				return 1;
			return rc;
		}
	fprintf(stderr, "misuse: unknown mode %s\n", mode);
	return 2;
}
