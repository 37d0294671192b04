/* `htrace run`: starts PROG with the agent preloaded and tracing on, follows
 * it (and with -f its children) with ptrace so as to take a snapshot of each
 * process at the moment it exits, whatever ends it, and prints the reports. */
#ifndef HTRACE_RUN_H
#define HTRACE_RUN_H

#include "options.h"

/* Returns htrace's exit status (PROG's, as a shell reports it, unless
 * --error-exitcode applies). */
int run_command(const struct run_options *opt, const char *agent_path);

#endif
