/* A chain of 20 functions, each calling the next, so that the benchmark's
 * calls are made from a stack about 20 frames deep.  Built apart from
 * bench.c (no inlining across the unit) with -O2 -fomit-frame-pointer, as
 * most distribution code is: the unwinder has to follow .eh_frame, with no
 * frame-pointer chain to walk.
 *
 * Every level does some work after its call returns (the empty asm forces
 * the result into a register after the call, and the +1 uses it), so the
 * call cannot become a tail call (a jmp that would drop the frame).
 * noipa keeps GCC from cloning, merging or otherwise looking through the
 * functions. */
#include "deep.h"

#define NOIPA __attribute__((noinline, noipa))

NOIPA static long deep_20(deep_fn fn, void *arg)
{
	long r = fn(arg);
	__asm__ volatile("" : "+r"(r));
	return r + 1;
}

#define LEVEL(n, next)                                  \
	NOIPA static long deep_##n(deep_fn fn, void *arg) \
	{                                               \
		long r = deep_##next(fn, arg);          \
		__asm__ volatile("" : "+r"(r));         \
		return r + 1;                           \
	}

LEVEL(19, 20)
LEVEL(18, 19)
LEVEL(17, 18)
LEVEL(16, 17)
LEVEL(15, 16)
LEVEL(14, 15)
LEVEL(13, 14)
LEVEL(12, 13)
LEVEL(11, 12)
LEVEL(10, 11)
LEVEL(09, 10)
LEVEL(08, 09)
LEVEL(07, 08)
LEVEL(06, 07)
LEVEL(05, 06)
LEVEL(04, 05)
LEVEL(03, 04)
LEVEL(02, 03)
LEVEL(01, 02)

NOIPA long deep_call(deep_fn fn, void *arg)
{
	long r = deep_01(fn, arg);
	__asm__ volatile("" : "+r"(r));
	return r - DEEP_LEVELS;
}
