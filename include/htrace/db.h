/* The trace database: the only contract between the agent (libhtrace.so,
 * which writes it inside the traced process) and the client (htrace, which
 * reads it from outside with process_vm_readv, the way a debugger reads its
 * target).
 *
 * Everything here is plain data at fixed offsets; pointers are addresses in
 * the target.  The agent exports one object, `htrace_db` (struct htrace_db),
 * from which the client reaches everything else:
 *
 *   htrace_db ── fdtab_addr ──▶ u64 chunk[HTRACE_FDTAB_TOP] ──▶ struct htrace_fd_slot[HTRACE_FDTAB_CHUNK]
 *            ├── ring_addr  ──▶ struct htrace_event[ring_capacity]  (the last Max_Traces events)
 *            ├── depot_addr ──▶ struct htrace_stack records, each distinct stack once
 *            └── modules_addr ▶ struct htrace_module[module_capacity]
 *
 * Writers never lock.  A record that a reader may catch half-written carries
 * a sequence number at both ends (events) or a generation that is odd while
 * it is being written (descriptor slots); a reader that sees a mismatch reads
 * again and never shows a torn record.
 */
#ifndef HTRACE_DB_H
#define HTRACE_DB_H

#include <stdint.h>

#define HTRACE_DB_MAGIC 0x3162647472636874ULL /* "htrcdb1" little-endian */
#define HTRACE_DB_VERSION 4
/* Padding that puts next_seq at a multiple of 64 bytes from the start of
 * struct htrace_db (checked below; the agent aligns its instance to 64). */
#define HTRACE_NEXT_SEQ_GAP 48u
#define HTRACE_DB_SYMBOL "htrace_db"

/* The live descriptor table: a fixed top array of chunk addresses, each
 * chunk holding HTRACE_FDTAB_CHUNK slots, so a descriptor's slot is found
 * in two steps whatever the number of descriptors open. */
#define HTRACE_FDTAB_CHUNK 1024u
#define HTRACE_FDTAB_TOP 4096u /* descriptors 0 .. 4M-1 */

#define HTRACE_MAX_DEPTH 64u
#define HTRACE_MODULE_PATH 232u

/* Event kinds, as the seed names them. */
enum htrace_kind {
	HTRACE_OPEN = 1,
	HTRACE_CLOSE = 2,
	HTRACE_BAD_REFERENCE = 3,
};

/* Event flags. */
#define HTRACE_EV_INHERITED_EXEC 0x01 /* open when this image started */
#define HTRACE_EV_INHERITED_FORK 0x02 /* opened by the parent before fork */
#define HTRACE_EV_NO_STACK 0x04 /* stack not taken (tracing off, nested) */
#define HTRACE_EV_IMPLICIT 0x08 /* close done by another call (dup2's target) */
#define HTRACE_EV_OWNED 0x10 /* BAD REFERENCE: closed or replaced behind its FILE or DIR */
#define HTRACE_EV_STALE 0x20 /* BAD REFERENCE: a FILE or DIR used after its descriptor
				was closed (and perhaps reused) */

/* Database state bits, in two bytes with one writer each, so that neither
 * undoes the other's: the client writes byte 0 (TRACING) alone, with
 * HTRACE_STATE_CLIENT_BYTE; the agent sets TRACING (at start) and FAILED
 * with an atomic or of the word. */
#define HTRACE_STATE_TRACING 0x1 /* stacks and history are being recorded */
#define HTRACE_STATE_FAILED 0x100 /* the agent hit a failure and stopped; see failure[] */
#define HTRACE_STATE_CLIENT_BYTE 0 /* offset in state of the byte with TRACING */
_Static_assert(!(HTRACE_STATE_TRACING & ~(0xffu << 8 * HTRACE_STATE_CLIENT_BYTE)) &&
		       !(HTRACE_STATE_FAILED & 0xffu << 8 * HTRACE_STATE_CLIENT_BYTE),
	       "TRACING alone in the client's byte of the state word");

/* One event.  A ring record is whole when seq_end equals seq (and is not
 * 0); while a writer fills it, seq_end has its top bit set and the
 * writer's process id in its low 32 bits. */
