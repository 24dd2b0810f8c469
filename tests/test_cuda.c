/* The CUDA backend against the CPU backend (docs/perf-cuda.md): every op of
 * the device table on random inputs, then whole training steps, on a CPU
 * context and a CUDA context side by side.
 *
 * Where it runs: in every build. A build without CUDA checks that asking for
 * the CUDA device fails cleanly, then skips the parity tests; a CUDA build on
 * a machine with no GPU checks the "no CUDA device found" error, then skips;
 * with a GPU everything runs (tools/device_check.sh).
 *
 * Tolerances (fp32; "rel" is max|gpu - cpu| / max(max|cpu|, floor)):
 *  - EXACT_TOL 0: pure data movement and integer-valued results (fill,
 *    copies, dropout masks, VQ indices away from ties, VQ counts).
 *  - SAME_TOL 1e-6: ops whose kernels perform the CPU's float operations in
 *    the CPU's order (both built without FMA contraction): bias, activations,
 *    dropout, segment and aggregate means, VQ sums and EMA codes, Adam/AdamW,
 *    EMA blend. Expected bit-identical; the margin covers libm-vs-CUDA
 *    special functions (expf, tanhf: a few ulp).
 *  - RED_TOL 1e-5: ops with float dot products or row reductions summed in
 *    another order (warp trees vs the CPU's 8 lanes): layer norm, L2 norm,
 *    attention, aggregators, GRU, VQ distances. Each output is a sum of at
 *    most a few hundred O(1) terms: a few hundred ulp at worst, ~1e-6
 *    observed scale (cuda/emu/ runs this file on the CPU: docs/perf-cuda.md).
 *  - GEMM_TOL 2e-5: cuBLAS vs OpenBLAS sgemm, fp32 (no TF32), k <= 1152.
 *  - DOUBLE_TOL 1e-6: the losses and reductions that accumulate in double on
 *    both sides and round once to float.
 *  - A few stated exceptions below: 3e-5 for the layer norm of rows far from
 *    zero mean, 1e-4 for float column sums over hundreds of rows.
 *  - Full training step: gradients after one micro-batch within 2e-3 of the
 *    largest gradient of each tensor (2e-2 for tensors of under 8 values,
 *    the temperature's cancelling sum; rounding differences pass through the
 *    whole network and its backward pass; a wrong kernel gives O(1)); losses
 *    within 1e-4 relative; parameters after optimizer steps within
 *    2 lr per step (Adam normalizes the gradient, so a near-zero gradient
 *    whose sign differs moves a weight by up to 2 lr).
 *
 * With VQJ_CUDA_BENCH=1 in the environment (and a GPU) two more entries
 * time the ops at the reference configuration's shapes and whole training
 * steps (tools/device_check.sh prints their tables; docs/perf-cuda.md). */
#include "testutil.h"

#include "core/core.h"
#include "device/device.h"

#include <time.h>

#define EXACT_TOL 0.0
#define SAME_TOL 1e-6
#define RED_TOL 1e-5
#define GEMM_TOL 2e-5
#define DOUBLE_TOL 1e-6

/* ---- The two devices, made once ---- */

static struct {
    vqj_context *cpu_ctx, *gpu_ctx;
    vqji_device *cpu, *gpu;
    char why[VQJI_ERROR_MAX + 64]; /* why the parity tests skip */
} env;

static vqj_context *make_context(vqj_device_kind kind, vqj_status *st)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.device = kind;
    p.num_threads = 1;
    p.seed = 42;
    vqj_context *ctx = NULL;
    *st = vqj_context_create(&p, &ctx);
    return ctx;
}

static int group_setup(void **state)
{
    (void)state;
    vqj_status st;
    env.cpu_ctx = make_context(VQJ_DEVICE_CPU, &st);
    if (!env.cpu_ctx)
        return -1;
    env.cpu = env.cpu_ctx->device;
    if (!vqj_device_compiled(VQJ_DEVICE_CUDA)) {
        snprintf(env.why, sizeof env.why, "this build has no CUDA backend (make CUDA=1)");
        return 0;
    }
    env.gpu_ctx = make_context(VQJ_DEVICE_CUDA, &st);
    if (!env.gpu_ctx) {
        snprintf(env.why, sizeof env.why, "no usable GPU: %s", vqj_last_error());
        return 0;
    }
    env.gpu = env.gpu_ctx->device;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    vqj_context_destroy(env.gpu_ctx);
    vqj_context_destroy(env.cpu_ctx);
    return 0;
}

#define NEED_GPU()                                                                             \
    do {                                                                                       \
        if (!env.gpu) {                                                                        \
            print_message("skipped: %s\n", env.why);                                           \
            skip();                                                                            \
        }                                                                                      \
    } while (0)

/* ---- Per-test memory: host blocks and device blocks, freed after each ---- */

#define ARENA_MAX 256
static void *host_blocks[ARENA_MAX], *dev_blocks[ARENA_MAX];
static int n_host, n_dev;

static int test_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < n_host; i++)
        free(host_blocks[i]);
    if (env.gpu) {
        env.gpu->ops->sync(env.gpu);
        for (int i = 0; i < n_dev; i++)
            env.gpu->ops->free(env.gpu, dev_blocks[i]);
    }
    n_host = n_dev = 0;
    return 0;
}

static void *hmem(size_t bytes)
{
    assert_true(n_host < ARENA_MAX);
    void *p = calloc(bytes ? bytes : 1, 1);
    assert_non_null(p);
    host_blocks[n_host++] = p;
    return p;
}

static float *hfloats(size_t n) { return hmem(n * sizeof(float)); }

static float *hrand(size_t n, uint32_t seed, float scale)
{
    float *x = hfloats(n);
    test_fill(x, n, seed, scale);
    return x;
}

static float *hcopy(const float *x, size_t n)
{
    float *y = hfloats(n);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void gpu_ok(vqj_status st, const char *what)
{
    if (st != VQJ_OK)
        fail_msg("%s: %s (%s)", what, vqj_status_string(st),
                 vqj_last_error());
}

static void *dmem(size_t bytes)
{
    assert_true(n_dev < ARENA_MAX);
    void *p = NULL;
    gpu_ok(env.gpu->ops->alloc(env.gpu, bytes, &p), "alloc");
    assert_non_null(p);
    dev_blocks[n_dev++] = p;
    return p;
}

/* A device copy of host memory. */
static void *dup_to_gpu(const void *host, size_t bytes)
{
    void *d = dmem(bytes);
    gpu_ok(env.gpu->ops->upload(env.gpu, d, host, bytes), "upload");
    return d;
}

static float *dfloats(const float *host, size_t n)
{
    return dup_to_gpu(host, n * sizeof(float));
}

/* A device buffer of n floats poisoned with NaN: an element the op fails to
 * write shows up in the comparison. */
static float *dpoison(size_t n)
{
    float *d = dmem(n * sizeof(float));
    env.gpu->ops->fill(env.gpu, n, NAN, d);
    return d;
}

/* The device buffer's contents after a sync (which must succeed). */
static void *from_gpu(const void *d, size_t bytes)
{
    gpu_ok(env.gpu->ops->sync(env.gpu), "sync");
    void *h = hmem(bytes);
    gpu_ok(env.gpu->ops->download(env.gpu, h, d, bytes), "download");
    return h;
}

static float *dget(const float *d, size_t n) { return from_gpu(d, n * sizeof(float)); }

/* Compare and print one line per output (the device check's log reads them). */
static void expect_close(const char *what, const float *gpu, const float *cpu, size_t n,
                         double tol)
{
    double e = test_rel_err(gpu, cpu, n, 1e-6);
    print_message("  %-44s n %-8zu rel err %.2e (tol %.0e)\n", what, n, e, tol);
    if (!(e <= tol)) {
        size_t worst = 0;
        double wd = -1.0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)gpu[i] - (double)cpu[i]);
            if (isnan(d))
                d = INFINITY;
            if (d > wd) {
                wd = d;
                worst = i;
            }
        }
        fail_msg("%s: rel err %.3e > %.0e; worst at %zu: gpu %.9g cpu %.9g", what, e, tol,
                 worst, (double)gpu[worst], (double)cpu[worst]);
    }
}

static void expect_scalar(const char *what, double gpu, double cpu, double tol)
{
    double scale = fabs(cpu) > 1e-30 ? fabs(cpu) : 1e-30;
    double e = fabs(gpu - cpu) / scale;
    print_message("  %-44s gpu %.9g cpu %.9g rel err %.2e (tol %.0e)\n", what, gpu, cpu, e,
                  tol);
    if (!(e <= tol))
        fail_msg("%s: gpu %.17g cpu %.17g", what, gpu, cpu);
}

#define OPS_CPU env.cpu->ops
#define OPS_GPU env.gpu->ops

/* ---- Availability and errors (run in every build) ---- */

static void test_availability(void **state)
{
    (void)state;
    vqj_status st;
    vqj_context *ctx = make_context(VQJ_DEVICE_CUDA, &st);
    if (!vqj_device_compiled(VQJ_DEVICE_CUDA)) {
        assert_null(ctx);
        assert_int_equal(st, VQJ_ERR_UNSUPPORTED);
        assert_non_null(strstr(vqj_last_error(), "no CUDA backend"));
        print_message("  CPU-only build: a CUDA context fails with: %s\n", vqj_last_error());
        return;
    }
    if (!ctx) {
        /* A CUDA build on a machine without a usable GPU: a clear error. */
        assert_true(st == VQJ_ERR_UNSUPPORTED || st == VQJ_ERR_DEVICE);
        assert_true(strlen(vqj_last_error()) > 0);
        print_message("  CUDA build, no GPU: a CUDA context fails with: %s\n", vqj_last_error());
        /* The CPU still works in this build. */
        assert_non_null(env.cpu_ctx);
        return;
    }
    assert_int_equal(vqj_context_device(ctx), VQJ_DEVICE_CUDA);
    assert_string_equal(ctx->device->ops->name, "cuda");
    vqj_context_destroy(ctx);
    /* A device index past the last GPU is an argument error. */
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.device = VQJ_DEVICE_CUDA;
    p.device_index = 4096;
    ctx = NULL;
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
}

/* Every slot of the table is filled: an op added to device.h's op list
 * without a CUDA kernel fails here. */
static void test_every_slot(void **state)
{
    (void)state;
    NEED_GPU();
    const char *missing = vqji_device_ops_missing(env.gpu->ops);
    if (missing)
        fail_msg("the CUDA op table has no %s", missing);
    print_message("  %d slots filled\n", VQJI_DEVICE_NUM_OPS);
}

/* A cuBLAS failure is recorded, reported by the next sync with a message,
 * and cleared. */
