#include "core/sortkeys.h"
#include <string.h>

/* Inlined into the loops below; nim_sortkey_cmp is the exported copy. */
static inline int cmp(const nim_sortkey *a, const nim_sortkey *b) {
    if (a->has_time != b->has_time) return a->has_time ? -1 : 1;
    if (a->has_time) {
        if (a->is_int && b->is_int) {
            if (a->ikey != b->ikey) return a->ikey > b->ikey ? -1 : 1;
        } else if (a->dkey != b->dkey) {
            return a->dkey > b->dkey ? -1 : 1;
        }
    }
    return a->pos < b->pos ? -1 : (a->pos > b->pos ? 1 : 0);
}

int nim_sortkey_cmp(const nim_sortkey *a, const nim_sortkey *b) { return cmp(a, b); }

int nim_sortkeys_sorted(const nim_sortkey *a, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (cmp(&a[i - 1], &a[i]) > 0) return 0;
    return 1;
}

void nim_sortkeys_merge(const nim_sortkey *a, size_t na, const nim_sortkey *b, size_t nb,
                        nim_sortkey *out) {
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb)
        out[k++] = cmp(&b[j], &a[i]) < 0 ? b[j++] : a[i++];
    if (i < na) memcpy(out + k, a + i, (na - i) * sizeof *a);
    if (j < nb) memcpy(out + k + (na - i), b + j, (nb - j) * sizeof *b);
}

/* Insertion sort for short runs, then bottom-up merges ping-ponging between
 * a and tmp; no recursion, O(n log n). */
void nim_sortkeys_sort(nim_sortkey *a, size_t n, nim_sortkey *tmp) {
    const size_t RUN = 16;
    /* Lists arrive in order or in reverse order (news oldest first) more
     * often than not: both take one pass. Keys are distinct (pos), so a
     * strictly reversed run reversed is sorted and stability holds. */
    size_t fwd = 1, rev = 1;
    for (size_t i = 1; i < n && (fwd || rev); i++) {
        int c = cmp(&a[i - 1], &a[i]);
        if (c > 0) fwd = 0; else rev = 0;
    }
    if (fwd) return;
    if (rev) {
        for (size_t i = 0, j = n - 1; i < j; i++, j--) { nim_sortkey t = a[i]; a[i] = a[j]; a[j] = t; }
        return;
    }
    for (size_t lo = 0; lo < n; lo += RUN) {
        size_t hi = lo + RUN < n ? lo + RUN : n;
        for (size_t i = lo + 1; i < hi; i++) {
            nim_sortkey x = a[i];
            size_t j = i;
            while (j > lo && cmp(&x, &a[j - 1]) < 0) { a[j] = a[j - 1]; j--; }
            a[j] = x;
        }
    }
    nim_sortkey *src = a, *dst = tmp;
    for (size_t width = RUN; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            if (mid < hi && cmp(&src[mid - 1], &src[mid]) > 0)
                nim_sortkeys_merge(src + lo, mid - lo, src + mid, hi - mid, dst + lo);
            else                                /* already in order: copy */
                memcpy(dst + lo, src + lo, (hi - lo) * sizeof *src);
        }
        nim_sortkey *t = src; src = dst; dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}
