/* Describes a process's descriptors from the kernel's point of view
 * (/proc/PID/fd, /proc/PID/fdinfo, /proc/PID/net/...): what kind of object
 * each is and what it points at.  This is the ground truth that htrace's
 * reports are checked against. */
#ifndef HTRACE_FDINFO_H
#define HTRACE_FDINFO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fd_details {
	int fd;
	/* "file", "directory", "socket", "pipe", "fifo", "chardev", "blockdev",
	 * "eventfd", "timerfd", "signalfd", "epoll", "inotify", "fanotify",
	 * "memfd", "pidfd", "userfaultfd", "perf_event", "io_uring",
	 * "anon_inode" (other anonymous inodes), "unknown" */
	char type[16];
	/* What it points at: a path; "TCP 127.0.0.1:5000 -> 127.0.0.1:40000";
	 * "UNIX /run/x.sock"; "pipe:[1234]"; "memfd:name"; "pid 1234"; … */
	char target[512];
	int flags; /* open flags from fdinfo (O_ACCMODE, O_NONBLOCK, O_CLOEXEC …), -1 if unknown */
	uint64_t inode;
};

struct fdinfo_ctx;

/* The last number on the line "field:" of /proc/PID/status (for NStgid:
 * the process id in the innermost namespace, the one the process itself
 * sees), or fallback when there is no such line. */
long proc_status_last(pid_t pid, const char *field, long fallback);

/* Opens the view of process pid.  NULL with errno set when /proc/PID is not
 * readable. */
struct fdinfo_ctx *fdinfo_open(pid_t pid);

/* The descriptors open now, ascending; *fds is malloc'ed, caller frees.
 * Returns 0, or -errno. */
int fdinfo_list(struct fdinfo_ctx *ctx, int **fds, size_t *n);

/* Fills *out for fd.  Returns 0, or -errno (-ENOENT: not open).  Socket
 * targets come from a snapshot of /proc/PID/net taken at the first socket
 * described after fdinfo_open or fdinfo_list; call fdinfo_list to see
 * sockets made since. */
int fdinfo_describe(struct fdinfo_ctx *ctx, int fd, struct fd_details *out);

void fdinfo_close(struct fdinfo_ctx *ctx);

#endif
