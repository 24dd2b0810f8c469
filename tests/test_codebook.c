/* The codebook (docs/model.md, "Codebook"): assignment, straight-through
 * backward, commitment, EMA with Laplace smoothing, refresh, k-means++,
 * statistics, errors, and a collapse scenario. */
#include "model/workspace.h"
#include "testutil.h"
#include "vectors.h"

#include <unistd.h>

#define EPS_LAPLACE 1e-5

/* Defaults with the data-dependent features off; tests turn on what they test. */
static vqj_codebook_params params(int k, int d, float ema_decay)
{
    vqj_codebook_params p;
    vqj_codebook_params_default(&p);
    p.num_embeddings = k;
    p.dim = d;
    p.ema_decay = ema_decay;
    p.refresh_enabled = 0;
    p.kmeans_init = 0;
    return p;
}

static vqj_codebook *make(vqj_context *ctx, const vqj_codebook_params *p)
{
    vqj_codebook *cb = NULL;
    assert_ok(ctx, vqj_codebook_create(ctx, p, &cb));
    assert_non_null(cb);
    return cb;
}

static vqj_tensor *tensor(vqj_context *ctx, int rows, int cols, const float *data)
{
    vqj_tensor *t = NULL;
    assert_ok(ctx, vqj_tensor_create(ctx, rows, cols, &t));
    if (data)
        assert_ok(ctx, vqj_tensor_write(t, data, (size_t)rows * cols));
    return t;
}

/* Install codes with ema_count = 1 and ema_sum = e, as a fresh codebook has. */
static void set_codes(vqj_context *ctx, vqj_codebook *cb, const float *e, int k, int d)
{
    vqj_weights *w = vqj_codebook_weights(cb);
    assert_ok(ctx, vqj_weights_write(w, "codebook.embedding", e, (size_t)k * d));
    assert_ok(ctx, vqj_weights_write(w, "codebook.ema_sum", e, (size_t)k * d));
}

static void read_w(vqj_context *ctx, vqj_codebook *cb, const char *name, float *dst, size_t n)
{
    assert_ok(ctx, vqj_weights_read(vqj_codebook_weights(cb), name, dst, n));
}

static vqj_codebook_stats new_stats(void)
{
    vqj_codebook_stats s;
    memset(&s, 0xff, sizeof s); /* every field must be written */
    s.size = sizeof s;
    return s;
}

static void test_params(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p;
    vqj_codebook_params_default(&p);
    assert_int_equal(p.size, sizeof p);
    assert_int_equal(p.num_embeddings, 768);
    assert_int_equal(p.dim, 384);
    assert_int_equal(p.enabled, 1);
    assert_float_equal(p.commitment_cost, 0.15f, 0.0f);
    assert_float_equal(p.ema_decay, 0.95f, 0.0f);
    assert_int_equal(p.refresh_enabled, 1);
    assert_int_equal(p.refresh_interval, 3000);
    assert_float_equal(p.refresh_usage_threshold, 0.01f, 0.0f);
    assert_int_equal(p.kmeans_init, 1);
    vqj_codebook_params_default(NULL);

    /* One field at a time out of range: the message names the field. */
    const char *fields[] = {"num_embeddings", "num_embeddings", "dim", "dim",
                            "commitment_cost", "commitment_cost", "ema_decay", "ema_decay",
                            "ema_decay", "refresh_interval", "refresh_usage_threshold",
                            "refresh_usage_threshold"};
    for (int c = 0; c < 12; c++) {
        vqj_codebook_params b = params(4, 3, 0.9f);
        switch (c) {
        case 0: b.num_embeddings = 0; break;
        case 1: b.num_embeddings = 65537; break;
        case 2: b.dim = 0; break;
        case 3: b.dim = 70000; break;
        case 4: b.commitment_cost = -0.1f; break;
        case 5: b.commitment_cost = INFINITY; break;
        case 6: b.ema_decay = 1.0f; break;
        case 7: b.ema_decay = -0.5f; break;
        case 8: b.ema_decay = NAN; break;
        case 9: b.refresh_interval = 0; break;
        case 10: b.refresh_usage_threshold = 1.5f; break;
        case 11: b.refresh_usage_threshold = NAN; break;
        }
        vqj_codebook *cb = (vqj_codebook *)&cb;
        assert_status(ctx, vqj_codebook_create(ctx, &b, &cb), VQJ_ERR_INVALID_ARGUMENT);
        assert_null(cb);
        if (!strstr(vqj_last_error(), fields[c]))
            fail_msg("case %d: message \"%s\" does not name %s", c, vqj_last_error(),
                     fields[c]);
    }
    vqj_codebook *cb = NULL;
    assert_status(ctx, vqj_codebook_create(ctx, NULL, &cb), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_create(ctx, &p, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_create(NULL, &p, &cb), VQJ_ERR_INVALID_ARGUMENT);
    p.size = 4;
    assert_status(ctx, vqj_codebook_create(ctx, &p, &cb), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "size"));
    vqj_codebook_destroy(NULL);
    assert_null(vqj_codebook_weights(NULL));
    vqj_context_destroy(ctx);
}

static void test_create_weights(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int k = 16, d = 8;
    for (int grad = 0; grad < 2; grad++) {
        vqj_codebook_params p = params(k, d, grad ? 0.0f : 0.95f);
        vqj_codebook *cb = make(ctx, &p);
        vqj_weights *w = vqj_codebook_weights(cb);
        assert_int_equal(vqj_weights_num_tensors(w), 3);
        assert_int_equal(vqj_weights_num_params(w), grad ? (size_t)k * d : 0);
        const char *names[3] = {"codebook.embedding", "codebook.ema_count", "codebook.ema_sum"};
        for (size_t i = 0; i < 3; i++) {
            vqj_weight_info info;
            assert_ok(ctx, vqj_weights_info(w, i, &info));
            int j = 0;
            while (j < 3 && strcmp(info.name, names[j]) != 0)
                j++;
            assert_true(j < 3);
            assert_int_equal(info.shape[0], k);
            assert_int_equal(info.shape[1], j == 1 ? 1 : d);
            assert_int_equal(info.trainable, j == 0 && grad);
        }
        float e[16 * 8], s[16 * 8], c[16];
        read_w(ctx, cb, "codebook.embedding", e, k * d);
        read_w(ctx, cb, "codebook.ema_sum", s, k * d);
        read_w(ctx, cb, "codebook.ema_count", c, k);
        float lo = 0.0f, hi = 0.0f;
        for (int i = 0; i < k * d; i++) {
            assert_true(e[i] >= -1.0f / k && e[i] < 1.0f / k);
            lo = fminf(lo, e[i]);
            hi = fmaxf(hi, e[i]);
        }
        assert_true(lo < -0.5f / k && hi > 0.5f / k); /* spread over the range */
        assert_memory_equal(e, s, sizeof e);
        for (int i = 0; i < k; i++)
            assert_float_equal(c[i], 1.0f, 0.0f);
        if (grad) {
            /* The same seed gives the same codes. */
            vqj_codebook *again = make(ctx, &p);
            float e2[16 * 8];
            read_w(ctx, again, "codebook.embedding", e2, k * d);
            assert_memory_equal(e, e2, sizeof e);
            vqj_codebook_destroy(again);
        }
        vqj_codebook_destroy(cb);
    }
    vqj_context_destroy(ctx);
}

/* Codes and points chosen so that every expansion value is exact in float. */
static void test_nearest_code(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int k = 4, d = 2, n = 5;
    vqj_codebook_params p = params(k, d, 0.95f);
    p.commitment_cost = 0.25f;
    vqj_codebook *cb = make(ctx, &p);
    /* e3 duplicates e1: a tie that must go to 1. */
    const float e[] = {0, 0, 1, 0, 0, 1, 1, 0};
    set_codes(ctx, cb, e, k, d);
    const float z[] = {0.75f, 0.25f, 0.125f, 0.25f, 0.25f, 0.75f, 0.5f, 0.5f, 3.0f, -1.0f};
    const int32_t want[] = {1, 0, 2, 0, 1}; /* (0.5, 0.5): a three-way tie -> 0 */
    vqj_tensor *zt = tensor(ctx, n, d, z), *qt = tensor(ctx, 1, 1, NULL);
    int32_t codes[5];
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, codes, &s));
    assert_int_equal(vqj_tensor_rows(qt), n);
    assert_int_equal(vqj_tensor_cols(qt), d);
    float q[10];
    assert_ok(ctx, vqj_tensor_read(qt, q, 10));
    double sse = 0.0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(codes[i], want[i]);
        assert_memory_equal(q + 2 * i, e + 2 * want[i], 2 * sizeof(float));
        for (int j = 0; j < d; j++)
            sse += (z[2 * i + j] - e[2 * want[i] + j]) * (double)(z[2 * i + j] - e[2 * want[i] + j]);
    }
    /* By hand: 0.125 + 0.078125 + 0.125 + 0.5 + 5 = 5.828125 over N D = 10. */
    assert_float_equal(sse, 5.828125, 1e-12);
    assert_float_equal(s.commitment_loss, 0.25 * 5.828125 / 10.0, 1e-7);
    assert_float_equal(s.codebook_loss, 0.0f, 0.0f); /* EMA codes: no code term */
    assert_int_equal(s.active_codes, 3);
    assert_int_equal(s.refreshed, 0);
    assert_int_equal(s.updates, 0);
    assert_float_equal(s.usage_ratio, 0.75f, 1e-7);
    /* counts 2, 2, 1 over 5 */
    double h = -(2 * 0.4 * log(0.4) + 0.2 * log(0.2));
    assert_float_equal(s.perplexity, exp(h), 1e-5);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* Random data at sizes that exercise the vector lanes, the tail of a row and
 * several GEMM row blocks, against a double-precision brute force. */
static void test_nearest_code_random(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int shapes[][3] = {{300, 13, 37}, {600, 24, 64}, {7, 1, 3}, {5, 9, 1}};
    for (int t = 0; t < 4; t++) {
        int n = shapes[t][0], d = shapes[t][1], k = shapes[t][2];
        vqj_codebook_params p = params(k, d, 0.95f);
        vqj_codebook *cb = make(ctx, &p);
        float *e = malloc(sizeof(float) * k * d), *z = malloc(sizeof(float) * n * d);
        int32_t *codes = malloc(sizeof(int32_t) * n);
        test_fill(e, (size_t)k * d, 7 + t, 1.0f);
        test_fill(z, (size_t)n * d, 99 + t, 1.2f);
        set_codes(ctx, cb, e, k, d);
        vqj_tensor *zt = tensor(ctx, n, d, z), *qt = tensor(ctx, 0, 0, NULL);
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, codes, NULL));
        for (int i = 0; i < n; i++) {
            double best = INFINITY, mine = 0.0;
            for (int c = 0; c < k; c++) {
                double s = 0.0;
                for (int j = 0; j < d; j++) {
                    double x = (double)z[i * d + j] - e[c * d + j];
                    s += x * x;
                }
                if (s < best)
                    best = s;
                if (c == codes[i])
                    mine = s;
            }
            assert_true(codes[i] >= 0 && codes[i] < k);
            assert_true(mine <= best + 1e-5 * (1.0 + best));
        }
        free(e);
        free(z);
        free(codes);
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    vqj_context_destroy(ctx);
}

/* Ties spread over vector lanes and blocks still go to the lowest index. */
static void test_tie_lowest_index(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int k = 21, d = 3;
    vqj_codebook_params p = params(k, d, 0.95f);
    vqj_codebook *cb = make(ctx, &p);
    float e[21 * 3];
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++)
            e[c * d + j] = 10.0f + (float)(c * d + j);
    const int dup[] = {17, 6, 13, 20}; /* the same point at four indices */
    for (int t = 0; t < 4; t++) {
        e[dup[t] * d + 0] = 1.0f;
        e[dup[t] * d + 1] = -2.0f;
        e[dup[t] * d + 2] = 0.5f;
    }
    set_codes(ctx, cb, e, k, d);
    const float z[] = {1.0f, -2.0f, 0.5f, 1.5f, -1.0f, 0.0f};
    vqj_tensor *zt = tensor(ctx, 2, d, z), *qt = tensor(ctx, 0, 0, NULL);
    int32_t codes[2];
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, codes, NULL));
    assert_int_equal(codes[0], 6);
    assert_int_equal(codes[1], 6);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* Codes on well separated corners and points near them: a step of h never
 * changes an assignment, so finite differences see the smooth part. */
static void setup_fd(float *e, float *z, int n, int k, int d, uint32_t seed)
{
    test_fill(z, (size_t)n * d, seed, 0.4f);
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++)
            e[c * d + j] = ((c >> (j % 3)) & 1 ? 4.0f : -4.0f) + 0.1f * (float)j;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            z[i * d + j] += e[(i % k) * d + j];
}

