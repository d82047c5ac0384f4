/*
 * What every C test shares: CHECK and CHECK_RESULT count a failure and say where (from
 * any thread), and test_temp_dir makes a private directory under $TMPDIR (the Makefile
 * points it into the build tree; "." when unset). Include after smtpx.h and after
 * defining _POSIX_C_SOURCE.
 */
#ifndef SMTPX_TEST_CHECK_H
#define SMTPX_TEST_CHECK_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;

static inline void count_failure(void) {
    pthread_mutex_lock(&failures_lock);
    failures++;
    pthread_mutex_unlock(&failures_lock);
}

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            count_failure();                                                       \
        }                                                                          \
    } while (0)

#define CHECK_RESULT(expr, expected)                                               \
    do {                                                                           \
        smtpx_result r_ = (expr);                                                  \
        if (r_ != (expected)) {                                                    \
            fprintf(stderr, "%s:%d: %s gave %u (%s), expected %s\n", __FILE__,     \
                    __LINE__, #expr, (unsigned)r_, smtpx_result_str(r_), #expected); \
            count_failure();                                                       \
        }                                                                          \
    } while (0)

/* Makes a new directory named NAME-XXXXXX under $TMPDIR (or the current directory) and
 * writes its path to `out`; NULL when it cannot. */
static inline char *test_temp_dir(char *out, size_t n, const char *name) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = ".";
    }
    if (snprintf(out, n, "%s/%s-XXXXXX", base, name) >= (int)n) {
        return NULL;
    }
    return mkdtemp(out);
}

#endif
