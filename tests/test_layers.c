/* The CPU layer kernels and the linear composite (docs/model.md, "Layers"):
 * finite-difference gradient checks for every op, accumulation, attention's
 * grid isolation and masking, dropout's mask, and small exact cases. */
#include "testutil.h"

#include "core/core.h"
#include "device/device.h"
#include "model/layers.h"

#define M_PI_VALUE 3.14159265358979323846

/* ---- Fixture: a context (its device) and an arena freed after each test ---- */

#define ARENA_MAX 64

typedef struct fixture {
    vqj_context *ctx;
    vqji_device *dev;
    void *blocks[ARENA_MAX];
    int n_blocks;
} fixture;

static fixture *fx; /* the running test's fixture, for the helpers below */

static int setup(void **state)
{
    fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->ctx = test_context();
    fx->dev = fx->ctx->device;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < f->n_blocks; i++)
        free(f->blocks[i]);
    vqj_context_destroy(f->ctx);
    free(f);
    fx = NULL;
    return 0;
}

static void *tmem(size_t bytes)
{
    assert_true(fx->n_blocks < ARENA_MAX);
    void *p = calloc(bytes ? bytes : 1, 1);
    assert_non_null(p);
    fx->blocks[fx->n_blocks++] = p;
    return p;
}

static float *tfloats(size_t n) { return tmem(n * sizeof(float)); }

static float *trand(size_t n, uint32_t seed, float scale)
{
    float *x = tfloats(n);
    test_fill(x, n, seed, scale);
    return x;
}

/* ---- Finite-difference gradient check ----
 * A case computes out = f(inputs) with the float kernels; the scalar loss is
 * L = Σ out·R for a fixed random R, summed in double. Its backward call
 * receives dout = R and accumulates into each input's gradient.
 *
 * Step and tolerance: central differences with h = 1e-2. Float rounding of
 * the forward puts an absolute error of about 1e-6 on L (tens of O(1) terms,
 * a few ulp each), i.e. ~5e-5 on the difference quotient once divided by
 * 2h; the truncation error is h²/6 |f'''| ~ 2e-5 for the smooth O(1)
 * functions used here (observed max-norm relative errors: 1e-5 to 3e-5).
 * A smaller h (1e-3) would let the float rounding of L dominate. The
 * tolerance, 2e-3, keeps a margin of ~50x over both, yet a wrong term or
 * factor in a backward formula shows up at 1e-1 or more. The step actually
 * taken is (float)(x + h) - x, so rounding of x ± h costs nothing. */

#define GC_H 1e-2f
#define GC_TOL 2e-3
#define GC_MAX_INPUTS 6

typedef struct gc_input {
    const char *name;
    float *x, *dx;
    size_t n;
} gc_input;

typedef struct gc_case {
    void (*forward)(struct gc_case *c);
    void (*backward)(struct gc_case *c); /* dout = c->r */
    float *out, *r;
    size_t n_out;
    gc_input in[GC_MAX_INPUTS];
    int n_in;
} gc_case;

static void gc_add(gc_case *c, const char *name, float *x, float *dx, size_t n)
{
    assert_true(c->n_in < GC_MAX_INPUTS);
    c->in[c->n_in++] = (gc_input){name, x, dx, n};
}

static double gc_loss(gc_case *c)
{
    c->forward(c);
    double l = 0.0;
    for (size_t i = 0; i < c->n_out; i++)
        l += (double)c->out[i] * c->r[i];
    return l;
}

static void gc_check(gc_case *c)
{
    if (!c->r)
        c->r = trand(c->n_out, 9001, 1.0f);
    float *analytic[GC_MAX_INPUTS];
    for (int k = 0; k < c->n_in; k++)
        memset(c->in[k].dx, 0, c->in[k].n * sizeof(float));
    c->forward(c);
    c->backward(c);
    for (int k = 0; k < c->n_in; k++) {
        analytic[k] = tfloats(c->in[k].n);
        memcpy(analytic[k], c->in[k].dx, c->in[k].n * sizeof(float));
    }
    for (int k = 0; k < c->n_in; k++) {
        gc_input *in = &c->in[k];
        float *fd = tfloats(in->n);
        double fd_max = 0.0;
        for (size_t i = 0; i < in->n; i++) {
            float v = in->x[i];
            in->x[i] = v + GC_H;
            double hp = (double)in->x[i] - v;
            double lp = gc_loss(c);
            in->x[i] = v - GC_H;
            double hm = (double)v - in->x[i];
            double lm = gc_loss(c);
            in->x[i] = v;
            fd[i] = (float)((lp - lm) / (hp + hm));
            fd_max = fmax(fd_max, fabs(fd[i]));
        }
        /* A vanishing gradient would make the comparison vacuous. */
        if (fd_max < 1e-2)
            fail_msg("%s: finite-difference gradient is ~0 (max %g): test setup", in->name,
                     fd_max);
        double err = test_rel_err(analytic[k], fd, in->n, 1e-3);
        if (!(err < GC_TOL))
            fail_msg("%s: analytic vs finite-difference gradient rel. error %g", in->name, err);
    }
    /* Accumulation: a second backward without zeroing doubles every
     * gradient (up to the order of float additions inside the op). */
    c->forward(c);
    c->backward(c);
    for (int k = 0; k < c->n_in; k++) {
        float *twice = tfloats(c->in[k].n);
        for (size_t i = 0; i < c->in[k].n; i++)
            twice[i] = 2.0f * analytic[k][i];
        double err = test_rel_err(c->in[k].dx, twice, c->in[k].n, 1e-6);
        if (!(err < 1e-5))
            fail_msg("%s: backward does not accumulate (rel. error %g vs 2x)", c->in[k].name,
                     err);
    }
}

/* ---- Elementwise activations ---- */

typedef struct act_case {
    gc_case gc;
    size_t n;
    float *x, *y, *dx;
    int kind; /* 0 gelu, 1 relu, 2 tanh */
} act_case;

static void act_forward(gc_case *g)
{
    act_case *c = (act_case *)g;
    const vqji_device_ops *o = fx->dev->ops;
    if (c->kind == 0)
        o->gelu_forward(fx->dev, c->n, c->x, c->y);
    else if (c->kind == 1)
        o->relu_forward(fx->dev, c->n, c->x, c->y);
    else
        o->tanh_forward(fx->dev, c->n, c->x, c->y);
}