static void test_error_reporting(void **state)
{
    (void)state;
    NEED_GPU();
    float *a = dpoison(64), *c = dpoison(64);
    /* Row-major A 4 x 8 with lda 2 < k: cuBLAS rejects the stride. */
    OPS_GPU->gemm(env.gpu, false, false, 4, 4, 8, 1.0f, a, 2, a, 8, 0.0f, c, 4);
    vqj_status st = OPS_GPU->sync(env.gpu);
    assert_int_equal(st, VQJ_ERR_DEVICE);
    print_message("  reported: %s\n", vqj_last_error());
    assert_non_null(strstr(vqj_last_error(), "cublasSgemm"));
    assert_int_equal(OPS_GPU->sync(env.gpu), VQJ_OK);
    /* An impossible allocation fails with a message, not an abort. */
    void *p = NULL;
    assert_int_equal(OPS_GPU->alloc(env.gpu, (size_t)1 << 60, &p), VQJ_ERR_OUT_OF_MEMORY);
    print_message("  reported: %s\n", vqj_last_error());
    assert_int_equal(OPS_GPU->sync(env.gpu), VQJ_OK);
}

/* ---- Memory and basic ops ---- */

static void test_memory(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 100003;
    float *x = hrand(n, 1, 1.0f);
    float *d = dfloats(x, n);
    expect_close("upload/download", dget(d, n), x, n, EXACT_TOL);
    /* copy, and memmove semantics in both directions */
    float *e = dpoison(n);
    OPS_GPU->copy(env.gpu, e, d, n * sizeof(float));
    expect_close("copy", dget(e, n), x, n, EXACT_TOL);
    float *h = hcopy(x, n);
    memmove(h + 1000, h, (n - 1000) * sizeof(float));
    OPS_GPU->copy(env.gpu, e + 1000, e, (n - 1000) * sizeof(float));
    expect_close("copy (overlap, forward)", dget(e, n), h, n, EXACT_TOL);
    memmove(h, h + 7, (n - 7) * sizeof(float));
    OPS_GPU->copy(env.gpu, e, e + 7, (n - 7) * sizeof(float));
    expect_close("copy (overlap, backward)", dget(e, n), h, n, EXACT_TOL);
    /* zero-byte allocation gives a usable pointer */
    void *z = NULL;
    gpu_ok(OPS_GPU->alloc(env.gpu, 0, &z), "alloc(0)");
    assert_non_null(z);
    OPS_GPU->free(env.gpu, z);
    OPS_GPU->free(env.gpu, NULL);
}

static void test_elementwise(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 300007;
    float *x = hrand(n, 2, 3.0f), *y = hrand(n, 3, 2.0f);
    float *dx = dfloats(x, n), *dy = dfloats(y, n);
    float *f = dpoison(n);
    OPS_GPU->fill(env.gpu, n, 0.25f, f);
    float *fr = hfloats(n);
    OPS_CPU->fill(env.cpu, n, 0.25f, fr);
    expect_close("fill", dget(f, n), fr, n, EXACT_TOL);
    OPS_GPU->scale(env.gpu, n, -1.7f, dx);
    OPS_CPU->scale(env.cpu, n, -1.7f, x);
    expect_close("scale", dget(dx, n), x, n, SAME_TOL);
    OPS_GPU->axpy(env.gpu, n, 0.3f, dx, dy);
    OPS_CPU->axpy(env.cpu, n, 0.3f, x, y);
    expect_close("axpy", dget(dy, n), y, n, SAME_TOL);
}

static void test_reductions(void **state)
{
    (void)state;
    NEED_GPU();
    size_t sizes[] = {1, 31, 1000, 1234567};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        float *x = hrand(n, 10 + (uint32_t)s, 1.0f), *y = hrand(n, 20 + (uint32_t)s, 1.0f);
        float *dx = dfloats(x, n), *dy = dfloats(y, n);
        char name[64];
        snprintf(name, sizeof name, "sum (n %zu)", n);
        expect_scalar(name, OPS_GPU->sum(env.gpu, n, dx), OPS_CPU->sum(env.cpu, n, x),
                      DOUBLE_TOL);
        snprintf(name, sizeof name, "dot (n %zu)", n);
        expect_scalar(name, OPS_GPU->dot(env.gpu, n, dx, dy), OPS_CPU->dot(env.cpu, n, x, y),
                      DOUBLE_TOL);
        snprintf(name, sizeof name, "sum_squares (n %zu)", n);
        expect_scalar(name, OPS_GPU->sum_squares(env.gpu, n, dx),
                      OPS_CPU->sum_squares(env.cpu, n, x), 1e-11);
        /* repeatable bit for bit */
        assert_true(OPS_GPU->sum_squares(env.gpu, n, dx) ==
                    OPS_GPU->sum_squares(env.gpu, n, dx));
        assert_true(OPS_GPU->all_finite(env.gpu, n, dx));
    }
    size_t n = 100000;
    float *x = hrand(n, 5, 1.0f);
    x[n - 1] = INFINITY;
    float *dx = dfloats(x, n);
    assert_false(OPS_GPU->all_finite(env.gpu, n, dx));
    assert_true(OPS_GPU->all_finite(env.gpu, n - 1, dx));
    assert_false(isfinite(OPS_GPU->sum_squares(env.gpu, n, dx)));
    x[3] = NAN;
    dx = dfloats(x, n);
    assert_false(OPS_GPU->all_finite(env.gpu, 10, dx));
    assert_true(OPS_GPU->sum(env.gpu, 0, dx) == 0.0f);
    assert_true(OPS_GPU->all_finite(env.gpu, 0, dx));
}

/* ---- GEMM ---- */

