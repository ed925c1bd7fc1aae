/* Sort keys for session lists: updateTime newest first, sessions without
 * one last, ties by position (so every sort here is stable by construction).
 * Lua-free, allocation-free (callers pass scratch memory), any thread. */
#ifndef NIM_SORTKEYS_H
#define NIM_SORTKEYS_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t  ikey;     /* the time when it is an integer */
    double   dkey;     /* the time as a double (always set when has_time) */
    uint32_t pos;      /* input position: the tie-breaker */
    uint8_t  has_time;
    uint8_t  is_int;
} nim_sortkey;

/* <0 when a sorts before b, >0 after, never 0 for distinct positions. */
int nim_sortkey_cmp(const nim_sortkey *a, const nim_sortkey *b);
/* 1 when a[0..n) is already in order. */
int nim_sortkeys_sorted(const nim_sortkey *a, size_t n);
/* Sorts a[0..n) in place, bottom-up merge sort, tmp holds n keys. */
void nim_sortkeys_sort(nim_sortkey *a, size_t n, nim_sortkey *tmp);
/* Merges sorted runs a[0..na) and b[0..nb) into out (na + nb keys). */
void nim_sortkeys_merge(const nim_sortkey *a, size_t na, const nim_sortkey *b, size_t nb,
                        nim_sortkey *out);

#endif