static float commit_at(vqj_context *ctx, vqj_codebook *cb, vqj_tensor *zt, vqj_tensor *qt,
                       const float *z, size_t nz, int which)
{
    assert_ok(ctx, vqj_tensor_write(zt, z, nz));
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, NULL, &s));
    return which ? s.codebook_loss : s.commitment_loss;
}

/* Central differences of the reported commitment at z [nz] into fd [nz]. */
static void commit_fd(vqj_context *ctx, vqj_codebook *cb, vqj_tensor *zt, vqj_tensor *qt,
                      const float *z, int nz, float h, float *fd)
{
    float *zp = malloc((size_t)nz * sizeof *zp);
    assert_non_null(zp);
    memcpy(zp, z, (size_t)nz * sizeof *zp);
    for (int i = 0; i < nz; i++) {
        zp[i] = z[i] + h;
        float lp = commit_at(ctx, cb, zt, qt, zp, (size_t)nz, 0);
        zp[i] = z[i] - h;
        float lm = commit_at(ctx, cb, zt, qt, zp, (size_t)nz, 0);
        zp[i] = z[i];
        fd[i] = (lp - lm) / (2.0f * h);
    }
    free(zp);
}

/* Central differences of the reported code term (codebook_loss) at z over
 * the n values x of tensor `name`, left at x afterwards. */
static void code_loss_fd(vqj_context *ctx, vqj_codebook *cb, const char *name, const float *x,
                         int n, vqj_tensor *zt, vqj_tensor *qt, const float *z, size_t nz,
                         float h, float *fd)
{
    vqj_weights *w = vqj_codebook_weights(cb);
    float *xp = malloc((size_t)n * sizeof *xp);
    assert_non_null(xp);
    memcpy(xp, x, (size_t)n * sizeof *xp);
    for (int i = 0; i < n; i++) {
        xp[i] = x[i] + h;
        assert_ok(ctx, vqj_weights_write(w, name, xp, (size_t)n));
        float lp = commit_at(ctx, cb, zt, qt, z, nz, 1);
        xp[i] = x[i] - h;
        assert_ok(ctx, vqj_weights_write(w, name, xp, (size_t)n));
        float lm = commit_at(ctx, cb, zt, qt, z, nz, 1);
        xp[i] = x[i];
        fd[i] = (lp - lm) / (2.0f * h);
    }
    assert_ok(ctx, vqj_weights_write(w, name, x, (size_t)n));
    free(xp);
}

/* dL/dz for L = sum(q R) + commitment: R (straight-through) + the
 * commitment gradient, checked by central differences of the commitment. */
static void test_backward_dz(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { N = 7, K = 4, D = 5 };
    for (int grad = 0; grad < 2; grad++) {
        vqj_codebook_params p = params(K, D, grad ? 0.0f : 0.9f);
        p.commitment_cost = 0.3f;
        vqj_codebook *cb = make(ctx, &p);
        float e[K * D], z[N * D], r[N * D], pre[N * D], dz[N * D], fd[N * D];
        setup_fd(e, z, N, K, D, 3 + grad);
        set_codes(ctx, cb, e, K, D);
        test_fill(r, N * D, 11, 1.0f);
        test_fill(pre, N * D, 12, 1.0f);
        vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
        const float h = 1e-2f;
        commit_fd(ctx, cb, zt, qt, z, N * D, h, fd);
        /* One training forward at z, then the backward with dq = R into a
         * dz that already holds values (the backward accumulates). */
        assert_ok(ctx, vqj_tensor_write(zt, z, N * D));
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
        vqj_tensor *dqt = tensor(ctx, N, D, r), *dzt = tensor(ctx, N, D, pre);
        assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
        assert_ok(ctx, vqj_tensor_read(dzt, dz, N * D));
        float got[N * D], want[N * D];
        for (int i = 0; i < N * D; i++) {
            got[i] = dz[i] - pre[i] - r[i];
            /* By hand: 2 beta (z - e) / (N D). */
            want[i] = 2.0f * 0.3f * (z[i] - e[(i / D % K) * D + i % D]) / (N * D);
        }
        assert_true(test_rel_err(got, fd, N * D, 1e-3) < 2e-3);
        assert_true(test_rel_err(got, want, N * D, 1e-6) < 1e-4);
        vqj_tensor_destroy(dqt);
        vqj_tensor_destroy(dzt);
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    vqj_context_destroy(ctx);
}

/* ema_decay = 0: the code term mean (sg(z) - e)^2 trains the codes; its
 * gradient goes to codebook.embedding, checked by central differences. */
static void test_backward_codes(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { N = 9, K = 4, D = 3 };
    vqj_codebook_params p = params(K, D, 0.0f);
    p.commitment_cost = 0.2f;
    vqj_codebook *cb = make(ctx, &p);
    vqj_weights *w = vqj_codebook_weights(cb);
    float e[K * D], z[N * D];
    setup_fd(e, z, N, K, D, 5);
    set_codes(ctx, cb, e, K, D);
    vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, NULL, &s));
    assert_float_equal(s.codebook_loss * 0.2f, s.commitment_loss, 1e-6);

    float fd[K * D];
    code_loss_fd(ctx, cb, "codebook.embedding", e, K * D, zt, qt, z, N * D, 1e-2f, fd);
    vqj_weights_zero_grad(w);
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
    vqj_tensor *dqt = tensor(ctx, N, D, NULL), *dzt = tensor(ctx, N, D, NULL);
    assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
    float g[K * D];
    assert_ok(ctx, vqj_weights_read_grad(w, "codebook.embedding", g, K * D));
    assert_true(test_rel_err(g, fd, K * D, 1e-3) < 2e-3);
    /* Training forwards with gradient codes leave the codes alone. */
    float after[K * D];
    read_w(ctx, cb, "codebook.embedding", after, K * D);
    assert_memory_equal(after, e, sizeof e);
    /* A second backward accumulates once more. */
    assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
    float g2[K * D];
    assert_ok(ctx, vqj_weights_read_grad(w, "codebook.embedding", g2, K * D));
    for (int i = 0; i < K * D; i++)
        assert_float_equal(g2[i], 2.0f * g[i], 1e-6);
    vqj_tensor_destroy(dqt);
    vqj_tensor_destroy(dzt);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* Two codes, three tokens, decay 0.5: count, sum and smoothing by hand. */
