/* A tiny test harness for the C unit tests (after antirez's sds testhelp.h).
 *   test_cond("what it checks", expression);
 *   return test_report();
 * Prints "N passed, N failed" as its closing line; exit status 1 on failure. */
#ifndef NIM_TESTHELP_H
#define NIM_TESTHELP_H
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static int __test_num = 0, __test_failed = 0;

#define test_cond(descr, _c) do { \
    __test_num++; \
    if (!(_c)) { __test_failed++; \
        printf("FAIL %d - %s (%s:%d)\n", __test_num, descr, __FILE__, __LINE__); } \
} while (0)

#define test_report() ( \
    printf("%s: %d passed, %d failed\n", __FILE__, __test_num - __test_failed, __test_failed), \
    __test_failed ? 1 : 0)

/* Allocation-failure sweeps try every nth point: NIM_ALLOC_STRIDE (default
 * 1, every point). */
static inline long test_alloc_stride(void) {
    const char *s = getenv("NIM_ALLOC_STRIDE");
    return s && atol(s) > 0 ? atol(s) : 1;
}

/* The monotonic clock in ms, for every wait's deadline. */
static inline int64_t test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
