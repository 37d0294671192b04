/* The text report, in the format of WinDbg's !htrace:
 *
 *   Handle 0x5 - OPEN: file /etc/app.conf [open, thread 4242]
 *   0x000055d1c0a01189: leaky!open_config+0x19 [leaky.c:12]
 *
 * one block per trace, leaked handles first, then what disagrees with the
 * kernel, then (with --verbose) inherited handles, and a summary. */
#include "render.h"

#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "htrace/apis.h"

struct text_ctx {
	FILE *out;
	struct symbolizer *sym;
	const struct report *r;
	size_t dumped;
};

static const char *base_name(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	return slash ? slash + 1 : path;
}

static void print_frame(const struct sym_frame *f, void *arg)
{
	struct text_ctx *c = arg;
	fprintf(c->out, "0x%016llx: %s", (unsigned long long)f->pc, f->module ? f->module : "?");
	if (f->function && f->inlined)
		fprintf(c->out, "!%s (inlined)", f->function);
	else if (f->function)
		fprintf(c->out, "!%s+0x%llx", f->function, (unsigned long long)f->offset);
	if (f->guess)
		fputs(" (guess: nearest exported symbol)", c->out);
	if (f->file && f->line > 0)
		fprintf(c->out, " [%s:%d]", base_name(f->file), f->line);
	fputc('\n', c->out);
}

struct flag_text {
	FILE *out;
	int first;
};

static void print_flag(const char *name, void *arg)
{
	struct flag_text *t = arg;
	fprintf(t->out, "%s%s", t->first ? " (" : "|", name);
	t->first = 0;
}

static void print_age(FILE *out, uint64_t ns)
{
	double s = (double)ns / 1e9;
	if (s < 120)
		fprintf(out, "%.1f s", s);
	else if (s < 7200)
		fprintf(out, "%.1f min", s / 60);
	else
		fprintf(out, "%.1f h", s / 3600);
}

/* type target (flags, opened N s ago) */
static void print_object(FILE *out, const struct report *r, const struct report_handle *h)
{
	const struct fd_details *d = h->details;
	if (!d)
		return;
	fprintf(out, " %s %s", d->type, d->target);
	struct flag_text t = { out, 1 };
	render_flag_names(d->flags, print_flag, &t);
	uint64_t age;
	if (render_age_ns(r, h, &age)) {
		fputs(t.first ? " (opened " : ", opened ", out);
		print_age(out, age);
		fputs(" ago", out);
		t.first = 0;
	}
	if (h->shares_with >= 0) {
		fprintf(out, "%sshares its open file description with 0x%x", t.first ? " (" : ", ",
			(unsigned)h->shares_with);
		t.first = 0;
	}
	if (!t.first)
		fputc(')', out);
}

static void print_trace(struct text_ctx *c, const struct report_handle *h,
			const struct htrace_event *ev)
{
	const char *api = htrace_api_name(ev->api);
	fprintf(c->out, "Handle 0x%x - %s:", (unsigned)h->fd, render_kind(ev->kind, 0));
	if (h->slot && (ev == &h->slot->open || (ev->seq && ev->seq == h->slot->open.seq)))
		print_object(c->out, c->r, h);
	fprintf(c->out, " [%s, thread %d", api ? api : "?", ev->tid);
	const struct htrace_db *db = &c->r->snap->db.db;
	if (report_from_previous_image(ev) && db->exec_from_pid)
		fprintf(c->out, ", opened by %s (pid %d) before it executed this program",
			db->exec_from[0] ? db->exec_from : "the previous program", db->exec_from_pid);
	else if (ev->flags & HTRACE_EV_INHERITED_EXEC)
		fputs(", open when the program started", c->out);
	else if (ev->flags & HTRACE_EV_INHERITED_FORK)
		fputs(", inherited from the parent at fork", c->out);
	if (ev->flags & HTRACE_EV_IMPLICIT)
		fputs(", implicit", c->out);
	if (ev->flags & HTRACE_EV_OWNED)
		fputs(", closed behind the FILE or DIR that owns it", c->out);
	if (ev->flags & HTRACE_EV_STALE)
		fputs(", through a FILE or DIR whose descriptor was closed", c->out);
	fputs("]\n", c->out);
	render_frames(c->r, c->sym, ev, print_frame, c);
	c->dumped++;
}