static void test_ema_update(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(2, 2, 0.5f);
    vqj_codebook *cb = make(ctx, &p);
    const float e[] = {0, 0, 10, 10};
    set_codes(ctx, cb, e, 2, 2);
    const float z[] = {1, 0, 0, 1, 9, 10};
    vqj_tensor *zt = tensor(ctx, 3, 2, z), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats s = new_stats();
    int32_t codes[3];
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, codes, &s));
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[1], 0);
    assert_int_equal(codes[2], 1);
    assert_int_equal(s.updates, 1);
    /* q is the code the batch was assigned with, before the update. */
    float q[6];
    assert_ok(ctx, vqj_tensor_read(qt, q, 6));
    const float qwant[] = {0, 0, 0, 0, 10, 10};
    assert_memory_equal(q, qwant, sizeof q);

    /* count: 0.5 * 1 + 0.5 * n_k; sum: 0.5 * e_k + 0.5 * s_k. */
    const double cnt[2] = {1.5, 1.0}, sum[4] = {0.5, 0.5, 9.5, 10.0};
    float c[2], sm[4], en[4], usage[2];
    read_w(ctx, cb, "codebook.ema_count", c, 2);
    read_w(ctx, cb, "codebook.ema_sum", sm, 4);
    read_w(ctx, cb, "codebook.embedding", en, 4);
    double m = cnt[0] + cnt[1];
    for (int k = 0; k < 2; k++) {
        assert_float_equal(c[k], cnt[k], 1e-7);
        double smoothed = (cnt[k] + EPS_LAPLACE) / (m + 2 * EPS_LAPLACE) * m;
        for (int j = 0; j < 2; j++) {
            assert_float_equal(sm[k * 2 + j], sum[k * 2 + j], 1e-6);
            assert_float_equal(en[k * 2 + j], sum[k * 2 + j] / smoothed, 1e-6);
        }
    }
    /* Smoothing moved the codes, but only a little: */
    assert_true(fabsf(en[0] - 0.5f / 1.5f) > 0.0f && fabsf(en[0] - 0.5f / 1.5f) < 1e-5f);
    assert_ok(ctx, vqj_codebook_ema_usage(cb, usage, 2));
    assert_float_equal(usage[0], 0.6, 1e-7);
    assert_float_equal(usage[1], 0.4, 1e-7);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* An unused code k keeps ema_count_k = γ^t and ema_sum_k = γ^t e_k(0), so
 * Laplace smoothing gives e_k(t) = e_k(0) γ^t M / ((γ^t + ε) M') with
 * M' = M + K ε: it stays where it is while γ^t >> ε and then shrinks to
 * the origin (docs/model.md, "Codebook"). */
static void test_unused_code_decays(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(3, 2, 0.95f);
    vqj_codebook *cb = make(ctx, &p);
    /* Code 2 shrinks along (7, -9), away from every token, so no token
     * ever picks it. */
    const float e[] = {0, 0, 4, 0, 7, -9};
    set_codes(ctx, cb, e, 3, 2);
    const float z[] = {0.5f, 0.25f, -0.25f, 0.5f, 3.5f, 0.5f, 4.5f, -0.5f};
    vqj_tensor *zt = tensor(ctx, 4, 2, z), *qt = tensor(ctx, 0, 0, NULL);
    for (int t = 0; t < 50; t++)
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
    float en[6], usage[3];
    read_w(ctx, cb, "codebook.embedding", en, 6);
    assert_float_equal(en[4], 7.0f, 7e-3);
    assert_float_equal(en[5], -9.0f, 9e-3);
    /* the used codes moved most of the way to their tokens' means (the
     * initial count of 1 at the old place still weighs 0.95^50 / 2) */
    assert_float_equal(en[0], 0.125f, 0.03);
    assert_float_equal(en[1], 0.375f, 0.03);
    assert_float_equal(en[2], 4.0f, 0.03);
    assert_ok(ctx, vqj_codebook_ema_usage(cb, usage, 3));
    assert_true(usage[2] < 0.05f);

    /* On to 100, 300 and 400 updates against the formula: M is the EMA of
     * the batch's 4 tokens from 3 (the initial counts of 1). */
    const int checks[] = {100, 224, 300, 400};
    double m = 3.0, g = 0.95;
    for (int t = 1; t <= 50; t++)
        m = g * m + (1 - g) * 4;
    int t = 50;
    for (size_t c = 0; c < sizeof checks / sizeof *checks; c++) {
        for (; t < checks[c]; t++) {
            assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
            m = g * m + (1 - g) * 4;
        }
        double gt = pow(g, t);
        double factor = gt / ((gt + EPS_LAPLACE) / (m + 3 * EPS_LAPLACE) * m);
        read_w(ctx, cb, "codebook.embedding", en, 6);
        double norm = sqrt((double)en[4] * en[4] + (double)en[5] * en[5]);
        double want = factor * sqrt(7.0 * 7.0 + 9.0 * 9.0);
        if (fabs(norm - want) > 1e-3 * want)
            fail_msg("after %d updates: |e_2| = %.9g, the formula says %.9g", t, norm, want);
    }
    /* γ^400 = 1.2e-9 << ε: the code sits at about 1e-4 of its old norm. */
    assert_true(sqrt((double)en[4] * en[4] + (double)en[5] * en[5]) < 2e-3);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

static void test_refresh(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    /* Code 3 is far from every token: after one update with decay 0.5 the
     * counts are 1.5, 1, 1, 0.5 (M = 4, shares .375 .25 .25 .125), and a
     * threshold of 0.2 makes only code 3 dead. */
    vqj_codebook_params p = params(4, 2, 0.5f);
    p.refresh_enabled = 1;
    p.refresh_interval = 1;
    p.refresh_usage_threshold = 0.2f;
    vqj_codebook *cb = make(ctx, &p);
    const float e[] = {0, 0, 5, 0, 0, 5, 100, 100};
    set_codes(ctx, cb, e, 4, 2);
    /* (2.5, 2.5) is the worst-quantized token (12.5, tied three ways -> 0). */
    const float z[] = {0, 0.25f, 5, 0.25f, 2.5f, 2.5f, 0.25f, 5};
    vqj_tensor *zt = tensor(ctx, 4, 2, z), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_int_equal(s.refreshed, 1);
    float en[8], c[4], sm[8];
    read_w(ctx, cb, "codebook.embedding", en, 8);
    read_w(ctx, cb, "codebook.ema_count", c, 4);
    read_w(ctx, cb, "codebook.ema_sum", sm, 8);
    assert_float_equal(en[6], 2.5f, 0.0f);
    assert_float_equal(en[7], 2.5f, 0.0f);
    assert_float_equal(c[3], 1.0f, 0.0f); /* M / K = 4 / 4 */
    assert_float_equal(sm[6], 2.5f, 0.0f);
    assert_float_equal(sm[7], 2.5f, 0.0f);
    assert_float_equal(c[0], 1.5f, 0.0f); /* live codes keep their state */
    assert_float_equal(c[1], 1.0f, 0.0f);
    vqj_tensor_destroy(zt);
    vqj_codebook_destroy(cb);

    /* Two dead codes (2 and 3) take the two worst tokens, worst first, in
     * ascending code order; refresh only on every second update. */
    p.refresh_interval = 2;
    p.refresh_usage_threshold = 0.1f;
    cb = make(ctx, &p);
    const float e2[] = {0, 0, 10, 0, 50, 50, 60, 60};
    set_codes(ctx, cb, e2, 4, 2);
    /* tokens 0, 1, 4 go to code 0 and 2, 3 to code 1, both updates */
    const float z2[] = {0.25f, 0, 1, 0, 10, 0.25f, 8, 0, 0, 0.5f};
    zt = tensor(ctx, 5, 2, z2);
    /* update 1: counts (.5 + 1.5, .5 + 1, .5, .5) = (2, 1.5, .5, .5); no refresh
     * on an odd update; code 0 moves to ~(0.31, 0.13), code 1 to ~(9.33, 0.08) */
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_int_equal(s.refreshed, 0);
    /* update 2: counts (2.5, 1.75, .25, .25), M = 4.75, shares of 2 and 3 are
     * 0.053 <= 0.1; errors against the codes the batch was assigned with:
     * 0.020, 0.488, 0.472, 1.78, 0.238, so code 2 gets token 3 (8, 0) and
     * code 3 token 1 (1, 0) */
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_int_equal(s.refreshed, 2);
    assert_int_equal(s.updates, 2);
    read_w(ctx, cb, "codebook.embedding", en, 8);
    read_w(ctx, cb, "codebook.ema_count", c, 4);
    const float want[] = {8, 0, 1, 0};
    assert_memory_equal(en + 4, want, sizeof want);
    assert_float_equal(c[2], 4.75f / 4, 1e-6);
    assert_float_equal(c[3], 4.75f / 4, 1e-6);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* Dead-code replacement: decay 0.5, threshold 0.6, six tokens all nearest
 * code 0. After the update the counts are (3.5, .5, .5, .5): codes 1..3 are
 * dead and each takes a distinct batch token, with ema_count = 0.6 and
 * ema_sum = 0.6 e. The draw is the same for the same seed and update. */
static void test_dead_code(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { N = 6, K = 4, D = 3 };
    vqj_codebook_params p = params(K, D, 0.5f);
    p.dead_code_threshold = 0.6f;
    const float e[K * D] = {0, 0, 0, 50, 0, 0, 0, 50, 0, 0, 0, 50};
    float z[N * D];
    test_fill(z, N * D, 21, 1.0f);
    float en[2][K * D];
    for (int run = 0; run < 2; run++) {
        vqj_codebook *cb = make(ctx, &p);
        set_codes(ctx, cb, e, K, D);
        vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
        vqj_codebook_stats s = new_stats();
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
        assert_int_equal(s.dead_replaced, 3);
        assert_int_equal(s.refreshed, 0);
        float c[K], sm[K * D];
        read_w(ctx, cb, "codebook.embedding", en[run], K * D);
        read_w(ctx, cb, "codebook.ema_count", c, K);
        read_w(ctx, cb, "codebook.ema_sum", sm, K * D);
        assert_float_equal(c[0], 3.5f, 1e-6); /* the live code keeps its state */
        int used[N] = {0};
        for (int k = 1; k < K; k++) {
            int tok = -1;
            for (int i = 0; i < N; i++)
                if (!memcmp(en[run] + k * D, z + i * D, D * sizeof(float)))
                    tok = i;
            if (tok < 0)
                fail_msg("code %d is not a batch token", k);
            assert_int_equal(used[tok], 0); /* distinct tokens */
            used[tok] = 1;
            assert_float_equal(c[k], 0.6f, 0.0f);
            for (int j = 0; j < D; j++)
                assert_float_equal(sm[k * D + j], 0.6f * z[tok * D + j], 1e-6);
        }
        /* Past warm-up nothing is below the threshold: codes 1..3 now hold
         * tokens, so each gets at least its own token's count. */
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    assert_memory_equal(en[0], en[1], sizeof en[0]);

    /* More dead codes than tokens: draws with replacement, every dead code
     * still re-seeded. */
    vqj_codebook_params p2 = params(8, D, 0.5f);
    p2.dead_code_threshold = 0.6f;
    vqj_codebook *cb = make(ctx, &p2);
    vqj_tensor *zt = tensor(ctx, 2, D, z), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_true(s.dead_replaced >= 6);
    float e8[8 * D];
    read_w(ctx, cb, "codebook.embedding", e8, 8 * D);
    int seeded = 0;
    for (int k = 0; k < 8; k++)
        for (int i = 0; i < 2; i++)
            seeded += !memcmp(e8 + k * D, z + i * D, D * sizeof(float));
    assert_true(seeded >= s.dead_replaced);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);

    /* A cap of 2 a step: of the three dead codes (equal counts) the two of
     * lowest index are re-seeded, the third keeps its decayed count. */
    vqj_codebook_params pc = params(K, D, 0.5f);
    pc.dead_code_threshold = 0.6f;
    pc.dead_code_max_per_step = 2;
    cb = make(ctx, &pc);
    set_codes(ctx, cb, e, K, D);
    zt = tensor(ctx, N, D, z);
    qt = tensor(ctx, 0, 0, NULL);
    s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_int_equal(s.dead_replaced, 2);
    float cc[K];
    read_w(ctx, cb, "codebook.ema_count", cc, K);
    assert_float_equal(cc[1], 0.6f, 0.0f);
    assert_float_equal(cc[2], 0.6f, 0.0f);
    assert_float_equal(cc[3], 0.5f, 1e-6);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    pc.dead_code_max_per_step = -1;
    vqj_codebook *xc = NULL;
    assert_status(ctx, vqj_codebook_create(ctx, &pc, &xc), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "dead_code_max_per_step"));

    /* The threshold needs EMA counts, and must be finite and >= 0. */
    const float bad[] = {-1.0f, NAN, INFINITY};
    for (int c = 0; c < 4; c++) {
        vqj_codebook_params b = params(K, D, c == 3 ? 0.0f : 0.9f);
        b.dead_code_threshold = c == 3 ? 1.0f : bad[c];
        vqj_codebook *x = (vqj_codebook *)&x;
        assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
        assert_null(x);
        assert_non_null(strstr(vqj_last_error(), "dead_code_threshold"));
    }
    vqj_context_destroy(ctx);
}

static void test_stats(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int k = 16, d = 3;
    vqj_codebook_params p = params(k, d, 0.95f);
    vqj_codebook *cb = make(ctx, &p);
    float e[16 * 3];
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++)
            e[c * d + j] = (float)(c * 10 + j);
    set_codes(ctx, cb, e, k, d);
    for (int m = 1; m <= 16; m *= 2) {
        /* three tokens on each of m codes */
        int n = 3 * m;
        float z[48 * 3];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
                z[i * d + j] = e[(i % m) * 2 % k * d + j] + 0.1f;
        vqj_tensor *zt = tensor(ctx, n, d, z), *qt = tensor(ctx, 0, 0, NULL);
        vqj_codebook_stats s = new_stats();
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, NULL, &s));
        int used = m <= 8 ? m : 8; /* codes (2i) mod 16 */
        assert_float_equal(s.perplexity, used, 1e-4 * used);
        assert_int_equal(s.active_codes, used);
        assert_float_equal(s.usage_ratio, (float)used / k, 1e-7);
        assert_int_equal(s.refreshed, 0);
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
    }
    /* A larger stats struct from a newer caller keeps its extra bytes. */
    struct {
        vqj_codebook_stats s;
        int extra;
    } big;
    memset(&big, 0, sizeof big);
    big.s.size = sizeof big;
    big.extra = 77;
    vqj_tensor *zt = tensor(ctx, 2, d, e), *qt = tensor(ctx, 0, 0, NULL);
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, NULL, &big.s));
    assert_int_equal(big.extra, 77);
    assert_int_equal(big.s.active_codes, 2);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* k-means++ over 4 tight, far-apart clusters with 8 codes: the codes are 8
 * distinct batch tokens and every cluster gets at least one. */
