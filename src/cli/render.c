/* What the text and JSON renderers share: symbolizing a trace's frames with
 * the module table read from the target (a pc inside inlined code gives one
 * frame per inlined function, then the function that holds it), the
 * names of kinds and signals, and the pieces of the JSON schema that the
 * JSON report and the HTML page both write. */
#include "render.h"

#include "group.h"
#include "htrace/apis.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INLINED 16 /* frames shown for one pc: inlined functions and their host */

void render_report(FILE *out, const struct report *r, const struct render_options *opt, int json,
		   int folded)
{
	if (folded)
		render_folded(out, r);
	else if (json)
		render_json(out, r, opt);
	else
		render_text(out, r, opt);
}

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

/* --- JSON pieces (the schema of render_json, also embedded by render_html) */

/* Length of the valid UTF-8 sequence at p, or 0 when it is not one. */
static size_t utf8_length(const unsigned char *p)
{
	size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
	if (p[0] >= 0xf5)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
		return 0; /* overlong, surrogate, beyond U+10FFFF */
	return n;
}

/* The character at p, a byte that is not UTF-8 as U+FFFD (a path from the
 * target may be in any encoding; JSON text is UTF-8); returns its last
 * byte. */
static const unsigned char *utf8_char(FILE *out, const unsigned char *p)
{
	if (*p < 0x80) {
		fputc(*p, out);
		return p;
	}
	size_t n = utf8_length(p);
	if (!n) {
		fputs("\\ufffd", out);
		return p;
	}
	fwrite(p, 1, n, out);
	return p + n - 1;
}

/* Inside HTML also '<', '>' and '&' as \u escapes, so that no text from
 * the target can close the <script> element. */
static const unsigned char *html_safe_char(FILE *out, const unsigned char *p)
{
	if (*p == '<' || *p == '>' || *p == '&') {
		fprintf(out, "\\u%04x", *p);
		return p;
	}
	return utf8_char(out, p);
}

void render_json_string(FILE *out, const char *s, int html)
{
	if (!s) {
		fputs("null", out);
		return;
	}
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", out);
		else if (*p == '\t')
			fputs("\\t", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			p = html ? html_safe_char(out, p) : utf8_char(out, p);
	}
	fputc('"', out);
}

/* A JSON array being written: the comma before each member but the first. */
struct json_list {
	FILE *out;
	int first;
	int html;
};

static void json_next(struct json_list *l)
{
	if (!l->first)
		fputc(',', l->out);
	l->first = 0;
}

static void json_frame(const struct sym_frame *f, void *arg)
{
	struct json_list *l = arg;
	FILE *out = l->out;
	json_next(l);
	fprintf(out, "{\"pc\":\"0x%llx\",\"module\":", (unsigned long long)f->pc);
	render_json_string(out, f->module, l->html);
	fputs(",\"function\":", out);
	render_json_string(out, f->function, l->html);
	if (f->function)
		fprintf(out, ",\"offset\":%llu", (unsigned long long)f->offset);
	else
		fputs(",\"offset\":null", out);
	fputs(",\"file\":", out);
	render_json_string(out, f->file, l->html);
	if (f->line > 0)
		fprintf(out, ",\"line\":%d", f->line);
	else
		fputs(",\"line\":null", out);
	fprintf(out, ",\"guess\":%s,\"inlined\":%s}", f->guess ? "true" : "false",
		f->inlined ? "true" : "false");
}

void render_json_frames(FILE *out, const struct report *r, struct symbolizer *sym,
			const struct htrace_event *ev, int html)
{
	struct json_list l = { out, 1, html };
	fputc('[', out);
	render_frames(r, sym, ev, json_frame, &l);
	fputc(']', out);
}

static void json_status(FILE *out, const struct process_status *st)
{
	if (!st->known)
		fputs("null", out);
	else
		fprintf(out, "{\"%s\":%d}", st->signaled ? "signal" : "exited", st->value);
}

/* Before an exec: what is executed; after one: the image it came from. */
static void json_exec(FILE *out, const struct report *r, int html)
{
	const struct htrace_db *db = &r->snap->db.db;
	if (r->opt && r->opt->mode == REPORT_EXEC) {
		fputs(",\"exec\":{\"path\":", out);
		render_json_string(out, db->exec_path, html);
		fprintf(out, ",\"posix_spawn\":%s,\"shell\":%s,\"passing\":%zu}",
			db->exec_pending == HTRACE_EXEC_BY_POSIX_SPAWN ? "true" : "false",
			db->exec_pending == HTRACE_EXEC_BY_SHELL ? "true" : "false", r->passing);
	}
	if (r->snap->have_db && db->exec_from_pid) {
		fprintf(out, ",\"exec_from\":{\"pid\":%d,\"exe\":", db->exec_from_pid);
		render_json_string(out, db->exec_from, html);
		fprintf(out, ",\"descriptors\":%llu}", (unsigned long long)db->exec_inherited);
	}
}

