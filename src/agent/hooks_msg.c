/* Hooks of recvmsg and recvmmsg: every descriptor another process passes
 * with SCM_RIGHTS becomes a new descriptor here, and so does the pidfd of
 * the sender that SCM_PIDFD brings (SO_PASSPIDFD, Linux 6.5). */
#include <string.h>

#include "hooks.h"

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04 /* linux/socket.h since 6.5 */
#endif

void record_received_fds(const struct msghdr *msg, unsigned api)
{
	if (!msg || !msg->msg_control)
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
	     c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		if (c->cmsg_level != SOL_SOCKET ||
		    (c->cmsg_type != SCM_RIGHTS && c->cmsg_type != SCM_PIDFD))
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			engine_opened(fd, api, 0);
		}
	}
}

static __attribute__((noinline)) ssize_t traced_recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t result = REAL(recvmsg)(fd, msg, flags);
	if (result >= 0)
		KEEP_ERRNO(record_received_fds(msg, HTRACE_API_recvmsg));
	else if (errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_recvmsg));
	return result;
}
HOOK_SPLIT(recvmsg, ssize_t, (int fd, struct msghdr *msg, int flags), (fd, msg, flags), -1)

static __attribute__((noinline)) int traced_recvmmsg(int fd, struct mmsghdr *v, unsigned int n,
						     int flags, struct timespec *t)
{
	int result = REAL(recvmmsg)(fd, v, n, flags, t);
	for (int i = 0; i < result; i++)
		KEEP_ERRNO(record_received_fds(&v[i].msg_hdr, HTRACE_API_recvmmsg));
	if (result < 0 && errno == EBADF)
		KEEP_ERRNO(bad_reference_among(fd, -1, HTRACE_API_recvmmsg));
	return result;
}
HOOK_SPLIT(recvmmsg, int, (int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t),
	   (fd, v, n, flags, t), -1)