static void gemm_case(bool ta, bool tb, int m, int n, int k, float alpha, float beta, int pad)
{
    /* Stored shapes: A is m x k (k x m when transposed), B k x n (n x k);
     * row strides padded by `pad` columns to test lda/ldb/ldc. */
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
    size_t sa = (size_t)ar * lda, sb = (size_t)br * ldb, sc = (size_t)m * ldc;
    float *a = hrand(sa ? sa : 1, 100 + (uint32_t)m, 1.0f);
    float *b = hrand(sb ? sb : 1, 200 + (uint32_t)n, 1.0f);
    float *c = hrand(sc, 300 + (uint32_t)k, 1.0f);
    float *da = dfloats(a, sa ? sa : 1), *db = dfloats(b, sb ? sb : 1), *dc = dfloats(c, sc);
    OPS_GPU->gemm(env.gpu, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    OPS_CPU->gemm(env.cpu, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    char name[96];
    snprintf(name, sizeof name, "gemm %c%c %dx%dx%d a %.1f b %.1f", ta ? 'T' : 'N',
             tb ? 'T' : 'N', m, n, k, (double)alpha, (double)beta);
    expect_close(name, dget(dc, sc), c, sc, GEMM_TOL);
}

static void test_gemm(void **state)
{
    (void)state;
    NEED_GPU();
    for (int t = 0; t < 4; t++) {
        gemm_case(t & 1, t & 2, 67, 129, 384, 1.0f, 0.0f, 0);
        gemm_case(t & 1, t & 2, 33, 17, 250, -2.0f, 1.0f, 3);
    }
    /* The shapes of the model: linear forward, backward, InfoNCE scores. */
    gemm_case(false, true, 1000, 384, 384, 1.0f, 0.0f, 0);
    gemm_case(false, false, 1000, 384, 1152, 1.0f, 1.0f, 0);
    gemm_case(true, false, 384, 384, 1000, 1.0f, 1.0f, 0);
    gemm_case(false, true, 64, 512, 256, 1.0f, 0.0f, 0);
    /* k = 0 scales C by beta (beta = 0 clears it). */
    gemm_case(false, false, 5, 7, 0, 1.0f, 0.5f, 1);
    gemm_case(false, false, 5, 7, 0, 1.0f, 0.0f, 0);
}

/* ---- Layers ---- */

static void test_bias(void **state)
{
    (void)state;
    NEED_GPU();
    int shapes[][2] = {{1000, 96}, {3000, 1600}, {1, 5}};
    for (int s = 0; s < 3; s++) {
        int n = shapes[s][0], c = shapes[s][1];
        size_t nc = (size_t)n * c;
        float *y = hrand(nc, 1, 1.0f), *b = hrand((size_t)c, 2, 1.0f);
        float *dy = dfloats(y, nc), *db = dfloats(b, (size_t)c);
        OPS_GPU->bias_forward(env.gpu, n, c, db, dy);
        OPS_CPU->bias_forward(env.cpu, n, c, b, y);
        expect_close("bias_forward", dget(dy, nc), y, nc, SAME_TOL);
        float *g = hrand((size_t)c, 3, 1.0f);
        float *dg = dfloats(g, (size_t)c);
        OPS_GPU->bias_backward(env.gpu, n, c, dy, dg);
        OPS_CPU->bias_backward(env.cpu, n, c, y, g);
        expect_close("bias_backward (accumulated)", dget(dg, (size_t)c), g, (size_t)c, RED_TOL);
    }
}

static void test_activations(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 200003;
    float *x = hrand(n, 7, 6.0f);
    x[0] = 0.0f;
    x[1] = -20.0f;
    x[2] = 20.0f;
    float *dxv = dfloats(x, n);
    float *dyv = hrand(n, 8, 1.0f), *ddy = dfloats(dyv, n);
    struct {
        const char *name;
        void (*fwd)(vqji_device *, size_t, const float *, float *);
        void (*bwd)(vqji_device *, size_t, const float *, const float *, float *);
        void (*fwd_c)(vqji_device *, size_t, const float *, float *);
        void (*bwd_c)(vqji_device *, size_t, const float *, const float *, float *);
        int bwd_uses_y;
        double tol;
    } acts[] = {
        {"gelu", OPS_GPU->gelu_forward, OPS_GPU->gelu_backward, OPS_CPU->gelu_forward,
         OPS_CPU->gelu_backward, 0, SAME_TOL},
        {"relu", OPS_GPU->relu_forward, OPS_GPU->relu_backward, OPS_CPU->relu_forward,
         OPS_CPU->relu_backward, 0, EXACT_TOL},
        {"tanh", OPS_GPU->tanh_forward, OPS_GPU->tanh_backward, OPS_CPU->tanh_forward,
         OPS_CPU->tanh_backward, 1, SAME_TOL},
    };
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
        char name[64];
        float *y = hfloats(n), *dy = dpoison(n);
        acts[a].fwd(env.gpu, n, dxv, dy);
        acts[a].fwd_c(env.cpu, n, x, y);
        snprintf(name, sizeof name, "%s_forward", acts[a].name);
        expect_close(name, dget(dy, n), y, n, acts[a].tol);
        /* in place */
        float *ip = dfloats(x, n);
        acts[a].fwd(env.gpu, n, ip, ip);
        snprintf(name, sizeof name, "%s_forward (in place)", acts[a].name);
        expect_close(name, dget(ip, n), y, n, acts[a].tol);
        /* backward accumulates onto a random gradient */
        float *g = hrand(n, 9, 1.0f), *dg = dfloats(g, n);
        const float *in_c = acts[a].bwd_uses_y ? y : x;
        const float *in_g = acts[a].bwd_uses_y ? dfloats(y, n) : dxv;
        acts[a].bwd(env.gpu, n, in_g, ddy, dg);
        acts[a].bwd_c(env.cpu, n, in_c, dyv, g);
        snprintf(name, sizeof name, "%s_backward (accumulated)", acts[a].name);
        expect_close(name, dget(dg, n), g, n, acts[a].tol);
    }
}

static void test_layernorm(void **state)
{
    (void)state;
    NEED_GPU();
    int shapes[][2] = {{777, 384}, {100, 37}, {3, 1}};
    for (int s = 0; s < 3; s++) {
        int n = shapes[s][0], c = shapes[s][1];
        size_t nc = (size_t)n * c;
        float *x = hrand(nc, 11, 2.0f);
        for (int r = 0; r < n; r++) /* rows far from zero mean */
            for (int j = 0; j < c; j++)
                x[(size_t)r * c + j] += (float)(r % 7) * 10.0f;
        float *gamma = hrand((size_t)c, 12, 1.5f), *beta = hrand((size_t)c, 13, 1.0f);
        float *y = hfloats(nc), *mean = hfloats((size_t)n), *rstd = hfloats((size_t)n);
        float *dx_ = dfloats(x, nc), *dgam = dfloats(gamma, (size_t)c),
              *dbet = dfloats(beta, (size_t)c);
        float *gy = dpoison(nc), *gm = dpoison((size_t)n), *gr = dpoison((size_t)n);
        OPS_GPU->layernorm_forward(env.gpu, n, c, dx_, dgam, dbet, 1e-5f, gy, gm, gr);
        OPS_CPU->layernorm_forward(env.cpu, n, c, x, gamma, beta, 1e-5f, y, mean, rstd);
        /* Rows whose mean is up to 35 standard deviations from 0: the
         * mean's float rounding (different sum orders) is amplified by
         * rstd, hence 3e-5 rather than RED_TOL for y. */
        expect_close("layernorm_forward y", dget(gy, nc), y, nc, 3e-5);
        expect_close("layernorm_forward mean", dget(gm, (size_t)n), mean, (size_t)n, RED_TOL);
        expect_close("layernorm_forward rstd", dget(gr, (size_t)n), rstd, (size_t)n, RED_TOL);
        /* backward from the CPU's saved statistics on both sides */
        float *dyv = hrand(nc, 14, 1.0f);
        float *gx = hrand(nc, 15, 1.0f), *gg = hrand((size_t)c, 16, 1.0f),
              *gb = hrand((size_t)c, 17, 1.0f);
        float *d_gx = dfloats(gx, nc), *d_gg = dfloats(gg, (size_t)c),
              *d_gb = dfloats(gb, (size_t)c);
        OPS_GPU->layernorm_backward(env.gpu, n, c, dfloats(dyv, nc), dx_, dgam,
                                    dfloats(mean, (size_t)n), dfloats(rstd, (size_t)n), d_gx,
                                    d_gg, d_gb);
        OPS_CPU->layernorm_backward(env.cpu, n, c, dyv, x, gamma, mean, rstd, gx, gg, gb);
        expect_close("layernorm_backward dx", dget(d_gx, nc), gx, nc, RED_TOL);
        expect_close("layernorm_backward dgamma", dget(d_gg, (size_t)c), gg, (size_t)c, 1e-4);
        expect_close("layernorm_backward dbeta", dget(d_gb, (size_t)c), gb, (size_t)c, 1e-4);
    }
}

static void test_dropout(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 123457;
    float *x = hrand(n, 21, 1.0f), *dxv = dfloats(x, n);
    float ps[] = {0.0f, 0.1f, 0.5f, 1.0f};
    for (int k = 0; k < 4; k++) {
        uint64_t seed = 0x1234567890abcdefull + (uint64_t)k;
        float *y = hfloats(n), *m = hfloats(n);
        float *gy = dpoison(n), *gm = dpoison(n);
        OPS_GPU->dropout_forward(env.gpu, n, ps[k], seed, dxv, gy, gm);
        OPS_CPU->dropout_forward(env.cpu, n, ps[k], seed, x, y, m);
        char name[64];
        snprintf(name, sizeof name, "dropout_forward mask (p %.1f)", (double)ps[k]);
        expect_close(name, dget(gm, n), m, n, EXACT_TOL);
        snprintf(name, sizeof name, "dropout_forward y (p %.1f)", (double)ps[k]);
        expect_close(name, dget(gy, n), y, n, EXACT_TOL);
        float *g = hrand(n, 22, 1.0f), *dg = dfloats(g, n), *dyv = hrand(n, 23, 1.0f);
        OPS_GPU->dropout_backward(env.gpu, n, gm, dfloats(dyv, n), dg);
        OPS_CPU->dropout_backward(env.cpu, n, m, dyv, g);
        snprintf(name, sizeof name, "dropout_backward (p %.1f)", (double)ps[k]);
        expect_close(name, dget(dg, n), g, n, SAME_TOL);
    }
    /* in place, as the encoder calls it */
    float *y = hcopy(x, n), *m = hfloats(n);
    float *ip = dfloats(x, n), *gm = dpoison(n);
    OPS_GPU->dropout_forward(env.gpu, n, 0.1f, 99, ip, ip, gm);
    OPS_CPU->dropout_forward(env.cpu, n, 0.1f, 99, y, y, m);
    expect_close("dropout_forward (in place)", dget(ip, n), y, n, EXACT_TOL);
}

/* ---- Packed grids: offsets and adjacency on both sides ---- */

typedef struct packed {
    int grids, tokens, max_n;
    int32_t *offsets;
    uint8_t *adj;
    int64_t *adj_offsets;
    /* device copies */
    int32_t *d_offsets;
    uint8_t *d_adj;
    int64_t *d_adj_offsets;
} packed;

static packed make_packed(const int *sizes, int grids, uint32_t seed)
{
    packed p = {0};
    p.grids = grids;
    p.offsets = hmem((size_t)(grids + 1) * sizeof(int32_t));
    p.adj_offsets = hmem((size_t)(grids + 1) * sizeof(int64_t));
    for (int g = 0; g < grids; g++) {
        p.offsets[g + 1] = p.offsets[g] + sizes[g];
        p.adj_offsets[g + 1] = p.adj_offsets[g] + (int64_t)sizes[g] * sizes[g];
        if (sizes[g] > p.max_n)
            p.max_n = sizes[g];
    }
    p.tokens = p.offsets[grids];
    size_t bytes = (size_t)p.adj_offsets[grids];
    p.adj = hmem(bytes ? bytes : 1);
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < bytes; i++) {
        s = s * 1664525u + 1013904223u;
        p.adj[i] = (s >> 24) < 100 ? 1 : 0; /* ~40% adjacent, not symmetric */
    }
    p.d_offsets = dup_to_gpu(p.offsets, (size_t)(grids + 1) * sizeof(int32_t));
    p.d_adj_offsets = dup_to_gpu(p.adj_offsets, (size_t)(grids + 1) * sizeof(int64_t));
    p.d_adj = dup_to_gpu(p.adj, bytes ? bytes : 1);
    return p;
}

static void attention_case(const int *sizes, int grids, int d, int heads)
{
    packed p = make_packed(sizes, grids, (uint32_t)(d + heads));
    size_t n = (size_t)p.tokens, nq = n * 3 * (size_t)d, no = n * (size_t)d;
    size_t np = (size_t)heads * (size_t)p.adj_offsets[grids];
    float *qkv = hrand(nq, 31, 1.5f), *dq = dfloats(qkv, nq);
    float *out = hfloats(no), *probs = hfloats(np ? np : 1);
    float *gout = dpoison(no), *gprobs = dpoison(np ? np : 1);
    OPS_GPU->attention_forward(env.gpu, grids, p.d_offsets, p.d_adj, p.d_adj_offsets, d, heads,
                               dq, gout, gprobs);
    OPS_CPU->attention_forward(env.cpu, grids, p.offsets, p.adj, p.adj_offsets, d, heads, qkv,
                               out, probs);
    char name[96];
    snprintf(name, sizeof name, "attention_forward out (d %d, %d heads)", d, heads);
    expect_close(name, dget(gout, no), out, no, RED_TOL);
    snprintf(name, sizeof name, "attention_forward probs (d %d, %d heads)", d, heads);
    expect_close(name, dget(gprobs, np), probs, np, RED_TOL);
    float *dout = hrand(no, 32, 1.0f), *g = hrand(nq, 33, 1.0f), *dg = dfloats(g, nq);
    OPS_GPU->attention_backward(env.gpu, grids, p.d_offsets, p.d_adj, p.d_adj_offsets, d, heads,
                                dq, dfloats(probs, np ? np : 1), dfloats(dout, no), dg);
    OPS_CPU->attention_backward(env.cpu, grids, p.offsets, p.adj, p.adj_offsets, d, heads, qkv,
                                probs, dout, g);
    snprintf(name, sizeof name, "attention_backward dqkv (d %d, %d heads)", d, heads);
    expect_close(name, dget(dg, nq), g, nq, RED_TOL);
}

static void test_attention(void **state)
{
    (void)state;
    NEED_GPU();
    int small[] = {3, 0, 1, 7, 16, 5, 33, 2, 0, 64, 9};
    attention_case(small, 11, 64, 4);  /* dh 16 */
    attention_case(small, 11, 96, 2);  /* dh 48: more columns than lanes */
    attention_case(small, 11, 384, 8); /* the model's shape */
    int big[] = {300, 4};
    attention_case(big, 2, 32, 2);
    /* many typical grids */
    int many[512];
    for (int g = 0; g < 512; g++)
        many[g] = 1 + (g * 7) % 13;
    attention_case(many, 512, 384, 8);
}

static void test_segment_mean(void **state)
{
    (void)state;
    NEED_GPU();
    int sizes[] = {4, 0, 1, 9, 30, 0, 2};
    packed p = make_packed(sizes, 7, 5);
    int d = 200;
    size_t n = (size_t)p.tokens * d, ng = (size_t)7 * d;
    float *x = hrand(n, 41, 1.0f), *y = hfloats(ng), *gy = dpoison(ng);
    OPS_GPU->segment_mean_forward(env.gpu, 7, p.d_offsets, d, dfloats(x, n), gy);
    OPS_CPU->segment_mean_forward(env.cpu, 7, p.offsets, d, x, y);
    expect_close("segment_mean_forward", dget(gy, ng), y, ng, SAME_TOL);
    float *dyv = hrand(ng, 42, 1.0f), *g = hrand(n, 43, 1.0f), *dg = dfloats(g, n);
    OPS_GPU->segment_mean_backward(env.gpu, 7, p.d_offsets, d, dfloats(dyv, ng), dg);
    OPS_CPU->segment_mean_backward(env.cpu, 7, p.offsets, d, dyv, g);
    expect_close("segment_mean_backward", dget(dg, n), g, n, SAME_TOL);
}