static void act_backward(gc_case *g)
{
    act_case *c = (act_case *)g;
    const vqji_device_ops *o = fx->dev->ops;
    if (c->kind == 0)
        o->gelu_backward(fx->dev, c->n, c->x, g->r, c->dx);
    else if (c->kind == 1)
        o->relu_backward(fx->dev, c->n, c->x, g->r, c->dx);
    else
        o->tanh_backward(fx->dev, c->n, c->y, g->r, c->dx); /* tanh uses its output */
}

static void check_activation(int kind)
{
    act_case c = {.n = 37, .kind = kind};
    c.x = trand(c.n, 11, 2.5f);
    if (kind == 1) /* keep ReLU's inputs a step away from its kink */
        for (size_t i = 0; i < c.n; i++)
            c.x[i] += c.x[i] >= 0.0f ? 0.05f : -0.05f;
    c.y = tfloats(c.n);
    c.dx = tfloats(c.n);
    c.gc = (gc_case){.forward = act_forward, .backward = act_backward, .out = c.y,
                     .n_out = c.n};
    gc_add(&c.gc, kind == 0 ? "gelu dx" : kind == 1 ? "relu dx" : "tanh dx", c.x, c.dx, c.n);
    gc_check(&c.gc);
}

static void test_gelu_grad(void **state)
{
    (void)state;
    check_activation(0);
}

static void test_relu_grad(void **state)
{
    (void)state;
    check_activation(1);
}

static void test_tanh_grad(void **state)
{
    (void)state;
    check_activation(2);
}

/* GELU is the exact erf form, not the tanh approximation: compare with
 * 0.5 x (1 + erf(x / √2)) in double at points where the two forms differ. */
static void test_gelu_values(void **state)
{
    (void)state;
    const float x[] = {-4.0f, -2.0f, -1.0f, -0.5f, 0.0f, 0.3f, 1.0f, 1.5f, 3.0f};
    const size_t n = sizeof x / sizeof x[0];
    float y[sizeof x / sizeof x[0]];
    fx->dev->ops->gelu_forward(fx->dev, n, x, y);
    for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        double want = 0.5 * xd * (1.0 + erf(xd / sqrt(2.0)));
        assert_true(fabs(y[i] - want) <= 1e-6 * fmax(1.0, fabs(want)));
    }
    /* In place (y == x) gives the same values. */
    float z[sizeof x / sizeof x[0]];
    memcpy(z, x, sizeof z);
    fx->dev->ops->gelu_forward(fx->dev, n, z, z);
    assert_memory_equal(z, y, sizeof z);
}

/* The kernels evaluate erf and exp with inline approximations: sweep GELU
 * and its derivative over [-12, 12] (and a few extremes) against the exact
 * formulas in double. The bounds are a few float ulps of the result. */
static void test_gelu_accuracy(void **state)
{
    (void)state;
    const size_t n = 24001;
    float *x = tfloats(n + 4), *y = tfloats(n + 4), *dx = tfloats(n + 4), *ones = tfloats(n + 4);
    for (size_t i = 0; i < n; i++)
        x[i] = -12.0f + 0.001f * (float)i;
    x[n] = 1e-30f;
    x[n + 1] = -1e-6f;
    x[n + 2] = 50.0f;
    x[n + 3] = -50.0f;
    for (size_t i = 0; i < n + 4; i++)
        ones[i] = 1.0f;
    fx->dev->ops->gelu_forward(fx->dev, n + 4, x, y);
    fx->dev->ops->gelu_backward(fx->dev, n + 4, x, ones, dx);
    double worst_y = 0.0, worst_d = 0.0;
    for (size_t i = 0; i < n + 4; i++) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
        double want_y = v * cdf;
        double want_d = cdf + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI_VALUE);
        worst_y = fmax(worst_y, fabs(y[i] - want_y) / fmax(fabs(want_y), 1e-30 + fabs(v)));
        worst_d = fmax(worst_d, fabs(dx[i] - want_d));
    }
    /* Relative to max(|y|, |x|): near the origin y ~ x/2, for x << 0 y -> 0
     * and only an absolute bound on the x-scale is meaningful. */
    assert_true(worst_y < 1e-6);
    assert_true(worst_d < 1e-6);
}

static void test_relu_tanh_values(void **state)
{
    (void)state;
    const float x[] = {-2.0f, -0.0f, 0.0f, 0.25f, 3.0f};
    float y[5], dx[5] = {0}, dy[5] = {1, 1, 1, 1, 1};
    fx->dev->ops->relu_forward(fx->dev, 5, x, y);
    const float want[] = {0.0f, 0.0f, 0.0f, 0.25f, 3.0f};
    for (int i = 0; i < 5; i++)
        assert_true(y[i] == want[i]);
    fx->dev->ops->relu_backward(fx->dev, 5, x, dy, dx);
    const float dwant[] = {0.0f, 0.0f, 0.0f, 1.0f, 1.0f}; /* subgradient 0 at 0 */
    assert_memory_equal(dx, dwant, sizeof dx);
    fx->dev->ops->tanh_forward(fx->dev, 5, x, y);
    for (int i = 0; i < 5; i++)
        assert_true(fabs(y[i] - tanh((double)x[i])) < 1e-6);
}

/* ---- Bias and the linear composite ---- */

typedef struct bias_case {
    gc_case gc;
    int n, c;
    float *x, *b, *y, *db;
} bias_case;

static void bias_forward(gc_case *g)
{
    bias_case *c = (bias_case *)g;
    memcpy(c->y, c->x, (size_t)c->n * c->c * sizeof(float));
    fx->dev->ops->bias_forward(fx->dev, c->n, c->c, c->b, c->y);
}

static void bias_backward(gc_case *g)
{
    bias_case *c = (bias_case *)g;
    fx->dev->ops->bias_backward(fx->dev, c->n, c->c, g->r, c->db);
}

static void test_bias_grad(void **state)
{
    (void)state;
    bias_case c = {.n = 7, .c = 70};
    size_t nc = (size_t)c.n * c.c;
    c.x = trand(nc, 1, 1.0f);
    c.b = trand((size_t)c.c, 2, 1.0f);
    c.y = tfloats(nc);
    c.db = tfloats((size_t)c.c);
    c.gc = (gc_case){.forward = bias_forward, .backward = bias_backward, .out = c.y,
                     .n_out = nc};
    gc_add(&c.gc, "bias db", c.b, c.db, (size_t)c.c);
    gc_check(&c.gc);
}

