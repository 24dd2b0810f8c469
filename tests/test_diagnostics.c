/* Diagnostics and health (DESIGN.md section 6; docs/diagnostics.md): the
 * embedding metrics against hand-computed cases, data of known covariance
 * and numbers from numpy; the device's covariance and eigenvalue ops; the
 * sample window; every health threshold and abort criterion on both sides of
 * its boundary; early stopping in both modes. */
#include "testutil.h"

#include "core/core.h"
#include "core/params.h"
#include "device/device.h"

#define PI 3.14159265358979323846

/* ---- Data generators (independent of the library) ---- */

typedef struct trng {
    uint64_t s;
} trng;

static double trng_uniform(trng *r) /* in (0, 1) */
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(r->s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double trng_normal(trng *r)
{
    double u1 = trng_uniform(r), u2 = trng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * PI * u2);
}

static float *gaussian_data(int n, int d, uint64_t seed)
{
    float *x = malloc((size_t)n * d * sizeof *x);
    assert_non_null(x);
    trng r = {seed};
    for (size_t i = 0; i < (size_t)n * d; i++)
        x[i] = (float)trng_normal(&r);
    return x;
}

static vqj_embedding_metrics metrics_of(vqj_context *ctx, const float *x, int n, int d)
{
    vqj_embedding_metrics m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    assert_ok(ctx, vqj_embedding_metrics_compute(ctx, x, n, d, &m));
    assert_int_equal(m.samples, n);
    return m;
}

#define assert_close(a, b, tol)                                                                \
    do {                                                                                       \
        double a_ = (a), b_ = (b);                                                             \
        if (!(fabs(a_ - b_) <= (tol)))                                                         \
            fail_msg("%s = %.9g, expected %.9g (tolerance %g)", #a, a_, b_, (double)(tol));    \
    } while (0)

/* ---- Embedding metrics ---- */

/* Columns ±s1, ±s2, ±s3 in orthogonal sign patterns: centred and mutually
 * uncorrelated, so the covariance is diag(4/3 s²) exactly (n = 4, divisor
 * 3), every skewness is 0 and every excess kurtosis is 1 - 3 = -2. Offsets
 * test the centring. */
static void test_hand_diagonal(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    static const float signs[4][3] = {{1, 1, 1}, {1, -1, -1}, {-1, 1, -1}, {-1, -1, 1}};
    const float s[3] = {1.0f, 2.0f, 3.0f}, offset[3] = {100.0f, -50.0f, 3.0f};
    float x[12];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            x[i * 3 + j] = offset[j] + s[j] * signs[i][j];
    vqj_embedding_metrics m = metrics_of(ctx, x, 4, 3);
    /* eigenvalues 4/3 * (1, 4, 9) */
    assert_close(m.variance, (4.0 / 3.0) * 14.0 / 3.0, 1e-5);
    assert_close(m.isotropy, 1.0 / 9.0, 1e-6);
    double p[3] = {1.0 / 14, 4.0 / 14, 9.0 / 14}, h = 0.0;
    for (int k = 0; k < 3; k++)
        h -= p[k] * log(p[k]);
    assert_close(m.effective_rank, exp(h), 1e-5);
    assert_close(m.gaussian_score, 1.0 / (1.0 + 0.0 + 2.0), 1e-6);

    /* d = 1, x = 1, 2, 3: variance 1; m2 = 2/3, m4 = 2/3, kurtosis 1.5, excess -1.5. */
    const float y[3] = {1, 2, 3};
    m = metrics_of(ctx, y, 3, 1);
    assert_close(m.variance, 1.0, 1e-6);
    assert_close(m.isotropy, 1.0, 1e-6);
    assert_close(m.effective_rank, 1.0, 1e-6);
    assert_close(m.gaussian_score, 1.0 / 2.5, 1e-6);

    /* Equal variances: isotropy 1 and effective rank exactly d. */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            x[i * 3 + j] = 2.0f * signs[i][j];
    m = metrics_of(ctx, x, 4, 3);
    assert_close(m.isotropy, 1.0, 1e-6);
    assert_close(m.effective_rank, 3.0, 1e-5);
    vqj_context_destroy(ctx);
}

/* Skewed, correlated data; expected values from numpy 1.24 on the same
 * floats (np.cov, np.linalg.eigvalsh, population moments):
 *   x = np.array(...).reshape(64, 5).astype(np.float64)
 *   variance = x.var(0, ddof=1).mean(); w = eigvalsh(cov(x.T)) ... */
static void skewed_data(float *x, int n, int d)
{
    test_fill(x, (size_t)n * d, 7u, 1.0f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            float u = x[i * d + j];
            float v = u + 0.5f * u * u + (float)(j + 1) * 0.1f * u * u * u;
            if (j > 0)
                v += 0.3f * x[i * d + j - 1];
            x[i * d + j] = v;
        }
}

static void test_numpy_reference(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    float x[64 * 5];
    skewed_data(x, 64, 5);
    vqj_embedding_metrics m = metrics_of(ctx, x, 64, 5);
    assert_close(m.variance, 0.5871709845811859, 1e-6);
    assert_close(m.isotropy, 0.2320837433356284, 1e-6);
    assert_close(m.effective_rank, 4.22396274024437, 1e-5);
    assert_close(m.gaussian_score, 0.4602930271414953, 1e-6);
    vqj_context_destroy(ctx);
}

/* Isotropic Gaussian: effective rank ~ d, isotropy near 1, score near 1. */
static void test_isotropic_gaussian(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int n = 20000, d = 8;
    float *x = gaussian_data(n, d, 11);
    vqj_embedding_metrics m = metrics_of(ctx, x, n, d);
    assert_close(m.variance, 1.0, 0.02);
    assert_true(m.effective_rank > 7.95f && m.effective_rank <= 8.0f + 1e-5f);
    assert_true(m.isotropy > 0.85f && m.isotropy <= 1.0f);
    assert_true(m.gaussian_score > 0.9f && m.gaussian_score <= 1.0f);
    free(x);

    /* Uniform coordinates: skewness 0, excess kurtosis -6/5, so the score is
     * 1 / 2.2; variance of U(-1, 1) is 1/3. */
    x = malloc((size_t)n * d * sizeof *x);
    assert_non_null(x);
    trng r = {5};
    for (size_t i = 0; i < (size_t)n * d; i++)
        x[i] = (float)(2.0 * trng_uniform(&r) - 1.0);
    m = metrics_of(ctx, x, n, d);
    assert_close(m.gaussian_score, 1.0 / 2.2, 0.01);
    assert_close(m.variance, 1.0 / 3.0, 0.01);
    assert_true(m.effective_rank > 7.9f);
    free(x);
    vqj_context_destroy(ctx);
}

/* Gaussian data in a k-dimensional subspace of R^d: effective rank ~ k,
 * isotropy ~ 0 (d - k zero eigenvalues). */
static void test_rank_k(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int n = 4000, d = 16;
    for (int k = 1; k <= 5; k += 2) {
        /* k orthonormal directions by Gram-Schmidt on Gaussian vectors. */
        double a[5][16];
        trng r = {(uint64_t)(100 + k)};
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < d; j++)
                a[i][j] = trng_normal(&r);
            for (int p = 0; p < i; p++) {
                double dot = 0.0;
                for (int j = 0; j < d; j++)
                    dot += a[i][j] * a[p][j];
                for (int j = 0; j < d; j++)
                    a[i][j] -= dot * a[p][j];
            }
            double norm = 0.0;
            for (int j = 0; j < d; j++)
                norm += a[i][j] * a[i][j];
            for (int j = 0; j < d; j++)
                a[i][j] /= sqrt(norm);
        }
        float *x = malloc((size_t)n * d * sizeof *x);
        assert_non_null(x);
        for (int s = 0; s < n; s++) {
            double z[5];
            for (int i = 0; i < k; i++)
                z[i] = trng_normal(&r);
            for (int j = 0; j < d; j++) {
                double v = 0.0;
                for (int i = 0; i < k; i++)
                    v += z[i] * a[i][j];
                x[(size_t)s * d + j] = (float)v;
            }
        }
        vqj_embedding_metrics m = metrics_of(ctx, x, n, d);
        /* Sampling spreads the k eigenvalues by ~ sqrt(k/n); rounding the
         * data to float leaves the others at ~1e-14. */
        assert_true(m.effective_rank > (float)k - 0.05f);
        assert_true(m.effective_rank < (float)k + 0.01f);
        assert_true(m.isotropy < 1e-6f);
        free(x);
    }
    vqj_context_destroy(ctx);
}

