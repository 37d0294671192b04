/* Describes another process's descriptors as the kernel sees them, from
 * /proc/PID/fd, /proc/PID/fdinfo and /proc/PID/net: the ground truth that
 * htrace's reports are checked against. */
#include "fdinfo.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define TCP_STATE_LISTEN 0x0A
#define INET_FIELDS 10 /* "sl local remote st tx:rx tr:when retrnsmt uid timeout inode" */
#define UNIX_FIELDS 7 /* "Num RefCount Protocol Flags Type St Inode" then the path */

struct sock_entry {
	uint64_t inode;
	char *text; /* "TCP 127.0.0.1:5000 (listening)", "UNIX /run/x.sock", … */
};

struct sock_table {
	struct sock_entry *entries; /* sorted by inode once loaded */
	size_t len, cap;
};

struct unix_peer {
	uint64_t inode, peer;
};

struct peer_table {
	struct unix_peer *pairs; /* sorted by inode once loaded */
	size_t len, cap;
};

struct fdinfo_ctx {
	pid_t pid;
	char dir[32]; /* "/proc/PID" */
	int fd_dir, fdinfo_dir; /* /proc/PID/fd and /proc/PID/fdinfo: each descriptor
				   is looked up from them, without the path */
	bool sockets_loaded; /* cleared by fdinfo_list: a new snapshot */
	struct sock_table sockets;
};

/* What /proc/PID/fdinfo/N says. */
struct fdinfo_fields {
	int flags; /* -1 when unknown */
	bool has_inode, has_pid;
	uint64_t inode;
	long pid; /* "Pid:" of a pidfd */
};

/* ---- small helpers ---- */

