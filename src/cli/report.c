/* Builds a report (report.h) from a snapshot: the agent's live table and
 * ring, checked descriptor by descriptor against the kernel's view. */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "render.h"

static const char *const state_names[] = {
	[HANDLE_LEAKED] = "leaked",
	[HANDLE_INHERITED] = "inherited",
	[HANDLE_CLOSED] = "closed",
	[HANDLE_UNTRACKED] = "untracked",
	[HANDLE_INCONSISTENT] = "inconsistent",
	[HANDLE_OPEN] = "open",
};

const char *handle_state_name(enum handle_state state)
{
	return state_names[state];
}

/* --- the snapshot -------------------------------------------------------- */

#define SHARED_GROUP_LIMIT 256 /* larger same-inode groups are not compared */

static int by_inode(const void *a, const void *b, void *arg)
{
	const struct fd_details *k = arg;
	uint64_t x = k[*(const size_t *)a].inode, y = k[*(const size_t *)b].inode;
	return (x > y) - (x < y);
}

/* Descriptors on one open file description (dup, dup2, fork, SCM_RIGHTS)
 * share an inode; among those, the kernel says which are the same file
 * (kcmp KCMP_FILE, which needs the permission we already use). */
static void find_shared_descriptions(pid_t pid, struct snapshot *s)
{
	size_t n = s->nkernel, *order = calloc(n ? n : 1, sizeof(*order));
	s->shares = malloc((n ? n : 1) * sizeof(*s->shares));
	if (!order || !s->shares) {
		free(order);
		free(s->shares);
		s->shares = NULL;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		order[i] = i;
		s->shares[i] = -1;
	}
	qsort_r(order, n, sizeof(*order), by_inode, s->kernel);
	for (size_t lo = 0, hi; lo < n; lo = hi) {
		for (hi = lo + 1; hi < n && s->kernel[order[hi]].inode == s->kernel[order[lo]].inode; hi++)
			;
		if (hi - lo < 2 || hi - lo > SHARED_GROUP_LIMIT || !s->kernel[order[lo]].inode)
			continue;
		for (size_t a = lo; a < hi; a++)
			for (size_t b = lo; b < hi; b++) {
				const struct fd_details *x = &s->kernel[order[a]], *y = &s->kernel[order[b]];
				if (x->fd != y->fd && (s->shares[order[a]] < 0 || y->fd < s->shares[order[a]]) &&
				    syscall(SYS_kcmp, pid, pid, KCMP_FILE, x->fd, y->fd) == 0)
					s->shares[order[a]] = y->fd;
			}
	}
	free(order);
}