static void test_kmeans(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { K = 8, D = 4, C = 4, PER = 16, N = C * PER };
    vqj_codebook_params p = params(K, D, 0.0f); /* no EMA: the codes stay as seeded */
    p.kmeans_init = 1;
    vqj_codebook *cb = make(ctx, &p);
    float z[N * D], noise[N * D];
    test_fill(noise, N * D, 21, 0.01f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            z[i * D + j] = (j == i % C ? 10.0f : 0.0f) + noise[i * D + j];
    /* a batch with fewer than K tokens does not trigger it */
    int64_t updates;
    int initialized;
    vqj_tensor *small = tensor(ctx, K - 1, D, z), *qt = tensor(ctx, 0, 0, NULL);
    assert_ok(ctx, vqj_codebook_forward(cb, small, 1, qt, NULL, NULL));
    assert_ok(ctx, vqj_codebook_get_progress(cb, &updates, &initialized));
    assert_int_equal(initialized, 0);

    vqj_tensor *zt = tensor(ctx, N, D, z);
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_ok(ctx, vqj_codebook_get_progress(cb, &updates, &initialized));
    assert_int_equal(initialized, 1);
    assert_int_equal(s.active_codes, K); /* q already uses the seeded codes */
    float e[K * D], sm[K * D], c[K];
    read_w(ctx, cb, "codebook.embedding", e, K * D);
    read_w(ctx, cb, "codebook.ema_sum", sm, K * D);
    read_w(ctx, cb, "codebook.ema_count", c, K);
    assert_memory_equal(e, sm, sizeof e);
    int token_of[K], clusters = 0;
    for (int k = 0; k < K; k++) {
        assert_float_equal(c[k], 1.0f, 0.0f);
        token_of[k] = -1;
        for (int i = 0; i < N; i++)
            if (memcmp(e + k * D, z + i * D, sizeof(float) * D) == 0)
                token_of[k] = i;
        assert_true(token_of[k] >= 0);
        for (int k2 = 0; k2 < k; k2++)
            assert_int_not_equal(token_of[k], token_of[k2]);
        int seen = 0;
        for (int k2 = 0; k2 < k; k2++)
            seen |= token_of[k2] % C == token_of[k] % C;
        clusters += !seen;
    }
    assert_int_equal(clusters, C);
    /* it runs once: a second large batch leaves the codes alone */
    float z2[N * D];
    for (int i = 0; i < N * D; i++)
        z2[i] = -z[i];
    assert_ok(ctx, vqj_tensor_write(zt, z2, N * D));
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
    float after[K * D];
    read_w(ctx, cb, "codebook.embedding", after, K * D);
    assert_memory_equal(after, e, sizeof e);
    /* a resumed run restores the flag and keeps its codes */
    vqj_codebook *resumed = make(ctx, &p);
    float fresh[K * D], later[K * D];
    read_w(ctx, resumed, "codebook.embedding", fresh, K * D);
    assert_ok(ctx, vqj_codebook_set_progress(resumed, 0, 1));
    assert_ok(ctx, vqj_codebook_forward(resumed, zt, 1, qt, NULL, NULL));
    read_w(ctx, resumed, "codebook.embedding", later, K * D);
    assert_memory_equal(fresh, later, sizeof fresh);
    vqj_codebook_destroy(resumed);
    vqj_tensor_destroy(small);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

static void snapshot(vqj_context *ctx, vqj_codebook *cb, float *buf, int k, int d)
{
    read_w(ctx, cb, "codebook.embedding", buf, (size_t)k * d);
    read_w(ctx, cb, "codebook.ema_sum", buf + k * d, (size_t)k * d);
    read_w(ctx, cb, "codebook.ema_count", buf + 2 * k * d, (size_t)k);
}

/* training = 0 changes nothing, not even the state kept for the backward. */
static void test_eval_leaves_state(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { K = 8, D = 6, N = 40 };
    vqj_codebook_params p = params(K, D, 0.9f);
    p.refresh_enabled = 1;
    p.refresh_interval = 1;
    p.refresh_usage_threshold = 0.5f;
    p.kmeans_init = 1;
    vqj_codebook *cb = make(ctx, &p);
    float z[N * D], before[2 * K * D + K], after[2 * K * D + K];
    test_fill(z, N * D, 5, 1.0f);
    vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
    vqj_tensor *dq = tensor(ctx, N, D, NULL), *dz = tensor(ctx, N, D, NULL);
    /* eval alone: no backward state yet, k-means++ not run */
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, NULL, &s));
    assert_status(ctx, vqj_codebook_backward(cb, dq, dz), VQJ_ERR_STATE);
    int64_t updates;
    int initialized;
    assert_ok(ctx, vqj_codebook_get_progress(cb, &updates, &initialized));
    assert_int_equal(initialized, 0);
    assert_int_equal(updates, 0);

    for (int t = 0; t < 3; t++)
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
    float dz_ref[N * D], dz2[N * D];
    test_fill(dz_ref, N * D, 9, 1.0f);
    assert_ok(ctx, vqj_tensor_write(dq, dz_ref, N * D));
    assert_ok(ctx, vqj_codebook_backward(cb, dq, dz));
    assert_ok(ctx, vqj_tensor_read(dz, dz_ref, N * D));

    snapshot(ctx, cb, before, K, D);
    float z2[N * D];
    test_fill(z2, N * D, 6, 3.0f);
    vqj_tensor *zt2 = tensor(ctx, N - 5, D, z2);
    assert_ok(ctx, vqj_codebook_forward(cb, zt2, 0, qt, NULL, &s));
    snapshot(ctx, cb, after, K, D);
    assert_memory_equal(before, after, sizeof before);
    assert_ok(ctx, vqj_codebook_get_progress(cb, &updates, &initialized));
    assert_int_equal(updates, 3);
    assert_int_equal(s.updates, 3);
    assert_int_equal(s.refreshed, 0);
    /* the backward still refers to the last training forward */
    assert_ok(ctx, vqj_tensor_write(dz, (float[N * D]){0}, N * D));
    assert_ok(ctx, vqj_codebook_backward(cb, dq, dz));
    assert_ok(ctx, vqj_tensor_read(dz, dz2, N * D));
    assert_memory_equal(dz_ref, dz2, sizeof dz2);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(zt2);
    vqj_tensor_destroy(qt);
    vqj_tensor_destroy(dq);
    vqj_tensor_destroy(dz);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

static void test_empty_batch(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(4, 3, 0.9f);
    p.refresh_enabled = 1;
    p.refresh_interval = 1;
    p.kmeans_init = 1;
    vqj_codebook *cb = make(ctx, &p);
    float before[2 * 4 * 3 + 4], after[2 * 4 * 3 + 4];
    snapshot(ctx, cb, before, 4, 3);
    vqj_tensor *zt = tensor(ctx, 0, 3, NULL), *qt = tensor(ctx, 2, 2, NULL);
    for (int training = 0; training < 2; training++) {
        vqj_codebook_stats s = new_stats();
        assert_ok(ctx, vqj_codebook_forward(cb, zt, training, qt, NULL, &s));
        assert_int_equal(vqj_tensor_rows(qt), 0);
        assert_int_equal(vqj_tensor_cols(qt), 3);
        assert_float_equal(s.commitment_loss, 0.0f, 0.0f);
        assert_float_equal(s.perplexity, 0.0f, 0.0f); /* documented: 0 for N = 0 */
        assert_int_equal(s.active_codes, 0);
        assert_int_equal(s.updates, 0); /* an empty batch is not an EMA update */
    }
    snapshot(ctx, cb, after, 4, 3);
    assert_memory_equal(before, after, sizeof before);
    vqj_tensor *dq = tensor(ctx, 0, 3, NULL), *dz = tensor(ctx, 0, 3, NULL);
    assert_ok(ctx, vqj_codebook_backward(cb, dq, dz));
    vqj_tensor_destroy(dq);
    vqj_tensor_destroy(dz);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(4, 3, 0.9f);
    vqj_codebook *cb = make(ctx, &p);
    vqj_tensor *z = tensor(ctx, 5, 3, NULL), *q = tensor(ctx, 0, 0, NULL);
    vqj_tensor *bad = tensor(ctx, 5, 4, NULL);
    vqj_tensor *dq = tensor(ctx, 5, 3, NULL), *dz = tensor(ctx, 5, 3, NULL);
    /* backward before any forward */
    assert_status(ctx, vqj_codebook_backward(cb, dq, dz), VQJ_ERR_STATE);
    assert_non_null(strstr(vqj_last_error(), "training"));
    assert_status(ctx, vqj_codebook_forward(cb, bad, 1, q, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "5 x 4"));
    assert_status(ctx, vqj_codebook_forward(cb, z, 1, z, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_forward(cb, NULL, 1, q, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_forward(cb, z, 1, NULL, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_codebook_forward(NULL, z, 1, q, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    vqj_codebook_stats s;
    s.size = 8;
    assert_status(ctx, vqj_codebook_forward(cb, z, 1, q, NULL, &s), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "size"));
    /* a tensor from another context */
    vqj_context *other = test_context();
    vqj_tensor *foreign = tensor(other, 5, 3, NULL);
    assert_status(ctx, vqj_codebook_forward(cb, foreign, 1, q, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    /* non-finite z in training: refused before anything changes */
    float v[15] = {0};
    v[7] = NAN;
    assert_ok(ctx, vqj_tensor_write(z, v, 15));
    assert_status(ctx, vqj_codebook_forward(cb, z, 1, q, NULL, NULL), VQJ_ERR_NUMERIC);
    int64_t updates;
    int initialized;
    assert_ok(ctx, vqj_codebook_get_progress(cb, &updates, &initialized));
    assert_int_equal(updates, 0);
    assert_status(ctx, vqj_codebook_backward(cb, dq, dz), VQJ_ERR_STATE);
    v[7] = 0.0f;
    assert_ok(ctx, vqj_tensor_write(z, v, 15));
    /* shape mismatches in the backward */
    assert_ok(ctx, vqj_codebook_forward(cb, z, 1, q, NULL, NULL));
    assert_ok(ctx, vqj_codebook_backward(cb, dq, dz));
    vqj_tensor *dq4 = tensor(ctx, 4, 3, NULL);
    assert_status(ctx, vqj_codebook_backward(cb, dq4, dz), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "dq is 4 x 3"));
    assert_status(ctx, vqj_codebook_backward(cb, dq, bad), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_backward(cb, NULL, dz), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_backward(cb, dq, foreign), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_codebook_backward(NULL, dq, dz), VQJ_ERR_INVALID_ARGUMENT);
    /* usage and progress */
    float u[4];
    assert_status(ctx, vqj_codebook_ema_usage(cb, u, 3), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_codebook_ema_usage(cb, NULL, 4), VQJ_ERR_INVALID_ARGUMENT);
    assert_ok(ctx, vqj_codebook_ema_usage(cb, u, 4));
    assert_float_equal(u[0] + u[1] + u[2] + u[3], 1.0f, 1e-6);
    assert_status(ctx, vqj_codebook_set_progress(cb, -1, 0), VQJ_ERR_INVALID_ARGUMENT);
    assert_ok(ctx, vqj_codebook_set_progress(cb, 12345, 1));
    assert_ok(ctx, vqj_codebook_get_progress(cb, &updates, &initialized));
    assert_int_equal(updates, 12345);
    assert_int_equal(initialized, 1);
    assert_status(ctx, vqj_codebook_get_progress(cb, NULL, &initialized),
                  VQJ_ERR_INVALID_ARGUMENT);
    vqj_tensor_destroy(foreign);
    vqj_context_destroy(other);
    vqj_tensor_destroy(dq4);
    vqj_tensor_destroy(z);
    vqj_tensor_destroy(q);
    vqj_tensor_destroy(bad);
    vqj_tensor_destroy(dq);
    vqj_tensor_destroy(dz);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

static void test_disabled(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(4, 3, 0.9f);
    p.enabled = 0;
    vqj_codebook *cb = make(ctx, &p);
    float z[6] = {1, 2, 3, 4, 5, 6}, q[6], before[28], after[28];
    snapshot(ctx, cb, before, 4, 3);
    vqj_tensor *zt = tensor(ctx, 2, 3, z), *qt = tensor(ctx, 0, 0, NULL);
    int32_t codes[2] = {5, 5};
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, codes, &s));
    assert_ok(ctx, vqj_tensor_read(qt, q, 6));
    assert_memory_equal(q, z, sizeof z);
    assert_int_equal(codes[0], -1);
    assert_int_equal(codes[1], -1);
    assert_float_equal(s.commitment_loss, 0.0f, 0.0f);
    assert_int_equal(s.active_codes, 0);
    assert_int_equal(s.updates, 0);
    snapshot(ctx, cb, after, 4, 3);
    assert_memory_equal(before, after, sizeof before);
    vqj_tensor *dq = tensor(ctx, 2, 3, z), *dz = tensor(ctx, 2, 3, z);
    assert_ok(ctx, vqj_codebook_backward(cb, dq, dz));
    assert_ok(ctx, vqj_tensor_read(dz, q, 6));
    for (int i = 0; i < 6; i++)
        assert_float_equal(q[i], 2.0f * z[i], 0.0f);
    vqj_tensor_destroy(dq);
    vqj_tensor_destroy(dz);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* Batches from 32 well separated clusters into 64 codes that start as the
 * default tiny uniform codes (no k-means++): without help, most codes are
 * never picked and several clusters share a code. The refresh must bring
 * every cluster a code of its own: usage stays at or above 32/64, far above
 * the seed's 8% alert line, and every token is quantized closely. */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void collapse_run(vqj_context *ctx, int refresh, float *usage_out, float *err_out)
{
    enum { K = 64, D = 16, C = 32, B = 256, STEPS = 300 };
    vqj_codebook_params p = params(K, D, 0.95f);
    p.refresh_enabled = refresh;
    p.refresh_interval = 20;
    p.refresh_usage_threshold = 0.002f; /* well under the average share 1/64 */
    vqj_codebook *cb = make(ctx, &p);
    static float centers[C * D], z[B * D];
    uint32_t s = 12345;
    for (int c = 0; c < C; c++)
        for (int j = 0; j < D; j++)
            centers[c * D + j] = (float)(lcg(&s) % 2001) / 1000.0f - 1.0f; /* spacing ~2.3 */
    vqj_tensor *zt = tensor(ctx, B, D, NULL), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats st = new_stats();
    for (int t = 0; t <= STEPS; t++) {
        for (int i = 0; i < B; i++) {
            int c = (int)(lcg(&s) % C);
            for (int j = 0; j < D; j++)
                z[i * D + j] =
                    centers[c * D + j] + 0.02f * ((float)(lcg(&s) % 2001) / 1000.0f - 1.0f);
        }
        assert_ok(ctx, vqj_tensor_write(zt, z, B * D));
        /* the last batch is evaluated without training */
        assert_ok(ctx, vqj_codebook_forward(cb, zt, t < STEPS, qt, NULL, &st));
    }
    *usage_out = st.usage_ratio;
    *err_out = st.commitment_loss / p.commitment_cost; /* mean squared error per dim */
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
}

static void test_collapse(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    float usage_on, err_on, usage_off, err_off;
    collapse_run(ctx, 1, &usage_on, &err_on);
    collapse_run(ctx, 0, &usage_off, &err_off);
    /* Cluster noise alone gives a per-dim mean squared error of ~1.3e-4. */
    if (!(usage_on >= 0.5f && err_on < 1e-3f))
        fail_msg("with refresh: usage %.3f (floor 0.5), mse %.2e (off: usage %.3f, mse %.2e)",
                 usage_on, err_on, usage_off, err_off);
    /* the refresh is what fixed it: without it ~21 codes serve 32 clusters */
    assert_true(usage_off < 0.5f && err_off > 10.0f * err_on);
    vqj_context_destroy(ctx);
}

/* A deliberately collapsing start: 64 codes see 40 batches of one identical
 * token, so a single code takes everything and the other 63 decay towards
 * the origin; then the tokens come from 32 clusters. Without help the codes
 * stay collapsed (ties at the origin go to one code); dead-code replacement
 * re-seeds the starved codes from the batch until usage recovers. */
static void dead_code_run(vqj_context *ctx, float threshold, int levels, int groups,
                          float *usage_out, float *err_out, int *replaced_last)
{
    enum { K = 64, D = 16, C = 32, B = 256, SAME = 40, STEPS = 200 };
    vqj_codebook_params p = params(K, D, 0.95f);
    p.dead_code_threshold = threshold;
    p.num_groups = groups;
    if (levels > 1) {
        p.quantizer = VQJ_QUANTIZER_RESIDUAL;
        p.num_quantizers = levels;
    }
    vqj_codebook *cb = make(ctx, &p);
    static float centers[C * D], z[B * D];
    uint32_t s = 777;
    /* clusters away from the origin, where the starved codes end up */
    for (int c = 0; c < C; c++)
        for (int j = 0; j < D; j++)
            centers[c * D + j] = (float)(lcg(&s) % 2001) / 1000.0f + 2.0f;
    vqj_tensor *zt = tensor(ctx, B, D, NULL), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats st = new_stats();
    int replaced = 0;
    for (int t = 0; t <= SAME + STEPS; t++) {
        for (int i = 0; i < B; i++) {
            int c = t < SAME ? 0 : (int)(lcg(&s) % C);
            for (int j = 0; j < D; j++)
                z[i * D + j] = centers[c * D + j] +
                               (t < SAME ? 0.0f
                                         : 0.02f * ((float)(lcg(&s) % 2001) / 1000.0f - 1.0f));
        }
        assert_ok(ctx, vqj_tensor_write(zt, z, B * D));
        assert_ok(ctx, vqj_codebook_forward(cb, zt, t < SAME + STEPS, qt, NULL, &st));
        if (t == SAME - 1 && threshold == 0.0f)
            assert_int_equal(st.active_codes, levels * groups); /* collapsed: one a book */
        if (t < SAME + STEPS)
            replaced = st.dead_replaced;
    }
    *usage_out = st.usage_ratio;
    *err_out = st.commitment_loss / p.commitment_cost;
    *replaced_last = replaced;
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
}

static void test_dead_code_recovers(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    float usage_on, err_on, usage_off, err_off;
    int rep_on, rep_off;
    /* plain, residual (2 levels) and grouped (2 groups) codes */
    static const int shapes[3][2] = {{1, 1}, {2, 1}, {1, 2}};
    for (int sh = 0; sh < 3; sh++) {
        const int levels = shapes[sh][0] * shapes[sh][1]; /* books */
        dead_code_run(ctx, 1.0f, shapes[sh][0], shapes[sh][1], &usage_on, &err_on, &rep_on);
        dead_code_run(ctx, 0.0f, shapes[sh][0], shapes[sh][1], &usage_off, &err_off, &rep_off);
        assert_int_equal(rep_off, 0);
        if (!(usage_on >= 0.5f && err_on < 1e-3f * levels && usage_off < 0.1f * levels &&
              err_off > 10.0f * err_on))
            fail_msg("%d books: dead-code on: usage %.3f, mse %.2e, re-seeded last step %d; "
                     "off: usage %.3f, mse %.2e",
                     levels, usage_on, err_on, rep_on, usage_off, err_off);
    }
    vqj_context_destroy(ctx);
}

/* The training backward of residual and grouped codes: dz - dq against
 * the commitment's gradient by hand, 2 beta r / (N w) (r [N x D] the sum of
 * each token's residuals, w a book's width), and against central
 * differences of the commitment; with ema_decay 0 (grad) the codes'
 * gradient against want_g [ne] and, from code float fd_first on, against
 * central differences of the code term. */
static void check_book_gradients(vqj_context *ctx, vqj_codebook *cb, vqj_tensor *zt,
                                 vqj_tensor *qt, const float *z, const float *e, int n, int d,
                                 int w, int ne, float beta, const float *r, const float *want_g,
                                 int grad, int fd_first, uint32_t seed)
{
    const size_t nd = (size_t)n * d;
    float *dq = malloc(nd * sizeof *dq), *dz = malloc(nd * sizeof *dz),
          *fd = malloc(nd * sizeof *fd), *got = malloc(nd * sizeof *got),
          *fdc = malloc((size_t)ne * sizeof *fdc), *gc = malloc((size_t)ne * sizeof *gc);
    assert_true(dq && dz && fd && got && fdc && gc);
    vqj_weights *wv = vqj_codebook_weights(cb);
    test_fill(dq, nd, seed, 1.0f);
    commit_fd(ctx, cb, zt, qt, z, (int)nd, 1e-2f, fd);
    if (grad)
        code_loss_fd(ctx, cb, "codebook.embedding", e, ne, zt, qt, z, nd, 1e-2f, fdc);
    assert_ok(ctx, vqj_tensor_write(zt, z, nd));
    vqj_weights_zero_grad(wv);
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
    vqj_tensor *dqt = tensor(ctx, n, d, dq), *dzt = tensor(ctx, n, d, NULL);
    assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
    assert_ok(ctx, vqj_tensor_read(dzt, dz, nd));
    for (size_t i = 0; i < nd; i++) {
        got[i] = dz[i] - dq[i];
        assert_float_equal(got[i], 2.0f * beta * r[i] / ((float)n * w), 1e-6);
    }
    assert_true(test_rel_err(got, fd, nd, 1e-3) < 2e-3);
    if (grad) {
        assert_ok(ctx, vqj_weights_read_grad(wv, "codebook.embedding", gc, (size_t)ne));
        for (int i = 0; i < ne; i++)
            assert_float_equal(gc[i], want_g[i], 1e-6);
        assert_true(test_rel_err(gc + fd_first, fdc + fd_first, (size_t)(ne - fd_first), 1e-3) <
                    2e-3);
    }
    vqj_tensor_destroy(dqt);
    vqj_tensor_destroy(dzt);
    free(dq);
    free(dz);
    free(fd);
    free(got);
    free(fdc);
    free(gc);
}

/* vqj_codebook_ema_usage() of `books` books of k codes: each sums to 1. */
static void check_book_usage(vqj_context *ctx, const vqj_codebook *cb, int books, int k)
{
    float *u = malloc((size_t)books * k * sizeof *u);
    assert_non_null(u);
    assert_ok(ctx, vqj_codebook_ema_usage(cb, u, (size_t)books * k));
    for (int b = 0; b < books; b++) {
        double sum = 0.0;
        for (int c = 0; c < k; c++)
            sum += u[b * k + c];
        assert_float_equal(sum, 1.0, 1e-5); /* each book on its own */
    }
    free(u);
}

/* Residual codes, two levels: level-1 codes on the corners of setup_fd,
 * level-2 codes on small corners, tokens near their sums, so a step of h
 * changes no assignment. The forward by hand (q = e1 + e2, codes the first
 * level's), the commitment beta (|R_1|^2 + |R_2|^2) / (N D) and its
 * gradient by central differences, the code term's gradient (ema_decay 0)
 * by hand and, for the last level, by central differences; stats over both
 * levels, the EMA usage per level, a checkpoint round trip and bad sizes. */
static void test_residual(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { N = 8, K = 4, D = 5, L = 2 };
    float e[L * K * D], z[N * D], z1[N * D];
    setup_fd(e, z1, N, K, D, 7);
    for (int c = 0; c < K; c++)
        for (int j = 0; j < D; j++)
            e[(K + c) * D + j] = ((c >> (j % 2)) & 1 ? 0.5f : -0.5f) + 0.01f * (float)j;
    int want1[N], want2[N];
    for (int i = 0; i < N; i++) {
        want1[i] = i % K;
        want2[i] = (i / K + i) % K;
        for (int j = 0; j < D; j++) /* setup_fd's noise (scale 0.4) shrunk to 0.04 */
            z[i * D + j] = e[want1[i] * D + j] +
                           0.1f * (z1[i * D + j] - e[want1[i] * D + j]) +
                           e[(K + want2[i]) * D + j];
    }
    for (int grad = 0; grad < 2; grad++) {
        vqj_codebook_params p = params(K, D, grad ? 0.0f : 0.9f);
        p.quantizer = VQJ_QUANTIZER_RESIDUAL;
        p.num_quantizers = L;
        p.commitment_cost = 0.3f;
        vqj_codebook *cb = make(ctx, &p);
        set_codes(ctx, cb, e, L * K, D);
        vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
        int32_t codes[N];
        float q[N * D], r[N * D], want_g[L * K * D] = {0};
        vqj_codebook_stats st = new_stats();
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, codes, &st));
        assert_ok(ctx, vqj_tensor_read(qt, q, N * D));
        double commit = 0.0;
        for (int i = 0; i < N; i++) {
            assert_int_equal(codes[i], want1[i]);
            for (int j = 0; j < D; j++) {
                float q1 = e[want1[i] * D + j], q2 = e[(K + want2[i]) * D + j];
                assert_float_equal(q[i * D + j], q1 + q2, 1e-5);
                double r1 = z[i * D + j] - q1, r2 = r1 - q2;
                commit += r1 * r1 + r2 * r2;
                r[i * D + j] = (float)(r1 + r2); /* the commitment's gradient / (2 beta / N D) */
                /* the code term's: -2 R_l / (N D) into level l's code */
                want_g[want1[i] * D + j] -= (float)(2.0 * r1 / (N * D));
                want_g[(K + want2[i]) * D + j] -= (float)(2.0 * r2 / (N * D));
            }
        }
        assert_float_equal(st.commitment_loss, 0.3 * commit / (N * D), 1e-6);
        assert_int_equal(st.active_codes, 2 * K);
        assert_float_equal(st.usage_ratio, 1.0f, 0.0f);
        assert_float_equal(st.perplexity, (float)K, 1e-4); /* each level uniform */

        /* dz = dq + 2 beta (R_1 + R_2) / (N D); the code term's gradient by
         * differences for the last level's codes only: only its own term
         * depends on them */
        check_book_gradients(ctx, cb, zt, qt, z, e, N, D, D, L * K * D, 0.3f, r, want_g, grad,
                             K * D, 13);
        if (!grad) {
            check_book_usage(ctx, cb, L, K);
            float u[L * K];
            assert_status(ctx, vqj_codebook_ema_usage(cb, u, K), VQJ_ERR_INVALID_ARGUMENT);
        }
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    for (int bad = 0; bad < 2; bad++) {
        vqj_codebook_params b = params(K, D, 0.9f);
        b.quantizer = VQJ_QUANTIZER_RESIDUAL;
        b.num_quantizers = bad ? VQJ_MAX_QUANTIZERS + 1 : 0;
        vqj_codebook *x = (vqj_codebook *)&x;
        assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
        assert_null(x);
        assert_non_null(strstr(vqj_last_error(), "num_quantizers"));
    }
    vqj_context_destroy(ctx);
}

/* Grouped codes, two groups of Euclidean codes over slices of 3: each
 * group's codes on setup_fd's corners, the tokens' slices near a code of
 * their group (group 1 with another assignment), so a step of h changes no
 * assignment. The forward by hand (q the groups' codes side by side, codes
 * group 0's, every code through the workspace), the commitment beta sum_g
 * |r_g|^2 / (N s) and its gradient by hand and by central differences, the
 * code term's gradient (ema_decay 0) by hand and by central differences,
 * stats and EMA usage per book, and bad num_groups. */
static void test_grouped(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { N = 8, K = 4, S = 3, G = 2, D = G * S };
    float e[G * K * S], z[N * D], zg[G][N * S];
    int want[G][N];
    for (int g = 0; g < G; g++)
        setup_fd(e + g * K * S, zg[g], N, K, S, 31 + (uint32_t)g);
    for (int i = 0; i < N; i++) {
        want[0][i] = i % K;
        want[1][i] = (i / K + 3 * i + 1) % K;
        for (int g = 0; g < G; g++)
            for (int j = 0; j < S; j++) /* setup_fd put token i near code i % K */
                z[i * D + g * S + j] = zg[g][i * S + j] - e[g * K * S + (i % K) * S + j] +
                                       e[g * K * S + want[g][i] * S + j];
    }
    for (int grad = 0; grad < 2; grad++) {
        vqj_codebook_params p = params(K, D, grad ? 0.0f : 0.9f);
        p.num_groups = G;
        p.commitment_cost = 0.3f;
        vqj_codebook *cb = make(ctx, &p);
        set_codes(ctx, cb, e, G * K, S);
        vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
        int32_t codes[N], books[N * G];
        float q[N * D], r[N * D], want_g[G * K * S] = {0};
        vqj_codebook_stats st = new_stats();
        vqji_codebook_ws *ws;
        assert_int_equal(vqji_codebook_levels(cb), G);
        assert_ok(ctx, vqji_codebook_ws_create(cb, &ws));
        assert_ok(ctx, vqji_codebook_quantize_ws(cb, ws, zt, qt, codes, &st));
        assert_ok(ctx, vqji_codebook_ws_level_codes(ws, N, books));
        vqji_codebook_ws_destroy(ws);
        assert_ok(ctx, vqj_tensor_read(qt, q, N * D));
        double commit = 0.0;
        for (int i = 0; i < N; i++) {
            assert_int_equal(codes[i], want[0][i]);
            for (int g = 0; g < G; g++) {
                assert_int_equal(books[i * G + g], want[g][i]);
                for (int j = 0; j < S; j++) {
                    const int o = i * D + g * S + j, c = g * K + want[g][i];
                    assert_float_equal(q[o], e[c * S + j], 0.0f);
                    double ri = z[o] - e[c * S + j];
                    commit += ri * ri;
                    r[o] = (float)ri;
                    want_g[c * S + j] -= (float)(2.0 * ri / (N * S));
                }
            }
        }
        assert_float_equal(st.commitment_loss, 0.3 * commit / (N * S), 1e-6);
        assert_int_equal(st.active_codes, G * K);
        assert_float_equal(st.usage_ratio, 1.0f, 0.0f);
        assert_float_equal(st.perplexity, (float)K, 1e-4); /* each book uniform */

        /* dz = dq + 2 beta r / (N s); every code's gradient by differences
         * (the groups' codes are independent) */
        check_book_gradients(ctx, cb, zt, qt, z, e, N, D, S, G * K * S, 0.3f, r, want_g, grad, 0,
                             17);
        if (!grad)
            check_book_usage(ctx, cb, G, K);
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    /* out of range, not dividing the width (D, or code_dim), other quantizers */
    for (int bad = 0; bad < 5; bad++) {
        vqj_codebook_params b = params(K, D, 0.9f);
        b.num_groups = bad == 0 ? 0 : bad == 1 ? VQJ_MAX_GROUPS + 1 : bad == 2 ? 4 : 2;
        if (bad == 3)
            b.code_dim = 5;
        if (bad == 4)
            b.quantizer = VQJ_QUANTIZER_COSINE;
        vqj_codebook *x = (vqj_codebook *)&x;
        assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
        assert_null(x);
        assert_non_null(strstr(vqj_last_error(), "num_groups"));
    }
    vqj_context_destroy(ctx);
}

/* The FSQ levels of the gradient test (c = 3 dimensions, K = 60). */
static const int FSQ_TEST_LEVELS[3] = {5, 4, 3};
enum { MODE_PLAIN, MODE_COSINE, MODE_FSQ, MODE_SIMVQ };

/* FSQ's bounded value of one dimension divided by its half width: the
 * rounding's input, the identity of its straight-through gradient. */
static double host_fsq_bound(double p, int levels)
{
    double half_l = (levels - 1) * (1.0 + 1e-3) / 2.0, offset = levels % 2 == 0 ? 0.5 : 0.0;
    return (tanh(p + atanh(offset / half_l)) * half_l - offset) / (levels / 2);
}

/* Host reference of the code space (docs/model.md, "Quantizers"):
 * u = W_in z + b_in with a projection, then u / ||u|| for cosine codes or
 * FSQ's bound / half width (before the rounding) for FSQ. */
static void host_code_space(const float *z, const float *wi, const float *bi, int n, int d, int c,
                            int proj, int mode, float *u)
{
    const int cosine = mode == MODE_COSINE;
    for (int i = 0; i < n; i++) {
        float *ui = u + (size_t)i * c;
        for (int j = 0; j < c; j++) {
            double a = proj ? bi[j] : z[i * d + j];
            if (proj)
                for (int l = 0; l < d; l++)
                    a += (double)wi[j * d + l] * z[i * d + l];
            ui[j] = (float)a;
        }
        if (cosine) {
            double nn = 0.0;
            for (int j = 0; j < c; j++)
                nn += (double)ui[j] * ui[j];
            for (int j = 0; j < c; j++)
                ui[j] = (float)(ui[j] / sqrt(nn));
        }
        if (mode == MODE_FSQ)
            for (int j = 0; j < c; j++)
                ui[j] = (float)host_fsq_bound(ui[j], FSQ_TEST_LEVELS[j]);
    }
}

enum { PN = 6, PD = 5, PC = 3, PK = 4 };
typedef struct proj_case {
    int proj, mode, rot;
    float m0[PN * PD * PD]; /* rotation trick: the held lambda R of each row */
    float z[PN * PD], wi[PC * PD], bi[PC], wo[PD * PC], bo[PD];
    float r[PN * PD], s0[PN * PD]; /* dq, and the held sg(qc - u) */
} proj_case;

/* The surrogate whose gradient the backward computes: sum_i R_i . out_i +
 * commitment, out_i = P_out(u_i + s0_i) (or u_i + s0_i), with the
 * commitment from the library at the current weights. */
static double proj_surrogate(vqj_context *ctx, vqj_codebook *cb, const proj_case *pc)
{
    int c = pc->proj ? PC : PD;
    vqj_weights *w = vqj_codebook_weights(cb);
    if (pc->proj) {
        assert_ok(ctx, vqj_weights_write(w, "codebook.project_in.weight", pc->wi, PC * PD));
        assert_ok(ctx, vqj_weights_write(w, "codebook.project_in.bias", pc->bi, PC));
        assert_ok(ctx, vqj_weights_write(w, "codebook.project_out.weight", pc->wo, PD * PC));
        assert_ok(ctx, vqj_weights_write(w, "codebook.project_out.bias", pc->bo, PD));
    }
    vqj_tensor *zt = tensor(ctx, PN, PD, pc->z), *qt = tensor(ctx, 0, 0, NULL);
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, NULL, &s));
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    float u[PN * PD];
    host_code_space(pc->z, pc->wi, pc->bi, PN, PD, c, pc->proj, pc->mode, u);
    double l = s.commitment_loss;
    float v[PN * PD]; /* the code-space output: u + s0, or lambda R u */
    for (int i = 0; i < PN; i++)
        for (int j = 0; j < c; j++) {
            v[i * c + j] = u[i * c + j] + pc->s0[i * c + j];
            if (pc->rot) {
                double a = 0.0;
                for (int m = 0; m < c; m++)
                    a += (double)pc->m0[(i * c + j) * c + m] * u[i * c + m];
                v[i * c + j] = (float)a;
            }
        }
    for (int i = 0; i < PN; i++)
        for (int o = 0; o < PD; o++) {
            double out;
            if (pc->proj) {
                out = pc->bo[o];
                for (int j = 0; j < c; j++)
                    out += (double)pc->wo[o * c + j] * v[i * c + j];
            } else {
                out = v[i * c + o];
            }
            l += pc->r[i * PD + o] * out;
        }
    return l;
}

/* lambda R of the rotation trick for one row: lambda (I - 2 r r^T + 2 b a^T)
 * with a = u / ||u||, b = q / ||q||, r = (a + b) / ||a + b||, lambda =
 * ||q|| / ||u||: it maps u to q. */
static void host_rotation(const float *u, const float *q, int c, float *m)
{
    double nu = 0.0, nq = 0.0, a[PD], b[PD], r[PD], nr = 0.0;
    for (int j = 0; j < c; j++) {
        nu += (double)u[j] * u[j];
        nq += (double)q[j] * q[j];
    }
    nu = sqrt(nu);
    nq = sqrt(nq);
    for (int j = 0; j < c; j++) {
        a[j] = u[j] / nu;
        b[j] = q[j] / nq;
        r[j] = a[j] + b[j];
        nr += r[j] * r[j];
    }
    for (int j = 0; j < c; j++)
        for (int k = 0; k < c; k++)
            m[j * c + k] = (float)(nq / nu *
                                   ((j == k) - 2.0 * r[j] * r[k] / nr + 2.0 * b[j] * a[k]));
}

/* Cosine codes, the factorized lookup, FSQ and the rotation trick: dz and
 * the projections' gradients of the backward against central differences
 * of the estimator's surrogate (straight-through: P_out(u + sg(qc - u));
 * rotation: P_out(sg(lambda R) u)), for projection, cosine, both, FSQ,
 * and the rotation trick with a projection and with cosine codes. */
static void test_code_space_gradients(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    for (int variant = 0; variant < 8; variant++) {
        static proj_case pc;
        memset(&pc, 0, sizeof pc);
        pc.proj = variant != 1 && variant != 5 && variant != 6;
        pc.mode = variant == 3                    ? MODE_FSQ
                  : variant >= 6                  ? MODE_SIMVQ
                  : variant == 0 || variant == 4 ? MODE_PLAIN
                                                 : MODE_COSINE;
        pc.rot = variant == 4 || variant == 5 || variant == 7;
        const int c = pc.proj ? PC : PD;
        vqj_codebook_params p = params(PK, PD, 0.9f);
        p.commitment_cost = 0.3f;
        p.code_dim = pc.proj ? PC : 0;
        p.quantizer = pc.mode == MODE_FSQ      ? VQJ_QUANTIZER_FSQ
                      : pc.mode == MODE_COSINE ? VQJ_QUANTIZER_COSINE
                      : pc.mode == MODE_SIMVQ  ? VQJ_QUANTIZER_SIMVQ
                                               : VQJ_QUANTIZER_EUCLIDEAN;
        memset(p.fsq_levels, 0, sizeof p.fsq_levels);
        memcpy(p.fsq_levels, FSQ_TEST_LEVELS, sizeof FSQ_TEST_LEVELS);
        p.gradient_estimator = pc.rot ? VQJ_GRADIENT_ROTATION : VQJ_GRADIENT_STRAIGHT_THROUGH;
        vqj_codebook *cb = make(ctx, &p);
        vqj_weights *w = vqj_codebook_weights(cb);
        test_fill(pc.z, PN * PD, 31 + variant, 1.0f);
        test_fill(pc.wi, PC * PD, 32, 0.6f);
        test_fill(pc.bi, PC, 33, 0.2f);
        test_fill(pc.wo, PD * PC, 34, 0.6f);
        test_fill(pc.bo, PD, 35, 0.2f);
        test_fill(pc.r, PN * PD, 36, 1.0f);
        /* Codes: the first PK tokens' code-space vectors, nudged (and
         * renormalized for cosine), so the assignment has a clear margin. */
        float u[PN * PD], e[PK * PD], nudge[PK * PD];
        host_code_space(pc.z, pc.wi, pc.bi, PN, PD, c, pc.proj, pc.mode, u);
        test_fill(nudge, PK * PD, 37, 0.05f);
        for (int k = 0; k < PK * c; k++)
            e[k] = u[k] + nudge[k];
        if (pc.mode == MODE_COSINE)
            host_code_space(e, NULL, NULL, PK, c, c, 0, MODE_COSINE, e);
        if (pc.mode == MODE_SIMVQ) { /* its codes are C W^T, read back */
            float basis[PK * PD], tw[PD * PD];
            assert_ok(ctx, vqj_weights_read(w, "codebook.basis", basis, (size_t)PK * c));
            assert_ok(ctx, vqj_weights_read(w, "codebook.transform.weight", tw, (size_t)c * c));
            for (int k = 0; k < PK; k++)
                for (int j = 0; j < c; j++) {
                    double a = 0.0;
                    for (int m = 0; m < c; m++)
                        a += (double)tw[j * c + m] * basis[k * c + m];
                    e[k * c + j] = (float)a;
                }
        } else if (pc.mode != MODE_FSQ) {
            assert_ok(ctx, vqj_weights_write(w, "codebook.embedding", e, (size_t)PK * c));
            assert_ok(ctx, vqj_weights_write(w, "codebook.ema_sum", e, (size_t)PK * c));
        }
        /* s0 = qc - u at the base point (the call installs the weights) */
        proj_surrogate(ctx, cb, &pc);
        vqj_tensor *zt = tensor(ctx, PN, PD, pc.z), *qt = tensor(ctx, 0, 0, NULL);
        int32_t codes[PN];
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, codes, NULL));
        for (int i = 0; i < PN; i++)
            for (int j = 0, basis = 1; j < c; j++) {
                float qc; /* FSQ has no code table: e is not read for it */
                if (pc.mode != MODE_FSQ) {
                    qc = e[codes[i] * c + j];
                } else { /* the code's digits, by hand */
                    int l = FSQ_TEST_LEVELS[j], wj = l / 2;
                    int digit = codes[i] / basis % l;
                    basis *= l;
                    qc = (float)(digit - wj) / (float)wj;
                    assert_float_equal(qc, rint(u[i * c + j] * wj) / wj, 1e-6);
                }
                pc.s0[i * c + j] = qc - u[i * c + j];
            }
        for (int i = 0; i < PN && pc.rot; i++) {
            float qi[PD], mq[PD];
            for (int j = 0; j < c; j++)
                qi[j] = u[i * c + j] + pc.s0[i * c + j];
            host_rotation(u + i * c, qi, c, pc.m0 + (size_t)i * c * c);
            for (int j = 0; j < c; j++) { /* lambda R u = q: the forward value */
                mq[j] = 0.0f;
                for (int m = 0; m < c; m++)
                    mq[j] += pc.m0[(i * c + j) * c + m] * u[i * c + m];
                assert_float_equal(mq[j], qi[j], 1e-5);
            }
        }
        for (int i = 0; i < PK && pc.mode != MODE_FSQ && pc.mode != MODE_SIMVQ; i++)
            assert_int_equal(codes[i], i);

        /* Central differences over z and the four projection tensors. */
        struct {
            float *x;
            int n;
            const char *name;
        } slots[] = {{pc.z, PN * PD, NULL},
                     {pc.wi, PC * PD, "codebook.project_in.weight"},
                     {pc.bi, PC, "codebook.project_in.bias"},
                     {pc.wo, PD * PC, "codebook.project_out.weight"},
                     {pc.bo, PD, "codebook.project_out.bias"}};
        int nslots = pc.proj ? 5 : 1;
        static float fd[5][PN * PD], got[5][PN * PD];
        const float h = 1e-3f;
        for (int sl = 0; sl < nslots; sl++)
            for (int i = 0; i < slots[sl].n; i++) {
                float x0 = slots[sl].x[i];
                slots[sl].x[i] = x0 + h;
                double lp = proj_surrogate(ctx, cb, &pc);
                slots[sl].x[i] = x0 - h;
                double lm = proj_surrogate(ctx, cb, &pc);
                slots[sl].x[i] = x0;
                fd[sl][i] = (float)((lp - lm) / (2.0 * h));
            }
        proj_surrogate(ctx, cb, &pc); /* the base weights back in the library */

        vqj_weights_zero_grad(w);
        assert_ok(ctx, vqj_tensor_write(zt, pc.z, PN * PD));
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, NULL));
        vqj_tensor *dqt = tensor(ctx, PN, PD, pc.r), *dzt = tensor(ctx, PN, PD, NULL);
        assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
        assert_ok(ctx, vqj_tensor_read(dzt, got[0], PN * PD));
        for (int sl = 1; sl < nslots; sl++)
            assert_ok(ctx, vqj_weights_read_grad(w, slots[sl].name, got[sl], slots[sl].n));
        for (int sl = 0; sl < nslots; sl++) {
            double err = test_rel_err(got[sl], fd[sl], slots[sl].n, 1e-2);
            if (!(err < 3e-3))
                fail_msg("variant %d, %s: relative error %.2e", variant,
                         slots[sl].name ? slots[sl].name : "dz", err);
        }
        vqj_tensor_destroy(dqt);
        vqj_tensor_destroy(dzt);
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    vqj_context_destroy(ctx);
}

/* Cosine codes: the search is by angle, not length; the output is the unit
 * code; the EMA update keeps the codes on the unit sphere. With a code_dim
 * the codebook holds c-wide codes and the output is D wide. */
static void test_cosine_and_code_dim(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(2, 2, 0.5f);
    p.quantizer = VQJ_QUANTIZER_COSINE;
    vqj_codebook *cb = make(ctx, &p);
    const float e[] = {1, 0, 0, 1};
    set_codes(ctx, cb, e, 2, 2);
    /* (10, 1) is nearer (0, 1)... no: by angle it is (1, 0); (0.1, 0.3) is
     * (0, 1) although (1, 0) is nearer in L2 to neither */
    const float z[] = {10, 1, 0.1f, 0.3f, 3, 2.9f};
    vqj_tensor *zt = tensor(ctx, 3, 2, z), *qt = tensor(ctx, 0, 0, NULL);
    int32_t codes[10]; /* 3 rows here, 10 below */
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 0, qt, codes, NULL));
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[1], 1);
    assert_int_equal(codes[2], 0);
    float q[6];
    assert_ok(ctx, vqj_tensor_read(qt, q, 6));
    assert_memory_equal(q, ((float[]){1, 0, 0, 1, 1, 0}), sizeof q);
    for (int t = 0; t < 5; t++)
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, codes, NULL));
    float en[4];
    read_w(ctx, cb, "codebook.embedding", en, 4);
    for (int k = 0; k < 2; k++)
        assert_float_equal(en[2 * k] * en[2 * k] + en[2 * k + 1] * en[2 * k + 1], 1.0f, 1e-5);
    assert_true(en[1] > 0.05f); /* code 0 turned towards its tokens (10, 1), (3, 2.9) */
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);

    vqj_codebook_params p2 = params(16, 12, 0.9f);
    p2.code_dim = 4;
    cb = make(ctx, &p2);
    vqj_weights *w = vqj_codebook_weights(cb);
    const char *names[] = {"codebook.project_in.weight", "codebook.project_in.bias",
                           "codebook.project_out.weight", "codebook.project_out.bias",
                           "codebook.embedding", "codebook.ema_sum"};
    const size_t counts[] = {4 * 12, 4, 12 * 4, 12, 16 * 4, 16 * 4};
    float buf[64];
    for (int i = 0; i < 6; i++)
        assert_ok(ctx, vqj_weights_read(w, names[i], buf, counts[i]));
    static float zz[10 * 12], qq[10 * 12];
    test_fill(zz, 10 * 12, 41, 1.0f);
    zt = tensor(ctx, 10, 12, zz);
    qt = tensor(ctx, 0, 0, NULL);
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, codes, NULL));
    assert_int_equal(vqj_tensor_rows(qt), 10);
    assert_int_equal(vqj_tensor_cols(qt), 12);
    assert_ok(ctx, vqj_tensor_read(qt, qq, 10 * 12));
    for (int i = 0; i < 10 * 12; i++)
        assert_true(isfinite(qq[i]));
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);

    /* Bad combinations get a clear error. */
    vqj_codebook_params b = params(4, 3, 0.0f);
    b.quantizer = VQJ_QUANTIZER_COSINE;
    vqj_codebook *x = NULL;
    assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "ema_decay"));
    b = params(4, 3, 0.9f);
    b.quantizer = (vqj_quantizer)7;
    assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "quantizer"));
    b = params(4, 3, 0.9f);
    b.code_dim = -1;
    assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "code_dim"));
    vqj_context_destroy(ctx);
}