static void copy_text(char *dst, size_t size, const char *src)
{
	size_t len = strnlen(src, size - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t len = strlen(s), suffix_len = strlen(suffix);
	return len >= suffix_len && strcmp(s + len - suffix_len, suffix) == 0;
}

/* Parses a whole string as an unsigned number; no sign, no trailing junk. */
static bool parse_u64(const char *s, int base, uint64_t *out)
{
	if (!s || !isxdigit((unsigned char)s[0]))
		return false;
	char *end;
	errno = 0;
	unsigned long long value = strtoull(s, &end, base);
	if (errno || *end != '\0')
		return false;
	*out = value;
	return true;
}

/* Grows an array to hold at least one more item; NULL (array untouched) on
 * failure. */
static void *grow_array(void *items, size_t *cap, size_t item_size)
{
	size_t new_cap = *cap ? *cap * 2 : 64;
	if (new_cap > SIZE_MAX / item_size)
		return NULL;
	void *grown = realloc(items, new_cap * item_size);
	if (grown)
		*cap = new_cap;
	return grown;
}

/* Cuts the next blank-separated field off *cursor and NUL-terminates it;
 * *cursor is left just past the single separator that ended it. */
static char *next_field(char **cursor)
{
	char *s = *cursor;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0' || *s == '\n')
		return NULL;
	char *start = s;
	while (*s && *s != ' ' && *s != '\t' && *s != '\n')
		s++;
	if (*s)
		*s++ = '\0';
	*cursor = s;
	return start;
}

static bool split_fields(char **cursor, char **fields, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (!(fields[i] = next_field(cursor)))
			return false;
	return true;
}

static void strip_newline(char *s)
{
	s[strcspn(s, "\n")] = '\0';
}

static int compare_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

/* ---- socket table ---- */

static int compare_sock_entries(const void *a, const void *b)
{
	return compare_u64(((const struct sock_entry *)a)->inode,
			   ((const struct sock_entry *)b)->inode);
}

static int sock_table_add(struct sock_table *table, uint64_t inode, const char *text)
{
	if (table->len == table->cap) {
		void *grown = grow_array(table->entries, &table->cap, sizeof *table->entries);
		if (!grown)
			return -ENOMEM;
		table->entries = grown;
	}
	char *copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	table->entries[table->len++] = (struct sock_entry){ .inode = inode, .text = copy };
	return 0;
}

static void sock_table_clear(struct sock_table *table)
{
	for (size_t i = 0; i < table->len; i++)
		free(table->entries[i].text);
	free(table->entries);
	*table = (struct sock_table){ 0 };
}

static const char *sock_table_find(const struct sock_table *table, uint64_t inode)
{
	struct sock_entry key = { .inode = inode };
	const struct sock_entry *hit = table->len ? bsearch(&key, table->entries, table->len,
							    sizeof key, compare_sock_entries)
						  : NULL;
	return hit ? hit->text : NULL;
}

/* ---- unix socket peers, from NETLINK_SOCK_DIAG (best effort) ---- */

static int compare_peers(const void *a, const void *b)
{
	return compare_u64(((const struct unix_peer *)a)->inode,
			   ((const struct unix_peer *)b)->inode);
}

static int peer_table_add(struct peer_table *table, uint64_t inode, uint64_t peer)
{
	if (table->len == table->cap) {
		void *grown = grow_array(table->pairs, &table->cap, sizeof *table->pairs);
		if (!grown)
			return -ENOMEM;
		table->pairs = grown;
	}
	table->pairs[table->len++] = (struct unix_peer){ .inode = inode, .peer = peer };
	return 0;
}

static uint64_t peer_table_find(const struct peer_table *table, uint64_t inode)
{
	struct unix_peer key = { .inode = inode };
	const struct unix_peer *hit = table->len ? bsearch(&key, table->pairs, table->len,
							   sizeof key, compare_peers)
						 : NULL;
	return hit ? hit->peer : 0;
}

static int send_unix_dump_request(int sock)
{
	struct {
		struct nlmsghdr header;
		struct unix_diag_req request;
	} message;
	memset(&message, 0, sizeof message);
	message.header.nlmsg_len = sizeof message;
	message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	message.request.sdiag_family = AF_UNIX;
	message.request.udiag_states = ~0u;
	message.request.udiag_show = UDIAG_SHOW_PEER;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t sent = sendto(sock, &message, sizeof message, 0, (struct sockaddr *)&kernel,
			      sizeof kernel);
	return sent == (ssize_t)sizeof message ? 0 : -1;
}

/* Records the UNIX_DIAG_PEER attribute of one answer, if it has one. */
static int add_peer_message(struct peer_table *peers, const struct nlmsghdr *header)
{
	if (header->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg)))
		return 0;
	const struct unix_diag_msg *message = NLMSG_DATA(header);
	const char *attr = (const char *)message + NLMSG_ALIGN(sizeof *message);
	const char *end = (const char *)header + header->nlmsg_len;
	while (end - attr >= NLA_HDRLEN) {
		struct nlattr nla;
		memcpy(&nla, attr, sizeof nla);
		if (nla.nla_len < NLA_HDRLEN || nla.nla_len > end - attr)
			break;
		if (nla.nla_type == UNIX_DIAG_PEER &&
		    (size_t)nla.nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
			uint32_t peer;
			memcpy(&peer, attr + NLA_HDRLEN, sizeof peer);
			return peer_table_add(peers, message->udiag_ino, peer);
		}
		attr += NLA_ALIGN(nla.nla_len);
	}
	return 0;
}

static void receive_unix_peers(int sock, struct peer_table *peers)
{
	long buffer[32768 / sizeof(long)]; /* long: aligned for nlmsghdr */
	for (;;) {
		ssize_t len = recv(sock, buffer, sizeof buffer, 0);
		if (len <= 0)
			return;
		for (struct nlmsghdr *header = (struct nlmsghdr *)buffer; NLMSG_OK(header, len);
		     header = NLMSG_NEXT(header, len)) {
			if (header->nlmsg_type == NLMSG_DONE || header->nlmsg_type == NLMSG_ERROR)
				return;
			if (header->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
			    add_peer_message(peers, header) < 0)
				return;
		}
	}
}

/* Only sees our own network namespace; socket inodes are unique system-wide,
 * so sockets of another namespace simply have no peer here. */
static void load_unix_peers(struct peer_table *peers)
{
	int sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (sock < 0)
		return;
	if (send_unix_dump_request(sock) == 0)
		receive_unix_peers(sock, peers);
	close(sock);
	if (peers->len)
		qsort(peers->pairs, peers->len, sizeof *peers->pairs, compare_peers);
}

/* ---- /proc/PID/net parsing ---- */

