/* The live commands (see live.h).  State changes are written into the
 * target's database directly where a write is enough (the tracing bit, the
 * snapshot mark), so they work while the process is stopped; giving memory
 * back needs the agent, and goes through the mailbox it reads on its next
 * hooked call. */
#include "live.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "options.h"
#include "reader.h"
#include "render.h"
#include "report.h"

#define MAILBOX_WAIT_MS 1000

/* --- parsing ------------------------------------------------------------ */

static int parse_pid(const char *text, pid_t *out)
{
	uint64_t n;
	if (options_number(text, 1, INT_MAX, &n) < 0)
		return options_usage("bad process id '%s'", text);
	*out = (pid_t)n;
	return 0;
}

static int parse_handle(const char *text, int *out)
{
	uint64_t n;
	if (options_number(text, 0, INT_MAX, &n) < 0)
		return options_usage("bad handle '%s': expected a descriptor number, decimal or 0x hex",
				     text);
	*out = n ? (int)n : -1; /* 0: all handles */
	return 0;
}

static int parse_max(const char *text, uint64_t hi, uint64_t *out)
{
	if (options_number(text, 1, hi, out) < 0) {
		fprintf(stderr, "htrace: bad Max_Traces '%s': expected a number from 1 to %llu\n", text,
			(unsigned long long)hi);
		return EXIT_USAGE;
	}
	return 0;
}

static int parse_words(char **words, int n, struct live_options *o)
{
	uint64_t max;
	if (n == 0)
		return 0; /* all handles */
	const char *w = words[0];
	int rc = 0;
	if (!strcmp(w, "-enable")) {
		o->command = LIVE_ENABLE;
		if (n > 1 && !(rc = parse_max(words[1], MAX_MAX_TRACES, &max)))
			o->enable_max_traces = (uint32_t)max;
		return rc ? rc : n > 2 ? options_usage("unexpected '%s'", words[2]) : 0;
	}
	if (!strcmp(w, "-snapshot") || !strcmp(w, "-diff") || !strcmp(w, "-disable")) {
		o->command = !strcmp(w, "-snapshot") ? LIVE_SNAPSHOT
			     : !strcmp(w, "-diff")   ? LIVE_DIFF
						     : LIVE_DISABLE;
		return n > 1 ? options_usage("unexpected '%s'", words[1]) : 0;
	}
	if ((rc = parse_handle(w, &o->handle)))
		return rc;
	if (n > 1 && (rc = parse_max(words[1], UINT64_MAX, &o->max_traces)))
		return rc;
	return n > 2 ? options_usage("unexpected '%s'", words[2]) : 0;
}

/* Options (--json, -o FILE) may come anywhere before the words. */
static int parse_option(int argc, char **argv, int *i, struct live_options *o)
{
	int rc = filter_option(argc, argv, i, &o->filter);
	if (rc)
		return rc < 0 ? -EXIT_USAGE : 1;
	if (!strcmp(argv[*i], "--json")) {
		o->json = 1;
		return 1;
	}
	if (!strcmp(argv[*i], "--group")) {
		o->group = 1;
		return 1;
	}
	if (!strncmp(argv[*i], "--format=", 9)) {
		const char *f = argv[*i] + 9;
		if (strcmp(f, "text") && strcmp(f, "json") && strcmp(f, "folded"))
			return -options_usage("--format needs text, json or folded, not '%s'", f);
		o->json = !strcmp(f, "json");
		o->folded = !strcmp(f, "folded");
		return 1;
	}
	return options_output(argc, argv, i, &o->output, &o->html);
}

/* -enable, -snapshot and -disable: they change the process's tracing and
 * write one line, no report. */
static int is_state_command(enum live_command command)
{
	return command == LIVE_ENABLE || command == LIVE_SNAPSHOT || command == LIVE_DISABLE;
}