static void print_handle(struct text_ctx *c, const struct report_handle *h)
{
	if (h->state == HANDLE_UNTRACKED) {
		fprintf(c->out, "Handle 0x%x - UNTRACKED:", (unsigned)h->fd);
		print_object(c->out, c->r, h);
		fputs(" [open in the kernel, not seen opened by the agent in this tracing period]\n",
		      c->out);
		return;
	}
	if (h->state == HANDLE_INCONSISTENT)
		fprintf(c->out, "Handle 0x%x - INCONSISTENT: the agent believes it open, "
				"the kernel has it closed\n", (unsigned)h->fd);
	for (size_t i = 0; i < h->ntraces; i++)
		print_trace(c, h, h->traces[i]);
}

static void print_section(struct text_ctx *c, enum handle_state state, const char *title)
{
	int first = 1;
	for (size_t i = 0; i < c->r->nhandles; i++) {
		if (c->r->handles[i].state != state)
			continue;
		if (first && title)
			fprintf(c->out, "%s\n", title);
		first = 0;
		print_handle(c, &c->r->handles[i]);
	}
}

static void print_status(FILE *out, const struct report *r)
{
	const struct snapshot *s = r->snap;
	fprintf(out, "htrace: process %d", (int)s->pid);
	if (s->have_db && s->db.db.exe[0])
		fprintf(out, " (%s)", s->db.db.exe);
	if (!r->status.known)
		fputs(" is running\n", out);
	else if (r->status.signaled)
		fprintf(out, " was killed by signal %d (%s)\n", r->status.value,
			render_signal_name(r->status.value));
	else
		fprintf(out, " exited with status %d\n", r->status.value);
}

static void print_losses(FILE *out, const struct htrace_db *db)
{
	if (db->events_dropped || db->stacks_skipped)
		fprintf(out, "htrace: note: %llu events dropped (ring record busy), %llu stacks "
			     "skipped (alternate signal stack, or fork child of a threaded parent)\n",
			(unsigned long long)db->events_dropped, (unsigned long long)db->stacks_skipped);
	if (db->tables_unshared)
		fprintf(out, "htrace: warning: a thread unshared its descriptor table %llu times "
			     "(close_range with CLOSE_RANGE_UNSHARE); its closes there are not "
			     "recorded\n", (unsigned long long)db->tables_unshared);
	if (db->state & HTRACE_STATE_FAILED)
		fprintf(out, "htrace: warning: the agent stopped tracing: %s\n", db->failure);
	if (db->stacks_dropped || db->stacks_nested || db->fds_beyond_table ||
	    db->table_failures || db->modules_dropped)
		fprintf(out, "htrace: warning: lost %llu stacks (depot full), %llu stacks (signal "
			     "during unwinding), %llu descriptors (beyond the table or out of "
			     "memory), %llu modules (table full)\n",
			(unsigned long long)db->stacks_dropped, (unsigned long long)db->stacks_nested,
			(unsigned long long)(db->fds_beyond_table + db->table_failures),
			(unsigned long long)db->modules_dropped);
}

static void print_summary(FILE *out, const struct report *r, int verbose_hint)
{
	fprintf(out, "htrace: %zu leaked handle%s, %llu bad reference%s, %zu inherited%s, "
		     "%zu untracked, %zu inconsistent; %llu events recorded, %llu overwritten in "
		     "the ring\n",
		r->leaked, r->leaked == 1 ? "" : "s", r->bad_references,
		r->bad_references == 1 ? "" : "s", r->inherited,
		verbose_hint && r->inherited ? " (--verbose lists them)" : "", r->untracked,
		r->inconsistent, r->events, r->events_overwritten);
}