/* The kernel prints addresses as 32-bit words in host order, "%08X" each. */
static bool parse_address_words(const char *hex, size_t count, uint32_t *words)
{
	for (size_t i = 0; i < count; i++) {
		char chunk[9];
		uint64_t value;
		memcpy(chunk, hex + 8 * i, 8);
		chunk[8] = '\0';
		if (!parse_u64(chunk, 16, &value))
			return false;
		words[i] = (uint32_t)value;
	}
	return true;
}

/* "0100007F:1388" -> "127.0.0.1:5000"; 32 hex digits -> "[::1]:53". */
static bool format_endpoint(const char *field, char *out, size_t size, uint64_t *port)
{
	const char *colon = strchr(field, ':');
	if (!colon || !parse_u64(colon + 1, 16, port) || *port > 65535)
		return false;
	size_t hex_len = (size_t)(colon - field);
	uint32_t words[4];
	char address[INET6_ADDRSTRLEN];
	if (hex_len == 8 && parse_address_words(field, 1, words) &&
	    inet_ntop(AF_INET, words, address, sizeof address))
		snprintf(out, size, "%s:%u", address, (unsigned)*port);
	else if (hex_len == 32 && parse_address_words(field, 4, words) &&
		 inet_ntop(AF_INET6, words, address, sizeof address))
		snprintf(out, size, "[%s]:%u", address, (unsigned)*port);
	else
		return false;
	return true;
}

static int add_inet_line(struct sock_table *table, const void *label, char *line)
{
	char *fields[INET_FIELDS], local[64], remote[64], text[160];
	uint64_t inode, state, local_port, remote_port;
	if (!split_fields(&line, fields, INET_FIELDS) || !parse_u64(fields[9], 10, &inode) ||
	    inode == 0 || !parse_u64(fields[3], 16, &state) ||
	    !format_endpoint(fields[1], local, sizeof local, &local_port) ||
	    !format_endpoint(fields[2], remote, sizeof remote, &remote_port))
		return 0;
	if (state == TCP_STATE_LISTEN)
		snprintf(text, sizeof text, "%s %s (listening)", (const char *)label, local);
	else if (remote_port != 0)
		snprintf(text, sizeof text, "%s %s -> %s", (const char *)label, local, remote);
	else
		snprintf(text, sizeof text, "%s %s", (const char *)label, local);
	return sock_table_add(table, inode, text);
}

static int add_unix_line(struct sock_table *table, const void *peers, char *line)
{
	char *fields[UNIX_FIELDS], text[256];
	uint64_t inode, peer;
	if (!split_fields(&line, fields, UNIX_FIELDS) || !parse_u64(fields[6], 10, &inode) ||
	    inode == 0)
		return 0;
	char *path = line; /* the rest of the line, spaces included */
	strip_newline(path);
	if (*path)
		snprintf(text, sizeof text, "UNIX %s", path);
	else if ((peer = peer_table_find(peers, inode)) != 0)
		snprintf(text, sizeof text, "UNIX (unnamed) -> socket:[%llu]",
			 (unsigned long long)peer);
	else
		snprintf(text, sizeof text, "UNIX (unnamed)");
	return sock_table_add(table, inode, text);
}

typedef int line_parser(struct sock_table *table, const void *arg, char *line);

/* A missing or unreadable table (no IPv6, say) is not an error. */
static int parse_net_file(struct fdinfo_ctx *ctx, const char *name, line_parser *parse,
			  const void *arg)
{
	char path[64];
	snprintf(path, sizeof path, "%s/net/%s", ctx->dir, name);
	FILE *file = fopen(path, "re");
	if (!file)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	int err = 0;
	while (!err && getline(&line, &cap, file) > 0)
		err = parse(&ctx->sockets, arg, line);
	free(line);
	fclose(file);
	return err;
}