/* Column sums over more rows and columns than the kernel's blocks (64 rows,
 * 1536 columns) against double, accumulated onto existing values. */
static void test_bias_backward_blocks(void **state)
{
    (void)state;
    const int n = 150, cols = 1600;
    float *dy = trand((size_t)n * cols, 3, 1.0f);
    float *db = trand((size_t)cols, 4, 1.0f);
    double *want = tmem((size_t)cols * sizeof(double));
    for (int j = 0; j < cols; j++) {
        want[j] = db[j];
        for (int i = 0; i < n; i++)
            want[j] += dy[(size_t)i * cols + j];
    }
    fx->dev->ops->bias_backward(fx->dev, n, cols, dy, db);
    for (int j = 0; j < cols; j++)
        assert_true(fabs(db[j] - want[j]) < 1e-5 * fmax(1.0, fabs(want[j])));
}

typedef struct linear_case {
    gc_case gc;
    int n, in, out;
    float *x, *w, *b, *y, *dx, *dw, *db;
} linear_case;

static void linear_forward(gc_case *g)
{
    linear_case *c = (linear_case *)g;
    vqji_linear_forward(fx->dev, c->n, c->in, c->out, c->x, c->w, c->b, c->y);
}

static void linear_backward(gc_case *g)
{
    linear_case *c = (linear_case *)g;
    vqji_linear_backward(fx->dev, c->n, c->in, c->out, c->x, c->w, g->r, c->dx, c->dw, c->db);
}

static linear_case make_linear(int n, int in, int out)
{
    linear_case c = {.n = n, .in = in, .out = out};
    c.x = trand((size_t)n * in, 4, 1.0f);
    c.w = trand((size_t)out * in, 5, 0.5f);
    c.b = trand((size_t)out, 6, 0.5f);
    c.y = tfloats((size_t)n * out);
    c.dx = tfloats((size_t)n * in);
    c.dw = tfloats((size_t)out * in);
    c.db = tfloats((size_t)out);
    return c;
}

static void test_linear_forward_reference(void **state)
{
    (void)state;
    linear_case c = make_linear(5, 6, 3);
    vqji_linear_forward(fx->dev, c.n, c.in, c.out, c.x, c.w, c.b, c.y);
    float *y0 = tfloats((size_t)c.n * c.out);
    vqji_linear_forward(fx->dev, c.n, c.in, c.out, c.x, c.w, NULL, y0);
    for (int i = 0; i < c.n; i++)
        for (int o = 0; o < c.out; o++) {
            double s = 0.0; /* y = x W^T (+ b), W stored [out x in] */
            for (int k = 0; k < c.in; k++)
                s += (double)c.x[i * c.in + k] * c.w[o * c.in + k];
            assert_true(fabs(y0[i * c.out + o] - s) < 1e-5);
            assert_true(fabs(c.y[i * c.out + o] - (s + c.b[o])) < 1e-5);
        }
}

static void test_linear_grad(void **state)
{
    (void)state;
    linear_case c = make_linear(4, 6, 5);
    c.gc = (gc_case){.forward = linear_forward, .backward = linear_backward, .out = c.y,
                     .n_out = (size_t)c.n * c.out};
    gc_add(&c.gc, "linear dx", c.x, c.dx, (size_t)c.n * c.in);
    gc_add(&c.gc, "linear dW", c.w, c.dw, (size_t)c.out * c.in);
    gc_add(&c.gc, "linear db", c.b, c.db, (size_t)c.out);
    gc_check(&c.gc);
}

/* NULL dx and db are skipped; dW still accumulates. */
static void test_linear_backward_optional(void **state)
{
    (void)state;
    linear_case c = make_linear(3, 4, 2);
    float *dy = trand((size_t)c.n * c.out, 7, 1.0f);
    vqji_linear_backward(fx->dev, c.n, c.in, c.out, c.x, c.w, dy, c.dx, c.dw, c.db);
    float *dw_full = tfloats((size_t)c.out * c.in);
    memcpy(dw_full, c.dw, (size_t)c.out * c.in * sizeof(float));
    memset(c.dw, 0, (size_t)c.out * c.in * sizeof(float));
    vqji_linear_backward(fx->dev, c.n, c.in, c.out, c.x, c.w, dy, NULL, c.dw, NULL);
    assert_memory_equal(c.dw, dw_full, (size_t)c.out * c.in * sizeof(float));
}

/* ---- Layer norm ---- */

typedef struct ln_case {
    gc_case gc;
    int n, c;
    float *x, *gamma, *beta, *y, *mean, *rstd, *dx, *dgamma, *dbeta;
} ln_case;

static void ln_forward(gc_case *g)
{
    ln_case *c = (ln_case *)g;
    fx->dev->ops->layernorm_forward(fx->dev, c->n, c->c, c->x, c->gamma, c->beta, 1e-5f, c->y,
                                    c->mean, c->rstd);
}

static void ln_backward(gc_case *g)
{
    ln_case *c = (ln_case *)g;
    fx->dev->ops->layernorm_backward(fx->dev, c->n, c->c, g->r, c->x, c->gamma, c->mean,
                                     c->rstd, c->dx, c->dgamma, c->dbeta);
}

static void test_layernorm_grad(void **state)
{
    (void)state;
    ln_case c = {.n = 3, .c = 19}; /* 19: two 8-wide blocks and a tail */
    size_t nc = (size_t)c.n * c.c;
    c.x = trand(nc, 8, 2.0f);
    c.gamma = trand((size_t)c.c, 9, 1.0f);
    c.beta = trand((size_t)c.c, 10, 1.0f);
    c.y = tfloats(nc);
    c.mean = tfloats((size_t)c.n);
    c.rstd = tfloats((size_t)c.n);
    c.dx = tfloats(nc);
    c.dgamma = tfloats((size_t)c.c);
    c.dbeta = tfloats((size_t)c.c);
    c.gc = (gc_case){.forward = ln_forward, .backward = ln_backward, .out = c.y, .n_out = nc};
    gc_add(&c.gc, "layernorm dx", c.x, c.dx, nc);
    gc_add(&c.gc, "layernorm dgamma", c.gamma, c.dgamma, (size_t)c.c);
    gc_add(&c.gc, "layernorm dbeta", c.beta, c.dbeta, (size_t)c.c);
    gc_check(&c.gc);
}

