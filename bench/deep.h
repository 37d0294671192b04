/* The 20-frame call chain of bench/deep.c. */
#ifndef HTRACE_BENCH_DEEP_H
#define HTRACE_BENCH_DEEP_H

#define DEEP_LEVELS 20

typedef long (*deep_fn)(void *arg);

/* Calls fn(arg) from 20 frames further down (deep_call, then deep_01 to
 * deep_20, with deep_20 calling fn) and returns what fn returned. */
long deep_call(deep_fn fn, void *arg);

#endif