/* Checkpoints: a cosine codebook with a code_dim round-trips (same codes
 * and outputs after loading into a codebook of another seed); the
 * Euclidean codebook of a 0.1.0 checkpoint still loads; a file without the
 * projections is refused by a codebook that has them, naming the tensor. */
/* Train a codebook of `p` three steps in ctx, save it, load it into a fresh
 * one in ctx2 (another seed): the same q and codes. Returns the first
 * codebook, for the caller to destroy. */
static vqj_codebook *round_trip(vqj_context *ctx, vqj_context *ctx2, const char *path,
                                const vqj_codebook_params *p)
{
    vqj_codebook *a = make(ctx, p), *b = make(ctx2, p);
    static float z[20 * 6], qa[20 * 6], qb[20 * 6];
    test_fill(z, 20 * 6, 51, 1.0f);
    vqj_tensor *zt = tensor(ctx, 20, 6, z), *qt = tensor(ctx, 0, 0, NULL);
    for (int t = 0; t < 3; t++)
        assert_ok(ctx, vqj_codebook_forward(a, zt, 1, qt, NULL, NULL));
    int32_t ca[20], cb2[20];
    assert_ok(ctx, vqj_codebook_forward(a, zt, 0, qt, ca, NULL));
    assert_ok(ctx, vqj_tensor_read(qt, qa, 20 * 6));
    vqj_checkpoint_entry ea = {"", vqj_codebook_weights(a)};
    assert_ok(ctx, vqj_checkpoint_save(ctx, path, &ea, 1, NULL));
    vqj_checkpoint_entry eb = {"", vqj_codebook_weights(b)};
    assert_ok(ctx2, vqj_checkpoint_load(ctx2, path, &eb, 1, 0));
    vqj_tensor *zt2 = tensor(ctx2, 20, 6, z), *qt2 = tensor(ctx2, 0, 0, NULL);
    assert_ok(ctx2, vqj_codebook_forward(b, zt2, 0, qt2, cb2, NULL));
    assert_ok(ctx2, vqj_tensor_read(qt2, qb, 20 * 6));
    assert_memory_equal(ca, cb2, sizeof ca);
    assert_memory_equal(qa, qb, sizeof qa);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_tensor_destroy(zt2);
    vqj_tensor_destroy(qt2);
    vqj_codebook_destroy(b);
    return a;
}

