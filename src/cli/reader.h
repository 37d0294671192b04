/* Reading a target's trace database from outside, as a debugger reads
 * memory: locate the agent's `htrace_db` object through /proc/PID/maps and
 * the agent's ELF symbol table, check that it was written by a compatible
 * agent, and copy out the live table, the ring and the stack depot with
 * process_vm_readv.  Torn records are read again, never returned. */
#ifndef HTRACE_READER_H
#define HTRACE_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "htrace/db.h"

struct open_slot {
	int fd;
	struct htrace_fd_slot slot;
};

struct target_db {
	pid_t pid;
	uint64_t db_addr; /* where htrace_db lives in the target */
	struct htrace_db db; /* a copy of its header */
	struct open_slot *open; /* descriptors the table holds open, ascending */
	size_t nopen;
	struct htrace_event *events; /* whole ring records, oldest first */
	size_t nevents;
	struct htrace_module *modules;
	size_t nmodules;
	unsigned char *depot; /* a copy of the depot's used part */
	size_t depot_len;
	struct rereads {
		unsigned left; /* re-reads of torn slots and records still allowed */
		unsigned torn; /* slots and records left out, still torn */
	} rereads; /* in this reading */
};

/* Why reader_open failed. */
enum reader_error {
	READER_OK = 0,
	READER_NO_PROCESS, /* no such process */
	READER_NO_AGENT, /* the agent is not loaded */
	READER_NOT_READY, /* loaded but not initialised */
	READER_PERMISSION, /* memory not readable by us */
	READER_VERSION, /* written by an incompatible agent */
	READER_CORRUPT, /* the database is inconsistent */
};

/* Fills *out from process pid.  On failure returns the error and writes a
 * one-line explanation into why. */
enum reader_error reader_open(pid_t pid, struct target_db *out, char *why, size_t why_len);

/* Locates and checks the database, copying only its header into t->db. */
enum reader_error reader_attach(pid_t pid, struct target_db *t, char *why, size_t why_len);

/* Only the header: cheap, to see whether anything changed (next_seq). */
enum reader_error reader_header(pid_t pid, uint64_t db_addr, struct htrace_db *out);

/* The stack with that id, or NULL when the id does not name a whole record
 * of the copied depot. */
const struct htrace_stack *target_stack(const struct target_db *t, uint32_t id);

void reader_free(struct target_db *t);

/* Writes len bytes at addr in process pid (process_vm_writev); 0 or -1. */
int reader_write(pid_t pid, uint64_t addr, const void *buf, size_t len);

#endif