static void test_l2norm(void **state)
{
    (void)state;
    NEED_GPU();
    int n = 513, c = 256;
    size_t nc = (size_t)n * c;
    float *x = hrand(nc, 51, 1.0f);
    memset(x + 5 * c, 0, (size_t)c * sizeof(float)); /* a zero row: the eps branch */
    float *y = hfloats(nc), *norm = hfloats((size_t)n);
    float *gy = dpoison(nc), *gn = dpoison((size_t)n), *dxv = dfloats(x, nc);
    OPS_GPU->l2norm_forward(env.gpu, n, c, dxv, 1e-12f, gy, gn);
    OPS_CPU->l2norm_forward(env.cpu, n, c, x, 1e-12f, y, norm);
    expect_close("l2norm_forward y", dget(gy, nc), y, nc, RED_TOL);
    expect_close("l2norm_forward norm", dget(gn, (size_t)n), norm, (size_t)n, RED_TOL);
    float *dyv = hrand(nc, 52, 1.0f);
    dyv[5 * c] = 1e-13f; /* keep the eps branch's 1/eps gradient finite-sized */
    for (int j = 1; j < c; j++)
        dyv[5 * c + j] = 0.0f;
    float *g = hrand(nc, 53, 1.0f), *dg = dfloats(g, nc);
    OPS_GPU->l2norm_backward(env.gpu, n, c, dxv, dfloats(y, nc), dfloats(norm, (size_t)n),
                             1e-12f, dfloats(dyv, nc), dg);
    OPS_CPU->l2norm_backward(env.cpu, n, c, x, y, norm, 1e-12f, dyv, g);
    expect_close("l2norm_backward", dget(dg, nc), g, nc, RED_TOL);
}

static void test_aggregators(void **state)
{
    (void)state;
    NEED_GPU();
    int batch = 300, t = 3, d = 384;
    size_t nx = (size_t)batch * t * d, ny = (size_t)batch * d, nw = (size_t)batch * t;
    float *x = hrand(nx, 61, 1.0f), *dxv = dfloats(x, nx);
    float *y = hfloats(ny), *gy = dpoison(ny);
    OPS_GPU->aggregate_mean_forward(env.gpu, batch, t, d, dxv, gy);
    OPS_CPU->aggregate_mean_forward(env.cpu, batch, t, d, x, y);
    expect_close("aggregate_mean_forward", dget(gy, ny), y, ny, SAME_TOL);
    float *dyv = hrand(ny, 62, 1.0f), *g = hrand(nx, 63, 1.0f), *dg = dfloats(g, nx);
    float *ddy = dfloats(dyv, ny);
    OPS_GPU->aggregate_mean_backward(env.gpu, batch, t, d, ddy, dg);
    OPS_CPU->aggregate_mean_backward(env.cpu, batch, t, d, dyv, g);
    expect_close("aggregate_mean_backward", dget(dg, nx), g, nx, SAME_TOL);

    float *q = hrand((size_t)d, 64, 3.0f), *dq = dfloats(q, (size_t)d);
    float *w = hfloats(nw), *gw = dpoison(nw);
    gy = dpoison(ny);
    OPS_GPU->aggregate_attention_forward(env.gpu, batch, t, d, dxv, dq, gy, gw);
    OPS_CPU->aggregate_attention_forward(env.cpu, batch, t, d, x, q, y, w);
    expect_close("aggregate_attention_forward y", dget(gy, ny), y, ny, RED_TOL);
    expect_close("aggregate_attention_forward w", dget(gw, nw), w, nw, RED_TOL);
    float *g2 = hrand(nx, 65, 1.0f), *dg2 = dfloats(g2, nx);
    float *gq = hrand((size_t)d, 66, 1.0f), *dgq = dfloats(gq, (size_t)d);
    OPS_GPU->aggregate_attention_backward(env.gpu, batch, t, d, dxv, dq, dfloats(w, nw), ddy, dg2,
                                          dgq);
    OPS_CPU->aggregate_attention_backward(env.cpu, batch, t, d, x, q, w, dyv, g2, gq);
    expect_close("aggregate_attention_backward dx", dget(dg2, nx), g2, nx, RED_TOL);
    expect_close("aggregate_attention_backward dq", dget(dgq, (size_t)d), gq, (size_t)d, 1e-4);
}

static void test_gru(void **state)
{
    (void)state;
    NEED_GPU();
    int batch = 257, d = 96;
    size_t n3 = (size_t)batch * 3 * d, n1 = (size_t)batch * d, n4 = (size_t)batch * 4 * d;
    float *gi = hrand(n3, 71, 2.0f), *gh = hrand(n3, 72, 2.0f), *h = hrand(n1, 73, 1.0f);
    float *hn = hfloats(n1), *gates = hfloats(n4), *ghn = dpoison(n1), *ggates = dpoison(n4);
    float *dh_ = dfloats(h, n1);
    OPS_GPU->gru_cell_forward(env.gpu, batch, d, dfloats(gi, n3), dfloats(gh, n3), dh_, ghn,
                              ggates);
    OPS_CPU->gru_cell_forward(env.cpu, batch, d, gi, gh, h, hn, gates);
    expect_close("gru_cell_forward h_new", dget(ghn, n1), hn, n1, RED_TOL);
    expect_close("gru_cell_forward gates", dget(ggates, n4), gates, n4, RED_TOL);
    float *dhn = hrand(n1, 74, 1.0f);
    float *dgi = hrand(n3, 75, 1.0f), *dgh = hrand(n3, 76, 1.0f), *dh = hrand(n1, 77, 1.0f);
    float *d_dgi = dfloats(dgi, n3), *d_dgh = dfloats(dgh, n3), *d_dh = dfloats(dh, n1);
    OPS_GPU->gru_cell_backward(env.gpu, batch, d, dh_, dfloats(gates, n4), dfloats(dhn, n1),
                               d_dgi, d_dgh, d_dh);
    OPS_CPU->gru_cell_backward(env.cpu, batch, d, h, gates, dhn, dgi, dgh, dh);
    expect_close("gru_cell_backward dgi", dget(d_dgi, n3), dgi, n3, SAME_TOL);
    expect_close("gru_cell_backward dgh", dget(d_dgh, n3), dgh, n3, SAME_TOL);
    expect_close("gru_cell_backward dh", dget(d_dh, n1), dh, n1, SAME_TOL);
}

/* ---- Vector quantization ---- */

/* FSQ: the same t, codes and gradients as the CPU (t and qc within
 * rounding of tanhf; the codes exact away from rounding ties). */
static void test_fsq(void **state)
{
    (void)state;
    NEED_GPU();
    int n = 1001;
    vqji_fsq_levels lv = {.n = 4, .l = {8, 5, 5, 5}};
    size_t nl = (size_t)n * lv.n;
    float *p = hrand(nl, 91, 3.0f), *t = hfloats(nl), *qc = hfloats(nl);
    int32_t *idx = hmem((size_t)n * sizeof(int32_t)), *gidx = dmem((size_t)n * sizeof(int32_t));
    float *gp = dfloats(p, nl), *gt = dpoison(nl), *gq = dpoison(nl);
    OPS_GPU->fsq_forward(env.gpu, n, &lv, gp, gt, gq, gidx);
    OPS_CPU->fsq_forward(env.cpu, n, &lv, p, t, qc, idx);
    expect_close("fsq_forward t", dget(gt, nl), t, nl, RED_TOL);
    expect_close("fsq_forward qc", dget(gq, nl), qc, nl, EXACT_TOL);
    int32_t *hidx = from_gpu(gidx, (size_t)n * sizeof(int32_t));
    assert_memory_equal(hidx, idx, (size_t)n * sizeof(int32_t));
    float *dq = hrand(nl, 92, 1.0f), *dp = hrand(nl, 93, 1.0f), *gdp = dfloats(dp, nl);
    OPS_GPU->fsq_backward(env.gpu, n, &lv, dfloats(t, nl), dfloats(dq, nl), gdp);
    OPS_CPU->fsq_backward(env.cpu, n, &lv, t, dq, dp);
    expect_close("fsq_backward", dget(gdp, nl), dp, nl, RED_TOL);
}

/* The rotation trick's backward, rows 0 and 1 on its straight-through
 * fallbacks (u = 0; q = -u). */
static void test_vq_rotation(void **state)
{
    (void)state;
    NEED_GPU();
    int n = 517, d = 64;
    size_t nd = (size_t)n * d;
    float *u = hrand(nd, 94, 1.0f), *q = hrand(nd, 95, 1.0f), *dq = hrand(nd, 96, 1.0f);
    memset(u, 0, (size_t)d * sizeof(float));
    for (int j = 0; j < d; j++)
        q[d + j] = -2.0f * u[d + j];
    float *du = hrand(nd, 97, 1.0f), *gdu = dfloats(du, nd);
    OPS_GPU->vq_rotation_backward(env.gpu, n, d, dfloats(u, nd), dfloats(q, nd), dfloats(dq, nd),
                                  gdu);
    OPS_CPU->vq_rotation_backward(env.cpu, n, d, u, q, dq, du);
    expect_close("vq_rotation_backward", dget(gdu, nd), du, nd, 1e-4);
}

