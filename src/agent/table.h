/* The live descriptor table's slots, and the bookkeeping that a hook does
 * in line while tracing is off: there an OPEN or CLOSE only marks a slot,
 * and the hook does it itself, without a call into the engine, when the
 * slot's chunk exists, no client request is waiting and nothing else has
 * to be looked at (an owner, a vfork child).  Everything else goes to the
 * engine (engine.c), which uses the same primitives. */
#ifndef HTRACE_AGENT_TABLE_H
#define HTRACE_AGENT_TABLE_H

#include "agent.h"

#define FDTAB_LIMIT ((uint64_t)HTRACE_FDTAB_TOP * HTRACE_FDTAB_CHUNK)

/* The table's top array: chunk addresses, 0 until a chunk is created. */
extern uint64_t table_chunks[HTRACE_FDTAB_TOP] AGENT_HIDDEN;

/* fd's slot when its chunk exists, else NULL (also out of range). */
static inline struct htrace_fd_slot *table_slot(int fd)
{
	if (fd < 0 || (uint64_t)fd >= FDTAB_LIMIT)
		return NULL;
	struct htrace_fd_slot *chunk = (struct htrace_fd_slot *)__atomic_load_n(
		&table_chunks[(unsigned)fd / HTRACE_FDTAB_CHUNK], __ATOMIC_ACQUIRE);
	return chunk ? &chunk[(unsigned)fd % HTRACE_FDTAB_CHUNK] : NULL;
}

/* A slot has one writer at a time (a number is closed before it can be
 * opened again), so its generation moves with plain ordered stores, no
 * locked instruction: odd while the fields change. */
ALWAYS_INLINE void slot_begin(struct htrace_fd_slot *slot)
{
	uint32_t gen = __atomic_load_n(&slot->gen, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->gen, gen + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE); /* odd before any field changes */
}

ALWAYS_INLINE void slot_end(struct htrace_fd_slot *slot)
{
	uint32_t gen = __atomic_load_n(&slot->gen, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->gen, gen + 1, __ATOMIC_RELEASE);
}

/* The thread's id, asked of the kernel once per thread (out of line, so
 * that the hooks' path stays short). */
int thread_id_first_time(void) AGENT_HIDDEN;

static inline int current_tid(void)
{
	int tid = agent_self.tid;
	return __builtin_expect(tid != 0, 1) ? tid : thread_id_first_time();
}

/* While tracing is off an OPEN only marks the slot open, field by field:
 * no event, no stack, no copy. */
ALWAYS_INLINE void slot_fill_untraced(struct htrace_fd_slot *slot, int fd, unsigned api,
				      unsigned flags)
{
	slot->open.seq = 0;
	slot->open.time_ns = 0;
	slot->open.fd = fd;
	slot->open.tid = current_tid();
	slot->open.stack = 0;
	slot->open.api = (uint16_t)api;
	slot->open.kind = HTRACE_OPEN;
	slot->open.flags = (uint8_t)(flags | HTRACE_EV_NO_STACK);
	slot->open.seq_end = 0;
	slot->owner = 0;
	slot->owner_api = 0;
	slot->state = HTRACE_FD_OPEN;
}

ALWAYS_INLINE void slot_open_untraced(struct htrace_fd_slot *slot, int fd, unsigned api,
				      unsigned flags)
{
	slot_begin(slot);
	slot_fill_untraced(slot, fd, api, flags);
	slot_end(slot);
}

/* dup2 or dup3 onto fd, tracing off: a new descriptor behind the number,
 * so that a FILE or DIR still using it is reported again (stale_owner
 * forgotten, as a close would). */
ALWAYS_INLINE void slot_replace_untraced(struct htrace_fd_slot *slot, int fd, unsigned api)
{
	slot_begin(slot);
	slot_fill_untraced(slot, fd, api, 0);
	slot->stale_owner = 0;
	slot_end(slot);
}

ALWAYS_INLINE void slot_close(struct htrace_fd_slot *slot)
{
	slot_begin(slot);
	slot->state = HTRACE_FD_CLOSED;
	slot->owner = 0;
	slot->owner_api = 0;
	slot->stale_owner = 0;
	slot_end(slot);
}

/* Tracing off, no client request waiting, not a vfork child. */
static inline int table_quiet(void)
{
	return (__atomic_load_n(&htrace_db.state, __ATOMIC_ACQUIRE) & HTRACE_STATE_TRACING) == 0 &&
	       __atomic_load_n(&htrace_db.mailbox_seq, __ATOMIC_ACQUIRE) == htrace_db.mailbox_done &&
	       !htrace_in_vfork;
}

/* The in-line bookkeeping: each returns 1 when it did all of it, 0 when the
 * engine has to (engine_opened, engine_closing, engine_replaced). */
ALWAYS_INLINE int quietly_opened(int fd, unsigned api)
{
	struct htrace_fd_slot *slot;
	if (!table_quiet() || !(slot = table_slot(fd)))
		return 0;
	slot_open_untraced(slot, fd, api, 0);
	return 1;
}

/* A descriptor recorded open, owned by no FILE or DIR. */
ALWAYS_INLINE int quietly_closing(int fd)
{
	struct htrace_fd_slot *slot;
	if (!table_quiet() || !(slot = table_slot(fd)) ||
	    __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != HTRACE_FD_OPEN || slot->owner_api)
		return 0;
	slot_close(slot);
	return 1;
}

/* dup2 or dup3 onto fd: its old descriptor, if any, owned by nothing. */
ALWAYS_INLINE int quietly_replaced(int fd, unsigned api)
{
	struct htrace_fd_slot *slot;
	if (!table_quiet() || !(slot = table_slot(fd)) || slot->owner_api)
		return 0;
	slot_replace_untraced(slot, fd, api);
	return 1;
}

#endif