static void test_checkpoint_round_trip(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.seed = 999;
    vqj_context *ctx2 = NULL;
    assert_int_equal(vqj_context_create(&cp, &ctx2), VQJ_OK);
    char path[] = "/tmp/vqj_cb_ckpt_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    /* residual codes: three levels of 8 codes, with a code_dim */
    vqj_codebook_params pr = params(8, 6, 0.9f);
    pr.quantizer = VQJ_QUANTIZER_RESIDUAL;
    pr.num_quantizers = 3;
    pr.code_dim = 3;
    pr.dead_code_threshold = 0.5f;
    vqj_codebook_destroy(round_trip(ctx, ctx2, path, &pr));
    /* grouped codes: two groups of two levels, with a code_dim, k-means++ */
    pr.num_quantizers = 2;
    pr.num_groups = 2;
    pr.code_dim = 4;
    pr.kmeans_init = 1;
    vqj_codebook_destroy(round_trip(ctx, ctx2, path, &pr));

    vqj_codebook_params p = params(8, 6, 0.9f);
    p.quantizer = VQJ_QUANTIZER_COSINE;
    p.code_dim = 3;
    p.dead_code_threshold = 0.5f;
    vqj_codebook *a = round_trip(ctx, ctx2, path, &p);
    vqj_checkpoint_entry ea = {"", vqj_codebook_weights(a)};

    /* A Euclidean codebook's file lacks the projections. */
    vqj_codebook_params pe = params(8, 6, 0.9f);
    vqj_codebook *plain = make(ctx, &pe);
    vqj_checkpoint_entry ep = {"", vqj_codebook_weights(plain)};
    assert_ok(ctx, vqj_checkpoint_save(ctx, path, &ep, 1, NULL));
    assert_status(ctx, vqj_checkpoint_load(ctx, path, &ea, 1, 0), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "codebook."));
    unlink(path);

    /* The Euclidean codebook of a 0.1.0 checkpoint (tests/data). */
    if (access("tests/data/codebook-0.1.safetensors", R_OK) == 0) {
        vqj_codebook_params po = params(64, 64, 0.95f);
        vqj_codebook *old = make(ctx, &po);
        vqj_checkpoint_entry eo = {"", vqj_codebook_weights(old)};
        assert_ok(ctx, vqj_checkpoint_load(ctx, "tests/data/codebook-0.1.safetensors", &eo, 1,
                                           VQJ_CHECKPOINT_ALLOW_EXTRA));
        static float zo[5 * 64];
        test_fill(zo, 5 * 64, 52, 1.0f);
        vqj_tensor *zot = tensor(ctx, 5, 64, zo), *qt = tensor(ctx, 0, 0, NULL);
        int32_t co[5];
        assert_ok(ctx, vqj_codebook_forward(old, zot, 0, qt, co, NULL));
        for (int i = 0; i < 5; i++)
            assert_true(co[i] >= 0 && co[i] < 64);
        vqj_tensor_destroy(zot);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(old);
    } else {
        fail_msg("tests/data/codebook-0.1.safetensors not found (run from the repository root)");
    }
    vqj_codebook_destroy(plain);
    vqj_codebook_destroy(a);
    vqj_context_destroy(ctx2);
    vqj_context_destroy(ctx);
}