static void test_vq(void **state)
{
    (void)state;
    NEED_GPU();
    int n = 3001, d = 384, k = 768;
    size_t nd = (size_t)n * d, kd = (size_t)k * d;
    float *z = hrand(nd, 81, 1.0f), *e = hrand(kd, 82, 1.0f);
    /* Exact ties: code 9 duplicates code 5, and rows 0..9 are code 5. */
    memcpy(e + 9 * (size_t)d, e + 5 * (size_t)d, (size_t)d * sizeof(float));
    for (int r = 0; r < 10; r++)
        memcpy(z + (size_t)r * d, e + 5 * (size_t)d, (size_t)d * sizeof(float));
    float *dz = dfloats(z, nd), *de = dfloats(e, kd);
    size_t scratch = (size_t)(n + 1) * k;
    float *hs = hfloats(scratch), *gs = dmem(scratch * sizeof(float));
    int32_t *idx = hmem((size_t)n * sizeof(int32_t)), *gidx = dmem((size_t)n * sizeof(int32_t));
    float *dist = hfloats((size_t)n), *gdist = dpoison((size_t)n);
    OPS_GPU->vq_assign(env.gpu, n, d, k, dz, de, gs, gidx, gdist);
    OPS_CPU->vq_assign(env.cpu, n, d, k, z, e, hs, idx, dist);
    int32_t *hidx = from_gpu(gidx, (size_t)n * sizeof(int32_t));
    float *hdist = dget(gdist, (size_t)n);
    /* Indices agree except at near-ties, where both choices must be within
     * rounding of the CPU's minimum. */
    int differ = 0;
    float zmax = 0.0f;
    for (int i = 0; i < n; i++) {
        float zn = 0.0f;
        for (int j = 0; j < d; j++)
            zn += z[(size_t)i * d + j] * z[(size_t)i * d + j];
        zmax = zn > zmax ? zn : zmax;
    }
    for (int i = 0; i < n; i++) {
        assert_true(hidx[i] >= 0 && hidx[i] < k);
        if (hidx[i] == idx[i])
            continue;
        differ++;
        double a = 0.0, b = 0.0;
        for (int j = 0; j < d; j++) {
            double ta = (double)z[(size_t)i * d + j] - e[(size_t)hidx[i] * d + j];
            double tb = (double)z[(size_t)i * d + j] - e[(size_t)idx[i] * d + j];
            a += ta * ta;
            b += tb * tb;
        }
        if (fabs(a - b) > 1e-5 * zmax)
            fail_msg("vq_assign row %d: gpu code %d (%.9g) cpu code %d (%.9g)", i, hidx[i], a,
                     idx[i], b);
    }
    for (int r = 0; r < 10; r++)
        assert_int_equal(hidx[r], 5); /* the lowest index of an exact tie */
    print_message("  vq_assign: %d of %d indices differ (near-ties)\n", differ, n);
    {
        /* distances against the CPU's, relative to the largest ||z||^2 */
        double worst = 0.0;
        for (int i = 0; i < n; i++)
            if (hidx[i] == idx[i]) {
                double t = fabs((double)hdist[i] - dist[i]) / zmax;
                worst = t > worst ? t : worst;
            }
        print_message("  %-44s n %-8d rel err %.2e (tol %.0e)\n", "vq_assign dist", n, worst,
                      RED_TOL);
        assert_true(worst <= RED_TOL);
    }
    /* The rest from the same indices on both sides (the CPU's). */
    int32_t *cidx = dup_to_gpu(idx, (size_t)n * sizeof(int32_t));
    float *q = hfloats(nd), *err = hfloats((size_t)n), *gq = dpoison(nd),
          *gerr = dpoison((size_t)n);
    OPS_GPU->vq_gather(env.gpu, n, d, dz, de, cidx, gq, gerr);
    OPS_CPU->vq_gather(env.cpu, n, d, z, e, idx, q, err);
    expect_close("vq_gather q", dget(gq, nd), q, nd, EXACT_TOL);
    expect_close("vq_gather err", dget(gerr, (size_t)n), err, (size_t)n, RED_TOL);

    /* Grouped codes' layout: the column block 128..255 of z, packed, and
     * back into the block 256..383 of a copy of z. */
    const int bw = 128;
    float *blk = hfloats((size_t)n * bw), *gblk = dpoison((size_t)n * bw);
    OPS_GPU->vq_copy_block(env.gpu, n, bw, dz + bw, d, gblk, bw);
    OPS_CPU->vq_copy_block(env.cpu, n, bw, z + bw, d, blk, bw);
    expect_close("vq_copy_block packed", dget(gblk, (size_t)n * bw), blk, (size_t)n * bw,
                 EXACT_TOL);
    float *zb = hcopy(z, nd), *gzb = dfloats(z, nd);
    OPS_GPU->vq_copy_block(env.gpu, n, bw, gblk, bw, gzb + 2 * bw, d);
    OPS_CPU->vq_copy_block(env.cpu, n, bw, blk, bw, zb + 2 * bw, d);
    expect_close("vq_copy_block strided", dget(gzb, nd), zb, nd, EXACT_TOL);

    /* Rows pointing outside 0..k-1 are ignored by the accumulation. */
    int32_t *aidx = hmem((size_t)n * sizeof(int32_t));
    memcpy(aidx, idx, (size_t)n * sizeof(int32_t));
    aidx[1] = -1;
    aidx[2] = k;
    int32_t *daidx = dup_to_gpu(aidx, (size_t)n * sizeof(int32_t));
    float *counts = hrand((size_t)k, 83, 2.0f), *sums = hrand(kd, 84, 1.0f);
    float *dcounts = dfloats(counts, (size_t)k), *dsums = dfloats(sums, kd);
    OPS_GPU->vq_accumulate(env.gpu, n, d, k, dz, daidx, dcounts, dsums);
    OPS_CPU->vq_accumulate(env.cpu, n, d, k, z, aidx, counts, sums);
    expect_close("vq_accumulate counts", dget(dcounts, (size_t)k), counts, (size_t)k, EXACT_TOL);
    expect_close("vq_accumulate sums", dget(dsums, kd), sums, kd, SAME_TOL);
    OPS_GPU->vq_accumulate(env.gpu, n, d, k, dz, daidx, NULL, dsums);
    OPS_CPU->vq_accumulate(env.cpu, n, d, k, z, aidx, NULL, sums);
    expect_close("vq_accumulate sums only", dget(dsums, kd), sums, kd, SAME_TOL);

    float *cnt = hrand((size_t)k, 85, 1.0f);
    for (int c = 0; c < k; c++)
        cnt[c] = fabsf(cnt[c]) * 10.0f;
    float total = OPS_CPU->sum(env.cpu, (size_t)k, cnt);
    float *ecpu = hcopy(e, kd), *egpu = dfloats(e, kd);
    OPS_GPU->vq_ema_normalize(env.gpu, k, d, 1e-5f, total, dfloats(cnt, (size_t)k), dsums, egpu);
    OPS_CPU->vq_ema_normalize(env.cpu, k, d, 1e-5f, total, cnt, sums, ecpu);
    expect_close("vq_ema_normalize", dget(egpu, kd), ecpu, kd, SAME_TOL);

    float *mind = hfloats((size_t)n), *gmind;
    for (int i = 0; i < n; i++)
        mind[i] = (i % 3) ? INFINITY : 300.0f;
    gmind = dfloats(mind, (size_t)n);
    OPS_GPU->vq_min_sqdist(env.gpu, n, d, dz, de + 17 * (size_t)d, gmind);
    OPS_CPU->vq_min_sqdist(env.cpu, n, d, z, e + 17 * (size_t)d, mind);
    expect_close("vq_min_sqdist", dget(gmind, (size_t)n), mind, (size_t)n, RED_TOL);
    /* a chosen token's distance to itself is exactly 0 */
    OPS_GPU->vq_min_sqdist(env.gpu, n, d, dz, dz + 42 * (size_t)d, gmind);
    float *hm = dget(gmind, (size_t)n);
    assert_true(hm[42] == 0.0f);
}

/* ---- Optimizer ---- */

static void test_optimizer(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 250001;
    for (int variant = 0; variant < 3; variant++) {
        float *p = hrand(n, 91, 1.0f), *g = hrand(n, 92, 0.1f);
        float *m = hrand(n, 93, 0.01f), *v = hrand(n, 94, 0.001f);
        for (size_t i = 0; i < n; i++)
            v[i] = fabsf(v[i]);
        float *dp = dfloats(p, n), *dg = dfloats(g, n), *dm = dfloats(m, n), *dv = dfloats(v, n);
        bool decoupled = variant == 1;
        float wd = variant == 2 ? 0.0f : 0.01f;
        double bc1 = 1.0 - pow(0.9, 7.0), bc2 = 1.0 - pow(0.999, 7.0);
        OPS_GPU->adam_update(env.gpu, n, dp, dg, dm, dv, 1e-3, 0.9f, 0.999f, 1e-8f, wd,
                             decoupled, bc1, bc2, 0.37f);
        OPS_CPU->adam_update(env.cpu, n, p, g, m, v, 1e-3, 0.9f, 0.999f, 1e-8f, wd, decoupled,
                             bc1, bc2, 0.37f);
        const char *names[] = {"Adam", "AdamW", "Adam (no decay)"};
        char name[64];
        snprintf(name, sizeof name, "adam_update param (%s)", names[variant]);
        expect_close(name, dget(dp, n), p, n, SAME_TOL);
        snprintf(name, sizeof name, "adam_update m (%s)", names[variant]);
        expect_close(name, dget(dm, n), m, n, SAME_TOL);
        snprintf(name, sizeof name, "adam_update v (%s)", names[variant]);
        expect_close(name, dget(dv, n), v, n, SAME_TOL);
    }
    float *on = hrand(n, 95, 1.0f), *tg = hrand(n, 96, 1.0f), *dtg = dfloats(tg, n);
    OPS_GPU->ema_blend(env.gpu, n, 0.99f, dfloats(on, n), dtg);
    OPS_CPU->ema_blend(env.cpu, n, 0.99f, on, tg);
    expect_close("ema_blend", dget(dtg, n), tg, n, SAME_TOL);
}

/* ---- Losses ---- */

static void test_infonce(void **state)
{
    (void)state;
    NEED_GPU();
    int rows = 256, cols = 256 + 2048, ld = cols + 5;
    size_t ns = (size_t)rows * ld;
    float *s = hrand(ns, 101, 1.0f), *ds = dfloats(s, ns);
    float *loss = hfloats((size_t)rows), *dlt = hfloats((size_t)rows);
    float *gl = dpoison((size_t)rows), *gd = dpoison((size_t)rows);
    OPS_GPU->infonce_xent(env.gpu, rows, cols, ld, 1.0f / 0.07f, 0.5f / rows, ds, gl, gd);
    OPS_CPU->infonce_xent(env.cpu, rows, cols, ld, 1.0f / 0.07f, 0.5f / rows, s, loss, dlt);
    expect_close("infonce_xent loss", dget(gl, (size_t)rows), loss, (size_t)rows, DOUBLE_TOL);
    expect_close("infonce_xent dlogtau", dget(gd, (size_t)rows), dlt, (size_t)rows, 1e-5);
    float *hs = dget(ds, ns);
    /* compare the rows' used columns only (the padding is untouched) */
    for (int i = 0; i < rows; i++)
        for (int j = cols; j < ld; j++)
            hs[(size_t)i * ld + j] = s[(size_t)i * ld + j];
    expect_close("infonce_xent gradient", hs, s, ns, DOUBLE_TOL);
}

static void test_sigreg(void **state)
{
    (void)state;
    NEED_GPU();
    int slices = 97, n = 512, points = 17;
    size_t nx = (size_t)slices * n;
    float *x = hrand(nx, 111, 2.0f), *w = hrand((size_t)points, 112, 1.0f);
    for (int k = 0; k < points; k++)
        w[k] = fabsf(w[k]);
    float *stat = hfloats((size_t)slices), *dx = hfloats(nx);
    float *gst = dpoison((size_t)slices), *gdx = dpoison(nx);
    float dt = 3.0f / (float)(points - 1);
    OPS_GPU->sigreg_epps_pulley(env.gpu, slices, n, points, dt, dfloats(w, (size_t)points),
                                0.1f / slices, dfloats(x, nx), gst, gdx);
    OPS_CPU->sigreg_epps_pulley(env.cpu, slices, n, points, dt, w, 0.1f / slices, x, stat, dx);
    expect_close("sigreg_epps_pulley stat", dget(gst, (size_t)slices), stat, (size_t)slices,
                 DOUBLE_TOL);
    expect_close("sigreg_epps_pulley dx", dget(gdx, nx), dx, nx, DOUBLE_TOL);
}

