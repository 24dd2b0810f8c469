/* Shared by the cmocka tests: include after <cmocka.h>'s prerequisites. */
#ifndef VQJ_TESTUTIL_H
#define VQJ_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vqjepa_stages.h"

/* A CPU context with one thread and a fixed seed: results are reproducible. */
static inline vqj_context *test_context(void)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = 1;
    p.seed = 42;
    vqj_context *ctx = NULL;
    vqj_status st = vqj_context_create(&p, &ctx);
    if (st != VQJ_OK)
        fail_msg("vqj_context_create: %s", vqj_last_error());
    return ctx;
}

/* Assert a status, printing the library's message when it differs. `ctx`
 * names the context the call uses (the message is the thread's). */
#define assert_status(ctx, call, expected)                                                     \
    do {                                                                                       \
        (void)(ctx);                                                                           \
        vqj_status st_ = (call);                                                               \
        if (st_ != (expected))                                                                 \
            fail_msg("%s returned %d (%s), expected %d; message: %s", #call, (int)st_,         \
                     vqj_status_string(st_), (int)(expected), vqj_last_error());               \
    } while (0)
#define assert_ok(ctx, call) assert_status(ctx, call, VQJ_OK)

/* max |a - b| / max(max |b|, floor): the relative error in max norm. */
static inline double test_rel_err(const float *a, const float *b, size_t n, double floor_)
{
    double diff = 0.0, scale = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > diff || isnan(d))
            diff = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > scale)
            scale = fabs((double)b[i]);
    }
    return diff / scale;
}

/* Fill with a reproducible pseudo-random sequence in [-scale, scale]. */
static inline void test_fill(float *x, size_t n, uint32_t seed, float scale)
{
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = scale * ((float)(s >> 8) / 8388608.0f - 1.0f);
    }
}

#endif
