#include "core/sortkeys.h"
#include <string.h>

int nim_sortkey_cmp(const nim_sortkey *a, const nim_sortkey *b) {
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

int nim_sortkeys_sorted(const nim_sortkey *a, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (nim_sortkey_cmp(&a[i - 1], &a[i]) > 0) return 0;
    return 1;
}

void nim_sortkeys_merge(const nim_sortkey *a, size_t na, const nim_sortkey *b, size_t nb,
                        nim_sortkey *out) {
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb)
        out[k++] = nim_sortkey_cmp(&b[j], &a[i]) < 0 ? b[j++] : a[i++];
    if (i < na) memcpy(out + k, a + i, (na - i) * sizeof *a);
    if (j < nb) memcpy(out + k + (na - i), b + j, (nb - j) * sizeof *b);
}

/* Insertion sort for short runs, then bottom-up merges ping-ponging between
 * a and tmp; no recursion, O(n log n). */
void nim_sortkeys_sort(nim_sortkey *a, size_t n, nim_sortkey *tmp) {
    const size_t RUN = 16;
    for (size_t lo = 0; lo < n; lo += RUN) {
        size_t hi = lo + RUN < n ? lo + RUN : n;
        for (size_t i = lo + 1; i < hi; i++) {
            nim_sortkey x = a[i];
            size_t j = i;
            while (j > lo && nim_sortkey_cmp(&x, &a[j - 1]) < 0) { a[j] = a[j - 1]; j--; }
            a[j] = x;
        }
    }
    nim_sortkey *src = a, *dst = tmp;
    for (size_t width = RUN; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            nim_sortkeys_merge(src + lo, mid - lo, src + mid, hi - mid, dst + lo);
        }
        nim_sortkey *t = src; src = dst; dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}
