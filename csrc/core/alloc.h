/* One allocation macro for all C code, so tests can fail the Nth allocation
 * (set nim_alloc_fail_at to N > 0; the Nth call to nim_malloc and every later
 * one returns NULL until it is reset to 0). Thread-safe counter. */
#ifndef NIM_ALLOC_H
#define NIM_ALLOC_H
#include <stddef.h>

void *nim_malloc(size_t n);
void *nim_calloc(size_t count, size_t size);
void *nim_realloc(void *p, size_t n);
void  nim_free(void *p);
char *nim_strndup(const char *s, size_t n);
char *nim_strdup(const char *s);     /* NULL for NULL (or no memory) */

extern long nim_alloc_fail_at; /* 0 = never fail (default) */

/* Tests. Restarts the count and arms the hook: allocations at..at+span-1
 * (counted from 1) fail, every one from at on when span is 0; at =
 * LONG_MAX only counts, at = 0 disarms. Any thread may allocate meanwhile. */
void nim_alloc_arm(long at, long span);
/* Tests. Allocations since the last nim_alloc_arm (counted while armed). */
long nim_alloc_count(void);

#endif
