/* The report on one process: what the agent recorded (the database read at
 * the moment of the snapshot) set against what the kernel shows in
 * /proc/PID/fd at that same moment, sorted into leaked, inherited, closed,
 * untracked and inconsistent handles, each with its traces.  Renderers
 * (render.h) print it as text or JSON. */
#ifndef HTRACE_REPORT_H
#define HTRACE_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fdinfo.h"
#include "filter.h"
#include "reader.h"

/* Everything captured from a process at one moment. */
struct snapshot {
	pid_t pid;
	int have_db; /* 0: the agent could not be read; why says why */
	int db_error; /* the database was missing or untrustworthy (not: vfork) */
	char why[512];
	struct target_db db;
	struct fd_details *kernel; /* /proc/PID/fd, ascending */
	size_t nkernel;
	/* kernel[i] shares its open file description with descriptor
	 * shares[i] (the lowest such), or -1: dup'ed descriptors */
	int *shares;
	uint64_t taken_ns; /* CLOCK_MONOTONIC_COARSE when taken, the agent's clock */
};

/* Takes a snapshot of process pid through its thread tid (which should be
 * stopped).  Returns 0, or -1 when not even /proc/TID/fd could be read. */
int snapshot_take(pid_t tid, pid_t pid, struct snapshot *s);
/* Reads the kernel's view again, keeping the database. */
int snapshot_refresh_kernel(pid_t tid, struct snapshot *s);
void snapshot_free(struct snapshot *s);

enum handle_state {
	HANDLE_LEAKED, /* opened by this image and still open */
	HANDLE_INHERITED, /* open when the image started, or opened before fork */
	HANDLE_CLOSED, /* closed now; shown with --history */
	HANDLE_UNTRACKED, /* open in the kernel, not seen opened by the agent in this
			    tracing period (db.h) */
	HANDLE_INCONSISTENT, /* the agent believes it open, the kernel does not */
	HANDLE_OPEN, /* -diff: opened since the snapshot and still open */
};

const char *handle_state_name(enum handle_state state);

/* An OPEN inherited through exec with the stack that opened it in the
 * previous program, handed over by it (src/agent/exec.c). */
static inline int report_from_previous_image(const struct htrace_event *open)
{
	return (open->flags & HTRACE_EV_INHERITED_EXEC) && open->stack;
}

struct report_handle {
	int fd;
	enum handle_state state;
	const struct fd_details *details; /* NULL when the kernel has it closed */
	int shares_with; /* lowest other descriptor on the same open file description, or -1 */
	const struct htrace_fd_slot *slot; /* NULL when the agent has it closed */
	const struct htrace_event **traces; /* newest first */
	size_t ntraces;
};

enum report_mode {
	REPORT_EXIT, /* htrace run: leaks at exit */
	REPORT_DIFF, /* -diff: opened since the snapshot, still open */
	REPORT_HANDLES, /* [Handle [Max_Traces]]: every trace of the handles */
	REPORT_EXEC, /* htrace run, before an exec: what passes into the new image */
};

struct report_options {
	enum report_mode mode;
	int verbose; /* include inherited handles */
	int history; /* every recorded event; closed handles too */
	int only_fd; /* REPORT_HANDLES: this descriptor, or -1 for all */
	uint64_t since_seq; /* REPORT_DIFF: the snapshot's sequence number */
	uint64_t max_traces; /* REPORT_HANDLES: at most this many traces, 0 = all */
	const struct report_filter *filter; /* NULL: everything */
};

struct process_status {
	int known; /* 0 while the process runs */
	int signaled; /* killed by signal `value`, else exited with `value` */
	int value;
};

struct report {
	const struct snapshot *snap;
	struct process_status status;
	struct report_handle *handles; /* ascending by descriptor */
	size_t nhandles;
	size_t leaked, inherited, untracked, inconsistent;
	size_t passing; /* REPORT_EXEC: descriptors above 2 without O_CLOEXEC, before filters */
	unsigned long long bad_references; /* all the agent saw, listed or not */
	unsigned long long events, events_overwritten;
	const struct report_options *opt;
	/* REPORT_DIFF: events since the snapshot; complete unless the ring
	 * has lost some of them */
	unsigned long long opened_since, closed_since;
	int since_complete;
	/* the ring's events sorted by descriptor, newest first within one:
	 * each handle finds its own in O(log n) */
	const struct htrace_event **by_fd;
	size_t nby_fd;
};

int report_build(const struct snapshot *snap, const struct report_options *opt,
		 struct process_status status, struct report *r);
void report_free(struct report *r);

/* How many of the listed handles are in state. */
size_t report_count_state(const struct report *r, enum handle_state state);

#endif
