/* dblayout: prints where the trace database's fields are (include/htrace/db.h)
 * as one JSON object, so that tests/test_corrupt_db.py can find and corrupt
 * each part of a running target's database without copying the layout (and
 * test_live.py the agent's FAILED bit of its state word). */
#include <stddef.h>
#include <stdio.h>

#include "htrace/db.h"

#define FIELD(name) printf("\"%s\": %zu, ", #name, offsetof(struct htrace_db, name))

int main(void)
{
	printf("{");
	FIELD(state);
	FIELD(ring_capacity);
	FIELD(ring_addr);
	FIELD(ring_taken_addr);
	FIELD(depot_addr);
	FIELD(depot_bytes);
	FIELD(depot_used);
	FIELD(buckets_addr);
	FIELD(nbuckets);
	FIELD(fdtab_addr);
	FIELD(modules_addr);
	FIELD(module_count);
	FIELD(next_seq);
	printf("\"state_failed\": %u, ", (unsigned)HTRACE_STATE_FAILED);
	printf("\"db_size\": %zu, \"event_size\": %zu, \"slot_size\": %zu, \"module_size\": %zu}\n",
	       sizeof(struct htrace_db), sizeof(struct htrace_event), sizeof(struct htrace_fd_slot),
	       sizeof(struct htrace_module));
	return 0;
}
