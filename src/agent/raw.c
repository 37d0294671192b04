/* System calls made straight to the kernel, bypassing libc: the agent's own
 * work (mapping memory, reading /proc/self/fd) must never run through the
 * hooks it installs, nor through libc's syscall(), which is hooked too, and
 * must not touch errno. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>

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

long raw_copy_in(void *to, const void *from, size_t bytes)
{
	struct iovec local = { to, bytes }, remote = { (void *)from, bytes };
	long got = RAW6(SYS_process_vm_readv, RAW0(SYS_getpid), &local, 1, &remote, 1, 0);
	return got == (long)bytes ? 0 : got < 0 ? got : -EFAULT;
}

int raw_is_mapped(const void *at, size_t bytes)
{
	uintptr_t page = 4096, first = (uintptr_t)at & ~(page - 1);
	unsigned char resident[2];
	uintptr_t span = (uintptr_t)at + bytes - first;
	if (!bytes || (uintptr_t)at + bytes < (uintptr_t)at || span > 2 * page)
		return 0;
	return RAW3(SYS_mincore, first, span, resident) == 0;
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

void raw_release(void *addr, size_t bytes)
{
	if (addr)
		RAW3(SYS_madvise, addr, bytes, MADV_DONTNEED);
}
