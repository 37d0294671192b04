/* The !htrace commands on a running process (htrace -p PID ...): enable,
 * snapshot, diff, disable and the per-handle listing.  The client reads the
 * target's trace database and writes its few control fields the way a
 * debugger would; nothing is added to the target. */
#ifndef HTRACE_LIVE_H
#define HTRACE_LIVE_H

#include <stdint.h>
#include <sys/types.h>

#include "filter.h"

enum live_command {
	LIVE_ENABLE,
	LIVE_SNAPSHOT,
	LIVE_DIFF,
	LIVE_DISABLE,
	LIVE_HANDLES,
	LIVE_OPEN, /* --group without a command: the open handles, grouped */
};

struct live_options {
	pid_t pid;
	enum live_command command;
	int json;
	int folded; /* --format=folded */
	int group; /* --group */
	struct report_filter filter; /* --type, --path, --stack, --older-than */
	const char *output; /* NULL: stdout */
	const char *html; /* --html FILE: also the report as a web page */
	uint32_t enable_max_traces; /* -enable Max_Traces; 0: as reserved */
	int handle; /* LIVE_HANDLES: the descriptor, -1 for all */
	uint64_t max_traces; /* LIVE_HANDLES: 0 for all */
};

/* Parses `-p PID WORDS...` or the kernel-mode `HANDLE PID [MAX]` (argv
 * without the program name).  Returns 0, or EXIT_USAGE after one line on
 * stderr. */
int live_parse(int argc, char **argv, struct live_options *out);

/* Carries the command out; returns htrace's exit status. */
int live_run(const struct live_options *opt);

#endif
