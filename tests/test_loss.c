/* The loss handle (docs/losses.md): every term's gradient against finite
 * differences, InfoNCE against a double-precision loop, the queue ring,
 * SIGReg on Gaussian vs collapsed samples, zero weights, the report, the
 * error paths, and the PyTorch vectors of tests/data/loss.bin. */
#include "testutil.h"

#include <unistd.h>
#include "vectors.h"

#include "core/core.h"
#include "device/tensor.h"
#include "loss/loss.h"

/* ---- Fixture: a context, a loss and an arena freed after each test ---- */

#define ARENA_MAX 96

typedef struct fixture {
    vqj_context *ctx;
    vqj_loss *loss;
    void *blocks[ARENA_MAX];
    int n_blocks;
    vqj_tensor *tensors[ARENA_MAX];
    int n_tensors;
    vqj_tokens *tokens[4];
    int n_tokens;
} fixture;

static fixture *fx;

static int setup(void **state)
{
    fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->ctx = test_context();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < f->n_blocks; i++)
        free(f->blocks[i]);
    for (int i = 0; i < f->n_tensors; i++)
        vqj_tensor_destroy(f->tensors[i]);
    for (int i = 0; i < f->n_tokens; i++)
        vqj_tokens_destroy(f->tokens[i]);
    vqj_loss_destroy(f->loss);
    vqj_context_destroy(f->ctx);
    free(f);
    fx = NULL;
    return 0;
}

static float *tfloats(size_t n)
{
    assert_true(fx->n_blocks < ARENA_MAX);
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    fx->blocks[fx->n_blocks++] = p;
    return p;
}

static float *trand(size_t n, uint32_t seed, float scale)
{
    float *x = tfloats(n);
    test_fill(x, n, seed, scale);
    return x;
}

/* Rows of unit length, like the projections the loss receives. */
static float *tunit(int rows, int cols, uint32_t seed)
{
    float *x = trand((size_t)rows * cols, seed, 1.0f);
    for (int i = 0; i < rows; i++) {
        double n = 0.0;
        for (int j = 0; j < cols; j++)
            n += (double)x[i * cols + j] * x[i * cols + j];
        for (int j = 0; j < cols; j++)
            x[i * cols + j] = (float)(x[i * cols + j] / sqrt(n));
    }
    return x;
}

/* A standard normal sample (Box-Muller on an LCG): for SIGReg's input. */
static float *tgauss(size_t n, uint32_t seed)
{
    float *u = trand(2 * n, seed, 1.0f), *x = tfloats(n);
    for (size_t i = 0; i < n; i++) {
        double u1 = 0.5 * (u[2 * i] + 1.0) * 0.999 + 0.0005, u2 = 0.5 * (u[2 * i + 1] + 1.0);
        x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    return x;
}

static vqj_tensor *ttensor(int rows, int cols, const float *data)
{
    assert_true(fx->n_tensors < ARENA_MAX);
    vqj_tensor *t = NULL;
    assert_ok(fx->ctx, vqj_tensor_create(fx->ctx, rows, cols, &t));
    fx->tensors[fx->n_tensors++] = t;
    if (data)
        assert_ok(fx->ctx, vqj_tensor_write(t, data, (size_t)rows * cols));
    return t;
}

static void tput(vqj_tensor *t, const float *data)
{
    assert_ok(fx->ctx, vqj_tensor_write(t, data, (size_t)t->rows * t->cols));
}

static float *tget(const vqj_tensor *t)
{
    float *x = tfloats((size_t)t->rows * t->cols);
    assert_ok(fx->ctx, vqj_tensor_read(t, x, (size_t)t->rows * t->cols));
    return x;
}

static vqj_loss *make_loss(const vqj_loss_params *p)
{
    vqj_loss_destroy(fx->loss);
    fx->loss = NULL;
    assert_ok(fx->ctx, vqj_loss_create(fx->ctx, p, &fx->loss));
    return fx->loss;
}

static float read_scalar(const char *name)
{
    float v = 0.0f;
    assert_ok(fx->ctx, vqj_weights_read(vqj_loss_weights(fx->loss), name, &v, 1));
    return v;
}

static void write_scalar(const char *name, float v)
{
    assert_ok(fx->ctx, vqj_weights_write(vqj_loss_weights(fx->loss), name, &v, 1));
}

static float logtau_grad(void)
{
    float g = 0.0f;
    assert_ok(fx->ctx,
              vqj_weights_read_grad(vqj_loss_weights(fx->loss), "loss.log_temperature", &g, 1));
    return g;
}

static int queue_fill(void)
{
    int f = -1;
    assert_ok(fx->ctx, vqj_loss_queue_fill(fx->loss, &f));
    return f;
}

/* ---- Finite differences ----
 * Central differences of the loss value (a float, computed with no gradient
 * requested) in double. h = 1e-3 on inputs of size O(1): the float rounding
 * of values of size O(1) gives ~1e-7 / 1e-3 = 1e-4 on the quotient, the
 * truncation error h²/6 |f'''| stays below that for the smooth terms here
 * (InfoNCE at tau = 0.07 has |f'''| ~ 1/tau³ ~ 3e3 per unit input: 5e-4).
 * Gradients are O(1) or more, so the tolerance 5e-3 of the max-norm
 * relative error keeps a margin of ~10x, while a wrong factor or a missing
 * term shows up at 1e-1 or more. */

#define FD_H 1e-3f
#define FD_TOL 5e-3

typedef double (*fd_value_fn)(void *user);

/* Perturb each x[i], upload x into `t` (or call `put` when t is NULL), and
 * compare the central differences of f with `analytic`. */
static void fd_check(const char *what, float *x, size_t n, vqj_tensor *t, fd_value_fn f,
                     void *user, const float *analytic)
{
    float *fd = tfloats(n);
    double fd_max = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v + FD_H;
        double hp = (double)x[i] - v;
        tput(t, x);
        double lp = f(user);
        x[i] = v - FD_H;
        double hm = (double)v - x[i];
        tput(t, x);
        double lm = f(user);
        x[i] = v;
        fd[i] = (float)((lp - lm) / (hp + hm));
        fd_max = fmax(fd_max, fabs(fd[i]));
    }
    tput(t, x);
    if (fd_max < 1e-2)
        fail_msg("%s: finite-difference gradient is ~0 (max %g): test setup", what, fd_max);
    double err = test_rel_err(analytic, fd, n, 1e-3);
    if (!(err < FD_TOL))
        fail_msg("%s: analytic vs finite-difference gradient rel. error %g", what, err);
}

/* ---- params, create, weights ---- */

static void test_params_default(void **state)
{
    (void)state;
    vqj_loss_params p;
    vqj_loss_params_default(&p);
    assert_int_equal(p.size, sizeof p);
    assert_int_equal(p.projection_dim, 256);
    assert_int_equal(p.queue_size, 8192);
    assert_float_equal(p.temperature, 0.07f, 0.0f);
    assert_float_equal(p.temperature_min, 0.05f, 0.0f);
    assert_float_equal(p.temperature_max, 0.20f, 0.0f);
    assert_int_equal(p.learnable_temperature, 1);
    assert_float_equal(p.relational_weight, 0.025f, 0.0f);
    assert_float_equal(p.context_self_weight, 0.01f, 0.0f);
    assert_int_equal(p.max_objects, 16);
    assert_float_equal(p.sigreg_weight, 0.1f, 0.0f);
    assert_int_equal(p.sigreg_num_slices, 1024);
    assert_int_equal(p.sigreg_num_points, 17);
    assert_float_equal(p.color_weight, 0.1f, 0.0f);
    assert_float_equal(p.translation_weight, 0.05f, 0.0f);
    assert_float_equal(p.symmetry_weight, 0.05f, 0.0f);
    assert_float_equal(p.infonce_weight, 1.0f, 0.0f);
    assert_int_equal(p.mask_duplicate_negatives, 1);
    vqj_loss_params_default(NULL); /* ignored */

    /* The defaults create a handle with the documented tensors. */
    vqj_loss *l = make_loss(&p);
    vqj_weights *w = vqj_loss_weights(l);
    assert_int_equal(vqj_weights_num_tensors(w), 5); /* + loss.queue_ids */
    assert_int_equal(vqj_weights_num_params(w), 1);
    vqj_weight_info info;
    assert_ok(fx->ctx, vqj_weights_info(w, 0, &info));
    assert_string_equal(info.name, "loss.log_temperature");
    assert_int_equal(info.trainable, 1);
    assert_ok(fx->ctx, vqj_weights_info(w, 1, &info));
    assert_string_equal(info.name, "loss.queue");
    assert_int_equal(info.shape[0], 8192);
    assert_int_equal(info.shape[1], 256);
    assert_int_equal(info.trainable, 0);
    assert_float_equal(read_scalar("loss.log_temperature"), logf(0.07f), 1e-7f);
    float tau;
    assert_ok(fx->ctx, vqj_loss_temperature(l, &tau));
    assert_float_equal(tau, 0.07f, 1e-7f);
    assert_int_equal(queue_fill(), 0);

    /* No queue, fixed temperature: one state tensor. */
    p.queue_size = 0;
    p.learnable_temperature = 0;
    w = vqj_loss_weights(make_loss(&p));
    assert_int_equal(vqj_weights_num_tensors(w), 1);
    assert_int_equal(vqj_weights_num_params(w), 0);
    assert_int_equal(queue_fill(), 0);
    assert_null(vqj_loss_weights(NULL));
}

