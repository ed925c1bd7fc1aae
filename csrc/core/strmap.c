#include "core/strmap.h"
#include <string.h>

static size_t capacity_for(size_t max_keys) {
    size_t cap = 8;
    while (cap < max_keys * 2) {         /* load factor <= 0.5 */
        if (cap > ((size_t)-1) / 4) return 0;
        cap <<= 1;
    }
    return cap;
}

size_t nim_strmap_bytes(size_t max_keys) {
    size_t cap = capacity_for(max_keys);
    if (cap == 0 || cap > ((size_t)-1) / sizeof(nim_strmap_slot)) return 0;
    return cap * sizeof(nim_strmap_slot);
}

void nim_strmap_init(nim_strmap *m, void *mem, size_t max_keys) {
    size_t cap = capacity_for(max_keys);
    m->slots = mem;
    m->mask = cap - 1;
    m->count = 0;
    memset(mem, 0, cap * sizeof(nim_strmap_slot));
}

/* FNV-1a, then a finalizer so the low bits (the bucket index) mix well. */
uint32_t nim_strmap_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13;
    return h;
}

static nim_strmap_slot *find(const nim_strmap *m, const char *key, size_t len, uint32_t h) {
    size_t i = h & m->mask;
    for (;;) {
        nim_strmap_slot *s = &m->slots[i];
        if (!s->key) return s;
        if (s->hash == h && s->len == len && (s->key == key || memcmp(s->key, key, len) == 0))
            return s;
        i = (i + 1) & m->mask;
    }
}

uint32_t *nim_strmap_put(nim_strmap *m, const char *key, size_t len, uint32_t val, int *existed) {
    uint32_t h = nim_strmap_hash(key, len);
    nim_strmap_slot *s = find(m, key, len, h);
    if (s->key) { *existed = 1; return &s->val; }
    s->key = key ? key : "";
    s->len = len; s->hash = h; s->val = val;
    m->count++;
    *existed = 0;
    return &s->val;
}

uint32_t *nim_strmap_get(const nim_strmap *m, const char *key, size_t len) {
    nim_strmap_slot *s = find(m, key, len, nim_strmap_hash(key, len));
    return s->key ? &s->val : NULL;
}