static void test_relational(void **state)
{
    (void)state;
    NEED_GPU();
    int batch = 40, t = 3, m = 16, d = 64;
    int grids = batch * t;
    int *sizes = hmem((size_t)grids * sizeof(int)), *tsizes = hmem((size_t)batch * sizeof(int));
    for (int g = 0; g < grids; g++)
        sizes[g] = (g * 5) % (m + 1);
    for (int b = 0; b < batch; b++)
        tsizes[b] = (b * 3 + 1) % (m + 1);
    packed pc = make_packed(sizes, grids, 7), pt = make_packed(tsizes, batch, 8);
    size_t mm = (size_t)m * m;
    size_t nh = (size_t)pc.tokens * d, nth = (size_t)pt.tokens * d;
    float *h = hrand(nh, 121, 1.0f), *ht = hrand(nth, 122, 1.0f);
    float *dh_ = dfloats(h, nh), *dht = dfloats(ht, nth);
    float *rc = hfloats((size_t)grids * mm), *rt = hfloats((size_t)batch * mm);
    float *grc = dpoison((size_t)grids * mm), *grt = dpoison((size_t)batch * mm);
    OPS_GPU->relational_distances_forward(env.gpu, grids, pc.d_offsets, pc.d_adj,
                                          pc.d_adj_offsets, d, m, dh_, grc);
    OPS_CPU->relational_distances_forward(env.cpu, grids, pc.offsets, pc.adj, pc.adj_offsets, d,
                                          m, h, rc);
    OPS_GPU->relational_distances_forward(env.gpu, batch, pt.d_offsets, pt.d_adj,
                                          pt.d_adj_offsets, d, m, dht, grt);
    OPS_CPU->relational_distances_forward(env.cpu, batch, pt.offsets, pt.adj, pt.adj_offsets, d,
                                          m, ht, rt);
    expect_close("relational_distances_forward (context)", dget(grc, (size_t)grids * mm), rc,
                 (size_t)grids * mm, DOUBLE_TOL);
    expect_close("relational_distances_forward (target)", dget(grt, (size_t)batch * mm), rt,
                 (size_t)batch * mm, DOUBLE_TOL);

    float *loss = hfloats((size_t)batch), *gl = dpoison((size_t)batch);
    float *drc = hfloats((size_t)grids * mm), *drt = hfloats((size_t)batch * mm);
    float *gdrc = dpoison((size_t)grids * mm), *gdrt = dpoison((size_t)batch * mm);
    OPS_GPU->relational_consistency(env.gpu, batch, t, (int)mm, dfloats(rc, (size_t)grids * mm),
                                    dfloats(rt, (size_t)batch * mm), 0.025f, 0.01f,
                                    1.0f / batch, gl, gdrc, gdrt);
    OPS_CPU->relational_consistency(env.cpu, batch, t, (int)mm, rc, rt, 0.025f, 0.01f,
                                    1.0f / batch, loss, drc, drt);
    expect_close("relational_consistency loss", dget(gl, (size_t)batch), loss, (size_t)batch,
                 DOUBLE_TOL);
    expect_close("relational_consistency dr_ctx", dget(gdrc, (size_t)grids * mm), drc,
                 (size_t)grids * mm, DOUBLE_TOL);
    expect_close("relational_consistency dr_tgt", dget(gdrt, (size_t)batch * mm), drt,
                 (size_t)batch * mm, DOUBLE_TOL);

    float *g = hrand(nh, 123, 1.0f), *dg = dfloats(g, nh);
    OPS_GPU->relational_distances_backward(env.gpu, grids, pc.d_offsets, pc.d_adj,
                                           pc.d_adj_offsets, d, m, dh_,
                                           dfloats(drc, (size_t)grids * mm), dg);
    OPS_CPU->relational_distances_backward(env.cpu, grids, pc.offsets, pc.adj, pc.adj_offsets, d,
                                           m, h, drc, g);
    expect_close("relational_distances_backward", dget(dg, nh), g, nh, RED_TOL);
}

/* ---- Linear algebra (diagnostics), when both tables have it ---- */