static int inherited_listed(const struct report *r)
{
	for (size_t i = 0; i < r->nhandles; i++)
		if (r->handles[i].state == HANDLE_INHERITED)
			return 1;
	return 0;
}

#define GROUP_HANDLES_SHOWN 16

static void print_group(struct text_ctx *c, const struct stack_group *g)
{
	fprintf(c->out, "0x%zX handle%s opened from this stack:", g->count, g->count == 1 ? "" : "s");
	for (size_t i = 0; i < g->count && i < GROUP_HANDLES_SHOWN; i++)
		fprintf(c->out, " 0x%x", (unsigned)g->handles[i]->fd);
	fputs(g->count > GROUP_HANDLES_SHOWN ? " ...\n" : "\n", c->out);
	if (!g->stack)
		fputs("(no stack recorded: inherited, or the stack could not be taken)\n", c->out);
	render_frames(c->r, c->sym, g->open, print_frame, c);
}

static int has_bad_reference(const struct report_handle *h)
{
	for (size_t i = 0; i < h->ntraces; i++)
		if (h->traces[i]->kind == HTRACE_BAD_REFERENCE)
			return 1;
	return 0;
}

/* With --group, the handles whose history the groups do not show: the
 * misused among those grouped, and in -diff those not open (at exit, the
 * handles of the other states have sections of their own). */
static void print_ungrouped(struct text_ctx *c, int diff)
{
	for (size_t i = 0; i < c->r->nhandles; i++) {
		const struct report_handle *h = &c->r->handles[i];
		int grouped = diff ? h->state == HANDLE_OPEN
				   : h->state == HANDLE_LEAKED || h->state == HANDLE_INHERITED;
		if (grouped ? has_bad_reference(h) : diff)
			print_handle(c, h);
	}
}

/* --group: "which code leaks most?" */
static void print_groups(struct text_ctx *c)
{
	struct grouping g;
	if (group_build(c->r, c->sym, &g) < 0)
		return;
	if (g.ngroups)
		fputs("Open handles by opening stack, biggest group first:\n", c->out);
	for (size_t i = 0; i < g.ngroups; i++)
		print_group(c, &g.groups[i]);
	if (g.nfunctions)
		fputs("Open handles by opening function (first frame outside libc):\n", c->out);
	for (size_t i = 0; i < g.nfunctions; i++)
		fprintf(c->out, "%8zu  %s (%s)\n", g.functions[i].count,
			g.functions[i].function ? g.functions[i].function : "?",
			g.functions[i].module ? g.functions[i].module : "?");
	group_free(&g);
}

static void render_exit(struct text_ctx *c, const struct render_options *opt)
{
	const struct snapshot *s = c->r->snap;
	if (opt->group) {
		print_groups(c);
		print_ungrouped(c, 0);
	} else {
		print_section(c, HANDLE_LEAKED, NULL);
	}
	print_section(c, HANDLE_CLOSED, NULL);
	print_section(c, HANDLE_UNTRACKED, NULL);
	print_section(c, HANDLE_INCONSISTENT, NULL);
	if (!opt->group)
		print_section(c, HANDLE_INHERITED,
			      "Inherited handles (opened before this program started, not its leaks):");
	if (opt->history)
		fprintf(c->out, "Parsed 0x%zX stack traces.\nDumped 0x%zX stack traces.\n",
			s->db.nevents + s->db.nopen, c->dumped);
	print_losses(c->out, &s->db.db);
	print_summary(c->out, c->r, !c->r->opt->verbose && !inherited_listed(c->r));
}

static void render_diff(struct text_ctx *c, const struct render_options *opt)
{
	const struct report *r = c->r;
	size_t still_open = report_count_state(r, HANDLE_OPEN);
	if (opt->group) {
		print_groups(c);
		print_ungrouped(c, 1);
	} else {
		for (size_t i = 0; i < r->nhandles; i++)
			print_handle(c, &r->handles[i]); /* opened since, or misused since */
	}
	fprintf(c->out, "htrace: 0x%zX handle%s opened since the snapshot %s still open; "
			"%s0x%llX opened and 0x%llX closed since the snapshot.\n",
		still_open, still_open == 1 ? "" : "s", still_open == 1 ? "is" : "are",
		r->since_complete ? "" : "at least ", r->opened_since, r->closed_since);
	print_losses(c->out, &r->snap->db.db);
}

