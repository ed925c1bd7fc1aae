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

extern long nim_alloc_fail_at; /* 0 = never fail (default) */

#endif