/* x = (1, 2, 3, 4): μ = 2.5, σ² = 1.25 (biased), r = 1/√(1.25 + 1e-5). */
static void test_layernorm_values(void **state)
{
    (void)state;
    const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const float gamma[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    const float beta[4] = {0.0f, 0.1f, -0.2f, 0.3f};
    float y[4], mean, rstd;
    fx->dev->ops->layernorm_forward(fx->dev, 1, 4, x, gamma, beta, 1e-5f, y, &mean, &rstd);
    double r = 1.0 / sqrt(1.25 + 1e-5);
    assert_true(mean == 2.5f);
    assert_true(fabs(rstd - r) < 1e-6);
    const double xh[4] = {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r};
    for (int i = 0; i < 4; i++)
        assert_true(fabs(y[i] - (xh[i] * gamma[i] + beta[i])) < 1e-6);
    /* With γ = 1 the output has mean 0 and biased variance 1.25 r² ≈ 1. */
    const float ones[4] = {1, 1, 1, 1}, zeros[4] = {0};
    fx->dev->ops->layernorm_forward(fx->dev, 1, 4, x, ones, zeros, 1e-5f, y, &mean, &rstd);
    double m = (y[0] + y[1] + y[2] + y[3]) / 4.0, v = 0.0;
    for (int i = 0; i < 4; i++)
        v += (y[i] - m) * (y[i] - m) / 4.0;
    assert_true(fabs(m) < 1e-7);
    assert_true(fabs(v - 1.25 * r * r) < 1e-6);
}

/* ---- Dropout ---- */

typedef struct drop_case {
    gc_case gc;
    size_t n;
    float p;
    uint64_t seed;
    float *x, *y, *mask, *dx;
} drop_case;

static void drop_forward(gc_case *g)
{
    drop_case *c = (drop_case *)g;
    fx->dev->ops->dropout_forward(fx->dev, c->n, c->p, c->seed, c->x, c->y, c->mask);
}

static void drop_backward(gc_case *g)
{
    drop_case *c = (drop_case *)g;
    fx->dev->ops->dropout_backward(fx->dev, c->n, c->mask, g->r, c->dx);
}

static void test_dropout_grad(void **state)
{
    (void)state;
    drop_case c = {.n = 40, .p = 0.3f, .seed = 77};
    c.x = trand(c.n, 12, 1.0f);
    c.y = tfloats(c.n);
    c.mask = tfloats(c.n);
    c.dx = tfloats(c.n);
    c.gc = (gc_case){.forward = drop_forward, .backward = drop_backward, .out = c.y,
                     .n_out = c.n};
    gc_add(&c.gc, "dropout dx", c.x, c.dx, c.n);
    gc_check(&c.gc);
    /* The mask is 0 or 1/(1-p), and y = x m. */
    for (size_t i = 0; i < c.n; i++) {
        assert_true(c.mask[i] == 0.0f || c.mask[i] == 1.0f / (1.0f - c.p));
        assert_true(c.y[i] == c.x[i] * c.mask[i]);
    }
}

static void test_dropout_p0_identity(void **state)
{
    (void)state;
    const size_t n = 1000;
    float *x = trand(n, 13, 3.0f), *y = tfloats(n), *mask = tfloats(n);
    fx->dev->ops->dropout_forward(fx->dev, n, 0.0f, 5, x, y, mask);
    assert_memory_equal(y, x, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        assert_true(mask[i] == 1.0f);
}

static void test_dropout_mask_seeded(void **state)
{
    (void)state;
    const size_t n = 4096;
    float *x = trand(n, 14, 1.0f), *y = tfloats(n);
    float *m1 = tfloats(n), *m2 = tfloats(n), *m3 = tfloats(n);
    fx->dev->ops->dropout_forward(fx->dev, n, 0.5f, 1234, x, y, m1);
    fx->dev->ops->dropout_forward(fx->dev, n, 0.5f, 1234, x, y, m2);
    fx->dev->ops->dropout_forward(fx->dev, n, 0.5f, 1235, x, y, m3);
    assert_memory_equal(m1, m2, n * sizeof(float));
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += m1[i] != m3[i];
    /* Independent masks at p = 0.5 differ in half the places (sd ~32). */
    assert_true(differ > n / 2 - 300 && differ < n / 2 + 300);
    /* A mask depends on (seed, i) only: a prefix draws the same elements. */
    fx->dev->ops->dropout_forward(fx->dev, 100, 0.5f, 1234, x, y, m3);
    assert_memory_equal(m3, m1, 100 * sizeof(float));
}

static void test_dropout_keep_fraction(void **state)
{
    (void)state;
    const size_t n = 100000;
    const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    float *x = tfloats(n), *y = tfloats(n), *mask = tfloats(n);
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        fx->dev->ops->dropout_forward(fx->dev, n, ps[k], 99 + k, x, y, mask);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            kept += mask[i] != 0.0f;
        /* Binomial sd is at most sqrt(0.25 / n) = 0.0016; allow ~5 sd. */
        assert_true(fabs((double)kept / n - (1.0 - ps[k])) < 0.008);
    }
    /* p = 1 drops everything and stays finite. */
    fx->dev->ops->dropout_forward(fx->dev, 100, 1.0f, 3, x, y, mask);
    for (size_t i = 0; i < 100; i++)
        assert_true(mask[i] == 0.0f && y[i] == 0.0f);
}

static void test_dropout_seed_helper(void **state)
{
    (void)state;
    uint64_t a = vqji_dropout_seed(42, 7, 3);
    assert_true(a == vqji_dropout_seed(42, 7, 3));
    assert_true(a != vqji_dropout_seed(43, 7, 3));
    assert_true(a != vqji_dropout_seed(42, 8, 3));
    assert_true(a != vqji_dropout_seed(42, 7, 4));
    /* (step, site) must not commute: step 3 site 7 is another site. */
    assert_true(a != vqji_dropout_seed(42, 3, 7));
}

/* ---- Attention over packed grids ---- */

typedef struct attn_case {
    gc_case gc;
    int num_grids, d, heads, n_tokens;
    int32_t *offsets;
    int64_t *adj_offsets;
    uint8_t *adj;
    float *qkv, *out, *probs, *dqkv;
} attn_case;

static void attn_forward(gc_case *g)
{
    attn_case *c = (attn_case *)g;
    fx->dev->ops->attention_forward(fx->dev, c->num_grids, c->offsets, c->adj, c->adj_offsets,
                                    c->d, c->heads, c->qkv, c->out, c->probs);
}

static void attn_backward(gc_case *g)
{
    attn_case *c = (attn_case *)g;
    fx->dev->ops->attention_backward(fx->dev, c->num_grids, c->offsets, c->adj,
                                     c->adj_offsets, c->d, c->heads, c->qkv, c->probs, g->r,
                                     c->dqkv);
}

/* Grids of the given sizes with a random, non-symmetric adjacency of the
 * given density; the diagonal is random too (self is allowed regardless). */
static attn_case make_attn(const int *sizes, int num_grids, int d, int heads, double density,
                           uint32_t seed)
{
    attn_case c = {.num_grids = num_grids, .d = d, .heads = heads};
    c.offsets = tmem((size_t)(num_grids + 1) * sizeof(int32_t));
    c.adj_offsets = tmem((size_t)(num_grids + 1) * sizeof(int64_t));
    for (int g = 0; g < num_grids; g++) {
        c.offsets[g + 1] = c.offsets[g] + sizes[g];
        c.adj_offsets[g + 1] = c.adj_offsets[g] + (int64_t)sizes[g] * sizes[g];
    }
    c.n_tokens = c.offsets[num_grids];
    size_t n_adj = (size_t)c.adj_offsets[num_grids];
    c.adj = tmem(n_adj);
    float *u = trand(n_adj, seed, 1.0f);
    for (size_t i = 0; i < n_adj; i++)
        c.adj[i] = (u[i] + 1.0f) * 0.5f < density;
    size_t nq = (size_t)c.n_tokens * 3 * d;
    c.qkv = trand(nq, seed + 1, 1.5f);
    c.out = tfloats((size_t)c.n_tokens * d);
    c.probs = tfloats(n_adj * heads);
    c.dqkv = tfloats(nq);
    c.gc = (gc_case){.forward = attn_forward, .backward = attn_backward, .out = c.out,
                     .n_out = (size_t)c.n_tokens * d};
    return c;
}

static int attn_allowed(const attn_case *c, int g, int i, int j)
{
    int n = c->offsets[g + 1] - c->offsets[g];
    return i == j || c->adj[c->adj_offsets[g] + (int64_t)i * n + j];
}

/* The formulas of docs/model.md in double, one grid and head at a time:
 * out [n_tokens x d]; dqkv accumulates when dout is given. */
static void attn_reference(const attn_case *c, const float *dout, double *out, double *dqkv)
{
    const int d = c->d, dh = d / c->heads, ld = 3 * d;
    const double scale = 1.0 / sqrt((double)dh);
    for (int g = 0; g < c->num_grids; g++) {
        const int base = c->offsets[g], n = c->offsets[g + 1] - base;
        double *p = calloc((size_t)n * n + 1, sizeof *p);
        double *dp = calloc((size_t)n + 1, sizeof *dp);
        assert_non_null(p);
        assert_non_null(dp);
        for (int h = 0; h < c->heads; h++) {
            const float *q = c->qkv + (size_t)base * ld + h * dh, *k = q + d, *v = q + 2 * d;
            for (int i = 0; i < n; i++) {
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < n; j++) {
                    if (!attn_allowed(c, g, i, j))
                        continue;
                    double s = 0.0;
                    for (int e = 0; e < dh; e++)
                        s += (double)q[i * ld + e] * k[j * ld + e];
                    p[i * n + j] = s * scale;
                    mx = fmax(mx, s * scale);
                }
                for (int j = 0; j < n; j++)
                    if (attn_allowed(c, g, i, j))
                        sum += (p[i * n + j] = exp(p[i * n + j] - mx));
                for (int j = 0; j < n; j++)
                    p[i * n + j] = attn_allowed(c, g, i, j) ? p[i * n + j] / sum : 0.0;
                for (int e = 0; e < dh; e++) {
                    double o = 0.0;
                    for (int j = 0; j < n; j++)
                        o += p[i * n + j] * v[j * ld + e];
                    out[(size_t)(base + i) * d + h * dh + e] = o;
                }
                if (!dout)
                    continue;
                const float *doi = dout + (size_t)(base + i) * d + h * dh;
                double *dq = dqkv + (size_t)base * ld + h * dh, *dk = dq + d, *dv = dq + 2 * d;
                double pdp = 0.0;
                for (int j = 0; j < n; j++) {
                    dp[j] = 0.0;
                    for (int e = 0; e < dh; e++)
                        dp[j] += (double)doi[e] * v[j * ld + e];
                    pdp += p[i * n + j] * dp[j];
                }
                for (int j = 0; j < n; j++) {
                    double ds = p[i * n + j] * (dp[j] - pdp);
                    for (int e = 0; e < dh; e++) {
                        dv[j * ld + e] += p[i * n + j] * doi[e];
                        dq[i * ld + e] += ds * k[j * ld + e] * scale;
                        dk[j * ld + e] += ds * q[i * ld + e] * scale;
                    }
                }
            }
        }
        free(p);
        free(dp);
    }
}

