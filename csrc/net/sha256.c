/* SHA-256, HMAC-SHA256 and PBKDF2-HMAC-SHA256, written from FIPS 180-4 and
 * RFC 2104 / RFC 8018; checked against their test vectors in
 * csrc/tests/test_proto.c. Any thread. */
#include "net/sha256.h"
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress(uint32_t h[8], const uint8_t p[64]) {
    uint32_t w[64], a, b, c, d, e, f, g, hh;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void nim_sha256_init(nim_sha256_ctx *c) {
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(c->h, iv, sizeof iv);
    c->total = 0;
    c->used = 0;
}

void nim_sha256_update(nim_sha256_ctx *c, const void *data, size_t len) {
    const uint8_t *p = data;
    c->total += len;
    if (c->used) {
        size_t take = 64 - c->used < len ? 64 - c->used : len;
        memcpy(c->buf + c->used, p, take);
        c->used += take; p += take; len -= take;
        if (c->used < 64) return;
        compress(c->h, c->buf);
        c->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64) compress(c->h, p);
    memcpy(c->buf, p, len);
    c->used = len;
}

void nim_sha256_final(nim_sha256_ctx *c, uint8_t out[NIM_SHA256_LEN]) {
    uint64_t bits = c->total * 8;
    c->buf[c->used++] = 0x80;
    if (c->used > 56) {
        memset(c->buf + c->used, 0, 64 - c->used);
        compress(c->h, c->buf);
        c->used = 0;
    }
    memset(c->buf + c->used, 0, 56 - c->used);
    for (int i = 0; i < 8; i++) c->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    compress(c->h, c->buf);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24); out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8); out[4 * i + 3] = (uint8_t)c->h[i];
    }
    memset(c, 0, sizeof *c);
}

void nim_sha256(const void *data, size_t len, uint8_t out[NIM_SHA256_LEN]) {
    nim_sha256_ctx c;
    nim_sha256_init(&c);
    nim_sha256_update(&c, data, len);
    nim_sha256_final(&c, out);
}

/* The two padded key blocks, prepared once per key. */
typedef struct { nim_sha256_ctx inner, outer; } hmac_ctx;

static void hmac_init(hmac_ctx *h, const void *key, size_t klen) {
    uint8_t k[64] = { 0 }, pad[64];
    if (klen > 64) nim_sha256(key, klen, k);
    else memcpy(k, key, klen);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    nim_sha256_init(&h->inner);
    nim_sha256_update(&h->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    nim_sha256_init(&h->outer);
    nim_sha256_update(&h->outer, pad, 64);
    memset(k, 0, sizeof k);
}

static void hmac_run(const hmac_ctx *h, const void *m1, size_t l1, const void *m2, size_t l2,
                     uint8_t out[NIM_SHA256_LEN]) {
    nim_sha256_ctx c = h->inner;
    uint8_t ih[NIM_SHA256_LEN];
    nim_sha256_update(&c, m1, l1);
    if (l2) nim_sha256_update(&c, m2, l2);
    nim_sha256_final(&c, ih);
    c = h->outer;
    nim_sha256_update(&c, ih, sizeof ih);
    nim_sha256_final(&c, out);
}

void nim_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                     uint8_t out[NIM_SHA256_LEN]) {
    hmac_ctx h;
    hmac_init(&h, key, klen);
    hmac_run(&h, msg, mlen, NULL, 0, out);
}

void nim_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t slen,
                       uint32_t iterations, uint8_t *out, size_t outlen) {
    hmac_ctx h;
    hmac_init(&h, pw, pwlen);
    for (uint32_t block = 1; outlen > 0; block++) {
        uint8_t be[4] = { (uint8_t)(block >> 24), (uint8_t)(block >> 16),
                          (uint8_t)(block >> 8), (uint8_t)block };
        uint8_t u[NIM_SHA256_LEN], t[NIM_SHA256_LEN];
        hmac_run(&h, salt, slen, be, 4, u);
        memcpy(t, u, sizeof t);
        for (uint32_t i = 1; i < iterations; i++) {
            hmac_run(&h, u, sizeof u, NULL, 0, u);
            for (int j = 0; j < NIM_SHA256_LEN; j++) t[j] ^= u[j];
        }
        size_t n = outlen < NIM_SHA256_LEN ? outlen : NIM_SHA256_LEN;
        memcpy(out, t, n);
        out += n;
        outlen -= n;
    }
}

int nim_ct_equal(const void *a, const void *b, size_t n) {
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++) d |= x[i] ^ y[i];
    return d == 0;
}