/* The seed's size: 4096 samples of 256-d projections. */
static void test_seed_size(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int n = 4096, d = 256;
    float *x = gaussian_data(n, d, 3);
    vqj_embedding_metrics m = metrics_of(ctx, x, n, d);
    /* Marchenko-Pastur with d/n = 1/16: eigenvalues spread over
     * (1 ± 1/4)², so the rank stays near d and the isotropy near 0.36. */
    assert_true(m.effective_rank > 240.0f && m.effective_rank <= 256.0f);
    assert_true(m.isotropy > 0.25f && m.isotropy < 0.5f);
    assert_close(m.variance, 1.0, 0.01);
    free(x);
    vqj_context_destroy(ctx);
}

/* n < 2 gives the documented zeros; constant data has no spread at all. */
static void test_degenerate(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    float x[30];
    for (int i = 0; i < 30; i++)
        x[i] = (float)(i % 3) - 0.5f; /* every row (−0.5, 0.5, 1.5) */
    vqj_embedding_metrics m = metrics_of(ctx, x, 1, 3);
    assert_true(m.variance == 0.0f && m.isotropy == 0.0f && m.effective_rank == 0.0f &&
                m.gaussian_score == 0.0f);
    m = metrics_of(ctx, NULL, 0, 3);
    assert_true(m.variance == 0.0f && m.effective_rank == 0.0f);
    m = metrics_of(ctx, x, 10, 3);
    assert_true(m.variance == 0.0f);
    assert_true(m.isotropy == 0.0f);
    assert_true(m.effective_rank == 0.0f);
    assert_true(m.gaussian_score == 0.0f);
    /* One dimension with spread, two constant: rank 1, shape from that one. */
    for (int i = 0; i < 10; i++)
        x[i * 3] = (float)(i % 2); /* 0, 1, 0, 1...: skew 0, excess kurtosis -2 */
    m = metrics_of(ctx, x, 10, 3);
    assert_close(m.effective_rank, 1.0, 1e-6);
    assert_true(m.isotropy == 0.0f);
    assert_close(m.gaussian_score, 1.0 / 3.0, 1e-6);
    assert_close(m.variance, (0.25 * 10.0 / 9.0) / 3.0, 1e-7);
    vqj_context_destroy(ctx);
}

static void test_metrics_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    float x[6] = {1, 2, 3, 4, 5, 6};
    vqj_embedding_metrics m, before;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    m.samples = 77;
    memcpy(&before, &m, sizeof m); /* padding included */
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, NULL, 2, 3, &m),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 2, 3, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_embedding_metrics_compute(NULL, x, 2, 3, &m),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, -1, 3, &m),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 2, 0, &m),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 1, VQJ_METRICS_MAX_DIM + 1, &m),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "8192"));
    m.size = VQJI_V1_EMBEDDING_METRICS - 1; /* below the first published struct */
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 2, 3, &m),
                  VQJ_ERR_INVALID_ARGUMENT);
    m.size = sizeof m;
    x[4] = NAN;
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 2, 3, &m), VQJ_ERR_NUMERIC);
    assert_non_null(strstr(vqj_last_error(), "x[1][1]"));
    x[4] = INFINITY;
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 2, 3, &m), VQJ_ERR_NUMERIC);
    assert_memory_equal(&m, &before, sizeof m); /* failures leave out alone */
    vqj_context_destroy(ctx);
}

