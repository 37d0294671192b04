/* The JSON Lines report: one object per process on one line, with the
 * schema documented in the README; its pieces are in render.c, shared with
 * the data of the HTML page. */
#include "render.h"

#include "group.h"

static void json_trace(FILE *out, const struct report *r, struct symbolizer *sym,
		       const struct htrace_event *ev)
{
	fputc('{', out);
	render_json_trace_fields(out, ev, 0);
	fputs(",\"frames\":", out);
	render_json_frames(out, r, sym, ev, 0);
	fputc('}', out);
}

static void json_handle(FILE *out, const struct report *r, struct symbolizer *sym,
			const struct report_handle *h)
{
	fputc('{', out);
	render_json_handle_fields(out, r, h, 0);
	fputs(",\"traces\":[", out);
	for (size_t i = 0; i < h->ntraces; i++) {
		if (i)
			fputc(',', out);
		json_trace(out, r, sym, h->traces[i]);
	}
	fputs("]}", out);
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
		fputs("],\"frames\":", out);
		render_json_frames(out, r, sym, g.groups[i].open, 0);
		fputc('}', out);
	}
	fputs("],", out);
	render_json_functions(out, &g, 0);
	fputc(',', out);
	group_free(&g);
}

void render_json(FILE *out, const struct report *r, const struct render_options *opt)
{
	fputc('{', out);
	render_json_process_fields(out, r, 0);
	fputs(",\"handles\":[", out);
	struct symbolizer *sym = render_symbolizer(r->snap);
	for (size_t i = 0; i < r->nhandles; i++) {
		if (i)
			fputc(',', out);
		json_handle(out, r, sym, &r->handles[i]);
	}
	fputs("],", out);
	if (opt->group && r->snap->have_db)
		json_groups(out, r, sym);
	render_json_summary(out, r);
	fputs("}\n", out);
	if (sym)
		sym_close(sym);
}
