/* A stand-in for the agent that exports a broken `htrace_db`, so that the
 * tests can show htrace refusing a database it cannot trust with one clear
 * line, and the program running on unharmed.  Built as libhtrace.so in one
 * directory per variant:
 *   BAD_VERSION  a database of another format version
 *   BAD_SIZES    a current header whose sizes are absurd
 *   NOT_READY    a database whose agent never finished starting
 *   ODD_MODULE   a leaked descriptor whose stack is in a module at the
 *                path HTRACE_FAKE_MODULE names (a FIFO, in the test)
 *   TORN         descriptor slots and ring records that stay half written
 *                (a whole chunk and ring of them)
 *   FEW_TORN     the same, 5 of each, as threads killed mid-write leave
 *   HUGE_RESERVE a ring reserved of more records than any agent maps
 *   MAILBOX_END  a count of the client's requests at its largest value
 *   BAD_EVENT    a whole ring record of a kind no agent writes */
#include "htrace/apis.h"
#include "htrace/db.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The variants whose header passes every check (valid_header). */
#if defined(ODD_MODULE) || defined(TORN) || defined(FEW_TORN) || defined(HUGE_RESERVE) || \
	defined(MAILBOX_END) || defined(BAD_EVENT)
#define VALID_HEADER 1
#endif

#if defined(BAD_VERSION)
struct htrace_db htrace_db = {
	.magic = HTRACE_DB_MAGIC, .version = HTRACE_DB_VERSION + 41, .size = sizeof(struct htrace_db),
};
#elif defined(BAD_SIZES)
struct htrace_db htrace_db = {
	.magic = HTRACE_DB_MAGIC, .version = HTRACE_DB_VERSION, .size = sizeof(struct htrace_db),
	.ring_capacity = 0xffffffffu, .ring_addr = 0x1000, .depot_bytes = 1ull << 60,
};
#elif defined(NOT_READY)
struct htrace_db htrace_db = { .version = HTRACE_DB_VERSION };
#elif defined(VALID_HEADER)
struct htrace_db htrace_db __attribute__((aligned(64)));
static uint64_t top[HTRACE_FDTAB_TOP];
static struct htrace_fd_slot chunk[HTRACE_FDTAB_CHUNK];

/* A header that passes every check, tracing, with an empty table. */
static void valid_header(void)
{
	htrace_db = (struct htrace_db){ .magic = HTRACE_DB_MAGIC, .version = HTRACE_DB_VERSION,
					.size = sizeof(struct htrace_db), .pid = getpid(),
					.state = HTRACE_STATE_TRACING, .stack_depth = 8,
					.trace_from_seq = 1, .next_seq = 10 };
	htrace_db.api_hash = htrace_api_hash();
	snprintf(htrace_db.exe, sizeof(htrace_db.exe), "/fake");
	top[0] = (uint64_t)chunk;
	htrace_db.fdtab_addr = (uint64_t)top;
}
#else
#error "choose a variant"
#endif

#if defined(ODD_MODULE)
static struct htrace_module modules[1];
static uint64_t depot[4];

/* fd 1000 open since event 5, its stack one frame in the only module. */
static void fill(void)
{
	struct htrace_fd_slot *slot = &chunk[1000];
	slot->state = HTRACE_FD_OPEN;
	slot->open = (struct htrace_event){ .seq = 5, .seq_end = 5, .fd = 1000, .kind = HTRACE_OPEN,
					    .api = 1, .stack = 8 };
	depot[1] = 1ull << 32; /* hash 0, depth 1 */
	depot[2] = 0x1234;
	htrace_db.depot_addr = (uint64_t)depot;
	htrace_db.depot_bytes = htrace_db.depot_used = sizeof(depot);
	modules[0] = (struct htrace_module){ .start = 0x1000, .end = 0x100000 };
	const char *path = getenv("HTRACE_FAKE_MODULE");
	snprintf(modules[0].path, sizeof(modules[0].path), "%s", path ? path : "/nowhere");
	htrace_db.modules_addr = (uint64_t)modules;
	htrace_db.module_capacity = htrace_db.module_count = 1;
}
#elif defined(TORN) || defined(FEW_TORN)
static struct htrace_event ring[HTRACE_FDTAB_CHUNK];
#if defined(TORN)
#define TORN_COUNT HTRACE_FDTAB_CHUNK
#else
#define TORN_COUNT 5
#endif

/* TORN_COUNT slots of the first chunk odd, as many ring records whose two
 * numbers differ.  One odd slot says OPEN, with a whole OPEN, for a
 * descriptor the process really has open: a client that did not leave it
 * out would list it as a leak. */
static void fill(void)
{
	for (unsigned i = 0; i < TORN_COUNT; i++) {
		chunk[i].gen = 1;
		ring[i] = (struct htrace_event){ .seq = 1 + i, .seq_end = 2 + i, .kind = HTRACE_OPEN };
	}
	int fd = open("/dev/null", O_RDONLY);
	if (fd >= 0 && fd < (int)HTRACE_FDTAB_CHUNK) {
		chunk[fd].gen = 1;
		chunk[fd].state = HTRACE_FD_OPEN;
		chunk[fd].open = (struct htrace_event){ .seq = 5, .seq_end = 5, .fd = fd,
							.kind = HTRACE_OPEN, .api = 1 };
	}
	htrace_db.ring_addr = (uint64_t)ring;
	htrace_db.ring_capacity = HTRACE_FDTAB_CHUNK;
}
#elif defined(HUGE_RESERVE)
static void fill(void)
{
	htrace_db.ring_reserved = 0xffffffffu; /* -enable would make it the capacity */
}
#elif defined(MAILBOX_END)
static void fill(void)
{
	htrace_db.mailbox_seq = UINT64_MAX; /* the next request would be number 0 */
}
#elif defined(BAD_EVENT)
static struct htrace_event ring[4];

static void fill(void)
{
	ring[0] = (struct htrace_event){ .seq = 3, .seq_end = 3, .fd = 3, .kind = 77 };
	htrace_db.ring_addr = (uint64_t)ring;
	htrace_db.ring_capacity = 4;
}
#endif

/* The current table's hash, so that BAD_SIZES fails on the sizes alone;
 * the whole database for the variants that pass the header's checks. */
__attribute__((constructor)) static void set_hash(void)
{
#if defined(BAD_SIZES)
	htrace_db.api_hash = htrace_api_hash();
#elif defined(VALID_HEADER)
	valid_header();
	fill();
#endif
}
