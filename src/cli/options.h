/* The command line of htrace: what the user asked for, parsed and checked
 * before anything runs.  Bad input gets one line on stderr and exit 2. */
#ifndef HTRACE_OPTIONS_H
#define HTRACE_OPTIONS_H

#include <stdint.h>

#include "filter.h"

#define EXIT_USAGE 2
#define DEFAULT_MAX_TRACES 65536u
#define DEFAULT_STACK_DEPTH 24u
#define MAX_MAX_TRACES (64u << 20)

struct run_options {
	int json; /* --json: JSON Lines instead of text */
	int folded; /* --format=folded: stacks for flame graphs */
	const char *output; /* -o FILE, NULL for stderr */
	int error_exitcode; /* --error-exitcode=N, -1 if not given */
	int verbose; /* -v: list inherited descriptors too */
	int history; /* --history: every recorded event, closed handles too */
	uint32_t max_traces; /* --max-traces */
	uint32_t stack_depth; /* --stack-depth */
	int follow_forks; /* -f */
	int on_error_abort; /* --on-error=abort: SIGABRT at a bad reference */
	int group; /* --group: leaks grouped by opening stack and function */
	struct report_filter filter; /* --type, --path, --stack, --older-than */
	const char *html; /* --html FILE: also the report as a web page */
	char **argv; /* the program and its arguments */
};

/* Parses `htrace run` options (argv[0] is "run").  Returns 0, or prints a
 * line on stderr and returns EXIT_USAGE. */
int options_parse_run(int argc, char **argv, struct run_options *out);

/* Parses a decimal number (or 0x hex) within [lo, hi]; -1 when bad. */
int options_number(const char *text, uint64_t lo, uint64_t hi, uint64_t *out);

/* One line "htrace: " fmt (with arg) " (see htrace --help)" on stderr;
 * returns EXIT_USAGE. */
int options_usage(const char *fmt, const char *arg);

/* The file that the option name (-o, --output, --html) at argv[*i] gives,
 * as name=FILE or name FILE (then *i moves on); NULL after one line on
 * stderr when it is missing, empty, or the next option taken by mistake
 * ("--html -p 1"; a file named so is written ./-p; "-" alone is a name). */
const char *options_file(int argc, char **argv, int *i, const char *name);

/* -o FILE, --output FILE (or =FILE) into *output, --html FILE into *html:
 * 1 when argv[*i] was one of them, 0 when not, -EXIT_USAGE (said) when
 * its file is missing. */
int options_output(int argc, char **argv, int *i, const char **output, const char **html);

#endif