static int capture_kernel(pid_t pid, struct snapshot *s)
{
	struct fdinfo_ctx *ctx = fdinfo_open(pid);
	if (!ctx)
		return -1;
	int *fds = NULL;
	size_t n = 0;
	int rc = fdinfo_list(ctx, &fds, &n);
	if (rc == 0 && n) {
		s->kernel = calloc(n, sizeof(*s->kernel));
		rc = s->kernel ? 0 : -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (fdinfo_describe(ctx, fds[i], &s->kernel[s->nkernel]) == 0)
			s->nkernel++;
	free(fds);
	fdinfo_close(ctx);
	if (rc == 0)
		find_shared_descriptions(pid, s);
	return rc == 0 ? 0 : -1;
}

int snapshot_refresh_kernel(pid_t tid, struct snapshot *s)
{
	struct snapshot fresh = { 0 };
	if (capture_kernel(tid, &fresh) < 0) {
		free(fresh.kernel);
		free(fresh.shares);
		return -1;
	}
	free(s->kernel);
	free(s->shares);
	s->kernel = fresh.kernel;
	s->nkernel = fresh.nkernel;
	s->shares = fresh.shares;
	return 0;
}

/* A vfork child shares its parent's memory until it execs or exits: what
 * we read there is the parent's database.  The agent wrote the process id
 * its process sees, in its own PID namespace; pid may also be one of its
 * threads. */
static void reject_foreign_database(pid_t pid, struct snapshot *s)
{
	if (!s->have_db || s->db.db.pid == proc_status_last(pid, "NStgid", pid))
		return;
	snprintf(s->why, sizeof(s->why),
		 "process %d shares the memory of process %d (vfork) and has no trace "
		 "database of its own", (int)pid, (int)s->db.db.pid);
	reader_free(&s->db);
	s->have_db = 0;
}

int snapshot_take(pid_t tid, pid_t pid, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->pid = pid;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	s->taken_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	s->have_db = reader_open(tid, &s->db, s->why, sizeof(s->why)) == READER_OK;
	s->db_error = !s->have_db;
	reject_foreign_database(pid, s);
	return capture_kernel(tid, s);
}

void snapshot_free(struct snapshot *s)
{
	if (s->have_db)
		reader_free(&s->db);
	free(s->kernel);
	free(s->shares);
	memset(s, 0, sizeof(*s));
}

/* --- building the report ------------------------------------------------- */

static const struct fd_details *kernel_find(const struct snapshot *s, int fd)
{
	size_t lo = 0, hi = s->nkernel;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->kernel[mid].fd == fd)
			return &s->kernel[mid];
		if (s->kernel[mid].fd < fd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const struct htrace_fd_slot *table_find(const struct snapshot *s, int fd)
{
	size_t lo = 0, hi = s->have_db ? s->db.nopen : 0;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->db.open[mid].fd == fd)
			return &s->db.open[mid].slot;
		if (s->db.open[mid].fd < fd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int is_inherited(const struct htrace_fd_slot *slot)
{
	return slot->open.flags & (HTRACE_EV_INHERITED_EXEC | HTRACE_EV_INHERITED_FORK);
}

static enum handle_state state_of(const struct htrace_fd_slot *slot,
				  const struct fd_details *kernel)
{
	if (!slot)
		return kernel ? HANDLE_UNTRACKED : HANDLE_CLOSED;
	if (!kernel)
		return HANDLE_INCONSISTENT;
	return is_inherited(slot) ? HANDLE_INHERITED : HANDLE_LEAKED;
}

static int by_fd_newest_first(const void *a, const void *b)
{
	const struct htrace_event *x = *(const struct htrace_event *const *)a;
	const struct htrace_event *y = *(const struct htrace_event *const *)b;
	if (x->fd != y->fd)
		return x->fd < y->fd ? -1 : 1;
	return (x->seq < y->seq) - (x->seq > y->seq);
}

static int index_events(const struct snapshot *s, struct report *r)
{
	r->by_fd = calloc(s->db.nevents ? s->db.nevents : 1, sizeof(*r->by_fd));
	if (!r->by_fd)
		return -1;
	for (size_t i = 0; i < s->db.nevents; i++)
		r->by_fd[i] = &s->db.events[i];
	r->nby_fd = s->db.nevents;
	qsort(r->by_fd, r->nby_fd, sizeof(*r->by_fd), by_fd_newest_first);
	return 0;
}

/* The ring's events of fd, newest first: *count of them from the result. */
static const struct htrace_event *const *events_of(const struct report *r, int fd, size_t *count)
{
	size_t lo = 0, hi = r->nby_fd;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->by_fd[mid]->fd < fd)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t end = lo;
	while (end < r->nby_fd && r->by_fd[end]->fd == fd)
		end++;
	*count = end - lo;
	return r->by_fd + lo;
}

/* Whether the ring holds a BAD REFERENCE of fd after seq. */
static int bad_reference_after(const struct report *r, int fd, uint64_t seq)
{
	size_t n;
	const struct htrace_event *const *e = events_of(r, fd, &n);
	for (size_t i = 0; i < n && e[i]->seq > seq; i++)
		if (e[i]->kind == HTRACE_BAD_REFERENCE)
			return 1;
	return 0;
}

static int opened_since(const struct report_handle *h, uint64_t seq)
{
	return h->slot && h->details && h->slot->open.seq > seq;
}

/* Passes into the image an exec starts: open without O_CLOEXEC, and not
 * one of the standard streams, which are meant to pass. */
static int passes_exec(const struct report_handle *h)
{
	return h->fd > 2 && h->details && h->details->flags >= 0 && !(h->details->flags & O_CLOEXEC);
}

static int shown_live(const struct report *r, const struct report_handle *h,
		      const struct report_options *opt)
{
	if (opt->mode == REPORT_EXEC)
		return passes_exec(h);
	if (opt->mode == REPORT_DIFF)
		return opened_since(h, opt->since_seq) ||
		       bad_reference_after(r, h->fd, opt->since_seq);
	return opt->only_fd < 0 || h->fd == opt->only_fd;
}

static int shown(enum handle_state state, const struct htrace_fd_slot *slot,
		 const struct report_options *opt)
{
	if (opt->mode != REPORT_EXIT)
		return 1; /* decided by shown_live */
	if (state == HANDLE_INHERITED) /* a leak into this program is shown without -v */
		return opt->verbose || (slot && report_from_previous_image(&slot->open));
	if (state == HANDLE_CLOSED)
		return opt->history;
	return 1;
}

static int compare_ints(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* Every descriptor number that the table, the kernel or (with history) the
 * ring mentions, ascending and without repeats. */
static int *all_numbers(const struct snapshot *s, int history, size_t *count)
{
	size_t cap = s->nkernel + (s->have_db ? s->db.nopen + s->db.nevents : 0);
	int *fds = malloc((cap ? cap : 1) * sizeof(int));
	size_t n = 0;
	if (!fds)
		return NULL;
	for (size_t i = 0; i < s->nkernel; i++)
		fds[n++] = s->kernel[i].fd;
	for (size_t i = 0; s->have_db && i < s->db.nopen; i++)
		fds[n++] = s->db.open[i].fd;
	for (size_t i = 0; s->have_db && i < s->db.nevents; i++)
		if (history || s->db.events[i].kind == HTRACE_BAD_REFERENCE)
			fds[n++] = s->db.events[i].fd;
	qsort(fds, n, sizeof(int), compare_ints);
	size_t unique = 0;
	for (size_t i = 0; i < n; i++)
		if (!unique || fds[unique - 1] != fds[i])
			fds[unique++] = fds[i];
	*count = unique;
	return fds;
}

/* -diff: the OPEN of a handle opened since the snapshot, and the BAD
 * REFERENCEs of its number since then, newest first. */
static int collect_diff_traces(const struct report *r, struct report_handle *h, uint64_t since)
{
	size_t n = 0, count;
	const struct htrace_event *const *e = events_of(r, h->fd, &count);
	h->traces = calloc(1 + count, sizeof(*h->traces));
	if (!h->traces)
		return -1;
	const struct htrace_event *open = h->slot && h->slot->open.seq > since ? &h->slot->open : NULL;
	for (size_t i = 0; i < count && e[i]->seq > since; i++) {
		if (open && e[i]->seq < open->seq) {
			h->traces[n++] = open;
			open = NULL;
		}
		if (e[i]->kind == HTRACE_BAD_REFERENCE)
			h->traces[n++] = e[i];
	}
	if (open)
		h->traces[n++] = open;
	h->ntraces = n;
	return 0;
}

/* The handle's traces, newest first: with history every ring event of the
 * descriptor, else only the OPEN event of the live table. */
static int collect_traces(const struct report *r, struct report_handle *h, int history)
{
	size_t n = 0, count = 0;
	const struct htrace_event *const *e = history ? events_of(r, h->fd, &count) : NULL;
	h->traces = calloc(1 + count, sizeof(*h->traces));
	if (!h->traces)
		return -1;
	int open_in_ring = 0;
	for (size_t i = 0; i < count; i++) {
		if (h->slot && e[i]->seq == h->slot->open.seq)
			open_in_ring = 1;
		h->traces[n++] = e[i];
	}
	if (h->slot && !open_in_ring) {
		/* the live OPEN event predates the ring's oldest: it goes after
		 * the ring's events of this descriptor, all newer */
		h->traces[n++] = &h->slot->open;
	}
	h->ntraces = n;
	return 0;
}

static void count(struct report *r, enum handle_state state)
{
	if (state == HANDLE_LEAKED)
		r->leaked++;
	else if (state == HANDLE_INHERITED)
		r->inherited++;
	else if (state == HANDLE_UNTRACKED)
		r->untracked++;
	else if (state == HANDLE_INCONSISTENT)
		r->inconsistent++;
}

/* OPEN and CLOSE events since seq, from the ring (complete when the ring
 * still holds every event after seq). */
static void count_since(const struct snapshot *s, uint64_t seq, struct report *r)
{
	uint64_t held = 0;
	for (size_t i = 0; i < s->db.nevents; i++) {
		const struct htrace_event *e = &s->db.events[i];
		if (e->seq <= seq)
			continue;
		held++;
		if (e->kind == HTRACE_OPEN)
			r->opened_since++;
		else if (e->kind == HTRACE_CLOSE)
			r->closed_since++;
	}
	r->since_complete = s->db.db.next_seq <= seq || held == s->db.db.next_seq - seq;
}

/* --stack: whether a frame of the trace's stack matches. */
static int trace_matches(const struct snapshot *s, struct symbolizer *sym,
			 const struct report_filter *f, const struct htrace_event *ev)
{
	const struct htrace_stack *stack = target_stack(&s->db, ev->stack);
	for (unsigned i = 0; stack && sym && i < stack->depth; i++) {
		struct sym_frame frames[8];
		size_t n = sym_resolve_inlined(sym, stack->pc[i], 1, frames, 8);
		if (filter_frames(f, frames, n))
			return 1;
	}
	return 0;
}

/* Applies the filters to a handle whose traces are collected: 0 when it
 * is not to be shown. */
static int filter_keep(const struct snapshot *s, struct symbolizer *sym,
		       const struct report_filter *f, struct report_handle *h)
{
	if (!f)
		return 1;
	if (!filter_handle(f, h->details, h->slot ? h->slot->open.time_ns : 0, s->taken_ns))
		return 0;
	if (!f->have_stack_re)
		return 1;
	size_t kept = 0;
	for (size_t i = 0; i < h->ntraces; i++)
		if (trace_matches(s, sym, f, h->traces[i]))
			h->traces[kept++] = h->traces[i];
	h->ntraces = kept;
	return kept > 0;
}

int report_build(const struct snapshot *s, const struct report_options *opt,
		 struct process_status status, struct report *r)
{
	memset(r, 0, sizeof(*r));
	r->snap = s;
	r->status = status;
	r->opt = opt;
	if (!s->have_db)
		return 0; /* nothing to set against the kernel: the renderer says why */
	size_t n;
	int *fds = all_numbers(s, opt->history, &n);
	if (!fds || index_events(s, r) < 0 || !(r->handles = calloc(n ? n : 1, sizeof(*r->handles)))) {
		free(fds);
		return -1;
	}
	struct symbolizer *sym = opt->filter && opt->filter->have_stack_re ? render_symbolizer(s) : NULL;
	for (size_t i = 0; i < n; i++) {
		struct report_handle *h = &r->handles[r->nhandles];
		h->fd = fds[i];
		h->details = kernel_find(s, fds[i]);
		h->shares_with = h->details && s->shares ? s->shares[h->details - s->kernel] : -1;
		h->slot = table_find(s, fds[i]);
		h->state = state_of(h->slot, h->details);
		count(r, h->state);
		int misused = opt->mode == REPORT_EXIT && bad_reference_after(r, h->fd, 0);
		if (!misused && (!shown(h->state, h->slot, opt) ||
				 (opt->mode != REPORT_EXIT && !shown_live(r, h, opt))))
			continue;
		if (opt->mode == REPORT_EXEC)
			r->passing++; /* listed or not: the filters choose what is shown */
		int rc;
		if (opt->mode == REPORT_DIFF) {
			if (opened_since(h, opt->since_seq))
				h->state = HANDLE_OPEN;
			rc = collect_diff_traces(r, h, opt->since_seq);
		} else {
			/* a misused number shows its whole history: the owner's
			 * open, the offending call, the later close */
			rc = collect_traces(r, h, opt->history || misused);
		}
		if (rc < 0)
			break;
		if ((opt->mode == REPORT_HANDLES && !h->ntraces) || !filter_keep(s, sym, opt->filter, h)) {
			free(h->traces);
			continue;
		}
		r->nhandles++;
	}
	free(fds);
	if (sym)
		sym_close(sym);
	r->bad_references = s->db.db.bad_references;
	/* this tracing period's: the ring holds no earlier one's (db.h) */
	uint64_t from = s->db.db.trace_from_seq;
	r->events = s->db.db.next_seq - (from && from <= s->db.db.next_seq + 1 ? from - 1 : 0);
	if (r->events > s->db.nevents) /* the ring keeps about the last Max_Traces */
		r->events_overwritten = r->events - s->db.nevents;
	if (opt->mode == REPORT_DIFF)
		count_since(s, opt->since_seq, r);
	return 0;
}

size_t report_count_state(const struct report *r, enum handle_state state)
{
	size_t n = 0;
	for (size_t i = 0; i < r->nhandles; i++)
		n += r->handles[i].state == state;
	return n;
}

void report_free(struct report *r)
{
	free(r->by_fd);
	for (size_t i = 0; i < r->nhandles; i++)
		free(r->handles[i].traces);
	free(r->handles);
	memset(r, 0, sizeof(*r));
}
