/* gdbvictim: the program tests/test_gdb.py debugs.  gdb stops it at
 * checkpoint_one() (tracing is enabled there), it leaks two descriptors in
 * leaky_part() (printing "LEAK <fd>" for each), and gdb stops it again at
 * checkpoint_two(), where `htrace -diff` must show exactly those two. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
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

int main(void)
{
	checkpoint_one();
	int failed = leaky_part();
	checkpoint_two();
	return failed;
}