static int load_sockets(struct fdinfo_ctx *ctx)
{
	static const char *const inet_tables[][2] = {
		{ "tcp", "TCP" }, { "tcp6", "TCP6" }, { "udp", "UDP" }, { "udp6", "UDP6" },
	};
	struct peer_table peers = { 0 };
	int err = 0;
	sock_table_clear(&ctx->sockets);
	load_unix_peers(&peers);
	for (size_t i = 0; !err && i < sizeof inet_tables / sizeof inet_tables[0]; i++)
		err = parse_net_file(ctx, inet_tables[i][0], add_inet_line, inet_tables[i][1]);
	if (!err)
		err = parse_net_file(ctx, "unix", add_unix_line, &peers);
	free(peers.pairs);
	if (err) {
		sock_table_clear(&ctx->sockets);
		return err;
	}
	if (ctx->sockets.len)
		qsort(ctx->sockets.entries, ctx->sockets.len, sizeof *ctx->sockets.entries,
		      compare_sock_entries);
	ctx->sockets_loaded = true;
	return 0;
}

static const char *find_socket(struct fdinfo_ctx *ctx, uint64_t inode)
{
	if (!ctx->sockets_loaded && load_sockets(ctx) < 0)
		return NULL;
	return sock_table_find(&ctx->sockets, inode);
}

/* ---- /proc/PID/fdinfo/N ---- */

/* The value after "name:" at the start of line, or NULL. */
static char *field_value(char *line, const char *name)
{
	if (!starts_with(line, name))
		return NULL;
	char *value = line + strlen(name);
	value += strspn(value, " \t");
	strip_newline(value);
	return value;
}

static void parse_fdinfo_line(char *line, struct fdinfo_fields *info)
{
	char *value, *end;
	uint64_t number;
	if ((value = field_value(line, "flags:")) && parse_u64(value, 8, &number) &&
	    number <= INT_MAX)
		info->flags = (int)number;
	else if ((value = field_value(line, "ino:")) && parse_u64(value, 10, &number)) {
		info->inode = number;
		info->has_inode = true;
	} else if ((value = field_value(line, "Pid:")) && *value) {
		errno = 0;
		long pid = strtol(value, &end, 10);
		if (!errno && *end == '\0') {
			info->pid = pid;
			info->has_pid = true;
		}
	}
}

static bool fdinfo_complete(const struct fdinfo_fields *info, bool want_pid)
{
	return info->flags >= 0 && info->has_inode && (!want_pid || info->has_pid);
}

/* One read: the fields wanted come first (an epoll's or inotify's fdinfo
 * may go on for many lines after them).  No stdio: its buffer would cost a
 * stat of every file, a system call per descriptor. */
static void read_fdinfo(const struct fdinfo_ctx *ctx, const char *name, bool want_pid,
			struct fdinfo_fields *info)
{
	char text[4096];
	*info = (struct fdinfo_fields){ .flags = -1 };
	int file = openat(ctx->fdinfo_dir, name, O_RDONLY | O_CLOEXEC);
	if (file < 0)
		return;
	ssize_t len = read(file, text, sizeof text - 1);
	close(file);
	if (len <= 0)
		return;
	text[len] = '\0';
	for (char *line = text, *next; line && !fdinfo_complete(info, want_pid); line = next) {
		if ((next = strchr(line, '\n')))
			*next++ = '\0';
		parse_fdinfo_line(line, info);
	}
}

/* ---- classification ---- */

static void set_result(struct fd_details *out, const char *type, const char *target)
{
	copy_text(out->type, sizeof out->type, type);
	copy_text(out->target, sizeof out->target, target);
}

/* "socket:[123]" with prefix "socket:" -> 123. */
static bool bracketed_inode(const char *link, const char *prefix, uint64_t *inode)
{
	if (!starts_with(link, prefix))
		return false;
	const char *start = link + strlen(prefix);
	size_t len = strlen(start);
	char digits[24];
	if (len < 3 || len - 2 >= sizeof digits || start[0] != '[' || start[len - 1] != ']')
		return false;
	memcpy(digits, start + 1, len - 2);
	digits[len - 2] = '\0';
	return parse_u64(digits, 10, inode);
}

static bool is_netlink_socket(const struct fdinfo_ctx *ctx, const char *name)
{
	char link_path[64], protocol[32];
	snprintf(link_path, sizeof link_path, "%s/fd/%s", ctx->dir, name);
	ssize_t len = getxattr(link_path, "system.sockprotoname", protocol, sizeof protocol - 1);
	if (len <= 0)
		return false;
	protocol[len] = '\0';
	return strcmp(protocol, "NETLINK") == 0;
}

