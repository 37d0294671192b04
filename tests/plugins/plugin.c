/* A plugin that tests/victims/unwinder.c loads, calls and unloads, again
 * and again, so that the agent's unwinder meets code that comes and goes,
 * often at the address another build of this file had a moment before.
 * Built twice (Makefile): with frame pointers (CFA from rbp) and without
 * (CFA from rsp, a large frame), so that a rule kept for the one would
 * give the wrong frames in the other. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

NOINLINE static int plugin_leaf(const char *path, int depth)
{
	volatile char pad[depth * 64 + 256];
	memset((char *)pad, 0, sizeof(pad));
	int fd = open(path, O_RDONLY);
	if (fd >= 0)
		close(fd);
	return fd >= 0 ? pad[depth] : -1;
}

NOINLINE static int plugin_step(const char *path, int depth)
{
	int r = depth ? plugin_step(path, depth - 1) : plugin_leaf(path, depth);
	__asm__ volatile("" : "+r"(r));
	return r + 1;
}

/* Opens and closes path from depth nested calls; -1 when it cannot. */
int plugin_open(const char *path, int depth)
{
	return plugin_step(path, depth) - depth - 1;
}