void render_json_process_fields(FILE *out, const struct report *r, int html)
{
	const struct snapshot *s = r->snap;
	fprintf(out, "\"pid\":%d,\"exe\":", (int)s->pid);
	render_json_string(out, s->have_db ? s->db.db.exe : NULL, html);
	fputs(",\"status\":", out);
	json_status(out, &r->status);
	if (!s->have_db) {
		fputs(",\"error\":", out);
		render_json_string(out, s->why, html);
	} else if (s->db.db.state & HTRACE_STATE_FAILED) {
		fputs(",\"agent_failure\":", out);
		render_json_string(out, s->db.db.failure, html);
	}
	json_exec(out, r, html);
}

void render_json_trace_fields(FILE *out, const struct htrace_event *ev, int html)
{
	fprintf(out, "\"kind\":\"%s\",\"api\":", render_kind(ev->kind, 1));
	render_json_string(out, htrace_api_name(ev->api), html);
	fprintf(out, ",\"tid\":%d,\"seq\":%llu,\"time_ns\":%llu", ev->tid,
		(unsigned long long)ev->seq, (unsigned long long)ev->time_ns);
	fprintf(out, ",\"inherited\":%s,\"previous_image\":%s,\"implicit\":%s,\"owned\":%s,"
		     "\"stale\":%s",
		ev->flags & (HTRACE_EV_INHERITED_EXEC | HTRACE_EV_INHERITED_FORK) ? "true" : "false",
		report_from_previous_image(ev) ? "true" : "false",
		ev->flags & HTRACE_EV_IMPLICIT ? "true" : "false",
		ev->flags & HTRACE_EV_OWNED ? "true" : "false",
		ev->flags & HTRACE_EV_STALE ? "true" : "false");
}

static void json_flag(const char *name, void *arg)
{
	struct json_list *l = arg;
	json_next(l);
	fprintf(l->out, "\"%s\"", name);
}

void render_json_handle_fields(FILE *out, const struct report *r, const struct report_handle *h,
			       int html)
{
	fprintf(out, "\"handle\":%d,\"type\":", h->fd);
	render_json_string(out, h->details ? h->details->type : NULL, html);
	fputs(",\"target\":", out);
	render_json_string(out, h->details ? h->details->target : NULL, html);
	fprintf(out, ",\"state\":\"%s\",\"flags\":[", handle_state_name(h->state));
	struct json_list fl = { out, 1, html };
	if (h->details)
		render_flag_names(h->details->flags, json_flag, &fl);
	uint64_t age;
	if (render_age_ns(r, h, &age))
		fprintf(out, "],\"age_ns\":%llu", (unsigned long long)age);
	else
		fputs("],\"age_ns\":null", out);
	if (h->shares_with >= 0)
		fprintf(out, ",\"shares_description_with\":%d", h->shares_with);
	if (h->slot && h->slot->owner_api) {
		fputs(",\"owner\":", out);
		render_json_string(out, htrace_api_name(h->slot->owner_api), html);
	}
}

void render_json_functions(FILE *out, const struct grouping *g, int html)
{
	fputs("\"functions\":[", out);
	for (size_t i = 0; i < g->nfunctions; i++) {
		fputs(i ? ",{\"function\":" : "{\"function\":", out);
		render_json_string(out, g->functions[i].function, html);
		fputs(",\"module\":", out);
		render_json_string(out, g->functions[i].module, html);
		fprintf(out, ",\"count\":%zu}", g->functions[i].count);
	}
	fputc(']', out);
}

void render_json_summary(FILE *out, const struct report *r)
{
	const struct htrace_db *db = &r->snap->db.db;
	int have = r->snap->have_db;
	fprintf(out, "\"summary\":{\"leaked\":%zu,\"bad_references\":%llu,\"inherited\":%zu,\"untracked\":%zu,"
		     "\"inconsistent\":%zu,\"events\":%llu,\"events_overwritten\":%llu,"
		     "\"stacks_dropped\":%llu,\"stacks_nested\":%llu,\"descriptors_lost\":%llu,"
		     "\"modules_dropped\":%llu,\"unwinder_refusals\":%llu,\"events_dropped\":%llu,"
		     "\"stacks_skipped\":%llu,\"tables_unshared\":%llu",
		r->leaked, r->bad_references, r->inherited, r->untracked, r->inconsistent, r->events,
		r->events_overwritten, have ? (unsigned long long)db->stacks_dropped : 0ULL,
		have ? (unsigned long long)db->stacks_nested : 0ULL,
		have ? (unsigned long long)(db->fds_beyond_table + db->table_failures) : 0ULL,
		have ? (unsigned long long)db->modules_dropped : 0ULL,
		have ? (unsigned long long)db->unwinder_refusals : 0ULL,
		have ? (unsigned long long)db->events_dropped : 0ULL,
		have ? (unsigned long long)db->stacks_skipped : 0ULL,
		have ? (unsigned long long)db->tables_unshared : 0ULL);
	if (r->opt && r->opt->mode == REPORT_DIFF)
		fprintf(out, ",\"still_open\":%zu,\"opened_since_snapshot\":%llu,"
			     "\"closed_since_snapshot\":%llu,\"since_snapshot_complete\":%s",
			report_count_state(r, HANDLE_OPEN), r->opened_since, r->closed_since,
			r->since_complete ? "true" : "false");
	fputc('}', out);
}
