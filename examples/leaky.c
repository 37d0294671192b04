/* A small program that leaks descriptors the way real servers do: a config
 * file opened and never closed, a socket kept after an error path, a pipe
 * end forgotten.  `make demo` runs it under htrace. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_config(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		perror(path);
	return fd; /* the caller forgets to close it */
}

static int connect_backend(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return -1;
	/* pretend the connection failed: the early return leaks s */
	return -1;
}

static void spawn_helper_pipe(void)
{
	int p[2];
	if (pipe(p) == 0)
		close(p[0]); /* only one end closed */
}

static void read_motd(void)
{
	FILE *f = fopen("/etc/hostname", "r");
	char line[256];
	if (f && fgets(line, sizeof(line), f))
		fclose(f); /* closed only on success: fine here */
}

int main(void)
{
	for (int i = 0; i < 3; i++)
		open_config("/etc/hostname");
	connect_backend();
	spawn_helper_pipe();
	read_motd();
	printf("leaky: done\n");
	return 0;
}
