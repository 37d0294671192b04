/* What the text and JSON renderers share: symbolizing a trace's frames with
 * the module table read from the target (a pc inside inlined code gives one
 * frame per inlined function, then the function that holds it), and the
 * names of kinds and signals. */
#include "render.h"

#include "group.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INLINED 16 /* frames shown for one pc: inlined functions and their host */

struct symbolizer *render_symbolizer(const struct snapshot *s)
{
	if (!s->have_db || !s->db.nmodules)
		return NULL;
	struct sym_module *mods = calloc(s->db.nmodules, sizeof(*mods));
	if (!mods)
		return NULL;
	for (size_t i = 0; i < s->db.nmodules; i++) {
		mods[i].start = s->db.modules[i].start;
		mods[i].end = s->db.modules[i].end;
		mods[i].bias = s->db.modules[i].bias;
		mods[i].path = s->db.modules[i].path;
	}
	struct symbolizer *sym = sym_open(mods, s->db.nmodules);
	free(mods);
	return sym;
}

const char *render_kind(unsigned kind, int json)
{
	switch (kind) {
	case HTRACE_OPEN:
		return "OPEN";
	case HTRACE_CLOSE:
		return "CLOSE";
	case HTRACE_BAD_REFERENCE:
		return json ? "BAD_REFERENCE" : "BAD REFERENCE";
	default:
		return "UNKNOWN";
	}
}

void render_frames(const struct report *r, struct symbolizer *sym, const struct htrace_event *ev,
		   void (*fn)(const struct sym_frame *frame, void *arg), void *arg)
{
	const struct htrace_stack *stack = target_stack(&r->snap->db, ev->stack);
	for (unsigned i = 0; stack && i < stack->depth; i++) {
		struct sym_frame frames[MAX_INLINED] = { { .pc = stack->pc[i], .module = "?" } };
		size_t n = sym ? sym_resolve_inlined(sym, stack->pc[i], 1, frames, MAX_INLINED) : 1;
		for (size_t k = 0; k < n; k++)
			fn(&frames[k], arg);
	}
}

const char *render_signal_name(int sig)
{
	const char *abbrev = sigabbrev_np(sig);
	static char name[32];
	snprintf(name, sizeof(name), "SIG%s", abbrev ? abbrev : "?");
	return name;
}

void render_flag_names(int flags, void (*fn)(const char *name, void *arg), void *arg)
{
	static const struct {
		int bit;
		const char *name;
	} extra[] = { { O_APPEND, "O_APPEND" },	    { O_NONBLOCK, "O_NONBLOCK" },
		      { O_CLOEXEC, "O_CLOEXEC" },   { O_SYNC, "O_SYNC" },
		      { O_DIRECT, "O_DIRECT" },	    { O_NOATIME, "O_NOATIME" } };
	if (flags < 0)
		return;
	if (flags & O_PATH)
		fn("O_PATH", arg);
	else
		fn((flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
		   : (flags & O_ACCMODE) == O_RDWR ? "O_RDWR"
						   : "O_RDONLY", arg);
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		if ((flags & extra[i].bit) == extra[i].bit)
			fn(extra[i].name, arg);
}

int render_age_ns(const struct report *r, const struct report_handle *h, uint64_t *age)
{
	if (!h->slot || !h->slot->open.time_ns)
		return 0;
	uint64_t opened = h->slot->open.time_ns, now = r->snap->taken_ns;
	*age = now > opened ? now - opened : 0;
	return 1;
}

#define FOLDED_MAX_FRAMES (HTRACE_MAX_DEPTH * 8)

struct folded_stack {
	char names[FOLDED_MAX_FRAMES][160];
	size_t n;
};

static void collect_name(const struct sym_frame *f, void *arg)
{
	struct folded_stack *st = arg;
	if (st->n == FOLDED_MAX_FRAMES)
		return;
	char *name = st->names[st->n++];
	if (f->function)
		snprintf(name, sizeof(st->names[0]), "%s!%s", f->module ? f->module : "?", f->function);
	else
		snprintf(name, sizeof(st->names[0]), "%s!0x%llx", f->module ? f->module : "?",
			 (unsigned long long)f->pc);
	for (char *p = name; *p; p++)
		if (*p == ';' || *p == ' ')
			*p = '_'; /* the format's separators */
}

void render_folded(FILE *out, const struct report *r)
{
	struct symbolizer *sym = render_symbolizer(r->snap);
	struct grouping g;
	struct folded_stack *st = malloc(sizeof(*st));
	if (st && group_build(r, sym, &g) == 0) {
		for (size_t i = 0; i < g.ngroups; i++) {
			st->n = 0;
			render_frames(r, sym, g.groups[i].open, collect_name, st);
			if (!st->n)
				fputs("[no stack]", out);
			for (size_t k = st->n; k-- > 0;) /* outermost first */
				fprintf(out, "%s%s", k + 1 == st->n ? "" : ";", st->names[k]);
			fprintf(out, " %zu\n", g.groups[i].count);
		}
		group_free(&g);
	}
	free(st);
	if (sym)
		sym_close(sym);
}