/* FSQ with levels {8, 5} and identity projections: the bounded, rounded
 * values, the mixed-radix codes (first level least significant) and K = 40
 * by hand; no EMA state, no commitment; bad levels get a clear error. */
static void test_fsq(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_codebook_params p = params(768, 2, 0.9f);
    p.quantizer = VQJ_QUANTIZER_FSQ;
    memset(p.fsq_levels, 0, sizeof p.fsq_levels);
    p.fsq_levels[0] = 8;
    p.fsq_levels[1] = 5;
    vqj_codebook *cb = make(ctx, &p);
    vqj_weights *w = vqj_codebook_weights(cb);
    const float eye[] = {1, 0, 0, 1}, zero[] = {0, 0};
    assert_ok(ctx, vqj_weights_write(w, "codebook.project_in.weight", eye, 4));
    assert_ok(ctx, vqj_weights_write(w, "codebook.project_in.bias", zero, 2));
    assert_ok(ctx, vqj_weights_write(w, "codebook.project_out.weight", eye, 4));
    assert_ok(ctx, vqj_weights_write(w, "codebook.project_out.bias", zero, 2));
    float none[1];
    assert_status(ctx, vqj_weights_read(w, "codebook.embedding", none, 1),
                  VQJ_ERR_INVALID_ARGUMENT); /* FSQ has no codes to store */
    /* L = 8: round(tanh(p + atanh(0.5 / 3.5035)) 3.5035 - 0.5) in -4..3, / 4;
     * L = 5: round(tanh(p) 2.002) in -2..2, / 2. */
    const float z[] = {0, 0, 10, 0.6f, -10, -10, -10, 10};
    vqj_tensor *zt = tensor(ctx, 4, 2, z), *qt = tensor(ctx, 0, 0, NULL);
    int32_t codes[4];
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, codes, &s));
    const int32_t want_codes[] = {4 + 2 * 8, 7 + 3 * 8, 0, 4 * 8};
    assert_memory_equal(codes, want_codes, sizeof codes);
    float q[8];
    assert_ok(ctx, vqj_tensor_read(qt, q, 8));
    const float want_q[] = {0, 0, 0.75f, 0.5f, -1, -1, -1, 1};
    for (int i = 0; i < 8; i++)
        assert_float_equal(q[i], want_q[i], 1e-6);
    assert_float_equal(s.commitment_loss, 0.0f, 0.0f);
    assert_int_equal(s.active_codes, 4);
    assert_float_equal(s.usage_ratio, 4.0f / 40.0f, 1e-7);
    assert_int_equal(s.updates, 0);
    float usage[40];
    assert_status(ctx, vqj_codebook_ema_usage(cb, usage, 40), VQJ_ERR_UNSUPPORTED);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);

    for (int c = 0; c < 5; c++) {
        vqj_codebook_params b = p;
        switch (c) {
        case 0: b.fsq_levels[1] = 1; break;
        case 1: b.fsq_levels[0] = 257; break;
        case 2: b.fsq_levels[0] = 0; break;
        case 3: for (int j = 0; j < VQJ_FSQ_MAX_LEVELS; j++) b.fsq_levels[j] = 5; break;
        case 4: b.dead_code_threshold = 1.0f; break;
        }
        vqj_codebook *x = (vqj_codebook *)&x;
        assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
        assert_null(x);
        const char *name = c == 4 ? "dead_code_threshold" : "fsq_levels";
        if (!strstr(vqj_last_error(), name))
            fail_msg("case %d: \"%s\" does not name %s", c, vqj_last_error(), name);
    }
    vqj_context_destroy(ctx);
}