struct htrace_event {
	uint64_t seq; /* 1, 2, 3 …; 0 for a record not from the ring */
	uint64_t time_ns; /* CLOCK_MONOTONIC_COARSE (ticks of 1-4 ms); 0 when not tracing */
	int32_t fd;
	int32_t tid;
	uint32_t stack; /* offset of the stack in the depot; 0 = none */
	uint16_t api; /* row of apis.def (enum htrace_api) */
	uint8_t kind; /* enum htrace_kind */
	uint8_t flags; /* HTRACE_EV_* */
	uint64_t seq_end;
};

#define HTRACE_FD_CLOSED 0
#define HTRACE_FD_OPEN 1

/* One descriptor of the live table: its OPEN event, kept outside the ring so
 * that a leaked descriptor never loses its open stack. */
struct htrace_fd_slot {
	uint32_t gen; /* odd while being written */
	uint16_t state; /* HTRACE_FD_OPEN or HTRACE_FD_CLOSED */
	uint16_t owner_api; /* API that wrapped it in a FILE* or DIR*, 0 if none */
	struct htrace_event open;
	uint64_t owner; /* that FILE* or DIR*, in the target */
	uint64_t stale_owner; /* the FILE or DIR whose stale use was last reported */
};

/* One distinct stack in the depot; its id is its offset from depot_addr.
 * Records are 8-byte aligned; offset 0 is never a stack. */
struct htrace_stack {
	uint32_t hash;
	uint16_t depth;
	uint16_t reserved;
	uint64_t pc[]; /* depth return addresses, innermost first */
};

/* One loaded object, recorded when it was seen, kept after dlclose so that
 * old stacks still resolve. */
#define HTRACE_MOD_UNLOADED 0x1
#define HTRACE_MOD_PREVIOUS_IMAGE 0x2 /* of the image before exec, at a made-up
					  address range (see src/agent/exec.c) */
struct htrace_module {
	uint64_t start, end; /* address range covered by its PT_LOAD segments */
	uint64_t bias; /* load bias: address minus ELF virtual address */
	uint32_t flags;
	uint32_t reserved;
	char path[HTRACE_MODULE_PATH];
};

struct htrace_db {
	uint64_t magic; /* HTRACE_DB_MAGIC once the agent is initialised */
	uint32_t version; /* HTRACE_DB_VERSION */
	uint32_t size; /* sizeof(struct htrace_db) */
	uint64_t api_hash; /* hash of apis.def's names: both sides must agree */
	int32_t pid;
	uint32_t state; /* HTRACE_STATE_* */
	char failure[128]; /* why the agent stopped, when HTRACE_STATE_FAILED */
	char exe[256]; /* /proc/self/exe when the image started */

	uint32_t stack_depth; /* frames kept per stack */
	uint32_t ring_capacity; /* Max_Traces: events kept in the ring */
	uint64_t ring_addr; /* struct htrace_event[ring_capacity], 0 if none */
	/* Address of the agent's count of ring records handed out so far (a
	 * uint64_t, growing; 0 if none): the records at and after
	 * max(that count, next_seq), below ring_capacity, were never written,
	 * so that a reader need not copy a large ring that is mostly unused. */
	uint64_t ring_taken_addr;
	/* The table's slots are true of this tracing period only: an open
	 * slot counts when tracing is on and its OPEN's seq is at least
	 * trace_from_seq (htrace_slot_current).  While tracing is off the hooks
	 * do nothing but call libc, so the table goes stale; -enable starts a
	 * new period at the next event's number. */
	uint64_t trace_from_seq;

	uint64_t depot_addr; /* start of the stack depot, 0 if none */
	uint64_t depot_bytes; /* its size */
	uint64_t depot_used; /* bytes handed out so far */
	uint64_t buckets_addr; /* uint32_t[nbuckets]: depot offsets, 0 = empty */
	uint32_t nbuckets;
	uint32_t reserved0;

	uint64_t fdtab_addr; /* uint64_t[HTRACE_FDTAB_TOP] chunk addresses */
	uint64_t modules_addr; /* struct htrace_module[module_capacity] */
	uint32_t module_capacity;
	uint32_t module_count;

	/* What was lost, so that nothing is lost silently. */
	uint64_t stacks_dropped; /* depot full: events kept without a stack */
	uint64_t stacks_nested; /* taken inside the unwinder (signal): no stack */
	uint64_t fds_beyond_table; /* descriptors too large for the table */
	uint64_t table_failures; /* chunk allocation failed: descriptor untracked */
	uint64_t modules_dropped; /* module table full */
	uint64_t unwinder_refusals; /* descriptors the unwinder wanted and was refused */
	uint64_t events_dropped; /* ring record still being written by an older event */
	uint64_t stacks_skipped; /* not taken: alternate signal stack, or a fork child
				    whose loader lock may be held by a vanished thread */
	uint64_t tables_unshared; /* close_range(CLOSE_RANGE_UNSHARE) in a threaded
				     process: the caller's table is no longer ours */