/* Sizes 3, 1, 0 (empty), 5, 4; dh = 10 exercises the 8-wide blocks and
 * their tail. */
static const int attn_sizes[] = {3, 1, 0, 5, 4};

static void test_attention_grad(void **state)
{
    (void)state;
    attn_case c = make_attn(attn_sizes, 5, 20, 2, 0.5, 21);
    gc_add(&c.gc, "attention dqkv", c.qkv, c.dqkv, (size_t)c.n_tokens * 3 * c.d);
    gc_check(&c.gc);
}

static void test_attention_reference(void **state)
{
    (void)state;
    attn_case c = make_attn(attn_sizes, 5, 20, 2, 0.5, 22);
    attn_forward(&c.gc);
    double *ref = tmem((size_t)c.n_tokens * c.d * sizeof(double));
    attn_reference(&c, NULL, ref, NULL);
    for (size_t i = 0; i < (size_t)c.n_tokens * c.d; i++)
        assert_true(fabs(c.out[i] - ref[i]) < 1e-5);
}

/* Masked pairs get probability exactly 0, rows sum to 1, and a token with no
 * neighbours attends only to itself (its output is its own v). */
static void test_attention_masking(void **state)
{
    (void)state;
    attn_case c = make_attn(attn_sizes, 5, 20, 2, 0.5, 23);
    /* Grid 3 (5 tokens): cut token 2 off from everything. */
    int g = 3, n = 5;
    for (int j = 0; j < n; j++)
        c.adj[c.adj_offsets[g] + 2 * n + j] = 0;
    attn_forward(&c.gc);
    int masked = 0;
    for (int gg = 0; gg < c.num_grids; gg++) {
        int ng = c.offsets[gg + 1] - c.offsets[gg];
        for (int h = 0; h < c.heads; h++)
            for (int i = 0; i < ng; i++) {
                const float *p = c.probs + c.heads * c.adj_offsets[gg] + ((size_t)h * ng + i) * ng;
                double sum = 0.0;
                for (int j = 0; j < ng; j++) {
                    if (!attn_allowed(&c, gg, i, j)) {
                        assert_true(p[j] == 0.0f);
                        masked++;
                    } else {
                        assert_true(p[j] > 0.0f);
                    }
                    sum += p[j];
                }
                assert_true(fabs(sum - 1.0) < 1e-6);
            }
    }
    assert_true(masked > 0);
    const int tok = c.offsets[g] + 2;
    for (int e = 0; e < c.d; e++)
        assert_true(c.out[(size_t)tok * c.d + e] == c.qkv[(size_t)tok * 3 * c.d + 2 * c.d + e]);
    /* The single-token grid also attends to itself only. */
    const int one = c.offsets[1];
    for (int e = 0; e < c.d; e++)
        assert_true(c.out[(size_t)one * c.d + e] == c.qkv[(size_t)one * 3 * c.d + 2 * c.d + e]);
}

