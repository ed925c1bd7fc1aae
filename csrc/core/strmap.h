/* A non-owning string -> uint32 hash index over caller-provided memory.
 *
 * Keys are (pointer, length) pairs that must stay valid while the map is
 * used; the map never copies them. Capacity is fixed at init from the most
 * keys the caller will insert, so there is no growth and no allocation:
 * callers give it memory whose lifetime they already manage (a Lua userdata
 * in the binding, so a Lua error cannot leak it). Any thread; no locking. */
#ifndef NIM_STRMAP_H
#define NIM_STRMAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct {          /* 16 bytes: a big index still fits the caches */
    const char *key;
    uint32_t    len;
    uint32_t    val;
} nim_strmap_slot;

typedef struct {
    nim_strmap_slot *slots;
    size_t           mask;   /* capacity - 1, capacity a power of two */
    size_t           count;
    /* Keys no longer than this are known to be interned by the caller (equal
     * content => same pointer, as Lua's short strings), so they are hashed
     * and compared by address. 0 (the default) = always by content. */
    size_t           interned_max;
} nim_strmap;

/* Bytes of memory a map for up to max_keys keys needs (0 on overflow). */
size_t nim_strmap_bytes(size_t max_keys);
/* Sets the map up over mem (nim_strmap_bytes(max_keys) bytes, any alignment
 * suitable for pointers). */
void nim_strmap_init(nim_strmap *m, void *mem, size_t max_keys);
uint32_t nim_strmap_hash(const char *s, size_t len);
/* Keys longer than NIM_STRMAP_MAX_KEY bytes are not supported (callers check). */
#define NIM_STRMAP_MAX_KEY 0xffffffffu
/* Looks key up; when absent inserts it with val. Returns the stored value's
 * slot and sets *existed. Never fails while count < max_keys. */
uint32_t *nim_strmap_put(nim_strmap *m, const char *key, size_t len, uint32_t val, int *existed);
/* Returns the value's slot or NULL. */
uint32_t *nim_strmap_get(const nim_strmap *m, const char *key, size_t len);

#endif
