/* The JSON Lines report: one object per process on one line, with the
 * schema documented in the README. */
#include "render.h"

#include <string.h>

#include "group.h"
#include "htrace/apis.h"

static void json_string(FILE *out, const char *s)
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
			fputc(*p, out);
	}
	fputc('"', out);
}

struct frame_list {
	FILE *out;
	int first;
};

static void json_frame(const struct sym_frame *f, void *arg)
{
	struct frame_list *l = arg;
	FILE *out = l->out;
	fprintf(out, "%s{\"pc\":\"0x%llx\",\"module\":", l->first ? "" : ",",
		(unsigned long long)f->pc);
	l->first = 0;
	json_string(out, f->module);
	fputs(",\"function\":", out);
	json_string(out, f->function);
	if (f->function)
		fprintf(out, ",\"offset\":%llu", (unsigned long long)f->offset);
	else
		fputs(",\"offset\":null", out);
	fputs(",\"file\":", out);
	json_string(out, f->file);
	if (f->line > 0)
		fprintf(out, ",\"line\":%d", f->line);
	else
		fputs(",\"line\":null", out);
	fprintf(out, ",\"guess\":%s,\"inlined\":%s}", f->guess ? "true" : "false",
		f->inlined ? "true" : "false");
}

static void json_trace(FILE *out, const struct report *r, struct symbolizer *sym,
		       const struct htrace_event *ev)
{
	fprintf(out, "{\"kind\":\"%s\",\"api\":", render_kind(ev->kind, 1));
	json_string(out, htrace_api_name(ev->api));
	fprintf(out, ",\"tid\":%d,\"seq\":%llu,\"time_ns\":%llu", ev->tid,
		(unsigned long long)ev->seq, (unsigned long long)ev->time_ns);
	fprintf(out, ",\"inherited\":%s,\"previous_image\":%s,\"implicit\":%s,\"owned\":%s,"
		     "\"stale\":%s,\"frames\":[",
		ev->flags & (HTRACE_EV_INHERITED_EXEC | HTRACE_EV_INHERITED_FORK) ? "true" : "false",
		(ev->flags & HTRACE_EV_INHERITED_EXEC) && ev->stack ? "true" : "false",
		ev->flags & HTRACE_EV_IMPLICIT ? "true" : "false",
		ev->flags & HTRACE_EV_OWNED ? "true" : "false",
		ev->flags & HTRACE_EV_STALE ? "true" : "false");
	struct frame_list l = { out, 1 };
	render_frames(r, sym, ev, json_frame, &l);
	fputs("]}", out);
}

struct flag_list {
	FILE *out;
	int first;
};

static void json_flag(const char *name, void *arg)
{
	struct flag_list *l = arg;
	fprintf(l->out, "%s\"%s\"", l->first ? "" : ",", name);
	l->first = 0;
}

static void json_handle(FILE *out, const struct report *r, struct symbolizer *sym,
			const struct report_handle *h)
{
	fprintf(out, "{\"handle\":%d,\"type\":", h->fd);
	json_string(out, h->details ? h->details->type : NULL);
	fputs(",\"target\":", out);
	json_string(out, h->details ? h->details->target : NULL);
	fprintf(out, ",\"state\":\"%s\",\"flags\":[", handle_state_name(h->state));
	struct flag_list fl = { out, 1 };
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
		json_string(out, htrace_api_name(h->slot->owner_api));
	}
	fputs(",\"traces\":[", out);
	for (size_t i = 0; i < h->ntraces; i++) {
		if (i)
			fputc(',', out);
		json_trace(out, r, sym, h->traces[i]);
	}
	fputs("]}", out);
}

static void json_status(FILE *out, const struct process_status *st)
{
	if (!st->known)
		fputs("null", out);
	else
		fprintf(out, "{\"%s\":%d}", st->signaled ? "signal" : "exited", st->value);
}

static void json_summary(FILE *out, const struct report *r)
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

static void json_groups(FILE *out, const struct report *r, struct symbolizer *sym)
{
	struct grouping g;
	if (group_build(r, sym, &g) < 0)
		return;
	fputs("\"groups\":[", out);
	for (size_t i = 0; i < g.ngroups; i++) {
		fprintf(out, "%s{\"count\":%zu,\"handles\":[", i ? "," : "", g.groups[i].count);
		for (size_t k = 0; k < g.groups[i].count; k++)
			fprintf(out, "%s%d", k ? "," : "", g.groups[i].handles[k]->fd);
		fputs("],\"frames\":[", out);
		struct frame_list l = { out, 1 };
		render_frames(r, sym, g.groups[i].open, json_frame, &l);
		fputs("]}", out);
	}
	fputs("],\"functions\":[", out);
	for (size_t i = 0; i < g.nfunctions; i++) {
		fprintf(out, "%s{\"function\":", i ? "," : "");
		json_string(out, g.functions[i].function);
		fputs(",\"module\":", out);
		json_string(out, g.functions[i].module);
		fprintf(out, ",\"count\":%zu}", g.functions[i].count);
	}
	fputs("],", out);
	group_free(&g);
}

/* Before an exec: what is executed; after one: the image it came from. */
static void json_exec(FILE *out, const struct report *r)
{
	const struct htrace_db *db = &r->snap->db.db;
	if (r->opt && r->opt->mode == REPORT_EXEC) {
		fputs(",\"exec\":{\"path\":", out);
		json_string(out, db->exec_path);
		fprintf(out, ",\"posix_spawn\":%s,\"passing\":%zu}",
			db->exec_pending == 2 ? "true" : "false", r->passing);
	}
	if (r->snap->have_db && db->exec_from_pid) {
		fprintf(out, ",\"exec_from\":{\"pid\":%d,\"exe\":", db->exec_from_pid);
		json_string(out, db->exec_from);
		fprintf(out, ",\"descriptors\":%llu}", (unsigned long long)db->exec_inherited);
	}
}

void render_json(FILE *out, const struct report *r, const struct render_options *opt)
{
	const struct snapshot *s = r->snap;
	fprintf(out, "{\"pid\":%d,\"exe\":", (int)s->pid);
	json_string(out, s->have_db ? s->db.db.exe : NULL);
	fputs(",\"status\":", out);
	json_status(out, &r->status);
	if (!s->have_db) {
		fputs(",\"error\":", out);
		json_string(out, s->why);
	} else if (s->db.db.state & HTRACE_STATE_FAILED) {
		fputs(",\"agent_failure\":", out);
		json_string(out, s->db.db.failure);
	}
	json_exec(out, r);
	fputs(",\"handles\":[", out);
	struct symbolizer *sym = render_symbolizer(s);
	for (size_t i = 0; i < r->nhandles; i++) {
		if (i)
			fputc(',', out);
		json_handle(out, r, sym, &r->handles[i]);
	}
	fputs("],", out);
	if (opt->group && s->have_db)
		json_groups(out, r, sym);
	json_summary(out, r);
	fputs("}\n", out);
	if (sym)
		sym_close(sym);
}