/* Perturbing grid 1's input leaves every other grid's output bit-identical,
 * forward and backward. */
static void test_attention_no_mixing(void **state)
{
    (void)state;
    const int sizes[] = {4, 3, 0, 5};
    attn_case c = make_attn(sizes, 4, 16, 4, 0.6, 24);
    const size_t nout = (size_t)c.n_tokens * c.d, nq = (size_t)c.n_tokens * 3 * c.d;
    float *dout = trand(nout, 25, 1.0f);
    attn_forward(&c.gc);
    fx->dev->ops->attention_backward(fx->dev, c.num_grids, c.offsets, c.adj, c.adj_offsets,
                                     c.d, c.heads, c.qkv, c.probs, dout, c.dqkv);
    float *out0 = tfloats(nout), *dq0 = tfloats(nq);
    memcpy(out0, c.out, nout * sizeof(float));
    memcpy(dq0, c.dqkv, nq * sizeof(float));
    for (int i = c.offsets[1] * 3 * c.d; i < c.offsets[2] * 3 * c.d; i++)
        c.qkv[i] += 0.5f;
    memset(c.dqkv, 0, nq * sizeof(float));
    attn_forward(&c.gc);
    fx->dev->ops->attention_backward(fx->dev, c.num_grids, c.offsets, c.adj, c.adj_offsets,
                                     c.d, c.heads, c.qkv, c.probs, dout, c.dqkv);
    const size_t g1 = (size_t)c.offsets[1], g2 = (size_t)c.offsets[2];
    assert_memory_equal(c.out, out0, g1 * c.d * sizeof(float));
    assert_memory_equal(c.out + g2 * c.d, out0 + g2 * c.d, (nout - g2 * c.d) * sizeof(float));
    assert_memory_equal(c.dqkv, dq0, g1 * 3 * c.d * sizeof(float));
    assert_memory_equal(c.dqkv + g2 * 3 * c.d, dq0 + g2 * 3 * c.d,
                        (nq - g2 * 3 * c.d) * sizeof(float));
    /* ... while grid 1's own output did change. */
    assert_memory_not_equal(c.out + g1 * c.d, out0 + g1 * c.d, (g2 - g1) * c.d * sizeof(float));
}

/* A grid larger than the backward's stack cache of dp (256 keys), checked
 * forward and backward against the double reference. */
static void test_attention_large_grid(void **state)
{
    (void)state;
    const int sizes[] = {2, 300, 1};
    attn_case c = make_attn(sizes, 3, 8, 2, 0.05, 26);
    const size_t nout = (size_t)c.n_tokens * c.d, nq = (size_t)c.n_tokens * 3 * c.d;
    float *dout = trand(nout, 27, 1.0f);
    attn_forward(&c.gc);
    fx->dev->ops->attention_backward(fx->dev, c.num_grids, c.offsets, c.adj, c.adj_offsets,
                                     c.d, c.heads, c.qkv, c.probs, dout, c.dqkv);
    double *ref = tmem(nout * sizeof(double)), *dref = tmem(nq * sizeof(double));
    attn_reference(&c, dout, ref, dref);
    float *reff = tfloats(nout), *dreff = tfloats(nq);
    for (size_t i = 0; i < nout; i++)
        reff[i] = (float)ref[i];
    for (size_t i = 0; i < nq; i++)
        dreff[i] = (float)dref[i];
    assert_true(test_rel_err(c.out, reff, nout, 1e-3) < 1e-5);
    assert_true(test_rel_err(c.dqkv, dreff, nq, 1e-3) < 1e-5);
}

/* ---- Segment mean ---- */

typedef struct seg_case {
    gc_case gc;
    int num_grids, d;
    int32_t *offsets;
    float *x, *y, *dx;
} seg_case;

static void seg_forward(gc_case *g)
{
    seg_case *c = (seg_case *)g;
    fx->dev->ops->segment_mean_forward(fx->dev, c->num_grids, c->offsets, c->d, c->x, c->y);
}

static void seg_backward(gc_case *g)
{
    seg_case *c = (seg_case *)g;
    fx->dev->ops->segment_mean_backward(fx->dev, c->num_grids, c->offsets, c->d, g->r, c->dx);
}

