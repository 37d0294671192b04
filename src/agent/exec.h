/* The exec handover (exec.c): what an image about to be replaced tells
 * `htrace run` and the image that replaces it about the descriptors that
 * pass through the exec. */
#ifndef HTRACE_EXEC_H
#define HTRACE_EXEC_H

#include <stddef.h>

#include "agent.h"

/* The environment built for one exec, in a private mapping. */
struct handover {
	void *map;
	size_t bytes;
};

/* Under `htrace run`: stops this thread so that htrace reports what passes
 * into path, started as how says (HTRACE_EXEC_BY_*, db.h).  Returns at once
 * otherwise. */
void exec_stop_for_client(const char *path, unsigned how) AGENT_HIDDEN;

/* envp plus the handover variables (envp itself when there is nothing to
 * add or no memory); release after a failed exec. */
char *const *exec_handover(char *const envp[], struct handover *h) AGENT_HIDDEN;
void exec_handover_release(struct handover *h) AGENT_HIDDEN;

/* At start: adopts what the previous image handed over, removes it from
 * environ, and reads HTRACE_SUPERVISOR. */
void exec_adopt(void) AGENT_HIDDEN;

/* hooks_exec.c: resolves the real exec functions (at start, or on first
 * use when an exec comes before the agent's start). */
void hooks_exec_init(void) AGENT_HIDDEN;

#endif