static void describe_socket(struct fdinfo_ctx *ctx, const char *name, const char *link,
			    uint64_t inode, struct fd_details *out)
{
	const char *text = find_socket(ctx, inode);
	if (!text)
		text = is_netlink_socket(ctx, name) ? "NETLINK" : link;
	set_result(out, "socket", text);
}

static const char *pipe_end(int flags)
{
	if (flags < 0)
		return "";
	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		return " (read end)";
	case O_WRONLY:
		return " (write end)";
	default:
		return "";
	}
}

static void describe_pipe(const char *link, int flags, struct fd_details *out)
{
	copy_text(out->type, sizeof out->type, "pipe");
	snprintf(out->target, sizeof out->target, "%.64s%s", link, pipe_end(flags));
}

static const char *anon_inode_type(const char *link)
{
	static const char *const types[][2] = {
		{ "anon_inode:[eventfd]", "eventfd" },
		{ "anon_inode:[timerfd]", "timerfd" },
		{ "anon_inode:[signalfd]", "signalfd" },
		{ "anon_inode:[eventpoll]", "epoll" },
		{ "anon_inode:inotify", "inotify" },
		{ "anon_inode:[fanotify]", "fanotify" },
		{ "anon_inode:[pidfd]", "pidfd" },
		{ "anon_inode:[userfaultfd]", "userfaultfd" },
		{ "anon_inode:[perf_event]", "perf_event" },
		{ "anon_inode:[io_uring]", "io_uring" },
	};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strcmp(link, types[i][0]) == 0)
			return types[i][1];
	return "anon_inode";
}

static void describe_anon_inode(const char *link, const struct fdinfo_fields *info,
				struct fd_details *out)
{
	const char *type = anon_inode_type(link);
	set_result(out, type, link);
	if (strcmp(type, "pidfd") != 0 || !info->has_pid)
		return;
	if (info->pid < 0)
		snprintf(out->target, sizeof out->target, "pid (exited)");
	else
		snprintf(out->target, sizeof out->target, "pid %ld", info->pid);
}

#define MEMFD_PREFIX "/memfd:"
#define DELETED_SUFFIX " (deleted)"

static bool is_memfd(const char *link)
{
	return starts_with(link, MEMFD_PREFIX) && ends_with(link, DELETED_SUFFIX);
}

/* "/memfd:NAME (deleted)" -> "memfd:NAME" */
static void describe_memfd(const char *link, struct fd_details *out)
{
	int name_len = (int)(strlen(link) - strlen(MEMFD_PREFIX) - strlen(DELETED_SUFFIX));
	copy_text(out->type, sizeof out->type, "memfd");
	snprintf(out->target, sizeof out->target, "memfd:%.*s", name_len,
		 link + strlen(MEMFD_PREFIX));
}

static const char *file_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "file";
	case S_IFDIR:
		return "directory";
	case S_IFIFO:
		return "fifo";
	case S_IFCHR:
		return "chardev";
	case S_IFBLK:
		return "blockdev";
	case S_IFSOCK:
		return "socket";
	default:
		return "unknown";
	}
}

/* stat() on /proc/PID/fd/N follows the link to the open object itself. */
static void describe_path(const struct fdinfo_ctx *ctx, const char *name, const char *link,
			  struct fd_details *out)
{
	struct stat st;
	if (fstatat(ctx->fd_dir, name, &st, 0) < 0) {
		set_result(out, "unknown", link);
		return;
	}
	set_result(out, file_type(st.st_mode), link);
	if (out->inode == 0)
		out->inode = st.st_ino;
}

static void classify(struct fdinfo_ctx *ctx, const char *name, const char *link,
		     const struct fdinfo_fields *info, struct fd_details *out)
{
	uint64_t inode = 0;
	if (bracketed_inode(link, "socket:", &inode))
		describe_socket(ctx, name, link, inode, out);
	else if (bracketed_inode(link, "pipe:", &inode))
		describe_pipe(link, info->flags, out);
	else if (starts_with(link, "anon_inode:"))
		describe_anon_inode(link, info, out);
	else if (is_memfd(link))
		describe_memfd(link, out);
	else if (link[0] == '/')
		describe_path(ctx, name, link, out);
	else
		set_result(out, "unknown", link);
	if (out->inode == 0)
		out->inode = inode;
}

