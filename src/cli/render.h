/* Printing reports: the seed's text format for people, JSON Lines for tools
 * (schema in the README).  Both symbolize with the same symbolizer, built
 * from the module table the agent recorded. */
#ifndef HTRACE_RENDER_H
#define HTRACE_RENDER_H

#include <stdio.h>

#include "report.h"
#include "sym/sym.h"

struct render_options {
	int history; /* print every trace and the Parsed/Dumped lines */
	int group; /* open handles grouped by opening stack and function */
};

void render_text(FILE *out, const struct report *r, const struct render_options *opt);
/* The report in the format asked for: folded stacks, JSON, or text. */
void render_report(FILE *out, const struct report *r, const struct render_options *opt, int json,
		   int folded);
void render_json(FILE *out, const struct report *r, const struct render_options *opt);
/* --format=folded: one line per opening stack, "outer;...;inner count",
 * the input of flame-graph tools. */
void render_folded(FILE *out, const struct report *r);
/* --html FILE: a self-contained page (no external resource) with a flame
 * graph of the open handles by opening stack and the handle table, the
 * data embedded as JSON.  render_html_open creates path, or path.PID when
 * pid > 0; NULL after one line on stderr. */
void render_html(FILE *out, const struct report *r, const struct render_options *opt);
FILE *render_html_open(const char *path, pid_t pid);
/* The page when there is no report to show (PROG could not be started, or
 * ended before htrace could read it): why, as one line. */
void render_html_no_report(FILE *out, const char *why);

/* --- shared by the renderers (render.c) --------------------------------- */

/* A symbolizer for the snapshot's modules; NULL when it has none. */
struct symbolizer *render_symbolizer(const struct snapshot *s);

/* "OPEN", "CLOSE", "BAD REFERENCE" (text) or "BAD_REFERENCE" (json). */
const char *render_kind(unsigned kind, int json);

/* Calls fn for every frame of the event's stack, symbolized. */
void render_frames(const struct report *r, struct symbolizer *sym, const struct htrace_event *ev,
		   void (*fn)(const struct sym_frame *frame, void *arg), void *arg);

const char *render_signal_name(int sig);

/* Open flags from fdinfo as "O_RDONLY|O_CLOEXEC|..." (empty when unknown);
 * calls fn(name, arg) for each, access mode first. */
void render_flag_names(int flags, void (*fn)(const char *name, void *arg), void *arg);

/* Age of the handle's OPEN at the snapshot, in ns, into *age; 0 when its
 * time is unknown (found open when the agent started). */
int render_age_ns(const struct report *r, const struct report_handle *h, uint64_t *age);

/* Pieces of the JSON report (schema in the README), written by render_json
 * and embedded by render_html.  With html set, strings are safe inside an
 * HTML <script> element too: '<', '>', '&' as \u escapes, bytes that are
 * not UTF-8 as U+FFFD. */
void render_json_string(FILE *out, const char *s, int html);
/* "pid":…,"exe":…,"status":…[,"error"|"agent_failure":…][,"exec":{…}]
 * [,"exec_from":{…}] */
void render_json_process_fields(FILE *out, const struct report *r, int html);
/* The event's stack, symbolized: [{"pc":…,"module":…,…},…] */
void render_json_frames(FILE *out, const struct report *r, struct symbolizer *sym,
			const struct htrace_event *ev, int html);
/* "kind":…,"api":…,"tid":…,"seq":…,"time_ns":…,"inherited":…,
 * "previous_image":…,…,"stale":… */
void render_json_trace_fields(FILE *out, const struct htrace_event *ev, int html);
/* "handle":…,"type":…,"target":…,"state":…,"flags":[…],"age_ns":…[,…] */
void render_json_handle_fields(FILE *out, const struct report *r, const struct report_handle *h,
			       int html);
struct grouping;
/* "functions":[{"function":…,"module":…,"count":…},…] of --group */
void render_json_functions(FILE *out, const struct grouping *g, int html);
/* "summary":{…} */
void render_json_summary(FILE *out, const struct report *r);

#endif