static void test_segment_mean_values(void **state)
{
    (void)state;
    /* Grids of 2, 0 and 3 rows of d = 2. */
    int32_t offsets[] = {0, 2, 2, 5};
    const float x[] = {1, 2, 3, 6, 0, 0, 3, -3, 9, 6};
    float y[6];
    memset(y, 0xff, sizeof y); /* NaN garbage: the empty grid must overwrite it */
    fx->dev->ops->segment_mean_forward(fx->dev, 3, offsets, 2, x, y);
    const float want[] = {2, 4, 0, 0, 4, 1};
    assert_memory_equal(y, want, sizeof y);
    float dx[10] = {0};
    const float dy[] = {2, 4, 100, 100, 3, 6};
    fx->dev->ops->segment_mean_backward(fx->dev, 3, offsets, 2, dy, dx);
    const float dwant[] = {1, 2, 1, 2, 1, 2, 1, 2, 1, 2};
    assert_memory_equal(dx, dwant, sizeof dx);
}

static void test_segment_mean_grad(void **state)
{
    (void)state;
    seg_case c = {.num_grids = 4, .d = 11};
    c.offsets = tmem(5 * sizeof(int32_t));
    const int sizes[] = {3, 0, 1, 4};
    for (int g = 0; g < 4; g++)
        c.offsets[g + 1] = c.offsets[g] + sizes[g];
    size_t nx = (size_t)c.offsets[4] * c.d;
    c.x = trand(nx, 30, 1.0f);
    c.y = tfloats((size_t)c.num_grids * c.d);
    c.dx = tfloats(nx);
    c.gc = (gc_case){.forward = seg_forward, .backward = seg_backward, .out = c.y,
                     .n_out = (size_t)c.num_grids * c.d};
    gc_add(&c.gc, "segment mean dx", c.x, c.dx, nx);
    gc_check(&c.gc);
    for (int j = 0; j < c.d; j++)
        assert_true(c.y[c.d + j] == 0.0f);
}

/* ---- L2 normalisation ---- */

typedef struct l2_case {
    gc_case gc;
    int n, c;
    float eps;
    float *x, *y, *norm, *dx;
} l2_case;

static void l2_forward(gc_case *g)
{
    l2_case *c = (l2_case *)g;
    fx->dev->ops->l2norm_forward(fx->dev, c->n, c->c, c->x, c->eps, c->y, c->norm);
}

static void l2_backward(gc_case *g)
{
    l2_case *c = (l2_case *)g;
    fx->dev->ops->l2norm_backward(fx->dev, c->n, c->c, c->x, c->y, c->norm, c->eps, g->r,
                                  c->dx);
}

static void test_l2norm_grad(void **state)
{
    (void)state;
    l2_case c = {.n = 4, .c = 13, .eps = 1e-12f};
    size_t nc = (size_t)c.n * c.c;
    c.x = trand(nc, 31, 1.0f);
    c.y = tfloats(nc);
    c.norm = tfloats((size_t)c.n);
    c.dx = tfloats(nc);
    c.gc = (gc_case){.forward = l2_forward, .backward = l2_backward, .out = c.y, .n_out = nc};
    gc_add(&c.gc, "l2norm dx", c.x, c.dx, nc);
    gc_check(&c.gc);
    for (int r = 0; r < c.n; r++) {
        double s = 0.0;
        for (int j = 0; j < c.c; j++)
            s += (double)c.y[r * c.c + j] * c.y[r * c.c + j];
        assert_true(fabs(s - 1.0) < 1e-6);
    }
}

/* A zero row is below eps: y = 0 (no NaN) and y = x / eps is linear, so
 * dx += dy / eps. */
static void test_l2norm_zero_row(void **state)
{
    (void)state;
    const float eps = 1e-3f;
    float x[6] = {0, 0, 0, 3, 0, 4}, y[6], norm[2], dx[6] = {0};
    const float dy[6] = {1, -2, 0.5f, 1, 1, 1};
    fx->dev->ops->l2norm_forward(fx->dev, 2, 3, x, eps, y, norm);
    assert_true(y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f);
    assert_true(fabs(norm[1] - 5.0f) < 1e-6);
    assert_true(fabs(y[3] - 0.6f) < 1e-7 && y[4] == 0.0f && fabs(y[5] - 0.8f) < 1e-7);
    fx->dev->ops->l2norm_backward(fx->dev, 2, 3, x, y, norm, eps, dy, dx);
    for (int j = 0; j < 3; j++) {
        assert_true(isfinite(dx[j]));
        assert_true(fabs(dx[j] - dy[j] / eps) < 1e-3);
    }
}

/* ---- Context aggregators ---- */

typedef struct agg_case {
    gc_case gc;
    int batch, t, d, kind; /* 0 mean, 1 attention */
    float *x, *q, *y, *w, *dx, *dq;
} agg_case;

static void agg_forward(gc_case *g)
{
    agg_case *c = (agg_case *)g;
    if (c->kind == 0)
        fx->dev->ops->aggregate_mean_forward(fx->dev, c->batch, c->t, c->d, c->x, c->y);
    else
        fx->dev->ops->aggregate_attention_forward(fx->dev, c->batch, c->t, c->d, c->x, c->q,
                                                  c->y, c->w);
}

static void agg_backward(gc_case *g)
{
    agg_case *c = (agg_case *)g;
    if (c->kind == 0)
        fx->dev->ops->aggregate_mean_backward(fx->dev, c->batch, c->t, c->d, g->r, c->dx);
    else
        fx->dev->ops->aggregate_attention_backward(fx->dev, c->batch, c->t, c->d, c->x, c->q,
                                                   c->w, g->r, c->dx, c->dq);
}

static agg_case make_agg(int kind)
{
    agg_case c = {.batch = 3, .t = 3, .d = 10, .kind = kind};
    size_t nx = (size_t)c.batch * c.t * c.d;
    c.x = trand(nx, 40, 1.0f);
    c.q = trand((size_t)c.d, 41, 1.5f);
    c.y = tfloats((size_t)c.batch * c.d);
    c.w = tfloats((size_t)c.batch * c.t);
    c.dx = tfloats(nx);
    c.dq = tfloats((size_t)c.d);
    c.gc = (gc_case){.forward = agg_forward, .backward = agg_backward, .out = c.y,
                     .n_out = (size_t)c.batch * c.d};
    gc_add(&c.gc, kind ? "aggregate attention dx" : "aggregate mean dx", c.x, c.dx, nx);
    if (kind)
        gc_add(&c.gc, "aggregate attention dq", c.q, c.dq, (size_t)c.d);
    return c;
}

