#include "core/alloc.h"
#include <stdlib.h>
#include <string.h>

long nim_alloc_fail_at = 0;
static long alloc_count = 0;
static long alloc_fail_span = 0;   /* 0: every allocation from the Nth on fails */

/* Any thread (the engine allocates on its own thread while a test arms the
 * hook on the main one): every shared word is read and written atomically.
 * Counts calls only while fault injection is armed. */
static int should_fail(void) {
    long at = __atomic_load_n(&nim_alloc_fail_at, __ATOMIC_RELAXED);
    if (at <= 0) return 0;
    long n = __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED);
    long span = __atomic_load_n(&alloc_fail_span, __ATOMIC_RELAXED);
    return n >= at && (span <= 0 || n < at + span);
}

void nim_alloc_arm(long at, long span) {
    __atomic_store_n(&nim_alloc_fail_at, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_fail_span, span, __ATOMIC_SEQ_CST);
    __atomic_store_n(&nim_alloc_fail_at, at, __ATOMIC_SEQ_CST);
}

long nim_alloc_count(void) { return __atomic_load_n(&alloc_count, __ATOMIC_SEQ_CST); }

void *nim_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }
void *nim_calloc(size_t c, size_t s) { return should_fail() ? NULL : calloc(c ? c : 1, s ? s : 1); }
void *nim_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }
void  nim_free(void *p) { free(p); }

char *nim_strndup(const char *s, size_t n) {
    char *d = nim_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *nim_strdup(const char *s) { return s ? nim_strndup(s, strlen(s)) : NULL; }
