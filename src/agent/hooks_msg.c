/* Descriptors that arrive with data.  recvmsg and recvmmsg: every
 * descriptor another process passes with SCM_RIGHTS becomes a new
 * descriptor here, and so does the pidfd of the sender that SCM_PIDFD
 * brings (SO_PASSPIDFD, Linux 6.5).  read from a fanotify group: each
 * event carries a new descriptor of the file (and, with FAN_REPORT_PIDFD,
 * a pidfd of the process) that the reader must close. */
#include <linux/fanotify.h>
#include <string.h>

#include "hooks.h"

#ifndef FAN_EVENT_INFO_TYPE_PIDFD
#define FAN_EVENT_INFO_TYPE_PIDFD 4 /* linux/fanotify.h since 5.15 */
struct fanotify_event_info_pidfd {
	struct fanotify_event_info_header hdr;
	__s32 pidfd;
};
#endif

/* Set once fanotify_init has made a group while tracing: until then a
 * read costs one more load. */
static int fanotify_group_seen;

static int makes_fanotify_group(unsigned api)
{
	return api == HTRACE_API_fanotify_init || api == HTRACE_API_SYS_fanotify_init;
}

void note_fanotify_group(unsigned api)
{
	if (makes_fanotify_group(api))
		__atomic_store_n(&fanotify_group_seen, 1, __ATOMIC_RELAXED);
}

int fanotify_groups_made(void)
{
	return __atomic_load_n(&fanotify_group_seen, __ATOMIC_RELAXED);
}

/* The pidfds among an event's information records, in [at, at + len). */
static void record_fanotify_pidfds(const char *at, size_t len, unsigned api)
{
	struct fanotify_event_info_header h;
	for (; len >= sizeof(h); at += h.len, len -= h.len) {
		memcpy(&h, at, sizeof(h));
		if (h.len < sizeof(h) || h.len > len)
			return;
		if (h.info_type == FAN_EVENT_INFO_TYPE_PIDFD &&
		    h.len >= sizeof(struct fanotify_event_info_pidfd)) {
			struct fanotify_event_info_pidfd p;
			memcpy(&p, at, sizeof(p));
			if (p.pidfd >= 0)
				engine_opened(p.pidfd, api, 0);
		}
	}
}

/* The events in [buf, buf + len): whole ones, from the start. */
static void record_fanotify_events(const void *buf, size_t len, unsigned api)
{
	struct fanotify_event_metadata m;
	for (const char *at = buf; len >= sizeof(m); at += m.event_len, len -= m.event_len) {
		memcpy(&m, at, sizeof(m));
		if (m.vers != FANOTIFY_METADATA_VERSION || m.metadata_len < sizeof(m) ||
		    m.event_len < m.metadata_len || m.event_len > len)
			return;
		if (m.fd >= 0)
			engine_opened(m.fd, api, 0);
		record_fanotify_pidfds(at + m.metadata_len, m.event_len - m.metadata_len, api);
	}
}

void record_fanotify_fds(int fd, const void *buf, size_t len, unsigned api)
{
	if (makes_fanotify_group(engine_open_api(fd)))
		record_fanotify_events(buf, len, api);
}

/* A group is read into each iovec in turn, whole events in each, the
 * next one only once this one is full (the kernel's loop over a file
 * without read_iter): every iovec before the last holds its full length. */
void record_fanotify_fds_iov(int fd, const struct iovec *v, int n, size_t len, unsigned api)
{
	if (!makes_fanotify_group(engine_open_api(fd)))
		return;
	for (int i = 0; i < n && len; i++) {
		size_t part = v[i].iov_len < len ? v[i].iov_len : len;
		record_fanotify_events(v[i].iov_base, part, api);
		len -= part;
	}
}

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
