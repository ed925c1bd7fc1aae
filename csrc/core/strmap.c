#include "core/strmap.h"
#include <string.h>

static size_t capacity_for(size_t max_keys) {
    size_t cap = 8;
    while (cap < max_keys + max_keys / 2) {   /* load factor <= 2/3 */
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
    m->interned_max = 0;
    memset(mem, 0, cap * sizeof(nim_strmap_slot));
}

/* FNV-1a, then a finalizer so the low bits (the bucket index) mix well. */
uint32_t nim_strmap_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13;
    return h;
}

static uint32_t hash_of(const nim_strmap *m, const char *key, size_t len) {
    if (len <= m->interned_max) {          /* by address */
        uint64_t x = (uint64_t)(uintptr_t)key;
        x ^= x >> 29; x *= 0xbf58476d1ce4e5b9ull; x ^= x >> 32;
        return (uint32_t)x;
    }
    return nim_strmap_hash(key, len);
}

static nim_strmap_slot *find(const nim_strmap *m, const char *key, size_t len, uint32_t h) {
    size_t i = h & m->mask;
    int by_address = len <= m->interned_max;
    for (;;) {
        nim_strmap_slot *s = &m->slots[i];
        if (!s->key) return s;
        if (s->len == len &&
            (s->key == key || (!by_address && memcmp(s->key, key, len) == 0)))
            return s;
        i = (i + 1) & m->mask;
    }
}

uint32_t *nim_strmap_put(nim_strmap *m, const char *key, size_t len, uint32_t val, int *existed) {
    uint32_t h = hash_of(m, key, len);
    nim_strmap_slot *s = find(m, key, len, h);
    if (s->key) { *existed = 1; return &s->val; }
    s->key = key ? key : "";
    s->len = (uint32_t)len; s->val = val;
    m->count++;
    *existed = 0;
    return &s->val;
}

uint32_t *nim_strmap_get(const nim_strmap *m, const char *key, size_t len) {
    nim_strmap_slot *s = find(m, key, len, hash_of(m, key, len));
    return s->key ? &s->val : NULL;
}
