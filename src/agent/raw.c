/* System calls made straight to the kernel, bypassing libc: the agent's own
 * work (mapping memory, reading /proc/self/fd) must never run through the
 * hooks it installs, nor through libc's syscall(), which is hooked too, and
 * must not touch errno. */
#include "agent.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>

long raw_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

int raw_fd_is_open(int fd)
{
	return RAW3(SYS_fcntl, fd, F_GETFD, 0) >= 0;
}

void *raw_map(size_t bytes)
{
	long addr = raw_syscall(SYS_mmap, 0, (long)bytes, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return (addr < 0 && addr > -4096) ? NULL : (void *)addr;
}

void raw_unmap(void *addr, size_t bytes)
{
	if (addr)
		RAW2(SYS_munmap, addr, bytes);
}

struct raw_dirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

int raw_count_entries(const char *dir)
{
	int fd = (int)RAW4(SYS_openat, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	char buf[4096] __attribute__((aligned(8)));
	int count = 0;
	long n;
	while ((n = RAW3(SYS_getdents64, fd, buf, sizeof(buf))) > 0)
		for (long off = 0; off < n; off += ((struct raw_dirent *)(buf + off))->d_reclen)
			count += ((struct raw_dirent *)(buf + off))->d_name[0] != '.';
	RAW1(SYS_close, fd);
	return n < 0 ? -1 : count;
}

void raw_release(void *addr, size_t bytes)
{
	if (addr)
		RAW3(SYS_madvise, addr, bytes, MADV_DONTNEED);
}