/* The CPU backend's linear-algebra ops, directly. */
static void test_device_ops(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqji_device *dev = ctx->device;
    assert_non_null(dev->ops->covariance);
    assert_non_null(dev->ops->sym_eigvals);

    /* [[2,1,0],[1,2,0],[0,0,5]] has eigenvalues 1, 3, 5. */
    double a[9] = {2, 1, 0, 1, 2, 0, 0, 0, 5}, w[3];
    assert_ok(ctx, dev->ops->sym_eigvals(dev, 3, a, w));
    assert_close(w[0], 1.0, 1e-12);
    assert_close(w[1], 3.0, 1e-12);
    assert_close(w[2], 5.0, 1e-12);

    /* Covariance of 3 rows by hand: columns (1,2,6) and (0,3,3). Means 3, 2;
     * deviations (-2,-1,3), (-2,1,1); /2: var 7, 3, cov (4 - 1 + 3)/2 = 3. */
    const float x[6] = {1, 0, 2, 3, 6, 3};
    double centered[6], cov[4];
    dev->ops->covariance(dev, 3, 2, x, centered, cov);
    assert_ok(ctx, dev->ops->sync(dev));
    assert_close(cov[0], 7.0, 1e-12);
    assert_close(cov[1], 3.0, 1e-12);
    assert_close(cov[2], 3.0, 1e-12);
    assert_close(cov[3], 3.0, 1e-12);
    vqj_context_destroy(ctx);
}

/* A backend without the linear-algebra ops: the host fallback gives the
 * same numbers. */
static void test_host_fallback(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    float x[64 * 5];
    skewed_data(x, 64, 5);
    vqj_embedding_metrics on_device = metrics_of(ctx, x, 64, 5);
    vqji_device *dev = ctx->device;
    const vqji_device_ops *saved = dev->ops;
    vqji_device_ops bare = *saved;
    bare.covariance = NULL;
    bare.sym_eigvals = NULL;
    dev->ops = &bare;
    vqj_embedding_metrics on_host = metrics_of(ctx, x, 64, 5);
    dev->ops = saved;
    assert_true(on_host.variance == on_device.variance);
    assert_true(on_host.isotropy == on_device.isotropy);
    assert_true(on_host.effective_rank == on_device.effective_rank);
    assert_true(on_host.gaussian_score == on_device.gaussian_score);
    vqj_context_destroy(ctx);
}

/* ---- The sample window ---- */

static vqj_window_metrics window_metrics(vqj_context *ctx, vqj_metrics_window *w)
{
    vqj_window_metrics m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    assert_ok(ctx, vqj_metrics_window_compute(w, &m));
    return m;
}

static void assert_same_metrics(const vqj_embedding_metrics *a, const vqj_embedding_metrics *b)
{
    assert_int_equal(a->samples, b->samples);
    assert_close(a->variance, b->variance, 1e-6 * fabs(b->variance) + 1e-9);
    assert_close(a->isotropy, b->isotropy, 1e-5);
    assert_close(a->effective_rank, b->effective_rank, 1e-5);
    assert_close(a->gaussian_score, b->gaussian_score, 1e-5);
}

static void test_window_ring(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int d = 3, cap = 5;
    vqj_metrics_window *w = NULL;
    assert_ok(ctx, vqj_metrics_window_create(ctx, d, cap, 10, &w));
    assert_int_equal(vqj_metrics_window_rows(w), 0);

    float ctxp[12 * 3], tgtp[12 * 3];
    test_fill(ctxp, 12 * 3, 1, 1.0f);
    test_fill(tgtp, 12 * 3, 2, 1.0f);
    for (int i = 0; i < 12 * 3; i++)
        tgtp[i] = tgtp[i] * tgtp[i] * (float)(1 + i % 3); /* a different shape */

    /* 3 rows: not full, the metrics are those of the 3 rows. */
    assert_ok(ctx, vqj_metrics_window_add_projections(w, ctxp, tgtp, 3));
    assert_int_equal(vqj_metrics_window_rows(w), 3);
    vqj_window_metrics m = window_metrics(ctx, w);
    vqj_embedding_metrics e = metrics_of(ctx, ctxp, 3, d);
    assert_same_metrics(&m.context, &e);
    e = metrics_of(ctx, tgtp, 3, d);
    assert_same_metrics(&m.target, &e);
    assert_int_equal(m.context.size, sizeof(vqj_embedding_metrics));

    /* 4 more: the ring wraps and holds rows 2..6. */
    assert_ok(ctx, vqj_metrics_window_add_projections(w, ctxp + 3 * d, tgtp + 3 * d, 4));
    assert_int_equal(vqj_metrics_window_rows(w), cap);
    m = window_metrics(ctx, w);
    e = metrics_of(ctx, ctxp + 2 * d, 5, d);
    assert_same_metrics(&m.context, &e);
    e = metrics_of(ctx, tgtp + 2 * d, 5, d);
    assert_same_metrics(&m.target, &e);

    /* More rows than fit in one call: the last 5 of them (rows 7..11 of
     * the data, given as 0..4 of the call's 5 + 2). */
    assert_ok(ctx, vqj_metrics_window_add_projections(w, ctxp + 5 * d, tgtp + 5 * d, 7));
    m = window_metrics(ctx, w);
    e = metrics_of(ctx, ctxp + 7 * d, 5, d);
    assert_same_metrics(&m.context, &e);
    e = metrics_of(ctx, tgtp + 7 * d, 5, d);
    assert_same_metrics(&m.target, &e);

    /* A non-finite value adds nothing. */
    float bad[2 * 3];
    memcpy(bad, ctxp, sizeof bad);
    bad[5] = NAN;
    assert_status(ctx, vqj_metrics_window_add_projections(w, ctxp, bad, 2), VQJ_ERR_NUMERIC);
    assert_status(ctx, vqj_metrics_window_add_projections(w, bad, ctxp, 2), VQJ_ERR_NUMERIC);
    vqj_window_metrics again = window_metrics(ctx, w);
    assert_same_metrics(&again.context, &m.context);
    assert_same_metrics(&again.target, &m.target);
    assert_ok(ctx, vqj_metrics_window_add_projections(w, NULL, NULL, 0));

    /* Reset empties it: no estimate. */
    vqj_metrics_window_reset(w);
    assert_int_equal(vqj_metrics_window_rows(w), 0);
    m = window_metrics(ctx, w);
    assert_int_equal(m.context.samples, 0);
    assert_true(m.context.effective_rank == 0.0f && m.target.effective_rank == 0.0f);
    vqj_metrics_window_destroy(w);
    vqj_context_destroy(ctx);
}

