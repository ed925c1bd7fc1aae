/* SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and PBKDF2-HMAC-SHA256
 * (RFC 8018), small and dependency-free: nim-server stores account tokens
 * as salted PBKDF2 hashes and compares them in constant time. Any thread;
 * no state outside the caller's context. */
#ifndef NIM_SHA256_H
#define NIM_SHA256_H
#include <stddef.h>
#include <stdint.h>

#define NIM_SHA256_LEN 32

typedef struct {
    uint32_t h[8];
    uint64_t total;     /* bytes hashed so far */
    uint8_t  buf[64];
    size_t   used;
} nim_sha256_ctx;

void nim_sha256_init(nim_sha256_ctx *c);
void nim_sha256_update(nim_sha256_ctx *c, const void *data, size_t len);
void nim_sha256_final(nim_sha256_ctx *c, uint8_t out[NIM_SHA256_LEN]);
void nim_sha256(const void *data, size_t len, uint8_t out[NIM_SHA256_LEN]);

void nim_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                     uint8_t out[NIM_SHA256_LEN]);
/* Derives outlen bytes (any length) from a password and salt. */
void nim_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t slen,
                       uint32_t iterations, uint8_t *out, size_t outlen);

/* 1 when a and b (n bytes each) are equal; time depends on n only. */
int nim_ct_equal(const void *a, const void *b, size_t n);

#endif