static void expect_bad_param(vqj_loss_params *p, vqj_status expected, const char *needle)
{
    vqj_context *ctx = fx->ctx;
    vqj_loss *l = (vqj_loss *)(uintptr_t)1; /* must stay untouched */
    assert_status(ctx, vqj_loss_create(ctx, p, &l), expected);
    assert_true(l == (vqj_loss *)(uintptr_t)1);
    if (!strstr(vqj_last_error(), needle))
        fail_msg("message \"%s\" does not name \"%s\"", vqj_last_error(), needle);
}

static void test_params_validation(void **state)
{
    (void)state;
    vqj_loss_params p;
#define BAD(field, value, needle)                                                              \
    do {                                                                                       \
        vqj_loss_params_default(&p);                                                           \
        p.field = value;                                                                       \
        expect_bad_param(&p, VQJ_ERR_INVALID_ARGUMENT, needle);                                \
    } while (0)
    BAD(projection_dim, 0, "projection_dim");
    BAD(queue_size, -1, "queue_size");
    BAD(temperature, 0.3f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(temperature_min, 0.0f, "temperature_min");
    BAD(temperature_max, 0.01f, "temperature_max");
    BAD(relational_weight, -1.0f, "relational_weight");
    BAD(context_self_weight, INFINITY, "context_self_weight");
    BAD(max_objects, 0, "max_objects");
    BAD(sigreg_weight, -0.1f, "sigreg_weight");
    BAD(sigreg_num_slices, 0, "sigreg_num_slices");
    BAD(sigreg_num_points, 1, "sigreg_num_points");
    BAD(sigreg_num_points, 257, "sigreg_num_points");
    BAD(color_weight, NAN, "color_weight");
    BAD(translation_weight, -1.0f, "translation_weight");
    BAD(symmetry_weight, -1.0f, "symmetry_weight");
    BAD(infonce_weight, -1.0f, "infonce_weight");
    BAD(size, 8, "size");
#undef BAD
    vqj_loss_params_default(&p);
    vqj_loss *l = NULL;
    assert_int_equal(vqj_loss_create(NULL, &p, &l), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(fx->ctx, vqj_loss_create(fx->ctx, NULL, &l), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(fx->ctx, vqj_loss_create(fx->ctx, &p, NULL), VQJ_ERR_INVALID_ARGUMENT);

    /* A larger struct from a newer header: accepted when the extra bytes are
     * zero, refused when they ask for something. */
    struct {
        vqj_loss_params p;
        int extra;
    } big;
    memset(&big, 0, sizeof big);
    vqj_loss_params_default(&big.p);
    big.p.size = sizeof big;
    big.p.queue_size = 4;
    big.p.projection_dim = 4;
    big.p.sigreg_num_slices = 4;
    assert_ok(fx->ctx, vqj_loss_create(fx->ctx, &big.p, &l));
    vqj_loss_destroy(l);
    big.extra = 1;
    assert_status(fx->ctx, vqj_loss_create(fx->ctx, &big.p, &l), VQJ_ERR_UNSUPPORTED);
}

/* ---- InfoNCE ---- */

/* The cross-entropy with the positive at index 0 and the logits of the
 * spec, in double: value, dc and d value / d log tau. */
/* With grid ids (ids [B], qids [nq]; NULL: none), a negative whose id
 * equals the row's (non-zero) id is left out. */
static double ref_infonce_ids(int B, int P, const float *c, const float *t, const float *q,
                              int nq, double tau, const uint64_t *ids, const uint64_t *qids,
                              double *dc, double *dlogtau)
{
    int n = B + nq;
    double *z = calloc((size_t)n, sizeof *z), *p = calloc((size_t)n, sizeof *p);
    const float **vec = calloc((size_t)n, sizeof *vec);
    double L = 0.0;
    *dlogtau = 0.0;
    for (int i = 0; i < B * P; i++)
        dc[i] = 0.0;
    for (int i = 0; i < B; i++) {
        int k = 0;
        vec[k++] = t + (size_t)i * P;
        for (int j = 0; j < B; j++)
            if (j != i && !(ids && ids[i] && ids[j] == ids[i]))
                vec[k++] = t + (size_t)j * P;
        for (int m = 0; m < nq; m++)
            if (!(ids && ids[i] && qids[m] == ids[i]))
                vec[k++] = q + (size_t)m * P;
        n = k;
        double zmax = -INFINITY;
        for (k = 0; k < n; k++) {
            double s = 0.0;
            for (int d = 0; d < P; d++)
                s += (double)c[i * P + d] * vec[k][d];
            z[k] = s / tau;
            zmax = fmax(zmax, z[k]);
        }
        double sum = 0.0;
        for (k = 0; k < n; k++)
            sum += exp(z[k] - zmax);
        double lse = zmax + log(sum);
        L += (lse - z[0]) / B;
        for (k = 0; k < n; k++)
            p[k] = exp(z[k] - lse);
        /* dz_k = (p_k - [k = 0]) / B; z = s / tau */
        for (k = 0; k < n; k++) {
            double g = (p[k] - (k == 0)) / B;
            for (int d = 0; d < P; d++)
                dc[i * P + d] += g * vec[k][d] / tau;
            *dlogtau -= g * z[k]; /* dz_k / dlog tau = -z_k */
        }
    }
    free(z);
    free(p);
    free(vec);
    return L;
}

static double ref_infonce(int B, int P, const float *c, const float *t, const float *q, int nq,
                          double tau, double *dc, double *dlogtau)
{
    return ref_infonce_ids(B, P, c, t, q, nq, tau, NULL, NULL, dc, dlogtau);
}

static vqj_loss_params small_params(int P, int Q)
{
    vqj_loss_params p;
    vqj_loss_params_default(&p);
    p.projection_dim = P;
    p.queue_size = Q;
    p.sigreg_num_slices = 16;
    return p;
}

static void test_infonce_reference(void **state)
{
    (void)state;
    enum { B = 5, P = 7, Q = 6, NQ = 4 };
    vqj_loss_params p = small_params(P, Q);
    vqj_loss *l = make_loss(&p);
    float *c = tunit(B, P, 1), *t = tunit(B, P, 2), *q = tunit(NQ, P, 3);
    vqj_tensor *ct = ttensor(B, P, c), *tt = ttensor(B, P, t), *qt = ttensor(NQ, P, q);
    vqj_tensor *dc = ttensor(B, P, NULL);
    double ref_dc[B * P], ref_dlt;

    for (int with_queue = 0; with_queue < 2; with_queue++) {
        if (with_queue)
            assert_ok(fx->ctx, vqj_loss_queue_push(l, qt));
        vqj_weights_zero_grad(vqj_loss_weights(l));
        float zero[B * P] = {0};
        tput(dc, zero);
        float v = -1.0f;
        assert_ok(fx->ctx, vqj_loss_infonce(l, ct, tt, dc, &v));
        double L = ref_infonce(B, P, c, t, q, with_queue ? NQ : 0, 0.07f, ref_dc, &ref_dlt);
        assert_float_equal(v, L, 1e-5 * fabs(L));
        float *got = tget(dc), want[B * P];
        for (int i = 0; i < B * P; i++)
            want[i] = (float)ref_dc[i];
        double err = test_rel_err(got, want, B * P, 1e-6);
        if (!(err < 1e-5))
            fail_msg("dc vs double reference (queue %d): rel. error %g", with_queue, err);
        assert_float_equal(logtau_grad(), ref_dlt, 1e-5 * fabs(ref_dlt) + 1e-7);
    }
    /* The call accumulates: a second one doubles dc. */
    float *once = tget(dc);
    assert_ok(fx->ctx, vqj_loss_infonce(l, ct, tt, dc, NULL));
    float *twice = tget(dc);
    for (int i = 0; i < B * P; i++)
        assert_float_equal(twice[i], 2.0f * once[i], 1e-6f * (1.0f + fabsf(once[i])));
}

typedef struct infonce_fd {
    vqj_tensor *c, *t;
} infonce_fd;

static double infonce_value(void *u)
{
    infonce_fd *f = u;
    float v;
    assert_ok(fx->ctx, vqj_loss_infonce(fx->loss, f->c, f->t, NULL, &v));
    return v;
}

static void test_infonce_gradients(void **state)
{
    (void)state;
    enum { B = 4, P = 6, Q = 8, NQ = 5 };
    vqj_loss_params p = small_params(P, Q);
    vqj_loss *l = make_loss(&p);
    float *c = tunit(B, P, 11), *t = tunit(B, P, 12);
    infonce_fd f = {ttensor(B, P, c), ttensor(B, P, t)};
    vqj_tensor *dc = ttensor(B, P, NULL);

    for (int with_queue = 0; with_queue < 2; with_queue++) {
        if (with_queue)
            assert_ok(fx->ctx, vqj_loss_queue_push(l, ttensor(NQ, P, tunit(NQ, P, 13))));
        float zero[B * P] = {0};
        tput(dc, zero);
        assert_ok(fx->ctx, vqj_loss_infonce(l, f.c, f.t, dc, NULL));
        fd_check(with_queue ? "infonce dc (queue)" : "infonce dc", c, B * P, f.c, infonce_value,
                 &f, tget(dc));
    }

    /* d / d log tau by central differences on the stored log tau. */
    const double h = 1e-3;
    float lt = read_scalar("loss.log_temperature");
    vqj_weights_zero_grad(vqj_loss_weights(l));
    assert_ok(fx->ctx, vqj_loss_infonce(l, f.c, f.t, NULL, NULL));
    float g = logtau_grad();
    write_scalar("loss.log_temperature", (float)(lt + h));
    double lp = infonce_value(&f);
    write_scalar("loss.log_temperature", (float)(lt - h));
    double lm = infonce_value(&f);
    double fd = (lp - lm) / (((double)(float)(lt + h)) - (double)(float)(lt - h));
    assert_true(fabs(fd) > 1e-2);
    assert_float_equal(g, fd, 5e-3 * fabs(fd));

    /* Clamped above (tau = exp(log 0.3) > 0.2): the value uses 0.2 and the
     * gradient is exactly 0; likewise below the minimum. */
    const float outside[2] = {logf(0.3f), logf(0.01f)};
    const float clamp_to[2] = {0.20f, 0.05f};
    for (int k = 0; k < 2; k++) {
        write_scalar("loss.log_temperature", outside[k]);
        vqj_weights_zero_grad(vqj_loss_weights(l));
        float v;
        assert_ok(fx->ctx, vqj_loss_infonce(l, f.c, f.t, NULL, &v));
        assert_true(logtau_grad() == 0.0f);
        float tau;
        assert_ok(fx->ctx, vqj_loss_temperature(l, &tau));
        assert_float_equal(tau, clamp_to[k], 0.0f);
        assert_true(v > 0.0f);
    }

    /* A fixed temperature: log tau is state and collects no gradient. */
    p.learnable_temperature = 0;
    l = make_loss(&p);
    assert_ok(fx->ctx, vqj_loss_infonce(l, f.c, f.t, dc, NULL));
    float gg;
    assert_status(fx->ctx,
                  vqj_weights_read_grad(vqj_loss_weights(l), "loss.log_temperature", &gg, 1),
                  VQJ_ERR_INVALID_ARGUMENT);
}

static void test_infonce_clamped_value(void **state)
{
    (void)state;
    enum { B = 3, P = 5 };
    vqj_loss_params p = small_params(P, 0);
    vqj_loss *l = make_loss(&p);
    float *c = tunit(B, P, 21), *t = tunit(B, P, 22);
    vqj_tensor *ct = ttensor(B, P, c), *tt = ttensor(B, P, t);
    write_scalar("loss.log_temperature", logf(0.5f));
    float v;
    assert_ok(fx->ctx, vqj_loss_infonce(l, ct, tt, NULL, &v));
    double rdc[B * P], rdlt;
    double L = ref_infonce(B, P, c, t, NULL, 0, 0.2f, rdc, &rdlt);
    assert_float_equal(v, L, 1e-5 * fabs(L));
}

/* Duplicate negatives (docs/losses.md): a hand-built batch whose rows 0
 * and 2 share a target grid, and a queue holding copies of rows 0 and 1's
 * grids. The masked loss equals InfoNCE over the remaining negatives, its
 * gradient matches finite differences, and the mask can be turned off. */
typedef struct masked_fd {
    vqj_tensor *c, *t;
    const uint64_t *ids;
} masked_fd;

static double masked_value(void *u)
{
    masked_fd *f = u;
    float v;
    assert_ok(fx->ctx, vqj_loss_infonce_ids(fx->loss, f->c, f->t, f->ids, NULL, &v));
    return v;
}

static void test_infonce_duplicate_negatives(void **state)
{
    (void)state;
    enum { B = 4, P = 6, Q = 8, NQ = 3 };
    const uint64_t ids[B] = {7, 9, 7, 0}, qids[NQ] = {9, 7, 5};
    vqj_loss_params p = small_params(P, Q);
    vqj_loss *l = make_loss(&p);
    float *c = tunit(B, P, 41), *t = tunit(B, P, 42), *q = tunit(NQ, P, 43);
    /* The same grid, the same projection. */
    memcpy(t + 2 * P, t, P * sizeof *t);
    memcpy(q, t + P, P * sizeof *q);
    memcpy(q + P, t, P * sizeof *q);
    masked_fd f = {ttensor(B, P, c), ttensor(B, P, t), ids};
    assert_ok(fx->ctx, vqj_loss_queue_push_ids(l, ttensor(NQ, P, q), qids));
    /* The ids ride beside the rows, 16 bits a float. */
    float pieces[Q * 4];
    assert_ok(fx->ctx, vqj_weights_read(vqj_loss_weights(l), "loss.queue_ids", pieces, Q * 4));
    for (int m = 0; m < NQ; m++) {
        uint64_t id = 0;
        for (int k = 0; k < 4; k++)
            id |= (uint64_t)pieces[m * 4 + k] << (16 * k);
        assert_true(id == qids[m]);
    }
    vqj_tensor *dc = ttensor(B, P, NULL);
    vqj_weights_zero_grad(vqj_loss_weights(l));
    float v;
    assert_ok(fx->ctx, vqj_loss_infonce_ids(l, f.c, f.t, ids, dc, &v));
    /* Row 0: batch row 2 and queue row 1; row 1: queue row 0; row 2: batch
     * row 0 and queue row 1; row 3 (id 0, unknown): nothing. */
    assert_int_equal(vqji_loss_masked(l), 5);
    double rdc[B * P], rdlt;
    double L = ref_infonce_ids(B, P, c, t, q, NQ, 0.07f, ids, qids, rdc, &rdlt);
    assert_float_equal(v, L, 1e-5 * fabs(L));
    float *got = tget(dc), want[B * P];
    for (int i = 0; i < B * P; i++)
        want[i] = (float)rdc[i];
    assert_true(test_rel_err(got, want, B * P, 1e-6) < 1e-5);
    assert_float_equal(logtau_grad(), rdlt, 1e-5 * fabs(rdlt) + 1e-7);
    fd_check("infonce dc (masked)", c, B * P, f.c, masked_value, &f, got);
    /* Unmasked it differs, and equals the plain reference. */
    double L0 = ref_infonce(B, P, c, t, q, NQ, 0.07f, rdc, &rdlt);
    assert_true(fabs(L0 - L) > 1e-3);
    p.mask_duplicate_negatives = 0;
    l = make_loss(&p);
    assert_ok(fx->ctx, vqj_loss_queue_push_ids(l, ttensor(NQ, P, q), qids));
    assert_ok(fx->ctx, vqj_loss_infonce_ids(l, f.c, f.t, ids, NULL, &v));
    assert_int_equal(vqji_loss_masked(l), 0);
    assert_float_equal(v, L0, 1e-5 * fabs(L0));
    /* The public call and pushes without ids mask nothing. */
    p.mask_duplicate_negatives = 1;
    l = make_loss(&p);
    assert_ok(fx->ctx, vqj_loss_queue_push(l, ttensor(NQ, P, q)));
    assert_ok(fx->ctx, vqj_loss_infonce_ids(l, f.c, f.t, ids, NULL, &v));
    assert_int_equal(vqji_loss_masked(l), 2); /* the in-batch pair only */
}

/* objective sigreg: the prediction term is w (1/B) sum_i ||c_i - t_i||^2,
 * by finite differences too; the temperature gets no gradient; c = t
 * gives 0. */
static void test_objective_sigreg(void **state)
{
    (void)state;
    enum { B = 4, P = 6, Q = 8 };
    vqj_loss_params p = small_params(P, Q);
    p.objective = VQJ_OBJECTIVE_SIGREG;
    p.infonce_weight = 0.7f;
    vqj_loss *l = make_loss(&p);
    float *c = tunit(B, P, 51), *t = tunit(B, P, 52);
    infonce_fd f = {ttensor(B, P, c), ttensor(B, P, t)};
    vqj_tensor *dc = ttensor(B, P, NULL);
    float zero[B * P] = {0};
    tput(dc, zero);
    vqj_weights_zero_grad(vqj_loss_weights(l));
    float v;
    assert_ok(fx->ctx, vqj_loss_infonce(l, f.c, f.t, dc, &v));
    double ref = 0.0;
    float want[B * P];
    for (int i = 0; i < B * P; i++) {
        ref += ((double)c[i] - t[i]) * ((double)c[i] - t[i]);
        want[i] = (float)(2.0 * 0.7 / B * ((double)c[i] - t[i]));
    }
    ref *= 0.7 / B;
    assert_float_equal(v, ref, 1e-5 * ref);
    float *got = tget(dc);
    assert_true(test_rel_err(got, want, B * P, 1e-6) < 1e-5);
    assert_true(logtau_grad() == 0.0f);
    fd_check("prediction dc", c, B * P, f.c, infonce_value, &f, got);
    assert_ok(fx->ctx, vqj_loss_infonce(l, f.t, f.t, NULL, &v));
    assert_true(v == 0.0f);
    vqj_loss_reset(l);
    assert_ok(fx->ctx, vqj_loss_infonce(l, f.c, f.t, NULL, &v));
    vqj_loss_values r = {.size = sizeof r};
    assert_ok(fx->ctx, vqj_loss_get_values(l, &r));
    assert_float_equal(r.infonce, ref, 1e-5 * ref); /* reported in the InfoNCE slot */
    p.objective = (vqj_objective)2;
    vqj_loss *bad = NULL;
    assert_status(fx->ctx, vqj_loss_create(fx->ctx, &p, &bad), VQJ_ERR_INVALID_ARGUMENT);
}

/* A checkpoint from before "loss.queue_ids" (the four tensors alone)
 * loads: the queue comes back and its rows' ids stay 0 (never masked). */
static void test_checkpoint_without_queue_ids(void **state)
{
    (void)state;
    enum { P = 3, Q = 4 };
    vqj_loss_params p = small_params(P, Q);
    vqj_loss *l = make_loss(&p);
    vqj_weights old;
    vqji_weights_init(&old, fx->ctx);
    assert_ok(fx->ctx, vqji_weights_add(&old, "loss.log_temperature", 1, 1, 1, NULL));
    assert_ok(fx->ctx, vqji_weights_add(&old, "loss.queue", Q, P, 0, NULL));
    assert_ok(fx->ctx, vqji_weights_add(&old, "loss.queue_fill", 1, 1, 0, NULL));
    assert_ok(fx->ctx, vqji_weights_add(&old, "loss.queue_head", 1, 1, 0, NULL));
    assert_ok(fx->ctx, vqji_weights_finalize(&old));
    float *q = tunit(Q, P, 61), lt = logf(0.1f), two = 2.0f;
    assert_ok(fx->ctx, vqj_weights_write(&old, "loss.queue", q, Q * P));
    assert_ok(fx->ctx, vqj_weights_write(&old, "loss.log_temperature", &lt, 1));
    assert_ok(fx->ctx, vqj_weights_write(&old, "loss.queue_fill", &two, 1));
    assert_ok(fx->ctx, vqj_weights_write(&old, "loss.queue_head", &two, 1));
    char path[] = "/tmp/vqj_test_loss_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    vqj_checkpoint_entry e = {"", &old};
    assert_ok(fx->ctx, vqj_checkpoint_save(fx->ctx, path, &e, 1, NULL));
    vqji_weights_release(&old);
    e.weights = vqj_loss_weights(l);
    assert_ok(fx->ctx, vqj_checkpoint_load(fx->ctx, path, &e, 1, 0));
    unlink(path);
    float got[Q * P], ids[Q * 4];
    assert_ok(fx->ctx, vqj_weights_read(e.weights, "loss.queue", got, Q * P));
    assert_memory_equal(got, q, sizeof got);
    assert_int_equal(queue_fill(), 2);
    assert_ok(fx->ctx, vqj_weights_read(e.weights, "loss.queue_ids", ids, Q * 4));
    for (int i = 0; i < Q * 4; i++)
        assert_true(ids[i] == 0.0f);
}

/* ---- the queue ---- */

static void test_queue_ring(void **state)
{
    (void)state;
    enum { P = 3, Q = 5 };
    vqj_loss_params p = small_params(P, Q);
    vqj_loss *l = make_loss(&p);
    /* Row r of push k holds the value 100 k + r in every column, so the
     * queue's contents name where each row came from. */
    float model[Q * P];
    for (int i = 0; i < Q * P; i++)
        model[i] = 0.0f;
    int head = 0, fill = 0;
    const int sizes[] = {3, 4, 1, 7, 0, 5, 12};
    for (int k = 0; k < (int)(sizeof sizes / sizeof *sizes); k++) {
        int n = sizes[k];
        float *x = tfloats((size_t)n * P);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < P; j++)
                x[r * P + j] = (float)(100 * (k + 1) + r);
        assert_ok(fx->ctx, vqj_loss_queue_push(l, ttensor(n, P, x)));
        /* The model: one row at a time. */
        for (int r = 0; r < n; r++) {
            for (int j = 0; j < P; j++)
                model[head * P + j] = x[r * P + j];
            head = (head + 1) % Q;
            fill = fill < Q ? fill + 1 : Q;
        }
        float got[Q * P];
        assert_ok(fx->ctx, vqj_weights_read(vqj_loss_weights(l), "loss.queue", got, Q * P));
        assert_memory_equal(got, model, sizeof got);
        assert_int_equal(queue_fill(), fill);
        assert_float_equal(read_scalar("loss.queue_head"), (float)head, 0.0f);
    }
    assert_int_equal(fill, Q);

    /* Without a queue, a push does nothing and succeeds. */
    p.queue_size = 0;
    l = make_loss(&p);
    assert_ok(fx->ctx, vqj_loss_queue_push(l, ttensor(2, P, tunit(2, P, 5))));
    assert_int_equal(queue_fill(), 0);
}

/* A full ring's negatives are all Q rows, whatever the head. */
static void test_queue_negatives_after_wrap(void **state)
{
    (void)state;
    enum { B = 3, P = 4, Q = 4 };
    vqj_loss_params p = small_params(P, Q);
    vqj_loss *l = make_loss(&p);
    float *pushed = tunit(6, P, 31);
    assert_ok(fx->ctx, vqj_loss_queue_push(l, ttensor(6, P, pushed)));
    /* Rows 2..5 survive. */
    float *c = tunit(B, P, 32), *t = tunit(B, P, 33);
    float v;
    assert_ok(fx->ctx, vqj_loss_infonce(l, ttensor(B, P, c), ttensor(B, P, t), NULL, &v));
    double rdc[B * P], rdlt;
    double L = ref_infonce(B, P, c, t, pushed + 2 * P, 4, 0.07f, rdc, &rdlt);
    assert_float_equal(v, L, 1e-5 * fabs(L));
}

/* ---- SIGReg ---- */

typedef struct sigreg_fd {
    vqj_tensor *c;
} sigreg_fd;

static double sigreg_value(void *u)
{
    sigreg_fd *f = u;
    float v;
    assert_ok(fx->ctx, vqj_loss_sigreg(fx->loss, f->c, 7, NULL, &v));
    return v;
}

static void test_sigreg_gradient(void **state)
{
    (void)state;
    enum { B = 9, P = 5 };
    vqj_loss_params p = small_params(P, 0);
    p.sigreg_num_slices = 6;
    p.sigreg_num_points = 9;
    p.sigreg_weight = 1.0f;
    vqj_loss *l = make_loss(&p);
    float *c = tgauss(B * P, 41);
    sigreg_fd f = {ttensor(B, P, c)};
    vqj_tensor *dc = ttensor(B, P, NULL);
    float v1, v2;
    assert_ok(fx->ctx, vqj_loss_sigreg(l, f.c, 7, dc, &v1));
    assert_true(v1 > 0.0f);
    fd_check("sigreg dc", c, B * P, f.c, sigreg_value, &f, tget(dc));
    /* The same step draws the same directions, another step others. */
    assert_ok(fx->ctx, vqj_loss_sigreg(l, f.c, 7, NULL, &v2));
    assert_true(v1 == v2);
    assert_ok(fx->ctx, vqj_loss_sigreg(l, f.c, 8, NULL, &v2));
    assert_true(v1 != v2);
}

static void test_sigreg_gaussian_vs_collapsed(void **state)
{
    (void)state;
    enum { B = 256, P = 16 };
    vqj_loss_params p = small_params(P, 0);
    p.sigreg_num_slices = 64;
    p.sigreg_weight = 1.0f;
    vqj_loss *l = make_loss(&p);
    /* Isotropic unit rows (normalized Gaussian draws), as the head makes
     * them: scaled by sqrt(P), their projections are close to N(0, 1). */
    float *gauss = tgauss(B * P, 51);
    for (int b = 0; b < B; b++) {
        double nn = 0.0;
        for (int j = 0; j < P; j++)
            nn += (double)gauss[b * P + j] * gauss[b * P + j];
        for (int j = 0; j < P; j++)
            gauss[b * P + j] /= (float)sqrt(nn);
    }
    /* Collapsed: every sample is the same unit row. */
    float *collapsed = tfloats(B * P);
    for (int b = 0; b < B; b++)
        memcpy(collapsed + b * P, gauss, P * sizeof(float));
    /* Rank one: unit rows along a single axis, either sign. */
    float *rank1 = tfloats(B * P);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < P; j++)
            rank1[b * P + j] = j == 0 ? (gauss[b * P] < 0.0f ? -1.0f : 1.0f) : 0.0f;
    float vg, vc, vr;
    assert_ok(fx->ctx, vqj_loss_sigreg(l, ttensor(B, P, gauss), 1, NULL, &vg));
    assert_ok(fx->ctx, vqj_loss_sigreg(l, ttensor(B, P, collapsed), 1, NULL, &vc));
    assert_ok(fx->ctx, vqj_loss_sigreg(l, ttensor(B, P, rank1), 1, NULL, &vr));
    /* Under the null the statistic is O(1) per slice (its mean is about
     * Σ_k w_k (1 - exp(-t_k²)) ≈ 0.6); a point mass gives O(B). */
    if (!(vg < 2.0f && vc > 20.0f * vg && vr > 5.0f * vg))
        fail_msg("sigreg: gaussian %g, collapsed %g, rank one %g", vg, vc, vr);
}

/* ---- relational consistency ---- */

/* Three examples of T = 2 context grids and a target each; example 1's
 * context has an empty grid and a single-object grid. */
#define REL_B 3
#define REL_T 2
static const char *const rel_grids[REL_B * (REL_T + 1)] = {
    /* contexts: example 0 */
    "12000\n12000\n00300\n00044\n00000", "11000\n00000\n00220\n00220\n00003",
    /* example 1: empty, single object */
    "000\n000\n000", "0000\n0110\n0000",
    /* example 2 */
    "10203\n10203\n00000\n40000", "11220\n00000\n33000",
    /* targets */
    "12000\n12300\n00300\n00044\n00000", "000\n000", "10020\n00020\n33000",
};

static vqj_tokens *make_tokens_from(const char *const *strs, int count)
{
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *tk = NULL;
    assert_ok(fx->ctx, vqj_tokens_create(fx->ctx, &tp, &tk));
    fx->tokens[fx->n_tokens++] = tk;
    vqj_grid grids[8];
    uint8_t cells[8][64];
    for (int g = 0; g < count; g++) {
        const char *s = strs[g];
        int h = 0, w = 0, n = 0;
        for (const char *q = s; *q; q++) {
            if (*q == '\n') {
                h++;
                continue;
            }
            cells[g][n++] = (uint8_t)(*q - '0');
            if (h == 0)
                w++;
        }
        grids[g] = (vqj_grid){h + 1, w, cells[g]};
    }
    assert_ok(fx->ctx, vqj_tokenize(fx->ctx, tk, grids, (size_t)count));
    return tk;
}

static vqj_tokens *make_tokens(int first, int count)
{
    return make_tokens_from(rel_grids + first, count);
}

typedef struct rel_fd {
    vqj_tokens *ctx_tokens, *tgt_tokens;
    vqj_tensor *hc, *ht;
} rel_fd;

static double rel_value(void *u)
{
    rel_fd *f = u;
    float v;
    assert_ok(fx->ctx, vqj_loss_relational(fx->loss, f->ctx_tokens, f->hc, NULL, f->tgt_tokens,
                                           f->ht, NULL, &v));
    return v;
}

static void test_relational_gradients(void **state)
{
    (void)state;
    enum { D = 4 };
    vqj_loss_params p = small_params(4, 0);
    p.max_objects = 5;
    p.relational_weight = 1.0f;
    p.context_self_weight = 0.5f;
    vqj_loss *l = make_loss(&p);
    rel_fd f = {make_tokens(0, REL_B * REL_T), make_tokens(REL_B * REL_T, REL_B), NULL, NULL};
    int nc = (int)vqj_tokens_num_objects(f.ctx_tokens);
    int nt = (int)vqj_tokens_num_objects(f.tgt_tokens);
    const int32_t *o = vqj_tokens_offsets(f.ctx_tokens);
    /* The fixture is what the comments say. */
    assert_int_equal(o[3] - o[2], 0);
    assert_int_equal(o[4] - o[3], 1);
    assert_int_equal(vqj_tokens_offsets(f.tgt_tokens)[2] - vqj_tokens_offsets(f.tgt_tokens)[1],
                     0);
    float *hc = trand((size_t)nc * D, 61, 1.0f), *ht = trand((size_t)nt * D, 62, 1.0f);
    f.hc = ttensor(nc, D, hc);
    f.ht = ttensor(nt, D, ht);
    vqj_tensor *dhc = ttensor(nc, D, NULL), *dht = ttensor(nt, D, NULL);
    float v;
    assert_ok(fx->ctx, vqj_loss_relational(l, f.ctx_tokens, f.hc, dhc, f.tgt_tokens, f.ht, dht,
                                           &v));
    assert_true(v > 0.0f);
    float *ghc = tget(dhc), *ght = tget(dht);
    /* A token with no adjacent object gets no gradient: the single object
     * of example 1's second context grid. */
    for (int k = 0; k < D; k++)
        assert_true(ghc[o[3] * D + k] == 0.0f);
    fd_check("relational dh_context", hc, (size_t)nc * D, f.hc, rel_value, &f, ghc);
    fd_check("relational dh_target", ht, (size_t)nt * D, f.ht, rel_value, &f, ght);

    /* Each part on its own: w_s alone makes the target irrelevant. */
    p.relational_weight = 0.0f;
    l = make_loss(&p);
    float z[64] = {0};
    tput(dht, z);
    assert_ok(fx->ctx, vqj_loss_relational(l, f.ctx_tokens, f.hc, NULL, f.tgt_tokens, f.ht, dht,
                                           &v));
    assert_true(v > 0.0f);
    float *g0 = tget(dht);
    for (int i = 0; i < nt * D; i++)
        assert_true(g0[i] == 0.0f);
}

/* r_ij by hand on a two-object grid: the value of the alignment term. */
static void test_relational_small_exact(void **state)
{
    (void)state;
    vqj_loss_params p = small_params(4, 0);
    p.max_objects = 2;
    p.relational_weight = 1.0f;
    p.context_self_weight = 1.0f;
    vqj_loss *l = make_loss(&p);
    /* Context "12" (two adjacent objects), target "10" (one object). */
    static const char *const ctx_grid[1] = {"12"}, *const tgt_grid[1] = {"10"};
    vqj_tokens *ct = make_tokens_from(ctx_grid, 1), *tt = make_tokens_from(tgt_grid, 1);
    float hc[4] = {1, 2, 4, 6}, ht[2] = {5, 5};
    float v;
    assert_ok(fx->ctx, vqj_loss_relational(l, ct, ttensor(2, 2, hc), NULL, tt,
                                           ttensor(1, 2, ht), NULL, &v));
    /* r_01 = r_10 = 3² + 4² = 25 in the context, 0 in the target; T = 1 so
     * the variance term is 0: L = (25² + 25²) / 4. */
    assert_float_equal(v, 2.0f * 625.0f / 4.0f, 1e-3f);
}

/* ---- invariance ---- */

typedef struct inv_fd {
    vqj_tensor *a, *b;
} inv_fd;

static double inv_value(void *u)
{
    inv_fd *f = u;
    float v;
    assert_ok(fx->ctx, vqj_loss_invariance(fx->loss, VQJ_INVARIANCE_TRANSLATION, f->a, f->b,
                                           NULL, &v));
    return v;
}

static void test_invariance(void **state)
{
    (void)state;
    enum { R = 3, C = 5 };
    vqj_loss_params p = small_params(4, 0);
    p.translation_weight = 2.0f;
    vqj_loss *l = make_loss(&p);
    float *a = trand(R * C, 71, 1.0f), *b = trand(R * C, 72, 1.0f);
    inv_fd f = {ttensor(R, C, a), ttensor(R, C, b)};
    vqj_tensor *da = ttensor(R, C, NULL);
    float v;
    assert_ok(fx->ctx,
              vqj_loss_invariance(l, VQJ_INVARIANCE_TRANSLATION, f.a, f.b, da, &v));
    double ref = 0.0;
    for (int i = 0; i < R * C; i++)
        ref += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    ref *= 2.0 / (R * C);
    assert_float_equal(v, ref, 1e-6 * ref);
    fd_check("invariance d_view", a, R * C, f.a, inv_value, &f, tget(da));
    /* The original is a constant: nothing else is written (b unchanged). */
    float *b2 = tget(f.b);
    assert_memory_equal(b2, b, sizeof(float) * R * C);
}

/* On representations: each grid's mean token vector, view against
 * original, gradient into both. The view is grids 0..5 of rel_grids (grid 2
 * empty), the original grids 3..8 (grid 4 empty): one grid count, different
 * objects per grid. rel_fd's fields hold view (ctx_*) and original (tgt_*,
 * ht). */
static double inv_tok_value(void *u)
{
    rel_fd *f = u;
    float v;
    assert_ok(fx->ctx, vqj_loss_invariance_tokens(fx->loss, VQJ_INVARIANCE_COLOR, f->ctx_tokens,
                                                  f->hc, NULL, f->tgt_tokens, f->ht, NULL, &v));
    return v;
}

/* The mean of grid g's rows of h (D columns) into r, in double. */
static void grid_mean(const vqj_tokens *tk, const float *h, int D, int g, double *r)
{
    const int32_t *o = vqj_tokens_offsets(tk);
    for (int k = 0; k < D; k++) {
        r[k] = 0.0;
        for (int i = o[g]; i < o[g + 1]; i++)
            r[k] += h[(size_t)i * D + k];
        if (o[g + 1] > o[g])
            r[k] /= o[g + 1] - o[g];
    }
}

static void test_invariance_tokens(void **state)
{
    (void)state;
    enum { G = 6, D = 4 };
    vqj_loss_params p = small_params(4, 0);
    p.color_weight = 4.0f;
    vqj_loss *l = make_loss(&p);
    rel_fd f = {make_tokens(0, G), make_tokens(3, G), NULL, NULL};
    int nv = (int)vqj_tokens_num_objects(f.ctx_tokens), no = (int)vqj_tokens_num_objects(f.tgt_tokens);
    assert_int_equal(vqj_tokens_offsets(f.ctx_tokens)[3] - vqj_tokens_offsets(f.ctx_tokens)[2], 0);
    assert_int_equal(vqj_tokens_offsets(f.tgt_tokens)[5] - vqj_tokens_offsets(f.tgt_tokens)[4], 0);
    assert_int_not_equal(vqj_tokens_offsets(f.ctx_tokens)[1], vqj_tokens_offsets(f.tgt_tokens)[1]);
    float *hv = trand((size_t)nv * D, 73, 1.0f), *ho = trand((size_t)no * D, 74, 1.0f);
    f.hc = ttensor(nv, D, hv);
    f.ht = ttensor(no, D, ho);
    vqj_tensor *dhv = ttensor(nv, D, NULL), *dho = ttensor(no, D, NULL);
    float v;
    assert_ok(fx->ctx, vqj_loss_invariance_tokens(l, VQJ_INVARIANCE_COLOR, f.ctx_tokens, f.hc, dhv,
                                                  f.tgt_tokens, f.ht, dho, &v));
    /* L = w Σ_g ‖rv_g - ro_g‖² / (G D), from the grid means in double. */
    double ref = 0.0, rv[D], ro[D];
    for (int g = 0; g < G; g++) {
        grid_mean(f.ctx_tokens, hv, D, g, rv);
        grid_mean(f.tgt_tokens, ho, D, g, ro);
        for (int k = 0; k < D; k++)
            ref += (rv[k] - ro[k]) * (rv[k] - ro[k]);
    }
    ref *= 4.0 / (G * D);
    assert_true(ref > 0.0);
    assert_float_equal(v, ref, 1e-6 * ref);
    float *gv = tget(dhv), *go = tget(dho);
    fd_check("invariance_tokens dh_view", hv, (size_t)nv * D, f.hc, inv_tok_value, &f, gv);
    fd_check("invariance_tokens dh_original", ho, (size_t)no * D, f.ht, inv_tok_value, &f, go);
    /* The representations' gradients are opposite: per grid, the view's
     * token gradients sum to minus the original's (where both have tokens). */
    const int32_t *ov = vqj_tokens_offsets(f.ctx_tokens), *oo = vqj_tokens_offsets(f.tgt_tokens);
    for (int g = 0; g < G; g++) {
        if (ov[g + 1] == ov[g] || oo[g + 1] == oo[g])
            continue;
        for (int k = 0; k < D; k++) {
            double sv = 0.0, so = 0.0;
            for (int i = ov[g]; i < ov[g + 1]; i++)
                sv += gv[(size_t)i * D + k];
            for (int i = oo[g]; i < oo[g + 1]; i++)
                so += go[(size_t)i * D + k];
            assert_float_equal(sv, -so, 1e-6);
        }
    }
    /* NULL gradients: the original is then a constant; the report adds up. */
    vqj_loss_reset(l);
    float v2;
    assert_ok(fx->ctx, vqj_loss_invariance_tokens(l, VQJ_INVARIANCE_COLOR, f.ctx_tokens, f.hc, dhv,
                                                  f.tgt_tokens, f.ht, NULL, &v2));
    assert_float_equal(v2, v, 0.0f);
    float *go2 = tget(dho);
    assert_memory_equal(go2, go, sizeof(float) * (size_t)no * D);
    vqj_loss_values r = {.size = sizeof r};
    assert_ok(fx->ctx, vqj_loss_get_values(l, &r));
    assert_float_equal(r.invariance_color, v, 0.0f);
    /* Errors: grid counts, widths, rows. */
    vqj_context *ctx = fx->ctx;
    assert_status(ctx, vqj_loss_invariance_tokens(l, VQJ_INVARIANCE_COLOR, f.ctx_tokens, f.hc, NULL,
                                                  make_tokens(0, G - 1), f.ht, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_invariance_tokens(l, VQJ_INVARIANCE_COLOR, f.ctx_tokens, f.hc, NULL,
                                                  f.tgt_tokens, ttensor(no, D + 1, NULL), NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_invariance_tokens(l, VQJ_INVARIANCE_COLOR, f.ctx_tokens,
                                                  ttensor(nv + 1, D, NULL), NULL, f.tgt_tokens, f.ht,
                                                  NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_invariance_tokens(l, (vqj_invariance_kind)9, f.ctx_tokens, f.hc, NULL,
                                                  f.tgt_tokens, f.ht, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_invariance_tokens(l, VQJ_INVARIANCE_COLOR, NULL, f.hc, NULL,
                                                  f.tgt_tokens, f.ht, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
}

/* ---- report, zero weights ---- */

static void test_report(void **state)
{
    (void)state;
    enum { B = 4, P = 6 };
    vqj_loss_params p = small_params(P, 8);
    p.sigreg_num_slices = 8;
    vqj_loss *l = make_loss(&p);
    vqj_tensor *c = ttensor(B, P, tunit(B, P, 81)), *t = ttensor(B, P, tunit(B, P, 82));
    float vi, vs, vc1, vc2, vsym;
    assert_ok(fx->ctx, vqj_loss_infonce(l, c, t, NULL, &vi));
    assert_ok(fx->ctx, vqj_loss_sigreg(l, c, 3, NULL, &vs));
    assert_ok(fx->ctx, vqj_loss_invariance(l, VQJ_INVARIANCE_COLOR, c, t, NULL, &vc1));
    assert_ok(fx->ctx, vqj_loss_invariance(l, VQJ_INVARIANCE_COLOR, t, c, NULL, &vc2));
    assert_ok(fx->ctx, vqj_loss_invariance(l, VQJ_INVARIANCE_SYMMETRY, c, t, NULL, &vsym));
    assert_ok(fx->ctx, vqj_loss_add_commitment(l, 0.25f));
    vqj_loss_values r = {.size = sizeof r};
    assert_ok(fx->ctx, vqj_loss_get_values(l, &r));
    assert_float_equal(r.infonce, vi, 0.0f);
    assert_float_equal(r.sigreg, vs, 0.0f);
    assert_float_equal(r.invariance_color, vc1 + vc2, 1e-7f);
    assert_float_equal(r.invariance_symmetry, vsym, 0.0f);
    assert_float_equal(r.invariance_translation, 0.0f, 0.0f);
    assert_float_equal(r.commitment, 0.25f, 0.0f);
    assert_float_equal(r.relational, 0.0f, 0.0f);
    assert_float_equal(r.total, vi + vs + vc1 + vc2 + vsym + 0.25f, 1e-5f);
    assert_float_equal(r.temperature, 0.07f, 1e-7f);
    /* Weighted: color's value is 0.1 * MSE. */
    float ca[B * P], ta[B * P];
    assert_ok(fx->ctx, vqj_tensor_read(c, ca, B * P));
    assert_ok(fx->ctx, vqj_tensor_read(t, ta, B * P));
    double mse = 0.0;
    for (int i = 0; i < B * P; i++)
        mse += ((double)ca[i] - ta[i]) * ((double)ca[i] - ta[i]) / (B * P);
    assert_float_equal(vc1, 0.1 * mse, 1e-6);

    vqj_loss_reset(l);
    assert_ok(fx->ctx, vqj_loss_get_values(l, &r));
    assert_true(r.total == 0.0f && r.infonce == 0.0f && r.commitment == 0.0f);
    vqj_loss_reset(NULL);
    r.size = 4;
    assert_status(fx->ctx, vqj_loss_get_values(l, &r), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(fx->ctx, vqj_loss_add_commitment(l, NAN), VQJ_ERR_NUMERIC);
}

static void test_zero_weights(void **state)
{
    (void)state;
    enum { B = 4, P = 6 };
    vqj_loss_params p = small_params(P, 8);
    p.infonce_weight = p.relational_weight = p.context_self_weight = p.sigreg_weight = 0.0f;
    p.color_weight = p.translation_weight = p.symmetry_weight = 0.0f;
    vqj_loss *l = make_loss(&p);
    float *pattern = trand(B * P, 91, 1.0f);
    vqj_tensor *c = ttensor(B, P, tunit(B, P, 92)), *t = ttensor(B, P, tunit(B, P, 93));
    vqj_tensor *dc = ttensor(B, P, pattern);
    float v = -1.0f;
    assert_ok(fx->ctx, vqj_loss_infonce(l, c, t, dc, &v));
    assert_true(v == 0.0f);
    v = -1.0f;
    assert_ok(fx->ctx, vqj_loss_sigreg(l, c, 1, dc, &v));
    assert_true(v == 0.0f);
    assert_int_equal(vqji_loss_sigreg_draws(l), 0); /* no directions drawn */
    for (int k = 0; k < 3; k++) {
        v = -1.0f;
        assert_ok(fx->ctx, vqj_loss_invariance(l, (vqj_invariance_kind)k, c, t, dc, &v));
        assert_true(v == 0.0f);
    }
    rel_fd f = {make_tokens(0, REL_B * REL_T), make_tokens(REL_B * REL_T, REL_B), NULL, NULL};
    int nc = (int)vqj_tokens_num_objects(f.ctx_tokens);
    int nt = (int)vqj_tokens_num_objects(f.tgt_tokens);
    float *hp = trand((size_t)nc * 3, 94, 1.0f);
    vqj_tensor *dh = ttensor(nc, 3, hp);
    v = -1.0f;
    assert_ok(fx->ctx, vqj_loss_relational(l, f.ctx_tokens, ttensor(nc, 3, hp), dh,
                                           f.tgt_tokens, ttensor(nt, 3, NULL), NULL, &v));
    assert_true(v == 0.0f);
    assert_memory_equal(tget(dh), hp, (size_t)nc * 3 * sizeof(float));
    assert_memory_equal(tget(dc), pattern, sizeof(float) * B * P);
    assert_true(logtau_grad() == 0.0f);
    vqj_loss_values r = {.size = sizeof r};
    assert_ok(fx->ctx, vqj_loss_get_values(l, &r));
    assert_true(r.total == 0.0f);

    /* A nonzero SIGReg weight draws once per call. */
    p.sigreg_weight = 0.1f;
    l = make_loss(&p);
    assert_ok(fx->ctx, vqj_loss_sigreg(l, c, 1, NULL, &v));
    assert_int_equal(vqji_loss_sigreg_draws(l), 1);
}

/* ---- error paths ---- */

static void test_errors(void **state)
{
    (void)state;
    vqj_context *ctx = fx->ctx;
    enum { B = 3, P = 4, Q = 4 };
    vqj_loss_params p = small_params(P, Q);
    p.sigreg_num_slices = 4;
    vqj_loss *l = make_loss(&p);
    float *cv = tunit(B, P, 101), *tv = tunit(B, P, 102);
    vqj_tensor *c = ttensor(B, P, cv), *t = ttensor(B, P, tv), *dc = ttensor(B, P, NULL);
    vqj_tensor *wrong = ttensor(B, P + 1, NULL), *short_t = ttensor(B - 1, P, NULL);
    assert_ok(ctx, vqj_loss_queue_push(l, t));

    /* NULLs and shapes. */
    assert_int_equal(vqj_loss_infonce(NULL, c, t, dc, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_infonce(l, NULL, t, dc, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_infonce(l, c, NULL, dc, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_infonce(l, wrong, t, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_infonce(l, c, short_t, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_infonce(l, c, t, wrong, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_sigreg(l, wrong, 0, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_sigreg(l, c, 0, wrong, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_queue_push(l, wrong), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_invariance(l, (vqj_invariance_kind)7, c, t, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_loss_invariance(l, VQJ_INVARIANCE_COLOR, c, wrong, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    float tau;
    assert_status(ctx, vqj_loss_temperature(l, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_loss_queue_fill(NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);

    /* A tensor of another context. */
    vqj_context *other = test_context();
    vqj_tensor *foreign = NULL;
    assert_ok(other, vqj_tensor_create(other, B, P, &foreign));
    assert_status(ctx, vqj_loss_infonce(l, foreign, t, NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_true(strstr(vqj_last_error(), "another context") != NULL);
    vqj_tensor_destroy(foreign);
    vqj_context_destroy(other);

    /* Non-finite inputs: VQJ_ERR_NUMERIC, and nothing changes. */
    float queue_before[Q * P], queue_after[Q * P];
    assert_ok(ctx, vqj_weights_read(vqj_loss_weights(l), "loss.queue", queue_before, Q * P));
    float bad[B * P];
    memcpy(bad, cv, sizeof bad);
    bad[5] = NAN;
    vqj_tensor *nan_t = ttensor(B, P, bad);
    bad[5] = INFINITY;
    vqj_tensor *inf_t = ttensor(B, P, bad);
    vqj_weights_zero_grad(vqj_loss_weights(l));
    float v = 123.0f;
    assert_status(ctx, vqj_loss_infonce(l, nan_t, t, dc, &v), VQJ_ERR_NUMERIC);
    assert_status(ctx, vqj_loss_infonce(l, c, inf_t, dc, &v), VQJ_ERR_NUMERIC);
    assert_status(ctx, vqj_loss_sigreg(l, nan_t, 0, dc, &v), VQJ_ERR_NUMERIC);
    assert_status(ctx, vqj_loss_invariance(l, VQJ_INVARIANCE_COLOR, c, inf_t, dc, &v),
                  VQJ_ERR_NUMERIC);
    assert_status(ctx, vqj_loss_queue_push(l, nan_t), VQJ_ERR_NUMERIC);
    assert_true(v == 123.0f);
    float *dcv = tget(dc);
    for (int i = 0; i < B * P; i++)
        assert_true(dcv[i] == 0.0f);
    assert_true(logtau_grad() == 0.0f);
    assert_int_equal(queue_fill(), B);
    assert_ok(ctx, vqj_weights_read(vqj_loss_weights(l), "loss.queue", queue_after, Q * P));
    assert_memory_equal(queue_before, queue_after, sizeof queue_before);
    vqj_loss_values r = {.size = sizeof r};
    assert_ok(ctx, vqj_loss_get_values(l, &r));
    assert_true(r.total == 0.0f);

    /* A non-finite temperature written into the weights. */
    float lt = read_scalar("loss.log_temperature");
    size_t idx = 0;
    assert_ok(ctx, vqji_weights_find(vqj_loss_weights(l), "loss.log_temperature", &idx));
    vqji_weights_data(vqj_loss_weights(l), idx)[0] = NAN; /* weights_write refuses NaN */
    assert_status(ctx, vqj_loss_infonce(l, c, t, dc, NULL), VQJ_ERR_NUMERIC);
    assert_status(ctx, vqj_loss_temperature(l, &tau), VQJ_ERR_NUMERIC);
    write_scalar("loss.log_temperature", lt);

    /* Queue counters that are no ring position. */
    write_scalar("loss.queue_head", 1.0f); /* fill 3 < Q but head != fill */
    assert_status(ctx, vqj_loss_infonce(l, c, t, NULL, NULL), VQJ_ERR_STATE);
    assert_status(ctx, vqj_loss_queue_push(l, t), VQJ_ERR_STATE);
    int f;
    assert_status(ctx, vqj_loss_queue_fill(l, &f), VQJ_ERR_STATE);
    write_scalar("loss.queue_head", 2.5f);
    write_scalar("loss.queue_fill", (float)Q);
    assert_status(ctx, vqj_loss_queue_fill(l, &f), VQJ_ERR_STATE);
    write_scalar("loss.queue_head", 0.0f);
    write_scalar("loss.queue_fill", 0.0f);
    assert_ok(ctx, vqj_loss_queue_fill(l, &f));

    /* Relational: grid counts, widths, object counts. */
    p.max_objects = 2;
    p.relational_weight = 1.0f;
    l = make_loss(&p);
    vqj_tokens *ct = make_tokens(0, REL_B * REL_T), *tt = make_tokens(REL_B * REL_T, REL_B);
    int nc = (int)vqj_tokens_num_objects(ct), nt = (int)vqj_tokens_num_objects(tt);
    vqj_tensor *hc = ttensor(nc, 3, NULL), *ht = ttensor(nt, 3, NULL);
    assert_status(ctx, vqj_loss_relational(l, ct, hc, NULL, tt, ht, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT); /* grid 0 has 4 objects > 2 */
    assert_true(strstr(vqj_last_error(), "max_objects") != NULL);
    p.max_objects = 16;
    l = make_loss(&p);
    assert_ok(ctx, vqj_loss_relational(l, ct, hc, NULL, ct, hc, NULL, NULL)); /* T = 1 */
    assert_status(ctx, vqj_loss_relational(l, tt, ht, NULL, ct, hc, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT); /* 3 context grids for 6 targets */
    assert_status(ctx, vqj_loss_relational(l, ct, ttensor(nc, 2, NULL), NULL, tt, ht, NULL,
                                           NULL),
                  VQJ_ERR_INVALID_ARGUMENT); /* widths differ */
    assert_status(ctx, vqj_loss_relational(l, ct, ttensor(nc + 1, 3, NULL), NULL, tt,
                                           ttensor(nt, 3, NULL), NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT); /* rows differ from the token count */
    assert_status(ctx, vqj_loss_relational(l, NULL, hc, NULL, tt, ht, NULL, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    float *hbad = tfloats((size_t)nc * 3);
    hbad[0] = NAN;
    vqj_tensor *dh = ttensor(nc, 3, NULL);
    assert_status(ctx, vqj_loss_relational(l, ct, ttensor(nc, 3, hbad), dh, tt, ht, NULL, &v),
                  VQJ_ERR_NUMERIC);
    float *dhv = tget(dh);
    for (int i = 0; i < nc * 3; i++)
        assert_true(dhv[i] == 0.0f);
}

/* ---- PyTorch vectors (tools/reference/loss_ref.py) ---- */

static const float *vec(const vqjt_file *f, const char *name, size_t expect)
{
    size_t n = 0;
    const float *x = vqjt_f32(f, name, &n);
    if (!x || (expect && n != expect))
        fail_msg("loss.bin: %s missing or %zu values (expected %zu)", name, n, expect);
    return x;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n)
{
    double err = test_rel_err(got, want, n, 1e-6);
    if (!(err < 1e-4))
        fail_msg("%s: rel. error %g against the PyTorch reference", what, err);
}

static void test_reference_vectors(void **state)
{
    (void)state;
    char err[256];
    vqjt_file *f = vqjt_load("tests/data/loss.bin", err, sizeof err);
    if (!f)
        fail_msg("%s (regenerate with /usr/bin/python3 tools/reference/loss_ref.py)", err);
    vqj_context *ctx = fx->ctx;

    /* InfoNCE: in-batch and queue negatives, then a clamped temperature. */
    int B = vqjt_int(f, "infonce.batch", 0), P = vqjt_int(f, "infonce.dim", 0);
    int NQ = vqjt_int(f, "infonce.queue_rows", 0), Q = vqjt_int(f, "infonce.queue_size", 0);
    assert_true(B > 0 && P > 0 && NQ > 0 && Q >= NQ);
    vqj_loss_params p = small_params(P, Q);
    p.temperature = vqjt_float(f, "infonce.temperature", 0.0f);
    p.infonce_weight = vqjt_float(f, "infonce.weight", 0.0f);
    vqj_loss *l = make_loss(&p);
    vqj_tensor *c = ttensor(B, P, vec(f, "infonce.c", (size_t)B * P));
    vqj_tensor *t = ttensor(B, P, vec(f, "infonce.t", (size_t)B * P));
    assert_ok(ctx, vqj_loss_queue_push(l, ttensor(NQ, P, vec(f, "infonce.queue", (size_t)NQ * P))));
    const char *cases[2] = {"infonce", "infonce_clamped"};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.log_tau", cases[k]);
        write_scalar("loss.log_temperature", vec(f, name, 1)[0]);
        vqj_weights_zero_grad(vqj_loss_weights(l));
        vqj_tensor *dc = ttensor(B, P, NULL);
        float v;
        assert_ok(ctx, vqj_loss_infonce(l, c, t, dc, &v));
        snprintf(name, sizeof name, "%s.value", cases[k]);
        expect_close(name, &v, vec(f, name, 1), 1);
        snprintf(name, sizeof name, "%s.dc", cases[k]);
        expect_close(name, tget(dc), vec(f, name, (size_t)B * P), (size_t)B * P);
        snprintf(name, sizeof name, "%s.dlog_tau", cases[k]);
        float g = logtau_grad();
        const float *want = vec(f, name, 1);
        if (want[0] == 0.0f)
            assert_true(g == 0.0f);
        else
            expect_close(name, &g, want, 1);
    }

    /* SIGReg with the reference's directions. */
    B = vqjt_int(f, "sigreg.batch", 0);
    P = vqjt_int(f, "sigreg.dim", 0);
    p = small_params(P, 0);
    p.sigreg_num_slices = vqjt_int(f, "sigreg.num_slices", 0);
    p.sigreg_num_points = vqjt_int(f, "sigreg.num_points", 0);
    p.sigreg_weight = vqjt_float(f, "sigreg.weight", 0.0f);
    l = make_loss(&p);
    {
        vqj_tensor *cs = ttensor(B, P, vec(f, "sigreg.c", (size_t)B * P));
        vqj_tensor *dc = ttensor(B, P, NULL);
        float v;
        const float *dirs = vec(f, "sigreg.directions", (size_t)P * p.sigreg_num_slices);
        assert_ok(ctx, vqji_loss_sigreg_with(l, cs, dirs, dc, &v));
        expect_close("sigreg.value", &v, vec(f, "sigreg.value", 1), 1);
        expect_close("sigreg.dc", tget(dc), vec(f, "sigreg.dc", (size_t)B * P), (size_t)B * P);
    }

    /* Relational on packed arrays (host memory is device memory on the CPU). */
    {
        int RB = vqjt_int(f, "relational.batch", 0), RT = vqjt_int(f, "relational.context", 0);
        int D = vqjt_int(f, "relational.dim", 0);
        p = small_params(4, 0);
        p.max_objects = vqjt_int(f, "relational.max_objects", 0);
        p.relational_weight = vqjt_float(f, "relational.weight", 0.0f);
        p.context_self_weight = vqjt_float(f, "relational.context_self_weight", 0.0f);
        l = make_loss(&p);
        size_t nco, nto;
        const int32_t *co = vqjt_i32(f, "relational.ctx.offsets", &nco);
        const int32_t *to = vqjt_i32(f, "relational.tgt.offsets", &nto);
        assert_non_null(co);
        assert_non_null(to);
        assert_int_equal(nco, (size_t)RB * RT + 1);
        assert_int_equal(nto, (size_t)RB + 1);
        size_t nc = (size_t)co[nco - 1], nt = (size_t)to[nto - 1];
        const float *hc = vec(f, "relational.ctx.h", nc * D);
        const float *ht = vec(f, "relational.tgt.h", nt * D);
        float *dhc = tfloats(nc * D), *dht = tfloats(nt * D);
        float v;
        assert_ok(ctx, vqji_loss_relational_packed(
                           l, RB, RT, D, co, vqjt_u8(f, "relational.ctx.adj", NULL),
                           vqjt_i64(f, "relational.ctx.adj_offsets", NULL), nc, hc, dhc, to,
                           vqjt_u8(f, "relational.tgt.adj", NULL),
                           vqjt_i64(f, "relational.tgt.adj_offsets", NULL), nt, ht, dht, &v));
        expect_close("relational.value", &v, vec(f, "relational.value", 1), 1);
        expect_close("relational.ctx.dh", dhc, vec(f, "relational.ctx.dh", nc * D), nc * D);
        expect_close("relational.tgt.dh", dht, vec(f, "relational.tgt.dh", nt * D), nt * D);
    }

    /* Invariance. */
    {
        size_t n;
        const float *a = vqjt_f32(f, "invariance.view", &n);
        const float *b = vec(f, "invariance.original", n);
        assert_non_null(a);
        p = small_params(4, 0);
        p.symmetry_weight = vqjt_float(f, "invariance.weight", 0.0f);
        l = make_loss(&p);
        vqj_tensor *da = ttensor(1, (int)n, NULL);
        float v;
        assert_ok(ctx, vqj_loss_invariance(l, VQJ_INVARIANCE_SYMMETRY, ttensor(1, (int)n, a),
                                           ttensor(1, (int)n, b), da, &v));
        expect_close("invariance.value", &v, vec(f, "invariance.value", 1), 1);
        expect_close("invariance.d_view", tget(da), vec(f, "invariance.d_view", n), n);
    }
    vqjt_free(f);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_params_default),
        T(test_params_validation),
        T(test_infonce_reference),
        T(test_infonce_gradients),
        T(test_infonce_clamped_value),
        T(test_infonce_duplicate_negatives),
        T(test_objective_sigreg),
        T(test_checkpoint_without_queue_ids),
        T(test_queue_ring),
        T(test_queue_negatives_after_wrap),
        T(test_sigreg_gradient),
        T(test_sigreg_gaussian_vs_collapsed),
        T(test_relational_gradients),
        T(test_relational_small_exact),
        T(test_invariance),
        T(test_invariance_tokens),
        T(test_report),
        T(test_zero_weights),
        T(test_errors),
        T(test_reference_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