static void test_window_codes(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_metrics_window *w = NULL;
    assert_ok(ctx, vqj_metrics_window_create(ctx, 2, 4, 10, &w));
    const int32_t codes[] = {1, 2, 2, -1, 9, 1};
    assert_ok(ctx, vqj_metrics_window_add_codes(w, codes, 6));
    vqj_window_metrics m = window_metrics(ctx, w);
    assert_int_equal(m.active_codes, 3);
    assert_int_equal(m.num_codes, 10);
    assert_close(m.usage_ratio, 0.3, 1e-7);

    /* A code >= K is refused and nothing of that call is marked. */
    const int32_t bad[] = {5, 10};
    assert_status(ctx, vqj_metrics_window_add_codes(w, bad, 2), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "codes[1]"));
    m = window_metrics(ctx, w);
    assert_int_equal(m.active_codes, 3);
    assert_ok(ctx, vqj_metrics_window_add_codes(w, bad, 1));
    assert_ok(ctx, vqj_metrics_window_add_codes(w, NULL, 0));
    m = window_metrics(ctx, w);
    assert_int_equal(m.active_codes, 4);

    /* Every code used: usage 1. */
    int32_t all[10];
    for (int i = 0; i < 10; i++)
        all[i] = i;
    assert_ok(ctx, vqj_metrics_window_add_codes(w, all, 10));
    m = window_metrics(ctx, w);
    assert_int_equal(m.active_codes, 10);
    assert_true(m.usage_ratio == 1.0f);

    vqj_metrics_window_reset(w);
    m = window_metrics(ctx, w);
    assert_int_equal(m.active_codes, 0);
    assert_true(m.usage_ratio == 0.0f);
    assert_true(m.perplexity == 0.0f);
    assert_int_equal(m.dead_codes, 10);
    vqj_metrics_window_destroy(w);
    vqj_context_destroy(ctx);
}

/* Usage over context and target codes, perplexity and dead codes of a
 * hand-built assignment (docs/diagnostics.md, "Codebook health"). */
static void test_window_code_health(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_metrics_window *w = NULL;
    assert_ok(ctx, vqj_metrics_window_create(ctx, 2, 4, 10, &w));
    /* Context: code 1 twice, 2 twice, 9 once (and a -1, not counted);
     * target: 2 once, 3 once. Together: 1:2, 2:3, 3:1, 9:1 of 7. */
    const int32_t context[] = {1, 2, 2, -1, 9, 1}, target[] = {2, 3};
    assert_ok(ctx, vqj_metrics_window_add_codes(w, context, 6));
    assert_ok(ctx, vqj_metrics_window_add_target_codes(w, target, 2));
    vqj_window_metrics m = window_metrics(ctx, w);
    assert_int_equal(m.active_context, 3);
    assert_int_equal(m.active_target, 2);
    assert_int_equal(m.active_codes, 4);
    assert_int_equal(m.dead_codes, 6);
    assert_int_equal(m.assignments, 7);
    assert_close(m.usage_context, 0.3, 1e-7);
    assert_close(m.usage_target, 0.2, 1e-7);
    assert_close(m.usage_ratio, 0.4, 1e-7);
    double h = -(2 / 7.0 * log(2 / 7.0) + 3 / 7.0 * log(3 / 7.0) + 2 * (1 / 7.0 * log(1 / 7.0)));
    assert_close(m.perplexity, exp(h), 1e-6);

    /* A uniform assignment over every code: perplexity K, no dead code. */
    vqj_metrics_window_reset(w);
    int32_t all[10];
    for (int i = 0; i < 10; i++)
        all[i] = i;
    assert_ok(ctx, vqj_metrics_window_add_target_codes(w, all, 10));
    m = window_metrics(ctx, w);
    assert_close(m.perplexity, 10.0, 1e-5);
    assert_int_equal(m.dead_codes, 0);
    assert_int_equal(m.active_context, 0);

    /* A target code >= K is refused too. */
    const int32_t bad[] = {10};
    assert_status(ctx, vqj_metrics_window_add_target_codes(w, bad, 1), VQJ_ERR_INVALID_ARGUMENT);

    /* A caller of the first published struct gets its fields and nothing
     * past them. */
    struct {
        vqj_window_metrics m;
        char guard[sizeof(vqj_window_metrics)];
    } old;
    memset(&old, 0x5a, sizeof old);
    size_t first = offsetof(vqj_window_metrics, usage_ratio) + sizeof(float);
    old.m.size = first;
    assert_ok(ctx, vqj_metrics_window_compute(w, &old.m));
    assert_int_equal(old.m.active_codes, 10);
    const unsigned char *tail = (const unsigned char *)&old.m + first;
    for (size_t i = 0; i < sizeof old - first; i++)
        assert_int_equal(tail[i], 0x5a);
    old.m.size = first - 1;
    assert_status(ctx, vqj_metrics_window_compute(w, &old.m), VQJ_ERR_INVALID_ARGUMENT);
    vqj_metrics_window_destroy(w);

    /* K = 0 (no VQ): usage 0, the -1 codes of a disabled codebook skipped. */
    assert_ok(ctx, vqj_metrics_window_create(ctx, 2, 4, 0, &w));
    const int32_t off[] = {-1, -1};
    assert_ok(ctx, vqj_metrics_window_add_codes(w, off, 2));
    m = window_metrics(ctx, w);
    assert_int_equal(m.active_codes, 0);
    assert_true(m.usage_ratio == 0.0f);
    vqj_metrics_window_destroy(w);

    /* The seed's numbers: 84 of 768 codes is 10.9%. */
    assert_ok(ctx, vqj_metrics_window_create(ctx, 2, 4, 768, &w));
    int32_t seed_codes[84];
    for (int i = 0; i < 84; i++)
        seed_codes[i] = 9 * i;
    assert_ok(ctx, vqj_metrics_window_add_codes(w, seed_codes, 84));
    m = window_metrics(ctx, w);
    assert_close(m.usage_ratio, 84.0 / 768.0, 1e-7);
    vqj_metrics_window_destroy(w);
    vqj_context_destroy(ctx);
}

