/* Unit tests of the Lua-free pieces behind mergeSessions: the string index
 * and the stable session-order sort. */
#include "tests/testhelp.h"
#include "core/strmap.h"
#include "core/sortkeys.h"
#include "core/alloc.h"
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static nim_sortkey key(int has, int64_t t, uint32_t pos) {
    nim_sortkey k = { .ikey = t, .dkey = (double)t, .pos = pos, .has_time = (uint8_t)has, .is_int = 1 };
    return k;
}

static void test_strmap(void) {
    enum { N = 5000 };
    static char ids[N][24];
    nim_strmap m;
    void *mem = malloc(nim_strmap_bytes(N));
    nim_strmap_init(&m, mem, N);
    int existed, ok = 1;
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "p2p-u%d", i);
        nim_strmap_put(&m, ids[i], strlen(ids[i]), (uint32_t)i, &existed);
        if (existed) ok = 0;
    }
    test_cond("strmap: distinct keys insert as new", ok && m.count == N);
    char probe[24];
    ok = 1;
    for (int i = 0; i < N; i++) {
        snprintf(probe, sizeof probe, "p2p-u%d", i);    /* equal content, other pointer */
        uint32_t *v = nim_strmap_get(&m, probe, strlen(probe));
        if (!v || *v != (uint32_t)i) ok = 0;
    }
    test_cond("strmap: lookup by content finds every key", ok);
    test_cond("strmap: absent key", nim_strmap_get(&m, "p2p-nobody", 10) == NULL);
    uint32_t *v = nim_strmap_put(&m, "p2p-u7", 6, 999, &existed);
    test_cond("strmap: put of an existing key keeps the first value", existed && *v == 7);
    test_cond("strmap: prefix is a different key", nim_strmap_get(&m, "p2p-u7", 5) == NULL);
    test_cond("strmap: embedded NUL bytes are part of the key",
              (nim_strmap_put(&m, "a\0b", 3, 1, &existed), !existed) &&
              nim_strmap_get(&m, "a\0c", 3) == NULL);
    test_cond("strmap: size overflow reported as 0", nim_strmap_bytes((size_t)-1 / 2) == 0);
    free(mem);
}

static void test_sort(void) {
    enum { N = 3001 };
    nim_sortkey *a = malloc(N * sizeof *a), *tmp = malloc(N * sizeof *a);
    srand(7);
    for (uint32_t i = 0; i < N; i++) a[i] = key(rand() % 10 != 0, rand() % 50, i);
    nim_sortkeys_sort(a, N, tmp);
    int ok = 1;
    for (size_t i = 1; i < N; i++) {
        const nim_sortkey *p = &a[i - 1], *q = &a[i];
        if (p->has_time < q->has_time) ok = 0;                       /* missing last */
        if (p->has_time && q->has_time && p->ikey < q->ikey) ok = 0;  /* newest first */
        if (p->has_time == q->has_time && (!p->has_time || p->ikey == q->ikey) && p->pos > q->pos)
            ok = 0;                                                  /* stable */
    }
    test_cond("sort: newest first, missing last, ties in input order", ok);
    test_cond("sort: sorted() agrees", nim_sortkeys_sorted(a, N));
    test_cond("sort: sorted() sees disorder",
              !nim_sortkeys_sorted((nim_sortkey[]){ key(1, 1, 0), key(1, 2, 1) }, 2));

    nim_sortkey x[3] = { key(1, 9, 0), key(1, 5, 2), key(0, 0, 4) };
    nim_sortkey y[2] = { key(1, 5, 1), key(1, 1, 3) };
    nim_sortkey out[5];
    nim_sortkeys_merge(x, 3, y, 2, out);
    test_cond("merge: interleaves by time then position",
              out[0].pos == 0 && out[1].pos == 1 && out[2].pos == 2 && out[3].pos == 3 && out[4].pos == 4);

    nim_sortkey f[2] = { key(1, 3, 0), key(1, 3, 1) };
    f[0].is_int = 0; f[0].dkey = 3.5;
    nim_sortkeys_sort(f, 2, tmp);
    test_cond("sort: float and integer times compare by value", f[0].pos == 0);
    nim_sortkey first = a[0];
    nim_sortkeys_sort(a, 0, tmp);
    nim_sortkeys_sort(a, 1, tmp);
    test_cond("sort: empty and single lists are left alone",
              memcmp(&first, &a[0], sizeof first) == 0 && nim_sortkeys_sorted(a, 0));
    /* the one-pass shapes: already sorted, reversed (oldest first, with
     * equal times whose positions must stay in input order), and runs that
     * are in order against each other (merges skipped) */
    for (uint32_t i = 0; i < N; i++) a[i] = key(1, (int64_t)(i / 3), i);     /* oldest first */
    nim_sortkeys_sort(a, N, tmp);
    ok = nim_sortkeys_sorted(a, N) && a[0].ikey == (N - 1) / 3;
    test_cond("sort: oldest-first input with ties comes out newest first, stable", ok);
    for (uint32_t i = 0; i < N; i++) a[i] = key(1, (int64_t)(N - i), i);     /* already sorted */
    nim_sortkeys_sort(a, N, tmp);
    ok = 1;
    for (uint32_t i = 0; i < N; i++) if (a[i].pos != i) ok = 0;
    test_cond("sort: an already sorted list is left as it is", ok);
    for (uint32_t i = 0; i < N; i++)                                          /* blocks of 100, in order */
        a[i] = key(1, (int64_t)(N - (i / 100) * 100 + (i % 100 == 7 ? 5 : 0)), i);
    nim_sortkeys_sort(a, N, tmp);
    test_cond("sort: runs in order against each other", nim_sortkeys_sorted(a, N));
    free(a); free(tmp);
}

static void test_alloc_fault(void) {
    nim_alloc_fail_at = 2;
    void *p1 = nim_malloc(8), *p2 = nim_malloc(8);
    nim_alloc_fail_at = 0;
    test_cond("alloc: the Nth allocation fails when armed", p1 != NULL && p2 == NULL);
    nim_free(p1);
    char *d = nim_strndup("hello", 3);
    test_cond("alloc: strndup copies n bytes", d && strcmp(d, "hel") == 0);
    nim_free(d);
}

int main(void) {
    test_strmap();
    test_sort();
    test_alloc_fault();
    return test_report();
}