int live_parse(int argc, char **argv, struct live_options *o)
{
	memset(o, 0, sizeof(*o));
	o->command = LIVE_HANDLES;
	o->handle = -1;
	char *words[8];
	int nwords = 0, have_pid = 0, rc;
	for (int i = 0; i < argc; i++) {
		if ((rc = parse_option(argc, argv, &i, o)) < 0)
			return -rc;
		if (rc)
			continue;
		if (!strcmp(argv[i], "-p")) {
			if (i + 1 >= argc)
				return options_usage("%s needs a process id", "-p");
			if ((rc = parse_pid(argv[++i], &o->pid)))
				return rc;
			have_pid = 1;
		} else if (nwords < 8) {
			words[nwords++] = argv[i];
		} else {
			return options_usage("unexpected '%s'", argv[i]);
		}
	}
	if (have_pid) {
		if ((o->group || o->folded) && nwords == 0)
			o->command = LIVE_OPEN;
		rc = parse_words(words, nwords, o);
		if (!rc && o->html && is_state_command(o->command))
			return options_usage("%s writes reports: not with -enable, -snapshot or -disable", "--html");
		return rc;
	}
	/* the kernel-mode form: HANDLE PID [MAX_TRACES] */
	if (nwords && (words[0][0] < '0' || words[0][0] > '9'))
		return options_usage("unknown command '%s'", words[0]);
	if (nwords < 2 || nwords > 3)
		return options_usage("%s", "expected -p PID, or HANDLE PID [MAX_TRACES]");
	if ((rc = parse_handle(words[0], &o->handle)) || (rc = parse_pid(words[1], &o->pid)))
		return rc;
	return nwords == 3 ? parse_max(words[2], UINT64_MAX, &o->max_traces) : 0;
}

static void sleep_ms(long ms);

/* --- writing the target's control fields ------------------------------- */

#define FIELD_ADDR(t, field) ((t)->db_addr + offsetof(struct htrace_db, field))

static int write_u64(const struct target_db *t, uint64_t addr, uint64_t value)
{
	return reader_write(t->pid, addr, &value, sizeof(value));
}

static int write_u32(const struct target_db *t, uint64_t addr, uint32_t value)
{
	return reader_write(t->pid, addr, &value, sizeof(value));
}

/* Turns the tracing bit on or off by writing its byte of the state word
 * alone, so that a FAILED the agent sets meanwhile stays (db.h). */