struct handle_trace {
	const struct report_handle *handle;
	const struct htrace_event *event;
};

static int newest_first(const void *a, const void *b)
{
	uint64_t x = ((const struct handle_trace *)a)->event->seq;
	uint64_t y = ((const struct handle_trace *)b)->event->seq;
	return (x < y) - (x > y);
}

/* Every trace of the selected handles, newest first across handles, as
 * !htrace lists them. */
static void render_handles(struct text_ctx *c)
{
	const struct report *r = c->r;
	size_t total = 0, k = 0;
	for (size_t i = 0; i < r->nhandles; i++)
		total += r->handles[i].ntraces;
	struct handle_trace *all = calloc(total ? total : 1, sizeof(*all));
	for (size_t i = 0; all && i < r->nhandles; i++)
		for (size_t t = 0; t < r->handles[i].ntraces; t++)
			all[k++] = (struct handle_trace){ &r->handles[i], r->handles[i].traces[t] };
	if (all)
		qsort(all, k, sizeof(*all), newest_first);
	uint64_t max = r->opt->max_traces ? r->opt->max_traces : UINT64_MAX;
	for (size_t i = 0; i < k && c->dumped < max; i++)
		print_trace(c, all[i].handle, all[i].event);
	free(all);
	fprintf(c->out, "Parsed 0x%zX stack traces.\nDumped 0x%zX stack traces.\n", total, c->dumped);
}

/* Before an exec: the descriptors about to pass into the new image. */
static void render_exec(struct text_ctx *c)
{
	const struct htrace_db *db = &c->r->snap->db.db;
	for (size_t i = 0; i < c->r->nhandles; i++)
		print_handle(c, &c->r->handles[i]);
	fprintf(c->out, "htrace: %zu descriptor%s without O_CLOEXEC %s into %s%s (0-2 not counted)\n",
		c->r->passing, c->r->passing == 1 ? "" : "s", c->r->passing == 1 ? "passes" : "pass",
		db->exec_path[0] ? db->exec_path : "the new program",
		db->exec_pending == HTRACE_EXEC_BY_POSIX_SPAWN ? ", started with posix_spawn"
		: db->exec_pending == HTRACE_EXEC_BY_SHELL   ? ", started by system or popen"
							     : "");
}

static void print_exec_header(FILE *out, const struct snapshot *s)
{
	const struct htrace_db *db = &s->db.db;
	fprintf(out, "htrace: process %d", (int)s->pid);
	if (db->exe[0])
		fprintf(out, " (%s)", db->exe);
	fprintf(out, " %s %s\n", db->exec_pending == HTRACE_EXEC_BY_EXEC ? "executes" : "spawns",
		db->exec_path[0] ? db->exec_path : "a program");
}

void render_text(FILE *out, const struct report *r, const struct render_options *opt)
{
	const struct snapshot *s = r->snap;
	if (r->opt->mode == REPORT_EXIT)
		print_status(out, r);
	if (r->opt->mode == REPORT_EXEC && s->have_db)
		print_exec_header(out, s);
	if (!s->have_db) {
		fprintf(out, "htrace: %s\n", s->why);
		return;
	}
	struct text_ctx c = { out, render_symbolizer(s), r, 0 };
	if (r->opt->mode == REPORT_DIFF)
		render_diff(&c, opt);
	else if (r->opt->mode == REPORT_HANDLES)
		render_handles(&c);
	else if (r->opt->mode == REPORT_EXEC)
		render_exec(&c);
	else
		render_exit(&c, opt);
	if (c.sym)
		sym_close(c.sym);
}