/* SimVQ: codes C W^T with C fixed; the code term mean (sg(u) - e)^2 trains
 * W: its gradient against central differences of the reported
 * codebook_loss; training forwards leave C and W alone; no EMA state. */
static void test_simvq(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { N = 9, K = 5, D = 4 };
    vqj_codebook_params p = params(K, D, 0.9f);
    p.quantizer = VQJ_QUANTIZER_SIMVQ;
    vqj_codebook *cb = make(ctx, &p);
    vqj_weights *w = vqj_codebook_weights(cb);
    float z[N * D], tw[D * D], basis[K * D];
    test_fill(z, N * D, 61, 1.0f);
    read_w(ctx, cb, "codebook.transform.weight", tw, D * D);
    read_w(ctx, cb, "codebook.basis", basis, K * D);
    vqj_tensor *zt = tensor(ctx, N, D, z), *qt = tensor(ctx, 0, 0, NULL);
    float fd[D * D];
    code_loss_fd(ctx, cb, "codebook.transform.weight", tw, D * D, zt, qt, z, N * D, 1e-3f, fd);
    vqj_weights_zero_grad(w);
    vqj_codebook_stats s = new_stats();
    assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, NULL, &s));
    assert_true(s.codebook_loss > 0.0f);
    assert_float_equal(s.commitment_loss, p.commitment_cost * s.codebook_loss, 1e-6);
    assert_int_equal(s.updates, 0);
    vqj_tensor *dqt = tensor(ctx, N, D, NULL), *dzt = tensor(ctx, N, D, NULL);
    assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
    float g[D * D];
    assert_ok(ctx, vqj_weights_read_grad(w, "codebook.transform.weight", g, D * D));
    double err = test_rel_err(g, fd, D * D, 1e-3);
    if (!(err < 3e-3))
        fail_msg("SimVQ transform gradient: relative error %.2e", err);
    float after[K * D];
    read_w(ctx, cb, "codebook.basis", after, K * D);
    assert_memory_equal(after, basis, sizeof basis);
    float usage[K];
    assert_status(ctx, vqj_codebook_ema_usage(cb, usage, K), VQJ_ERR_UNSUPPORTED);
    vqj_codebook_params b = p;
    b.dead_code_threshold = 1.0f;
    vqj_codebook *x = NULL;
    assert_status(ctx, vqj_codebook_create(ctx, &b, &x), VQJ_ERR_INVALID_ARGUMENT);
    vqj_tensor_destroy(dqt);
    vqj_tensor_destroy(dzt);
    vqj_tensor_destroy(zt);
    vqj_tensor_destroy(qt);
    vqj_codebook_destroy(cb);
    vqj_context_destroy(ctx);
}

/* |got - want| relative to max |want| (floor 1e-3) below 1e-4, by name. */
static void expect_ref(const char *what, const float *got, const float *want, size_t n)
{
    double err = test_rel_err(got, want, n, 1e-3);
    if (!(err < 1e-4))
        fail_msg("%s: relative error %.2e against the PyTorch reference", what, err);
}

/* The quantizers against the PyTorch twin (tools/reference/quant_vectors.py,
 * tests/data/quant.bin): q, the codes, the losses, dz and every gradient. */
static void test_reference_vectors(void **state)
{
    (void)state;
    char err[256];
    vqjt_file *f = vqjt_load("tests/data/quant.bin", err, sizeof err);
    if (!f)
        fail_msg("%s (regenerate with /usr/bin/python3 tools/reference/quant_vectors.py)", err);
    vqj_context *ctx = test_context();
    const char *cases[] = {"cosine", "rotation", "fsq", "simvq", "residual", "grouped"};
    for (int ci = 0; ci < 6; ci++) {
        const char *cs = cases[ci];
        char key[128];
        size_t nz, nq;
        snprintf(key, sizeof key, "%s.z", cs);
        const vqjt_tensor *zt_ref = vqjt_get(f, key);
        assert_non_null(zt_ref);
        const int n = (int)zt_ref->dims[0], d = (int)zt_ref->dims[1];
        const float *z = vqjt_f32(f, key, &nz);
        vqj_codebook_params p = params(9, d, ci == 3 ? 0.0f : 0.9f);
        p.commitment_cost = 0.25f;
        p.code_dim = ci == 2 ? 0 : 4;
        p.quantizer = ci == 0   ? VQJ_QUANTIZER_COSINE
                      : ci == 2 ? VQJ_QUANTIZER_FSQ
                      : ci == 3 ? VQJ_QUANTIZER_SIMVQ
                      : ci >= 4 ? VQJ_QUANTIZER_RESIDUAL
                                : VQJ_QUANTIZER_EUCLIDEAN;
        p.num_quantizers = ci == 5 ? 2 : 3;
        p.num_groups = ci == 5 ? 2 : 1; /* grouped: 2 groups of 2 levels */
        p.gradient_estimator = ci == 1 || ci == 3 ? VQJ_GRADIENT_ROTATION
                                                  : VQJ_GRADIENT_STRAIGHT_THROUGH;
        vqj_codebook *cb = make(ctx, &p);
        vqj_weights *w = vqj_codebook_weights(cb);
        /* Every "<case>.codebook.*" tensor of the file into the codebook. */
        size_t plen = strlen(cs) + 1;
        for (size_t t = 0; t < f->count; t++) {
            const vqjt_tensor *x = &f->tensors[t];
            if (strncmp(x->name, cs, plen - 1) || x->name[plen - 1] != '.' ||
                strncmp(x->name + plen, "codebook.", 9))
                continue;
            assert_ok(ctx, vqj_weights_write(w, x->name + plen, x->data, x->count));
            if (!strcmp(x->name + plen, "codebook.embedding"))
                assert_ok(ctx, vqj_weights_write(w, "codebook.ema_sum", x->data, x->count));
        }
        vqj_tensor *zt = tensor(ctx, n, d, z), *qt = tensor(ctx, 0, 0, NULL);
        int32_t codes[64];
        assert_true(n <= 64);
        vqj_codebook_stats st = new_stats();
        if (ci >= 4) { /* every level's code, through an inference workspace,
                        * before the training forward moves the codes */
            vqji_codebook_ws *ws;
            int32_t levels[64 * 4];
            size_t nl;
            const int nb = ci == 5 ? 4 : 3; /* codes per token */
            assert_int_equal(vqji_codebook_levels(cb), nb);
            assert_ok(ctx, vqji_codebook_ws_create(cb, &ws));
            assert_ok(ctx, vqji_codebook_quantize_ws(cb, ws, zt, qt, NULL, NULL));
            assert_ok(ctx, vqji_codebook_ws_level_codes(ws, n, levels));
            snprintf(key, sizeof key, "%s.level_codes", cs);
            const int32_t *want_levels = vqjt_i32(f, key, &nl);
            assert_int_equal(nl, (size_t)n * nb);
            assert_memory_equal(levels, want_levels, nl * sizeof(int32_t));
            vqji_codebook_ws_destroy(ws);
        }
        vqj_weights_zero_grad(w);
        assert_ok(ctx, vqj_codebook_forward(cb, zt, 1, qt, codes, &st));
        snprintf(key, sizeof key, "%s.codes", cs);
        size_t nc;
        const int32_t *want_codes = vqjt_i32(f, key, &nc);
        assert_int_equal(nc, (size_t)n);
        assert_memory_equal(codes, want_codes, (size_t)n * sizeof(int32_t));
        float *buf = malloc((size_t)n * d * sizeof *buf);
        assert_non_null(buf);
        assert_ok(ctx, vqj_tensor_read(qt, buf, (size_t)n * d));
        snprintf(key, sizeof key, "%s.q", cs);
        expect_ref(key, buf, vqjt_f32(f, key, &nq), (size_t)n * d);
        snprintf(key, sizeof key, "%s.commitment", cs);
        expect_ref(key, &st.commitment_loss, vqjt_f32(f, key, &nq), 1);
        snprintf(key, sizeof key, "%s.codebook_loss", cs);
        expect_ref(key, &st.codebook_loss, vqjt_f32(f, key, &nq), 1);

        snprintf(key, sizeof key, "%s.dq", cs);
        vqj_tensor *dqt = tensor(ctx, n, d, vqjt_f32(f, key, &nq)), *dzt = tensor(ctx, n, d, NULL);
        assert_ok(ctx, vqj_codebook_backward(cb, dqt, dzt));
        assert_ok(ctx, vqj_tensor_read(dzt, buf, (size_t)n * d));
        snprintf(key, sizeof key, "%s.dz", cs);
        expect_ref(key, buf, vqjt_f32(f, key, &nq), (size_t)n * d);
        char gkey[140];
        snprintf(gkey, sizeof gkey, "%s.grad.", cs);
        int grads = 0;
        for (size_t t = 0; t < f->count; t++) {
            const vqjt_tensor *x = &f->tensors[t];
            if (strncmp(x->name, gkey, strlen(gkey)))
                continue;
            float *g = malloc(x->count * sizeof *g);
            assert_non_null(g);
            assert_ok(ctx, vqj_weights_read_grad(w, x->name + strlen(gkey), g, x->count));
            expect_ref(x->name, g, x->data, x->count);
            free(g);
            grads++;
        }
        assert_int_equal(grads, ci == 3 ? 5 : 4);
        free(buf);
        vqj_tensor_destroy(dqt);
        vqj_tensor_destroy(dzt);
        vqj_tensor_destroy(zt);
        vqj_tensor_destroy(qt);
        vqj_codebook_destroy(cb);
    }
    vqj_context_destroy(ctx);
    vqjt_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_create_weights),
        cmocka_unit_test(test_nearest_code),
        cmocka_unit_test(test_nearest_code_random),
        cmocka_unit_test(test_tie_lowest_index),
        cmocka_unit_test(test_backward_dz),
        cmocka_unit_test(test_backward_codes),
        cmocka_unit_test(test_ema_update),
        cmocka_unit_test(test_unused_code_decays),
        cmocka_unit_test(test_refresh),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_kmeans),
        cmocka_unit_test(test_eval_leaves_state),
        cmocka_unit_test(test_empty_batch),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_collapse),
        cmocka_unit_test(test_dead_code),
        cmocka_unit_test(test_dead_code_recovers),
        cmocka_unit_test(test_code_space_gradients),
        cmocka_unit_test(test_cosine_and_code_dim),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_fsq),
        cmocka_unit_test(test_simvq),
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_grouped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