/* ---- public API ---- */

long proc_status_last(pid_t pid, const char *field, long fallback)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	size_t len = strlen(field);
	long value = fallback;
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, len) != 0 || line[len] != ':')
			continue;
		for (char *at = line + len + 1, *end; *at; at = end) {
			long number = strtol(at, &end, 10);
			if (end == at)
				break;
			value = number;
		}
		break;
	}
	if (f)
		fclose(f);
	return value;
}

struct fdinfo_ctx *fdinfo_open(pid_t pid)
{
	struct fdinfo_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx)
		return NULL;
	ctx->pid = pid;
	snprintf(ctx->dir, sizeof ctx->dir, "/proc/%d", (int)pid);
	char path[64];
	snprintf(path, sizeof path, "%s/fd", ctx->dir);
	ctx->fd_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* not O_PATH: refused
									  here when not ours */
	snprintf(path, sizeof path, "%s/fdinfo", ctx->dir);
	ctx->fdinfo_dir = ctx->fd_dir < 0 ? -1 : open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ctx->fdinfo_dir < 0) {
		int saved = errno;
		fdinfo_close(ctx);
		errno = saved;
		return NULL;
	}
	return ctx;
}

/* A directory entry that is a descriptor number ("12", not "." or "012"). */
static bool parse_fd_name(const char *name, int *fd)
{
	uint64_t value;
	if (!isdigit((unsigned char)name[0]) || (name[0] == '0' && name[1] != '\0') ||
	    !parse_u64(name, 10, &value) || value > INT_MAX)
		return false;
	*fd = (int)value;
	return true;
}

static int compare_ints(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

static int read_fd_dir(DIR *dir, int skip_fd, int **fds, size_t *n)
{
	size_t cap = 0;
	struct dirent *entry;
	int fd;
	for (;;) {
		errno = 0;
		if (!(entry = readdir(dir)))
			return errno ? -errno : 0;
		if (!parse_fd_name(entry->d_name, &fd) || fd == skip_fd)
			continue;
		if (*n == cap) {
			void *grown = grow_array(*fds, &cap, sizeof **fds);
			if (!grown)
				return -ENOMEM;
			*fds = grown;
		}
		(*fds)[(*n)++] = fd;
	}
}

int fdinfo_list(struct fdinfo_ctx *ctx, int **fds, size_t *n)
{
	if (!ctx || !fds || !n)
		return -EINVAL;
	*fds = NULL;
	*n = 0;
	ctx->sockets_loaded = false;
	char path[64];
	snprintf(path, sizeof path, "%s/fd", ctx->dir);
	DIR *dir = opendir(path);
	if (!dir)
		return -errno;
	int skip_fd = ctx->pid == getpid() ? dirfd(dir) : -1;
	int err = read_fd_dir(dir, skip_fd, fds, n);
	closedir(dir);
	if (err) {
		free(*fds);
		*fds = NULL;
		*n = 0;
		return err;
	}
	if (*n)
		qsort(*fds, *n, sizeof **fds, compare_ints);
	return 0;
}

int fdinfo_describe(struct fdinfo_ctx *ctx, int fd, struct fd_details *out)
{
	if (!ctx || !out || fd < 0)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	out->fd = fd;
	out->flags = -1;
	char name[16], link[PATH_MAX];
	snprintf(name, sizeof name, "%d", fd);
	ssize_t len = readlinkat(ctx->fd_dir, name, link, sizeof link - 1);
	if (len < 0)
		return -errno;
	link[len] = '\0';
	struct fdinfo_fields info;
	read_fdinfo(ctx, name, starts_with(link, "anon_inode:[pidfd]"), &info);
	out->flags = info.flags;
	out->inode = info.has_inode ? info.inode : 0;
	classify(ctx, name, link, &info, out);
	return 0;
}

void fdinfo_close(struct fdinfo_ctx *ctx)
{
	if (!ctx)
		return;
	sock_table_clear(&ctx->sockets);
	if (ctx->fd_dir >= 0)
		close(ctx->fd_dir);
	if (ctx->fdinfo_dir >= 0)
		close(ctx->fdinfo_dir);
	free(ctx);
}
