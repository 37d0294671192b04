/* A stand-in for the agent that exports a broken `htrace_db`, so that the
 * tests can show htrace refusing a database it cannot trust with one clear
 * line, and the program running on unharmed.  Built as libhtrace.so in one
 * directory per variant:
 *   BAD_VERSION  a database of another format version
 *   BAD_SIZES    a current header whose sizes are absurd
 *   NOT_READY    a database whose agent never finished starting */
#include "htrace/apis.h"
#include "htrace/db.h"

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
#else
#error "choose a variant"
#endif

/* The current table's hash, so that BAD_SIZES fails on the sizes alone. */
__attribute__((constructor)) static void set_hash(void)
{
#if defined(BAD_SIZES)
	htrace_db.api_hash = htrace_api_hash();
#endif
}