static void test_linalg(void **state)
{
    (void)state;
    NEED_GPU();
    if (!OPS_CPU->covariance || !OPS_GPU->covariance || !OPS_CPU->sym_eigvals ||
        !OPS_GPU->sym_eigvals) {
        print_message("skipped: no linear-algebra ops in a table\n");
        skip();
    }
    int n = 1000, d = 64;
    size_t nd = (size_t)n * d, dd = (size_t)d * d;
    float *x = hrand(nd, 131, 1.0f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = 5.0f + x[(size_t)i * d + j] * (float)(j + 1) / (float)d;
    double *cen = hmem(nd * sizeof(double)), *cov = hmem(dd * sizeof(double));
    double *gcen = dmem(nd * sizeof(double)), *gcov = dmem(dd * sizeof(double));
    OPS_CPU->covariance(env.cpu, n, d, x, cen, cov);
    OPS_GPU->covariance(env.gpu, n, d, dfloats(x, nd), gcen, gcov);
    double *hcov = from_gpu(gcov, dd * sizeof(double));
    double worst = 0.0, big = 0.0;
    for (size_t i = 0; i < dd; i++) {
        worst = fmax(worst, fabs(hcov[i] - cov[i]));
        big = fmax(big, fabs(cov[i]));
    }
    print_message("  %-44s rel err %.2e (tol 1e-12)\n", "covariance", worst / big);
    assert_true(worst / big <= 1e-12);
    for (int i = 0; i < d; i++) /* exactly symmetric */
        for (int j = 0; j < i; j++)
            assert_true(hcov[(size_t)i * d + j] == hcov[(size_t)j * d + i]);
    double *w = hmem((size_t)d * sizeof(double)), *gw = dmem((size_t)d * sizeof(double));
    double *gcov2 = dup_to_gpu(cov, dd * sizeof(double));
    gpu_ok(OPS_GPU->sym_eigvals(env.gpu, d, gcov2, gw), "sym_eigvals");
    assert_int_equal(OPS_CPU->sym_eigvals(env.cpu, d, cov, w), VQJ_OK);
    double *hw = from_gpu(gw, (size_t)d * sizeof(double));
    for (int i = 0; i < d; i++)
        assert_true(fabs(hw[i] - w[i]) <= 1e-12 * fabs(w[d - 1]));
}

/* ---- Whole training steps: the same model on both devices ---- */

enum { T_ = 3, B_ = 8, D_ = 32, P_ = 16, K_ = 16 };

/* A trainer made by vqj_trainer_create_from_config() on one device, and its
 * parts, borrowed from it. */
typedef struct model {
    vqj_context *ctx;
    vqj_encoder *encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor;
    vqj_loss *loss;
    vqj_trainer *trainer;
} model;

#define MODEL_OK(m, call)                                                                      \
    do {                                                                                       \
        (void)(m);                                                                             \
        vqj_status st_ = (call);                                                               \
        if (st_ != VQJ_OK)                                                                     \
            fail_msg("%s: %s", #call, vqj_last_error());                                       \
    } while (0)

/* The library's defaults with `keys` ({key, value} pairs, NULL-terminated),
 * on ctx's device, built in one call. */
static void model_from_keys(model *m, vqj_context *ctx, const char *const (*keys)[2])
{
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    vqj_config *cfg = NULL;
    MODEL_OK(m, vqj_config_default(ctx, &cfg));
    MODEL_OK(m, vqj_config_set(cfg, "training.device",
                               vqj_context_device(ctx) == VQJ_DEVICE_CUDA ? "cuda" : "cpu"));
    for (int k = 0; keys[k][0]; k++)
        MODEL_OK(m, vqj_config_set(cfg, keys[k][0], keys[k][1]));
    MODEL_OK(m, vqj_trainer_create_from_config(ctx, cfg, &m->trainer));
    vqj_config_destroy(cfg);
    m->encoder = vqj_trainer_encoder(m->trainer);
    m->codebook = vqj_trainer_codebook(m->trainer);
    m->predictor = vqj_trainer_predictor(m->trainer);
    m->loss = vqj_trainer_loss(m->trainer);
}

static void model_create(model *m, vqj_context *ctx)
{
    static const char *const keys[][2] = {
        {"seed", "7"},
        {"tokenizer.max_objects", "16"},
        {"object_encoder.hidden_dim", "32"},
        {"object_encoder.relational_layers", "2"},
        {"object_encoder.relational_heads", "4"},
        {"object_encoder.num_embeddings", "16"},
        /* k-means++ draws and the refresh's ranking of tokens by error are
         * discrete: a rounding difference at a boundary would pick another
         * token and the runs would part for good. Their device ops are
         * checked one by one above. */
        {"object_encoder.vq_kmeans_init", "false"},
        {"object_encoder.vq_refresh_enabled", "false"},
        {"loss.projection_dim", "16"},
        {"model.aggregator", "gru"},
        {"loss.queue_size", "32"},
        {"sigreg.num_slices", "16"},
        {"optimizer.lr", "1e-3"},
        {"training.lr_scheduler.warmup_steps", "0"},
        {"training.lr_scheduler.total_steps", "50"},
        {"training.grad_accum_steps", "2"},
        {NULL, NULL}};
    model_from_keys(m, ctx, keys);
}

static void model_destroy(model *m) { vqj_trainer_destroy(m->trainer); }

static vqj_weights *view_of(model *m, int v)
{
    switch (v) {
    case 0: return vqj_encoder_weights(m->encoder);
    case 1: return vqj_codebook_weights(m->codebook);
    case 2: return vqj_predictor_weights(m->predictor);
    default: return vqj_loss_weights(m->loss);
    }
}

/* Every tensor of every view (values, or gradients of the trainable ones). */
static void compare_views(model *a, model *b, int grads, double tol_rel, double tol_abs)
{
    for (int v = 0; v < 4; v++) {
        vqj_weights *wa = view_of(a, v), *wb = view_of(b, v);
        size_t nt = vqj_weights_num_tensors(wa);
        assert_int_equal(nt, vqj_weights_num_tensors(wb));
        for (size_t i = 0; i < nt; i++) {
            vqj_weight_info info;
            MODEL_OK(a, vqj_weights_info(wa, i, &info));
            if (grads && !info.trainable)
                continue;
            float *x = hfloats(info.count), *y = hfloats(info.count);
            if (grads) {
                MODEL_OK(a, vqj_weights_read_grad(wa, info.name, x, info.count));
                MODEL_OK(b, vqj_weights_read_grad(wb, info.name, y, info.count));
            } else {
                MODEL_OK(a, vqj_weights_read(wa, info.name, x, info.count));
                MODEL_OK(b, vqj_weights_read(wb, info.name, y, info.count));
            }
            char name[128];
            snprintf(name, sizeof name, "%s %s", grads ? "grad" : "value", info.name);
            if (tol_abs > 0.0) {
                double worst = 0.0;
                for (size_t k = 0; k < info.count; k++) {
                    double dlt = fabs((double)x[k] - (double)y[k]);
                    worst = isnan(dlt) ? INFINITY : fmax(worst, dlt);
                }
                print_message("  %-44s abs err %.2e (tol %.1e)\n", name, worst, tol_abs);
                if (!(worst <= tol_abs))
                    fail_msg("%s: abs err %.3e > %.1e", name, worst, tol_abs);
            } else {
                /* A handful of values (the temperature's gradient) is a sum
                 * whose terms cancel: relative to itself it moves more. */
                expect_close(name, x, y, info.count, info.count < 8 ? 10 * tol_rel : tol_rel);
            }
        }
    }
}

static void compare_metrics(const vqj_train_metrics *g, const vqj_train_metrics *c)
{
    assert_int_equal(g->skipped, c->skipped);
    assert_int_equal(g->applied, c->applied);
    assert_int_equal(g->context_tokens, c->context_tokens);
    expect_scalar("step loss", g->loss, c->loss, 1e-4);
    expect_scalar("step infonce", g->infonce, c->infonce, 1e-4);
    expect_scalar("step relational", g->relational, c->relational, 1e-3);
    expect_scalar("step commitment", g->commitment, c->commitment, 1e-3);
    expect_scalar("step sigreg", g->sigreg, c->sigreg, 1e-3);
    expect_scalar("step temperature", g->temperature, c->temperature, 1e-5);
    if (c->grad_norm > 0.0f)
        expect_scalar("step grad_norm", g->grad_norm, c->grad_norm, 1e-3);
}

static void test_training_step(void **state)
{
    (void)state;
    NEED_GPU();
    /* Data from the CPU context: grids are host memory either way. */
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = 16 * B_;
    sp.seed = 5;
    vqj_dataset *data = NULL;
    assert_int_equal(vqj_dataset_synthetic(env.cpu_ctx, &dp, &sp, &data), VQJ_OK);
    model mc, mg;
    model_create(&mc, env.cpu_ctx);
    model_create(&mg, env.gpu_ctx);
    compare_views(&mg, &mc, 0, EXACT_TOL, 0.0); /* same seeded initialization */
    const float lr = 1e-3f;
    for (int s = 0; s < 6; s++) {
        vqj_grid context[B_ * T_], targets[B_];
        for (int e = 0; e < B_; e++) {
            const vqj_grid *cg, *tg;
            assert_int_equal(vqj_dataset_example(data, (size_t)(s * B_ + e), &cg, &tg), VQJ_OK);
            for (int k = 0; k < T_; k++)
                context[e * T_ + k] = cg[k];
            targets[e] = *tg;
        }
        vqj_train_metrics rc = {.size = sizeof rc}, rg = {.size = sizeof rg};
        MODEL_OK(&mc, vqj_trainer_step(mc.trainer, context, targets, B_, &rc));
        MODEL_OK(&mg, vqj_trainer_step(mg.trainer, context, targets, B_, &rg));
        print_message("  -- micro-batch %d (optimizer step: %d)\n", s, rc.optimizer_step);
        compare_metrics(&rg, &rc);
        if (s == 0) /* accumulated, not yet applied: the gradients themselves */
            compare_views(&mg, &mc, 1, 2e-3, 0.0);
    }
    /* three optimizer steps: each moves a weight by at most ~lr, so two
     * runs differ by at most 2 lr per step (plus rounding) */
    compare_views(&mg, &mc, 0, 0.0, 3 * 2.0 * lr + 1e-5);
    model_destroy(&mg);
    model_destroy(&mc);
    vqj_dataset_destroy(data);
}


/* ---- Timings (VQJ_CUDA_BENCH=1): not tests, numbers for docs/perf-cuda.md ---- */

static int bench_enabled(void)
{
    const char *e = getenv("VQJ_CUDA_BENCH");
    return e && *e && strcmp(e, "0") != 0;
}

static int env_int(const char *name, int fallback)
{
    const char *e = getenv(name);
    return e && *e ? atoi(e) : fallback;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define NEED_BENCH()                                                                           \
    do {                                                                                       \
        NEED_GPU();                                                                            \
        if (!bench_enabled()) {                                                                \
            print_message("skipped: set VQJ_CUDA_BENCH=1 to time the CUDA backend\n");         \
            skip();                                                                            \
        }                                                                                      \
    } while (0)

/* Median of `reps` timed batches of `inner` calls, after warm-up; the device
 * is synchronized around each batch, so launch gaps count. Milliseconds per
 * call. */
#define TIME_OP(ms_out, inner, ...)                                                            \
    do {                                                                                       \
        double t_[9];                                                                          \
        for (int w_ = 0; w_ < 2; w_++)                                                         \
            __VA_ARGS__;                                                                       \
        gpu_ok(OPS_GPU->sync(env.gpu), "sync");                                                \
        for (int r_ = 0; r_ < 9; r_++) {                                                       \
            double t0_ = now_s();                                                              \
            for (int i_ = 0; i_ < (inner); i_++)                                               \
                __VA_ARGS__;                                                                   \
            gpu_ok(OPS_GPU->sync(env.gpu), "sync");                                            \
            t_[r_] = (now_s() - t0_) * 1e3 / (inner);                                          \
        }                                                                                      \
        for (int a_ = 1; a_ < 9; a_++) /* insertion sort, then the median */                   \
            for (int b_ = a_; b_ > 0 && t_[b_] < t_[b_ - 1]; b_--) {                           \
                double x_ = t_[b_];                                                            \
                t_[b_] = t_[b_ - 1];                                                           \
                t_[b_ - 1] = x_;                                                               \
            }                                                                                  \
        (ms_out) = t_[4];                                                                      \
    } while (0)

static void bench_row(const char *op, const char *shape, double ms, double gflop, double mbytes)
{
    print_message("  BENCH %-26s %-30s %9.4f ms %9.1f GFLOP/s %8.1f GB/s\n", op, shape, ms,
                  ms > 0 ? gflop / ms : 0.0, ms > 0 ? mbytes / ms : 0.0);
}

static void bench_ops(void **state)
{
    (void)state;
    NEED_BENCH();
    /* Shapes of one reference micro-batch: B 512, T 3, D 384, 8 heads,
     * ~6.5 objects per grid -> ~13312 tokens (context + target), K 768,
     * P 256, queue 8192, 1024 SIGReg slices x 17 points. */
    const int B = env_int("VQJ_CUDA_BENCH_BATCH", 512), D = 384, H = 8, K = 768, P = 256,
              Q = 8192, G = 4 * B;
    int *sizes = hmem((size_t)G * sizeof(int));
    for (int g = 0; g < G; g++)
        sizes[g] = 3 + (g * 7) % 8; /* 3..10, mean 6.5 */
    packed pk = make_packed(sizes, G, 3);
    const int N = pk.tokens;
    const size_t ND = (size_t)N * D;
    print_message("  BENCH shapes: %d grids, %d tokens, D %d, %d heads, K %d\n", G, N, D, H, K);
    size_t big = ND * 3; /* every operand below fits in x, y and z */
    if (big < (size_t)(B + Q) * P)
        big = (size_t)(B + Q) * P;
    float *x = dfloats(hrand(big, 1, 1.0f), big);
    float *y = dfloats(hrand(big, 2, 1.0f), big);
    float *w = dfloats(hrand((size_t)3 * D * D * 2, 3, 0.05f), (size_t)3 * D * D * 2);
    float *z = dfloats(hrand(big, 4, 1.0f), big);
    double ms;
    char shape[64];

    /* GEMMs of the encoder's linear layers (forward, dX, dW) and InfoNCE's
     * scores. */
    struct {
        const char *what;
        bool ta, tb;
        int m, n, k;
    } gemms[] = {
        {"gemm qkv forward", false, true, N, 3 * D, D},
        {"gemm fc1 forward", false, true, N, 2 * D, D},
        {"gemm fc2 dX", false, false, N, 2 * D, D},
        {"gemm fc1 dW", true, false, 2 * D, D, N},
        {"gemm infonce scores", false, true, B, B + Q, P},
    };
    for (size_t i = 0; i < sizeof gemms / sizeof *gemms; i++) {
        int m = gemms[i].m, n = gemms[i].n, k = gemms[i].k;
        int lda = gemms[i].ta ? m : k, ldb = gemms[i].tb ? k : n;
        TIME_OP(ms, 5,
                OPS_GPU->gemm(env.gpu, gemms[i].ta, gemms[i].tb, m, n, k, 1.0f, x, lda, z, ldb,
                              0.0f, y, n));
        snprintf(shape, sizeof shape, "%dx%dx%d", m, n, k);
        bench_row(gemms[i].what, shape, ms, 2e-6 * m * n * k,
                  4e-3 * ((double)m * k + (double)k * n + (double)m * n));
    }
    snprintf(shape, sizeof shape, "%d x %d", N, D);
    TIME_OP(ms, 10, OPS_GPU->layernorm_forward(env.gpu, N, D, x, w, w, 1e-5f, y, z, z + N));
    bench_row("layernorm_forward", shape, ms, 0.0, 8e-3 * ND);
    TIME_OP(ms, 10,
            OPS_GPU->layernorm_backward(env.gpu, N, D, x, y, w, z, z + N, z + 2 * N, w + D,
                                        w + 2 * D));
    bench_row("layernorm_backward", shape, ms, 0.0, 16e-3 * ND);
    snprintf(shape, sizeof shape, "%d x %d", N, 2 * D);
    TIME_OP(ms, 10, OPS_GPU->gelu_forward(env.gpu, 2 * ND, x, y));
    bench_row("gelu_forward", shape, ms, 0.0, 16e-3 * ND);
    TIME_OP(ms, 10, OPS_GPU->gelu_backward(env.gpu, 2 * ND, x, z, y));
    bench_row("gelu_backward", shape, ms, 0.0, 32e-3 * ND);
    TIME_OP(ms, 10, OPS_GPU->dropout_forward(env.gpu, ND, 0.1f, 7, x, y, z));
    bench_row("dropout_forward", shape, ms, 0.0, 12e-3 * ND);
    TIME_OP(ms, 10, OPS_GPU->bias_backward(env.gpu, N, 3 * D, x, w));
    snprintf(shape, sizeof shape, "%d x %d", N, 3 * D);
    bench_row("bias_backward", shape, ms, 0.0, 12e-3 * ND);

    size_t np = (size_t)H * (size_t)pk.adj_offsets[G];
    float *probs = dmem(np * sizeof(float));
    snprintf(shape, sizeof shape, "%d grids, d %d, %d heads", G, D, H);
    TIME_OP(ms, 10,
            OPS_GPU->attention_forward(env.gpu, G, pk.d_offsets, pk.d_adj, pk.d_adj_offsets, D, H,
                                       x, y, probs));
    bench_row("attention_forward", shape, ms, 4e-6 * N * 6.5 * D, 16e-3 * ND);
    TIME_OP(ms, 10,
            OPS_GPU->attention_backward(env.gpu, G, pk.d_offsets, pk.d_adj, pk.d_adj_offsets, D,
                                        H, x, probs, y, z));
    bench_row("attention_backward", shape, ms, 8e-6 * N * 6.5 * D, 28e-3 * ND);

    float *scratch = dmem((size_t)(N + 1) * K * sizeof(float));
    int32_t *idx = dmem((size_t)N * sizeof(int32_t));
    snprintf(shape, sizeof shape, "%d x %d, K %d", N, D, K);
    TIME_OP(ms, 5, OPS_GPU->vq_assign(env.gpu, N, D, K, x, w, scratch, idx, z));
    bench_row("vq_assign (gemm + argmin)", shape, ms, 2e-6 * N * D * K,
              4e-3 * ((double)ND + 2.0 * N * K));
    TIME_OP(ms, 5, OPS_GPU->vq_accumulate(env.gpu, N, D, K, x, idx, z, y));
    bench_row("vq_accumulate", shape, ms, 0.0, 4e-3 * (double)ND * 2);
    TIME_OP(ms, 10, OPS_GPU->vq_gather(env.gpu, N, D, x, w, idx, y, z));
    bench_row("vq_gather", shape, ms, 0.0, 12e-3 * ND);

    float *s = dmem((size_t)B * (B + Q) * sizeof(float));
    OPS_GPU->fill(env.gpu, (size_t)B * (B + Q), 0.01f, s);
    snprintf(shape, sizeof shape, "%d x %d", B, B + Q);
    TIME_OP(ms, 10, OPS_GPU->infonce_xent(env.gpu, B, B + Q, B + Q, 14.0f, 1e-3f, s, z, z + B));
    bench_row("infonce_xent", shape, ms, 0.0, 8e-3 * B * (B + Q));
    snprintf(shape, sizeof shape, "1024 slices x %d, 17 points", B);
    float *wk = dfloats(hrand(17, 5, 1.0f), 17);
    TIME_OP(ms, 5,
            OPS_GPU->sigreg_epps_pulley(env.gpu, 1024, B, 17, 3.0f / 16, wk, 1e-4f, x, z, y));
    bench_row("sigreg_epps_pulley", shape, ms, 0.0, 8e-3 * 1024 * B);

    size_t nparams = (size_t)3900000;
    float *pp = dmem(nparams * 4 * sizeof(float));
    OPS_GPU->fill(env.gpu, nparams * 4, 0.01f, pp);
    snprintf(shape, sizeof shape, "%zu params", nparams);
    TIME_OP(ms, 10,
            OPS_GPU->adam_update(env.gpu, nparams, pp, pp + nparams, pp + 2 * nparams,
                                 pp + 3 * nparams, 5e-5, 0.9f, 0.999f, 1e-8f, 1e-6f, false, 0.5,
                                 0.01, 0.5f));
    bench_row("adam_update", shape, ms, 0.0, 28e-6 * nparams);
    TIME_OP(ms, 10, (void)OPS_GPU->sum_squares(env.gpu, nparams, pp));
    bench_row("sum_squares (+ host read)", shape, ms, 0.0, 4e-6 * nparams);
    TIME_OP(ms, 10, OPS_GPU->ema_blend(env.gpu, nparams, 0.99f, pp, pp + nparams));
    bench_row("ema_blend", shape, ms, 0.0, 12e-6 * nparams);
    TIME_OP(ms, 100, OPS_GPU->fill(env.gpu, 1, 0.0f, pp));
    bench_row("empty launch (fill 1)", "1 float", ms, 0.0, 0.0);
    TIME_OP(ms, 100, (void)OPS_GPU->sum(env.gpu, 1, pp));
    bench_row("host round trip (sum 1)", "1 float", ms, 0.0, 0.0);
}

/* The reference configuration (the library's defaults), one optimizer
 * step per micro-batch, the queue full from the start (as tools/
 * bench_train.c, so the numbers compare with `vqjepa bench`). */
static void ref_create(model *m, vqj_context *ctx, int core)
{
    static const char *const full[][2] = {{"training.grad_accum_steps", "1"}, {NULL, NULL}};
    static const char *const core_keys[][2] = {{"training.grad_accum_steps", "1"},
                                               {"sigreg.weight", "0"},
                                               {"invariance.color_weight", "0"},
                                               {"invariance.translation_weight", "0"},
                                               {"invariance.symmetry_weight", "0"},
                                               {NULL, NULL}};
    model_from_keys(m, ctx, core ? core_keys : full);
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    size_t n = (size_t)lp.queue_size * (size_t)lp.projection_dim;
    if (!n)
        return;
    float *host = hrand(n, 77, 1.0f);
    for (int r = 0; r < lp.queue_size; r++) {
        float *row = host + (size_t)r * lp.projection_dim;
        double s2 = 0.0;
        for (int j = 0; j < lp.projection_dim; j++)
            s2 += (double)row[j] * row[j];
        for (int j = 0; j < lp.projection_dim; j++)
            row[j] = (float)(row[j] / sqrt(s2));
    }
    vqj_tensor *rows = NULL;
    MODEL_OK(m, vqj_tensor_create(ctx, lp.queue_size, lp.projection_dim, &rows));
    MODEL_OK(m, vqj_tensor_write(rows, host, n));
    MODEL_OK(m, vqj_loss_queue_push(m->loss, rows));
    vqj_tensor_destroy(rows);
}

/* ms per step (mean over `steps` after `warmup`) of one variant. */
static double time_steps(vqj_context *ctx, const vqj_dataset *data, int core, int batch,
                         int warmup, int steps, double *tokens_per_step)
{
    model m;
    ref_create(&m, ctx, core);
    size_t n = vqj_dataset_num_examples(data);
    vqj_grid *context = hmem((size_t)batch * T_ * sizeof *context);
    vqj_grid *targets = hmem((size_t)batch * sizeof *targets);
    double total = 0.0, tokens = 0.0;
    for (int s = 0; s < warmup + steps; s++) {
        for (int e = 0; e < batch; e++) {
            const vqj_grid *cg, *tg;
            assert_int_equal(
                vqj_dataset_example(data, ((size_t)s * batch + (size_t)e) % n, &cg, &tg),
                VQJ_OK);
            for (int k = 0; k < T_; k++)
                context[(size_t)e * T_ + k] = cg[k];
            targets[e] = *tg;
        }
        vqj_train_metrics met = {.size = sizeof met};
        double t0 = now_s();
        vqj_status st = vqj_trainer_step(m.trainer, context, targets, batch, &met);
        double dt = now_s() - t0;
        if (st != VQJ_OK)
            fail_msg("training step: %s", vqj_last_error());
        if (s >= warmup) {
            total += dt;
            tokens += met.context_tokens;
        }
    }
    model_destroy(&m);
    *tokens_per_step = steps ? tokens / steps : 0.0;
    return steps ? 1e3 * total / steps : 0.0;
}

static void bench_training(void **state)
{
    (void)state;
    NEED_BENCH();
    const int batch = env_int("VQJ_CUDA_BENCH_BATCH", 512);
    const int steps = env_int("VQJ_CUDA_BENCH_STEPS", 5);
    const int cpu_steps = env_int("VQJ_CUDA_BENCH_CPU_STEPS", 0);
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = batch * (steps + 2);
    sp.seed = 9;
    vqj_dataset *data = NULL;
    assert_int_equal(vqj_dataset_synthetic(env.cpu_ctx, &dp, &sp, &data), VQJ_OK);
    vqj_status st;
    vqj_context *cpu_all = NULL;
    if (cpu_steps > 0) { /* every core, as `vqjepa bench` */
        vqj_context_params p;
        vqj_context_params_default(&p);
        p.seed = 42;
        st = vqj_context_create(&p, &cpu_all);
        assert_int_equal(st, VQJ_OK);
    }
    static const char *const names[] = {"full", "core"}; /* by `core` */
    for (int core = 1; core >= 0; core--) {
        double tok = 0.0;
        double ms = time_steps(env.gpu_ctx, data, core, batch, 2, steps, &tok);
        print_message("  BENCH train_step %-4s cuda  batch %d: %8.1f ms/step %8.1f samples/s "
                      "(%.0f context tokens/step, %d timed steps)\n",
                      names[core], batch, ms, 1e3 * batch / ms, tok, steps);
        if (cpu_all) {
            double cms = time_steps(cpu_all, data, core, batch, 1, cpu_steps, &tok);
            print_message("  BENCH train_step %-4s cpu   batch %d: %8.1f ms/step %8.1f "
                          "samples/s (%d threads, %d timed steps)\n",
                          names[core], batch, cms, 1e3 * batch / cms,
                          vqj_context_num_threads(cpu_all), cpu_steps);
        }
    }
    vqj_context_destroy(cpu_all);
    vqj_dataset_destroy(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_availability, test_teardown),
        cmocka_unit_test_teardown(test_every_slot, test_teardown),
        cmocka_unit_test_teardown(test_error_reporting, test_teardown),
        cmocka_unit_test_teardown(test_memory, test_teardown),
        cmocka_unit_test_teardown(test_elementwise, test_teardown),
        cmocka_unit_test_teardown(test_reductions, test_teardown),
        cmocka_unit_test_teardown(test_gemm, test_teardown),
        cmocka_unit_test_teardown(test_bias, test_teardown),
        cmocka_unit_test_teardown(test_activations, test_teardown),
        cmocka_unit_test_teardown(test_layernorm, test_teardown),
        cmocka_unit_test_teardown(test_dropout, test_teardown),
        cmocka_unit_test_teardown(test_attention, test_teardown),
        cmocka_unit_test_teardown(test_segment_mean, test_teardown),
        cmocka_unit_test_teardown(test_l2norm, test_teardown),
        cmocka_unit_test_teardown(test_aggregators, test_teardown),
        cmocka_unit_test_teardown(test_gru, test_teardown),
        cmocka_unit_test_teardown(test_vq, test_teardown),
        cmocka_unit_test_teardown(test_fsq, test_teardown),
        cmocka_unit_test_teardown(test_vq_rotation, test_teardown),
        cmocka_unit_test_teardown(test_optimizer, test_teardown),
        cmocka_unit_test_teardown(test_infonce, test_teardown),
        cmocka_unit_test_teardown(test_sigreg, test_teardown),
        cmocka_unit_test_teardown(test_relational, test_teardown),
        cmocka_unit_test_teardown(test_linalg, test_teardown),
        cmocka_unit_test_teardown(test_training_step, test_teardown),
        cmocka_unit_test_teardown(bench_ops, test_teardown),
        cmocka_unit_test_teardown(bench_training, test_teardown),
    };
    /* VQJ_CUDA_ONLY=name,name,... runs those entries alone (the device
     * check uses it for the timings and the sanitizer runs). */
    const char *only = getenv("VQJ_CUDA_ONLY");
    if (!only || !*only)
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
    struct CMUnitTest picked[sizeof tests / sizeof *tests];
    size_t count = 0, all = sizeof tests / sizeof *tests;
    for (size_t i = 0; i < all; i++) {
        size_t len = strlen(tests[i].name);
        for (const char *p = only; *p;) {
            size_t n = strcspn(p, ",");
            if (n == len && strncmp(p, tests[i].name, n) == 0) {
                picked[count++] = tests[i];
                break;
            }
            p += n + (p[n] == ',');
        }
    }
    if (!count) {
        fprintf(stderr, "test_cuda: VQJ_CUDA_ONLY=%s names no test\n", only);
        return 1;
    }
    return _cmocka_run_group_tests("test_cuda", picked, count, group_setup, group_teardown);
}