static void test_window_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_metrics_window *w = (vqj_metrics_window *)&w; /* must stay untouched */
    vqj_metrics_window *const sentinel = w;
    assert_status(ctx, vqj_metrics_window_create(ctx, 0, 4, 10, &w), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_create(ctx, VQJ_METRICS_MAX_DIM + 1, 4, 10, &w),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_create(ctx, 3, 1, 10, &w), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_create(ctx, 3, 4, -1, &w), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_create(ctx, 3, 4, 65537, &w),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_create(NULL, 3, 4, 10, &w), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_create(ctx, 3, 4, 10, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_ptr_equal(w, sentinel);

    assert_ok(ctx, vqj_metrics_window_create(ctx, 3, 4, 10, &w));
    float x[3] = {0};
    assert_status(ctx, vqj_metrics_window_add_projections(w, x, NULL, 1),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_add_projections(w, x, x, -1),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_add_projections(NULL, x, x, 1),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_add_codes(w, NULL, 1), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_add_codes(NULL, NULL, 0), VQJ_ERR_INVALID_ARGUMENT);
    vqj_window_metrics m;
    m.size = offsetof(vqj_window_metrics, usage_ratio); /* below the first struct */
    assert_status(ctx, vqj_metrics_window_compute(w, &m), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_metrics_window_compute(w, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_metrics_window_rows(NULL), 0);
    vqj_metrics_window_reset(NULL);
    vqj_metrics_window_destroy(NULL);
    vqj_metrics_window_destroy(w);
    vqj_context_destroy(ctx);
}

/* ---- Health checks ---- */

static vqj_health_level level_of(const vqj_health_input *in, const char *name)
{
    vqj_health_check checks[VQJ_HEALTH_MAX_CHECKS];
    size_t n = 0;
    if (vqj_health_evaluate(in, checks, VQJ_HEALTH_MAX_CHECKS, &n) != VQJ_OK)
        fail_msg("vqj_health_evaluate: %s", vqj_last_error());
    for (size_t i = 0; i < n; i++)
        if (strcmp(checks[i].name, name) == 0) {
            assert_true(strlen(checks[i].message) > 0);
            return checks[i].level;
        }
    fail_msg("no check named %s", name);
    return VQJ_HEALTH_OK;
}

static vqj_health_input embedding_input(float usage, float context_rank, float target_rank)
{
    vqj_health_input in;
    vqj_health_input_default(&in);
    in.have_vq = 1;
    in.vq_usage = usage;
    in.have_embedding = 1;
    in.context_rank = context_rank;
    in.target_rank = target_rank;
    return in;
}

/* Each threshold of DESIGN.md section 6 on both sides of its boundary. */
static void test_health_thresholds(void **state)
{
    (void)state;
    vqj_health_input in = embedding_input(0.2f, 20.0f, 20.0f);
    const struct {
        float v;
        vqj_health_level level;
    } usage[] = {{0.0f, VQJ_HEALTH_ALERT},   {0.0799f, VQJ_HEALTH_ALERT},
                 {0.08f, VQJ_HEALTH_WARN},   {0.1199f, VQJ_HEALTH_WARN},
                 {0.12f, VQJ_HEALTH_OK},     {1.0f, VQJ_HEALTH_OK},
                 {NAN, VQJ_HEALTH_ALERT}},
      crank[] = {{2.99f, VQJ_HEALTH_ALERT}, {3.0f, VQJ_HEALTH_WARN}, {4.99f, VQJ_HEALTH_WARN},
                 {5.0f, VQJ_HEALTH_OK},     {NAN, VQJ_HEALTH_ALERT}},
      trank[] = {{4.99f, VQJ_HEALTH_ALERT}, {5.0f, VQJ_HEALTH_WARN}, {9.99f, VQJ_HEALTH_WARN},
                 {10.0f, VQJ_HEALTH_OK},    {NAN, VQJ_HEALTH_ALERT}};
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        in.vq_usage = usage[i].v;
        assert_int_equal(level_of(&in, "vq_usage"), usage[i].level);
    }
    in.vq_usage = 0.2f;
    for (size_t i = 0; i < sizeof crank / sizeof crank[0]; i++) {
        in.context_rank = crank[i].v;
        assert_int_equal(level_of(&in, "context_rank"), crank[i].level);
        assert_int_equal(level_of(&in, "target_rank"), VQJ_HEALTH_OK);
    }
    in.context_rank = 20.0f;
    for (size_t i = 0; i < sizeof trank / sizeof trank[0]; i++) {
        in.target_rank = trank[i].v;
        assert_int_equal(level_of(&in, "target_rank"), trank[i].level);
        assert_int_equal(level_of(&in, "context_rank"), VQJ_HEALTH_OK);
    }
}

static vqj_health_input loss_input(const float *val, int epochs)
{
    vqj_health_input in;
    vqj_health_input_default(&in);
    in.val_loss = val;
    in.epochs = epochs;
    return in;
}

static void test_health_val_trend(void **state)
{
    (void)state;
    /* Three rises in a row (four values) alert; two do not. */
    const float rising[] = {9.0f, 1.0f, 2.0f, 3.0f, 4.0f};
    vqj_health_input in = loss_input(rising, 4);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_OK); /* 9,1,2,3: 2 rises */
    in = loss_input(rising, 5);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_ALERT);
    in = loss_input(rising + 1, 4);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_ALERT);
    in = loss_input(rising + 1, 3);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_OK);
    /* A flat epoch breaks the run. */
    const float flat[] = {1.0f, 2.0f, 2.0f, 3.0f, 4.0f};
    in = loss_input(flat, 5);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_OK);
    /* A fall at the end ends it. */
    const float fall[] = {1.0f, 2.0f, 3.0f, 4.0f, 3.5f};
    in = loss_input(fall, 5);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_OK);
    in = loss_input(fall, 1);
    assert_int_equal(level_of(&in, "val_loss_trend"), VQJ_HEALTH_OK);
}