static void test_aggregate_mean_grad(void **state)
{
    (void)state;
    agg_case c = make_agg(0);
    gc_check(&c.gc);
    for (int j = 0; j < c.d; j++) {
        double m = (c.x[j] + c.x[c.d + j] + c.x[2 * c.d + j]) / 3.0;
        assert_true(fabs(c.y[j] - m) < 1e-6);
    }
}

static void test_aggregate_attention_grad(void **state)
{
    (void)state;
    agg_case c = make_agg(1);
    gc_check(&c.gc);
    /* Forward against the formula in double. */
    agg_forward(&c.gc);
    for (int b = 0; b < c.batch; b++) {
        double s[3], mx = -INFINITY, sum = 0.0;
        for (int t = 0; t < 3; t++) {
            s[t] = 0.0;
            for (int j = 0; j < c.d; j++)
                s[t] += (double)c.x[(b * 3 + t) * c.d + j] * c.q[j] / sqrt((double)c.d);
            mx = fmax(mx, s[t]);
        }
        for (int t = 0; t < 3; t++)
            sum += (s[t] = exp(s[t] - mx));
        for (int j = 0; j < c.d; j++) {
            double y = 0.0;
            for (int t = 0; t < 3; t++)
                y += s[t] / sum * c.x[(b * 3 + t) * c.d + j];
            assert_true(fabs(c.y[b * c.d + j] - y) < 1e-6);
        }
        for (int t = 0; t < 3; t++)
            assert_true(fabs(c.w[b * 3 + t] - s[t] / sum) < 1e-6);
    }
}

/* ---- GRU cell ---- */

typedef struct gru_case {
    gc_case gc;
    int batch, d;
    float *gi, *gh, *h, *h_new, *gates, *dgi, *dgh, *dh;
} gru_case;

static void gru_forward(gc_case *g)
{
    gru_case *c = (gru_case *)g;
    fx->dev->ops->gru_cell_forward(fx->dev, c->batch, c->d, c->gi, c->gh, c->h, c->h_new,
                                   c->gates);
}

static void gru_backward(gc_case *g)
{
    gru_case *c = (gru_case *)g;
    fx->dev->ops->gru_cell_backward(fx->dev, c->batch, c->d, c->h, c->gates, g->r, c->dgi,
                                    c->dgh, c->dh);
}

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

static void test_gru_cell(void **state)
{
    (void)state;
    gru_case c = {.batch = 2, .d = 11};
    size_t n3 = (size_t)c.batch * 3 * c.d, n1 = (size_t)c.batch * c.d;
    c.gi = trand(n3, 50, 1.5f);
    c.gh = trand(n3, 51, 1.5f);
    c.h = trand(n1, 52, 1.0f);
    c.h_new = tfloats(n1);
    c.gates = tfloats((size_t)c.batch * 4 * c.d);
    c.dgi = tfloats(n3);
    c.dgh = tfloats(n3);
    c.dh = tfloats(n1);
    /* Forward against PyTorch's equations in double. */
    gru_forward(&c.gc);
    for (int b = 0; b < c.batch; b++)
        for (int j = 0; j < c.d; j++) {
            const float *gi = c.gi + b * 3 * c.d, *gh = c.gh + b * 3 * c.d;
            double r = sigm((double)gi[j] + gh[j]);
            double z = sigm((double)gi[c.d + j] + gh[c.d + j]);
            double n = tanh((double)gi[2 * c.d + j] + r * gh[2 * c.d + j]);
            double hn = (1.0 - z) * n + z * c.h[b * c.d + j];
            assert_true(fabs(c.h_new[b * c.d + j] - hn) < 1e-6);
        }
    c.gc = (gc_case){.forward = gru_forward, .backward = gru_backward, .out = c.h_new,
                     .n_out = n1};
    gc_add(&c.gc, "gru dgi", c.gi, c.dgi, n3);
    gc_add(&c.gc, "gru dgh", c.gh, c.dgh, n3);
    gc_add(&c.gc, "gru dh", c.h, c.dh, n1);
    gc_check(&c.gc);
}

/* The op list (device.h's VQJI_DEVICE_OPS) names every slot once, and the
 * CPU backend fills them all; a table with a hole is reported by name. */
static void test_every_slot(void **state)
{
    (void)state;
    assert_null(vqji_device_ops_missing(fx->dev->ops));
    for (int i = 0; i < VQJI_DEVICE_NUM_OPS; i++) {
        assert_true(vqji_device_op_names[i][0] != '\0');
        for (int j = 0; j < i; j++)
            assert_string_not_equal(vqji_device_op_names[i], vqji_device_op_names[j]);
    }
    assert_string_equal(vqji_device_op_names[0], "destroy");
    assert_string_equal(vqji_device_op_names[VQJI_DEVICE_NUM_OPS - 1], "sym_eigvals");
    vqji_device_ops holed = *fx->dev->ops;
    holed.gelu_backward = NULL;
    assert_string_equal(vqji_device_ops_missing(&holed), "gelu_backward");
}

/* splitmix64 (core/formulas.h) against its published first output from
 * state 0; the dropout seeds and masks and vqji_rng all draw from it. */
static void test_splitmix64_reference(void **state)
{
    (void)state;
    assert_true(vqji_splitmix64(0) == 0xE220A8397B1DCDAFull);
    assert_true(vqji_splitmix64(VQJI_SPLITMIX64_GAMMA) == 0x6E789E6AA1B965F4ull);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_gelu_values),
        T(test_gelu_accuracy),
        T(test_relu_tanh_values),
        T(test_gelu_grad),
        T(test_relu_grad),
        T(test_tanh_grad),
        T(test_bias_grad),
        T(test_bias_backward_blocks),
        T(test_linear_forward_reference),
        T(test_linear_grad),
        T(test_linear_backward_optional),
        T(test_layernorm_values),
        T(test_layernorm_grad),
        T(test_dropout_grad),
        T(test_dropout_p0_identity),
        T(test_dropout_mask_seeded),
        T(test_dropout_keep_fraction),
        T(test_dropout_seed_helper),
        T(test_attention_grad),
        T(test_attention_reference),
        T(test_attention_masking),
        T(test_attention_no_mixing),
        T(test_attention_large_grid),
        T(test_segment_mean_values),
        T(test_segment_mean_grad),
        T(test_l2norm_grad),
        T(test_l2norm_zero_row),
        T(test_aggregate_mean_grad),
        T(test_aggregate_attention_grad),
        T(test_gru_cell),
        T(test_every_slot),
        T(test_splitmix64_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