static int write_tracing(const struct target_db *t, int on)
{
	uint8_t byte = on ? HTRACE_STATE_TRACING : 0;
	return reader_write(t->pid, FIELD_ADDR(t, state) + HTRACE_STATE_CLIENT_BYTE, &byte, 1);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr; htrace's exit status 1. */
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("htrace: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

static int write_failed(const struct target_db *t)
{
	return fail("cannot write to process %d: %s", t->pid, strerror(errno));
}

/* Marks the snapshot at the latest event. */
static int take_snapshot(struct target_db *t, uint64_t *seq)
{
	struct htrace_db now;
	if (reader_header(t->pid, t->db_addr, &now) != READER_OK)
		return -1;
	*seq = now.next_seq;
	if (write_u64(t, FIELD_ADDR(t, snapshot_seq), *seq) < 0 ||
	    write_u32(t, FIELD_ADDR(t, snapshot_taken), 1) < 0)
		return -1;
	return 0;
}

static int is_tracing(const struct target_db *t)
{
	return (t->db.state & (HTRACE_STATE_TRACING | HTRACE_STATE_FAILED)) == HTRACE_STATE_TRACING;
}

static int not_enabled(const struct target_db *t)
{
	if (t->db.state & HTRACE_STATE_FAILED)
		return fail("the agent in process %d stopped tracing: %s", t->pid, t->db.failure);
	return fail("tracing is not enabled in process %d (htrace -p %d -enable)", t->pid, t->pid);
}

/* What a state command did, as one line on out (stdout, or -o FILE):
 * text, or a JSON object with the process's pid and exe like every report. */
static void say_state(const struct live_options *o, FILE *out, const struct target_db *t,
		      const char *command, int tracing, uint64_t snapshot, const char *text)
{
	if (!o->json) {
		fprintf(out, "%s\n", text);
		return;
	}
	fprintf(out, "{\"pid\":%d,\"exe\":", t->pid);
	render_json_string(out, t->db.exe, 0);
	fprintf(out, ",\"status\":null,\"command\":\"%s\",\"tracing\":%s,\"snapshot_seq\":%llu,"
		"\"message\":", command, tracing ? "true" : "false", (unsigned long long)snapshot);
	render_json_string(out, text + strlen("htrace: "), 0);
	fprintf(out, "}\n");
}

/* The agent stopped tracing while the client wrote (its FAILED bit, which
 * the client's write leaves alone): then t has its state and reason. */
static int failed_meanwhile(struct target_db *t)
{
	struct htrace_db now;
	if (reader_header(t->pid, t->db_addr, &now) != READER_OK || !(now.state & HTRACE_STATE_FAILED))
		return 0;
	t->db.state = now.state;
	memcpy(t->db.failure, now.failure, sizeof(t->db.failure));
	t->db.failure[sizeof(t->db.failure) - 1] = '\0';
	return 1;
}

static int command_enable(const struct live_options *o, struct target_db *t, FILE *out)
{
	uint32_t max = o->enable_max_traces ? o->enable_max_traces : t->db.ring_reserved;
	if (t->db.state & HTRACE_STATE_FAILED)
		return not_enabled(t);
	if (max > t->db.ring_reserved) {
		fprintf(stderr, "htrace: Max_Traces %u exceeds the %u events process %d reserved at "
				"start (start it with HTRACE_MAX_TRACES=%u)\n",
			max, t->db.ring_reserved, t->pid, max);
		return 1;
	}
	int was = is_tracing(t);
	uint64_t seq;
	/* A new tracing period starts at the next event: what the table says
	 * of earlier periods is stale (db.h), since nothing is recorded while
	 * tracing is off.  Written before the tracing bit. */
	if ((!was && write_u32(t, FIELD_ADDR(t, ring_capacity), max) < 0) ||
	    (!was && write_u32(t, FIELD_ADDR(t, periods), t->db.periods + 1) < 0) ||
	    take_snapshot(t, &seq) < 0 ||
	    (!was && write_u64(t, FIELD_ADDR(t, trace_from_seq), seq + 1) < 0) ||
	    write_tracing(t, 1) < 0)
		return write_failed(t);
	if (failed_meanwhile(t))
		return not_enabled(t);
	char text[256];
	snprintf(text, sizeof(text), "htrace: tracing %s in process %d (Max_Traces %u, stack depth "
		 "%u); snapshot taken at event 0x%llX.", was ? "was already enabled" : "enabled",
		 t->pid, was ? t->db.ring_capacity : max, t->db.stack_depth, (unsigned long long)seq);
	say_state(o, out, t, "enable", 1, seq, text);
	return 0;
}

static int command_snapshot(const struct live_options *o, struct target_db *t, FILE *out)
{
	uint64_t seq;
	if (!is_tracing(t))
		return not_enabled(t);
	if (take_snapshot(t, &seq) < 0)
		return write_failed(t);
	char text[128];
	snprintf(text, sizeof(text), "htrace: snapshot taken in process %d at event 0x%llX.", t->pid,
		 (unsigned long long)seq);
	say_state(o, out, t, "snapshot", 1, seq, text);
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Waits a little for the agent to carry out request seq. */
static int mailbox_done(const struct target_db *t, uint64_t seq)
{
	for (long waited = 0; waited < MAILBOX_WAIT_MS; waited += 10) {
		struct htrace_db now;
		if (reader_header(t->pid, t->db_addr, &now) != READER_OK)
			return 0;
		if (now.mailbox_done >= seq)
			return 1;
		sleep_ms(10);
	}
	return 0;
}

static int command_disable(const struct live_options *o, struct target_db *t, FILE *out)
{
	if (!is_tracing(t))
		return not_enabled(t);
	uint64_t request = t->db.mailbox_seq + 1;
	if (write_tracing(t, 0) < 0 ||
	    write_u32(t, FIELD_ADDR(t, mailbox_cmd), HTRACE_MAILBOX_RELEASE) < 0 ||
	    write_u64(t, FIELD_ADDR(t, mailbox_seq), request) < 0)
		return write_failed(t);
	char text[160];
	snprintf(text, sizeof(text), "htrace: tracing disabled in process %d; its trace memory %s.",
		 t->pid, mailbox_done(t, request) ? "is released"
						  : "will be released at its next descriptor call");
	say_state(o, out, t, "disable", 0, t->db.snapshot_seq, text);
	return 0;
}

/* --- reports -------------------------------------------------------------- */

/* -o FILE, or stdout; NULL after one line on stderr (what: "the report
 * to", "to") when it cannot be opened. */
static FILE *open_output(const struct live_options *o, const char *what)
{
	FILE *out = o->output ? fopen(o->output, "we") : stdout;
	if (!out)
		fprintf(stderr, "htrace: cannot write %s %s: %s\n", what, o->output, strerror(errno));
	return out;
}

static int render_live(const struct live_options *o, const struct snapshot *snap,
		       const struct report_options *ro)
{
	FILE *out = open_output(o, "the report to");
	if (!out)
		return EXIT_USAGE;
	FILE *html = o->html ? render_html_open(o->html, 0) : NULL;
	if (o->html && !html) {
		if (out != stdout)
			fclose(out);
		return EXIT_USAGE;
	}
	struct process_status running = { 0, 0, 0 };
	struct render_options rend = { .history = ro->history, .group = o->group };
	struct report r;
	int rc = report_build(snap, ro, running, &r) < 0 ? 1 : 0;
	if (!rc) {
		render_report(out, &r, &rend, o->json, o->folded);
		if (html)
			render_html(html, &r, &rend);
		report_free(&r);
	} else {
		fputs("htrace: out of memory building the report\n", stderr);
		if (html)
			render_html_no_report(html, "out of memory building the report");
	}
	if (out != stdout)
		fclose(out);
	else
		fflush(stdout);
	if (html)
		fclose(html);
	return rc;
}

static int command_report(const struct live_options *o, const struct target_db *t)
{
	if (!is_tracing(t) && o->command != LIVE_OPEN) /* --group lists what the kernel has */
		return not_enabled(t);
	if (o->command == LIVE_DIFF && !t->db.snapshot_taken)
		return fail("-diff before any snapshot in process %d (htrace -p %d -snapshot)", t->pid,
			    t->pid);
	struct snapshot snap;
	if (snapshot_take(t->pid, t->pid, &snap) < 0 || !snap.have_db) {
		int rc = fail("cannot read process %d: %s", t->pid,
			      snap.have_db ? strerror(errno) : snap.why);
		snapshot_free(&snap);
		return rc;
	}
	struct report_options ro = {
		.mode = o->command == LIVE_DIFF	   ? REPORT_DIFF
			: o->command == LIVE_OPEN ? REPORT_EXIT
						  : REPORT_HANDLES,
		.verbose = o->command == LIVE_OPEN,
		.history = o->command == LIVE_HANDLES,
		.only_fd = o->handle,
		.since_seq = snap.db.db.snapshot_seq,
		.max_traces = o->max_traces,
		.filter = &o->filter,
	};
	int rc = render_live(o, &snap, &ro);
	snapshot_free(&snap);
	return rc;
}

/* -enable, -snapshot or -disable, once -o FILE (if any) is open: nothing
 * is done to the process when its line could not be written. */
static int state_command(const struct live_options *o, struct target_db *t)
{
	FILE *out = open_output(o, "to");
	if (!out)
		return EXIT_USAGE;
	int rc = o->command == LIVE_ENABLE	  ? command_enable(o, t, out)
		 : o->command == LIVE_SNAPSHOT ? command_snapshot(o, t, out)
					       : command_disable(o, t, out);
	if (out != stdout && fclose(out) != 0 && !rc) {
		fprintf(stderr, "htrace: cannot write to %s: %s\n", o->output, strerror(errno));
		rc = 1;
	}
	return rc;
}

int live_run(const struct live_options *o)
{
	struct target_db t;
	char why[512];
	enum reader_error err;
	/* a process that has just started may not have run the agent's
	 * constructor yet: give it a moment */
	for (int tries = 0; (err = reader_attach(o->pid, &t, why, sizeof(why))) == READER_NOT_READY &&
			    tries < 100; tries++)
		sleep_ms(10);
	if (err != READER_OK) {
		fprintf(stderr, "htrace: %s\n", why);
		return 1;
	}
	return is_state_command(o->command) ? state_command(o, &t) : command_report(o, &t);
}