static int abort_of(const vqj_health_input *in, char *reason, size_t cap)
{
    int a = vqj_health_abort(in, reason, cap);
    /* The evaluate path agrees: the criterion's check alerts iff it fires. */
    static const char *names[] = {NULL, "abort_vq_collapse", "abort_embedding_collapse",
                                  "abort_val_loss_jump", "abort_val_loss_plateau"};
    vqj_health_check checks[VQJ_HEALTH_MAX_CHECKS];
    size_t n = 0;
    assert_int_equal(vqj_health_evaluate(in, checks, VQJ_HEALTH_MAX_CHECKS, &n), VQJ_OK);
    int first = 0;
    for (size_t i = 0; i < n; i++)
        for (int c = 1; c <= 4; c++)
            if (strcmp(checks[i].name, names[c]) == 0 && checks[i].level == VQJ_HEALTH_ALERT &&
                !first)
                first = c;
    assert_int_equal(a, first);
    return a;
}

static void test_abort_criteria(void **state)
{
    (void)state;
    char reason[200];
    /* VQ collapse: usage < 8% after epoch 15. */
    vqj_health_input in = embedding_input(0.079f, 20.0f, 20.0f);
    in.epoch = 15;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    assert_string_equal(reason, "");
    in.epoch = 16;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_VQ_COLLAPSE);
    assert_non_null(strstr(reason, "7.9%"));
    assert_non_null(strstr(reason, "epoch 16"));
    in.vq_usage = 0.08f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.vq_usage = 0.0f;
    in.epoch = 0; /* unknown epoch: not applied */
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.have_vq = 0; /* no VQ: not applied */
    in.epoch = 30;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);

    /* Embedding collapse: context < 2 or target < 4. */
    in = embedding_input(0.2f, 1.99f, 20.0f);
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_EMBEDDING_COLLAPSE);
    assert_non_null(strstr(reason, "context rank 1.99 < 2"));
    in.context_rank = 2.0f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.target_rank = 3.99f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_EMBEDDING_COLLAPSE);
    assert_non_null(strstr(reason, "target rank 3.99 < 4"));
    in.target_rank = 4.0f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.target_rank = NAN;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_EMBEDDING_COLLAPSE);

    /* Validation-loss jump > 2.0 in one epoch (the difference is exact). */
    float val[3] = {9.0f, 8.0f, 10.0f};
    in = loss_input(val, 3);
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    val[2] = 10.0078125f; /* 8 + 2 + 2^-7 */
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_VAL_LOSS_JUMP);
    assert_non_null(strstr(reason, "jumped"));
    val[2] = NAN;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_VAL_LOSS_JUMP);
    val[2] = INFINITY;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_VAL_LOSS_JUMP);
    val[1] = NAN; /* from a non-finite loss there is no jump to measure */
    val[2] = 20.0f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.epochs = 1;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);

    /* Plateau: 20 epochs after the best without improvement. */
    float flat[30];
    flat[0] = 5.0f;
    for (int e = 1; e < 30; e++)
        flat[e] = 5.0f + 0.001f * (float)(e % 3);
    in = loss_input(flat, 20); /* best at 0, 19 epochs since */
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.epochs = 21;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_VAL_LOSS_PLATEAU);
    assert_non_null(strstr(reason, "20 epochs"));
    flat[10] = 4.0f; /* an improvement restarts the count */
    in.epochs = 30;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);
    in.epochs = 30;
    flat[10] = 4.995f; /* within min_delta 0.01 of 5: not an improvement */
    in.min_delta = 0.01f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_VAL_LOSS_PLATEAU);
    in.min_delta = 0.0f;
    assert_int_equal(abort_of(&in, reason, sizeof reason), VQJ_ABORT_NONE);

    /* Several fire: the first in criterion order wins; NULL reason is fine. */
    in = embedding_input(0.01f, 1.0f, 1.0f);
    in.epoch = 20;
    in.val_loss = flat;
    in.epochs = 30;
    in.min_delta = 0.01f;
    assert_int_equal(abort_of(&in, NULL, 0), VQJ_ABORT_VQ_COLLAPSE);
    in.have_vq = 0;
    assert_int_equal(abort_of(&in, NULL, 0), VQJ_ABORT_EMBEDDING_COLLAPSE);
    in.have_embedding = 0;
    assert_int_equal(abort_of(&in, NULL, 0), VQJ_ABORT_VAL_LOSS_PLATEAU);
    /* A short buffer gets a truncated, terminated reason. */
    in = embedding_input(0.2f, 1.0f, 10.0f);
    char small[8];
    assert_int_equal(vqj_health_abort(&in, small, sizeof small), VQJ_ABORT_EMBEDDING_COLLAPSE);
    assert_int_equal(strlen(small), 7);
}

