/* API identifiers generated from apis.def, shared by the agent and the
 * client: enum htrace_api numbers the rows, htrace_api_name() names them. */
#ifndef HTRACE_APIS_H
#define HTRACE_APIS_H

#include <stdint.h>

enum htrace_api {
	HTRACE_API_NONE = 0, /* descriptor found open, not seen opened */
#define HOOK(name, shape, ret, params, args, what) HTRACE_API_##name,
#define SYSCALL(name, effect, what) HTRACE_API_SYS_##name,
#include "apis.def"
#undef HOOK
#undef SYSCALL
	HTRACE_API_COUNT
};

/* "open", "fclose", "syscall(openat)"; "(inherited)" for HTRACE_API_NONE;
 * NULL when id is out of range (a database from another version). */
const char *htrace_api_name(unsigned id);

/* One-line description of the row, for --list-hooks. */
const char *htrace_api_what(unsigned id);

/* A hash of every row's name in order: a database whose api_hash differs
 * was written by an agent with another table. */
uint64_t htrace_api_hash(void);

#endif