	/* The live commands (htrace -p PID).  The client writes the snapshot
	 * and the tracing bit directly, so that they work on a stopped
	 * process; what only the agent can do goes through the mailbox. */
	uint64_t snapshot_seq; /* next_seq when the last snapshot was taken */
	uint32_t snapshot_taken; /* 1 once a snapshot exists */
	uint32_t ring_reserved; /* ring records mapped at start: -enable's limit */
	uint64_t mailbox_seq; /* number of the client's last request */
	uint64_t mailbox_done; /* number of the last request carried out */
	uint32_t mailbox_cmd; /* HTRACE_MAILBOX_* */
	uint32_t mailbox_arg;

	uint64_t bad_references; /* BAD REFERENCE events, recorded in the ring or not */
	uint32_t on_error_abort; /* 1: raise SIGABRT at a bad reference */
	/* -enable's count of tracing periods: an event under way when it
	 * changed belongs to no period and is dropped (neither in the ring
	 * nor current in the table) */
	uint32_t periods;

	/* Leaks across exec (see src/agent/exec.c).  Before an exec under
	 * `htrace run`, the agent fills exec_path, sets exec_pending and stops
	 * itself with HTRACE_EXEC_STOP_SIGNAL so that the client reads the
	 * descriptors about to pass into the new image.  An image started by
	 * such an exec names the image it came from. */
	uint32_t exec_pending; /* while stopped: HTRACE_EXEC_BY_*, else 0 */
	int32_t exec_from_pid; /* the previous image's pid, 0 if none handed over */
	uint64_t exec_inherited; /* descriptors whose opening stack the old image handed over */
	char exec_path[256]; /* the file being executed (for the stop) */
	char exec_from[256]; /* the previous image's /proc/self/exe */

	/* Sequence number of the last event taken, incremented by every event
	 * of every thread: on a cache line of its own (the agent's instance is
	 * aligned to 64 bytes; the type is not, so that copies of it in the
	 * client's memory need no special alignment), so that the fields above
	 * that every call reads are not taken from the other threads' caches
	 * at each event. */
	uint8_t before_next_seq[HTRACE_NEXT_SEQ_GAP];
	uint64_t next_seq;
	uint8_t after_next_seq[56];
};

/* Whether db's tracing is on (and the agent has not failed). */
static inline int htrace_db_tracing(uint32_t state)
{
	return (state & (HTRACE_STATE_TRACING | HTRACE_STATE_FAILED)) == HTRACE_STATE_TRACING;
}

/* Whether slot says its descriptor is open in the current tracing period:
 * written while tracing was on, since the last -enable.  Anything else is
 * stale (the descriptor may have been closed, or its number reused, while
 * tracing was off) and tells nothing. */
static inline int htrace_slot_current(uint32_t state, uint64_t trace_from_seq,
				      uint16_t slot_state, uint64_t open_seq)
{
	return htrace_db_tracing(state) && slot_state == HTRACE_FD_OPEN &&
	       open_seq >= trace_from_seq;
}

_Static_assert(__builtin_offsetof(struct htrace_db, next_seq) % 64 == 0,
	       "next_seq must start a cache line: adjust HTRACE_NEXT_SEQ_GAP");

/* How the new program is being started (exec_pending). */
#define HTRACE_EXEC_BY_EXEC 1 /* the exec family: this process becomes it */
#define HTRACE_EXEC_BY_POSIX_SPAWN 2 /* posix_spawn, posix_spawnp: a child */
#define HTRACE_EXEC_BY_SHELL 3 /* system, popen: a child running /bin/sh -c */

/* The stop before an exec: this signal, sent by the thread to itself with
 * rt_tgsigqueueinfo, si_code SI_QUEUE and this value; the client swallows it. */
#define HTRACE_EXEC_STOP_SIGNAL 23 /* SIGURG: ignored by default, were htrace gone */
#define HTRACE_EXEC_STOP_VALUE 0x68747278 /* "xrth" */

/* Mailbox requests, honoured by the agent on its next hooked call. */
#define HTRACE_MAILBOX_RELEASE 1 /* tracing is off: give back ring and depot memory */

#endif