static void test_health_evaluate(void **state)
{
    (void)state;
    vqj_health_check checks[VQJ_HEALTH_MAX_CHECKS];
    size_t n = 99;
    vqj_health_input in;
    vqj_health_input_default(&in);
    assert_int_equal(in.size, sizeof in);
    /* No data: no checks. */
    assert_int_equal(vqj_health_evaluate(&in, NULL, 0, &n), VQJ_OK);
    assert_int_equal(n, 0);

    /* Everything: the eight checks in the documented order. */
    const float val[] = {9.0f, 8.5f, 8.4f};
    in = embedding_input(0.109f, 7.5f, 10.0f); /* the seed's gentle run at its end */
    in.val_loss = val;
    in.epochs = 3;
    in.epoch = 30;
    assert_int_equal(vqj_health_evaluate(&in, checks, VQJ_HEALTH_MAX_CHECKS, &n), VQJ_OK);
    assert_int_equal(n, 8);
    static const char *names[] = {"vq_usage",          "context_rank",
                                  "target_rank",       "val_loss_trend",
                                  "abort_vq_collapse", "abort_embedding_collapse",
                                  "abort_val_loss_jump", "abort_val_loss_plateau"};
    static const vqj_health_level levels[] = {VQJ_HEALTH_WARN, VQJ_HEALTH_OK, VQJ_HEALTH_OK,
                                              VQJ_HEALTH_OK,   VQJ_HEALTH_OK, VQJ_HEALTH_OK,
                                              VQJ_HEALTH_OK,   VQJ_HEALTH_OK};
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(checks[i].name, names[i]);
        assert_int_equal(checks[i].level, levels[i]);
    }
    assert_non_null(strstr(checks[0].message, "10.9%"));
    assert_non_null(strstr(checks[1].message, "7.50"));

    /* Only losses: the four validation checks. */
    in.have_vq = 0;
    in.have_embedding = 0;
    assert_int_equal(vqj_health_evaluate(&in, checks, VQJ_HEALTH_MAX_CHECKS, &n), VQJ_OK);
    assert_int_equal(n, 3);
    assert_string_equal(checks[0].name, "val_loss_trend");
    assert_string_equal(checks[1].name, "abort_val_loss_jump");
    assert_string_equal(checks[2].name, "abort_val_loss_plateau");

    /* Too little room: an error that says how many are needed. */
    assert_int_equal(vqj_health_evaluate(&in, checks, 2, &n), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(n, 3);
}

