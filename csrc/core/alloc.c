#include "core/alloc.h"
#include <stdlib.h>
#include <string.h>

long nim_alloc_fail_at = 0;
static long alloc_count = 0;

/* Any thread. Counts calls only while fault injection is armed. */
static int should_fail(void) {
    if (nim_alloc_fail_at <= 0) return 0;
    return __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED) >= nim_alloc_fail_at;
}

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