static void test_health_errors(void **state)
{
    (void)state;
    vqj_health_check checks[VQJ_HEALTH_MAX_CHECKS];
    size_t n = 0;
    char reason[100];
    vqj_health_input in;
    vqj_health_input_default(&in);
    assert_int_equal(vqj_health_evaluate(NULL, checks, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_health_evaluate(&in, checks, 8, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_health_evaluate(&in, NULL, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_health_abort(NULL, reason, sizeof reason), -1);
    in.size = 8;
    assert_int_equal(vqj_health_evaluate(&in, checks, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_health_abort(&in, reason, sizeof reason), -1);
    assert_non_null(strstr(reason, "size"));
    vqj_health_input_default(&in);
    in.epochs = -1;
    assert_int_equal(vqj_health_evaluate(&in, checks, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    in.epochs = 2; /* val_loss NULL */
    assert_int_equal(vqj_health_evaluate(&in, checks, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "val_loss"));
    in.epochs = 0;
    in.epoch = -1;
    assert_int_equal(vqj_health_evaluate(&in, checks, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    in.epoch = 0;
    in.min_delta = -0.5f;
    assert_int_equal(vqj_health_evaluate(&in, checks, 8, &n), VQJ_ERR_INVALID_ARGUMENT);
    in.min_delta = NAN;
    assert_int_equal(vqj_health_abort(&in, NULL, 0), -1);
    in.min_delta = 0.0f;
    assert_int_equal(vqj_health_abort(&in, NULL, 0), VQJ_ABORT_NONE);
    vqj_health_input_default(NULL);
}

/* ---- Early stopping ---- */

static void update(vqj_early_stopping *es, int epoch, float value, int want_improved,
                   int want_stop)
{
    int improved = -1, stop = -1;
    if (vqj_early_stopping_update(es, epoch, value, &improved, &stop) != VQJ_OK)
        fail_msg("vqj_early_stopping_update: %s", vqj_last_error());
    if (improved != want_improved || stop != want_stop)
        fail_msg("epoch %d value %g: improved %d stop %d, expected %d %d", epoch,
                 (double)value, improved, stop, want_improved, want_stop);
}

static void test_early_stopping_min(void **state)
{
    (void)state;
    vqj_early_stopping es;
    assert_int_equal(vqj_early_stopping_init(&es, 2, 0.0f, VQJ_EARLY_STOPPING_MIN), VQJ_OK);
    assert_int_equal(es.has_best, 0);
    update(&es, 1, 10.0f, 1, 0); /* the first value always improves */
    update(&es, 2, 9.0f, 1, 0);
    update(&es, 3, 9.5f, 0, 0);
    update(&es, 4, 9.0f, 0, 1); /* equal is not better; 2 bad epochs = patience */
    assert_true(es.best == 9.0f);
    assert_int_equal(es.best_epoch, 2);
    assert_int_equal(es.bad_epochs, 2);
    assert_int_equal(es.updates, 4);
    update(&es, 5, 8.0f, 1, 0); /* an improvement clears the count */
    assert_int_equal(es.best_epoch, 5);

    /* min_delta: strictly more than min_delta below the best. */
    assert_int_equal(vqj_early_stopping_init(&es, 3, 0.25f, VQJ_EARLY_STOPPING_MIN), VQJ_OK);
    update(&es, 0, 1.0f, 1, 0);
    update(&es, 1, 0.75f, 0, 0); /* exactly best - min_delta: not better */
    update(&es, 2, 0.8f, 0, 0);
    update(&es, 3, 0.7421875f, 1, 0);
    assert_true(es.best == 0.7421875f); /* the best is the value, not best - delta */
    update(&es, 4, 0.5f, 0, 0);       /* only 0.2421875 below the best */
    update(&es, 5, 0.4921875f, 0, 0); /* exactly best - min_delta again */
    update(&es, 6, 0.484375f, 1, 0);

    /* Non-finite values never improve and count as bad epochs. */
    assert_int_equal(vqj_early_stopping_init(&es, 2, 0.0f, VQJ_EARLY_STOPPING_MIN), VQJ_OK);
    update(&es, 0, NAN, 0, 0);
    assert_int_equal(es.has_best, 0);
    update(&es, 1, 3.0f, 1, 0);
    update(&es, 2, -INFINITY, 0, 0);
    update(&es, 3, NAN, 0, 1);
    assert_true(es.best == 3.0f);

    /* Patience 0: stop at the first update that does not improve. */
    assert_int_equal(vqj_early_stopping_init(&es, 0, 0.0f, VQJ_EARLY_STOPPING_MIN), VQJ_OK);
    update(&es, 0, 2.0f, 1, 0);
    update(&es, 1, 1.0f, 1, 0);
    update(&es, 2, 1.0f, 0, 1);
    /* The seed's setting: patience 20, min_delta 0.01. */
    assert_int_equal(vqj_early_stopping_init(&es, 20, 0.01f, VQJ_EARLY_STOPPING_MIN), VQJ_OK);
    update(&es, 1, 9.39f, 1, 0);
    for (int e = 2; e <= 20; e++)
        update(&es, e, 9.385f, 0, 0);
    update(&es, 21, 9.385f, 0, 1);
    /* NULL outputs are allowed. */
    assert_int_equal(vqj_early_stopping_update(&es, 22, 1.0f, NULL, NULL), VQJ_OK);
    assert_true(es.best == 1.0f);
}

static void test_early_stopping_max(void **state)
{
    (void)state;
    vqj_early_stopping es;
    assert_int_equal(vqj_early_stopping_init(&es, 2, 0.25f, VQJ_EARLY_STOPPING_MAX), VQJ_OK);
    update(&es, 0, 1.0f, 1, 0);
    update(&es, 1, 1.25f, 0, 0); /* exactly best + min_delta: not better */
    update(&es, 2, 1.2578125f, 1, 0);
    update(&es, 3, 0.0f, 0, 0);
    update(&es, 4, INFINITY, 0, 1);
    assert_true(es.best == 1.2578125f);
    assert_int_equal(es.best_epoch, 2);
    assert_int_equal(vqj_early_stopping_init(&es, 1, 0.0f, VQJ_EARLY_STOPPING_MAX), VQJ_OK);
    update(&es, 0, -5.0f, 1, 0);
    update(&es, 1, -4.0f, 1, 0);
    update(&es, 2, -4.5f, 0, 1);
}

static void test_early_stopping_errors(void **state)
{
    (void)state;
    vqj_early_stopping es, before;
    memset(&es, 0, sizeof es);
    assert_int_equal(vqj_early_stopping_update(&es, 0, 1.0f, NULL, NULL),
                     VQJ_ERR_INVALID_ARGUMENT); /* never initialized */
    assert_int_equal(vqj_early_stopping_init(NULL, 1, 0.0f, VQJ_EARLY_STOPPING_MIN),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_early_stopping_init(&es, 3, 0.0f, VQJ_EARLY_STOPPING_MIN), VQJ_OK);
    memcpy(&before, &es, sizeof es);
    assert_int_equal(vqj_early_stopping_init(&es, -1, 0.0f, VQJ_EARLY_STOPPING_MIN),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_early_stopping_init(&es, 1, -0.1f, VQJ_EARLY_STOPPING_MIN),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_early_stopping_init(&es, 1, NAN, VQJ_EARLY_STOPPING_MIN),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_early_stopping_init(&es, 1, 0.0f, (vqj_early_stopping_mode)2),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "mode"));
    assert_memory_equal(&es, &before, sizeof es);
    es.patience = -3; /* settings broken after init: refused, nothing changes */
    memcpy(&before, &es, sizeof es);
    assert_int_equal(vqj_early_stopping_update(&es, 0, 1.0f, NULL, NULL),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_memory_equal(&es, &before, sizeof es);
    assert_int_equal(vqj_early_stopping_update(NULL, 0, 1.0f, NULL, NULL),
                     VQJ_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_diagonal),
        cmocka_unit_test(test_numpy_reference),
        cmocka_unit_test(test_isotropic_gaussian),
        cmocka_unit_test(test_rank_k),
        cmocka_unit_test(test_seed_size),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_metrics_errors),
        cmocka_unit_test(test_device_ops),
        cmocka_unit_test(test_host_fallback),
        cmocka_unit_test(test_window_ring),
        cmocka_unit_test(test_window_codes),
        cmocka_unit_test(test_window_code_health),
        cmocka_unit_test(test_window_errors),
        cmocka_unit_test(test_health_thresholds),
        cmocka_unit_test(test_health_val_trend),
        cmocka_unit_test(test_abort_criteria),
        cmocka_unit_test(test_health_evaluate),
        cmocka_unit_test(test_health_errors),
        cmocka_unit_test(test_early_stopping_min),
        cmocka_unit_test(test_early_stopping_max),
        cmocka_unit_test(test_early_stopping_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
