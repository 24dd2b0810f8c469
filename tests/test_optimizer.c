/* The optimizer (docs/optimizer.md): Adam and AdamW against PyTorch over a
 * 20-step trajectory (tests/data/optim.bin from tools/reference/optim_ref.py),
 * skipped non-finite steps, clipping, gradient scale, the schedules, the
 * state view, the target EMA and the documented errors. Run from the
 * repository root (or set VQJ_TEST_DATA to the folder holding optim.bin). */
#include "testutil.h"
#include "vectors.h"

#include "device/tensor.h"
#include "device/device.h"

/* ---- Small weights views built directly (no model handle needed) ---- */

typedef struct tspec {
    const char *name;
    int64_t rows, cols;
    int trainable;
} tspec;

static vqj_weights *make_view(vqj_context *ctx, const tspec *spec, int n)
{
    vqj_weights *w = calloc(1, sizeof *w);
    assert_non_null(w);
    vqji_weights_init(w, ctx);
    for (int i = 0; i < n; i++)
        assert_ok(ctx, vqji_weights_add(w, spec[i].name, spec[i].rows, spec[i].cols,
                                        spec[i].trainable, NULL));
    assert_ok(ctx, vqji_weights_finalize(w));
    return w;
}

static void free_view(vqj_weights *w)
{
    vqji_weights_release(w);
    free(w);
}

static void set_grad(vqj_weights *w, const char *name, const float *g, size_t n)
{
    size_t i;
    vqj_context *ctx = w->ctx;
    assert_ok(ctx, vqji_weights_find(w, name, &i));
    assert_int_equal(w->items[i].count, n);
    vqji_device *dev = ctx->device;
    assert_ok(ctx, dev->ops->upload(dev, vqji_weights_grad(w, i), g, n * sizeof(float)));
}

static void set_grad_value(vqj_weights *w, const char *name, size_t n, float value)
{
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    for (size_t k = 0; k < n; k++)
        g[k] = value;
    set_grad(w, name, g, n);
    free(g);
}

/* Host copy of a whole view's data (weights and state). */
static float *snapshot(const vqj_weights *w)
{
    float *h = malloc((w->total ? w->total : 1) * sizeof *h);
    assert_non_null(h);
    vqji_device *dev = w->ctx->device;
    assert_ok(w->ctx, dev->ops->download(dev, h, w->data, w->total * sizeof(float)));
    return h;
}

/* The trajectory's layout: group 0 holds p0 and a state tensor, group 1
 * holds p1, group 2 only state (the optimizer must ignore it). */
static const tspec G0[] = {{"stats", 2, 1, 0}, {"p0", 3, 4, 1}};
static const tspec G1[] = {{"p1", 5, 1, 1}};
static const tspec G2[] = {{"ema.count", 3, 1, 0}};

typedef struct setup3 {
    vqj_weights *g[3];
} setup3;

static void make_groups(vqj_context *ctx, setup3 *s)
{
    s->g[0] = make_view(ctx, G0, 2);
    s->g[1] = make_view(ctx, G1, 1);
    s->g[2] = make_view(ctx, G2, 1);
    const float stats[2] = {7.0f, -3.0f}, cnt[3] = {1.0f, 2.0f, 3.0f};
    assert_ok(ctx, vqj_weights_write(s->g[0], "stats", stats, 2));
    assert_ok(ctx, vqj_weights_write(s->g[2], "ema.count", cnt, 3));
}

static void free_groups(setup3 *s)
{
    for (int i = 0; i < 3; i++)
        free_view(s->g[i]);
}

/* ---- Against PyTorch ----
 * Tolerance 1e-5 relative (max-norm over each tensor): both sides run the
 * same float32 elementwise operations in the same order with the same
 * double-precision scalars (bias corrections, step size, schedule), so the
 * per-step difference is a few float32 ulps (6e-8 each) coming from the norm
 * (double here, float32 norm-of-norms in torch), hence the clip coefficient,
 * and from torch's vectorised kernels. The largest error measured over the
 * 20 steps is 2.4e-7 (v after step 0), so 1e-5 leaves a margin of 40 for
 * other compilers and CPUs, while a wrong bias correction, decay placement,
 * clip factor or warmup offset moves results by 3e-4 or more. */
#define REF_TOL 1e-5

static vqjt_file *load_ref(void)
{
    char path[512], err[256];
    const char *dir = getenv("VQJ_TEST_DATA");
    snprintf(path, sizeof path, "%s/optim.bin", dir ? dir : "tests/data");
    vqjt_file *f = vqjt_load(path, err, sizeof err);
    if (!f)
        fail_msg("%s (regenerate with /usr/bin/python3 tools/reference/optim_ref.py)", err);
    return f;
}

static const float *ref_f32(const vqjt_file *f, const char *name, size_t expect)
{
    size_t n;
    const float *x = vqjt_f32(f, name, &n);
    if (!x)
        fail_msg("optim.bin has no f32 tensor %s", name);
    assert_int_equal(n, expect);
    return x;
}

static void params_from_ref(const vqjt_file *f, vqj_optimizer_params *p, vqj_optimizer_kind kind)
{
    vqj_optimizer_params_default(p);
    p->kind = kind;
    p->lr = vqjt_float(f, "hp.lr", NAN);
    p->beta1 = vqjt_float(f, "hp.beta1", NAN);
    p->beta2 = vqjt_float(f, "hp.beta2", NAN);
    p->eps = vqjt_float(f, "hp.eps", NAN);
    p->weight_decay = vqjt_float(f, "hp.weight_decay", NAN);
    p->max_grad_norm = vqjt_float(f, "hp.max_grad_norm", NAN);
    p->min_lr_scale = vqjt_float(f, "hp.min_lr_scale", NAN);
    p->warmup_steps = vqjt_int(f, "hp.warmup_steps", -1);
    p->total_steps = vqjt_int(f, "hp.total_steps", -1);
    p->schedule = VQJ_LR_COSINE;
}

static void check_close(const char *what, int step, const float *got, const float *want, size_t n)
{
    double e = test_rel_err(got, want, n, 1e-12);
    if (!(e <= REF_TOL))
        fail_msg("%s at step %d: relative error %.3g > %.0e", what, step, e, REF_TOL);
}

static void run_reference(vqj_optimizer_kind kind, const char *prefix)
{
    vqj_context *ctx = test_context();
    vqjt_file *f = load_ref();
    int steps = vqjt_int(f, "hp.steps", 0);
    assert_true(steps > 0);
    const float *p0i = ref_f32(f, "p0.init", 12), *p1i = ref_f32(f, "p1.init", 5);
    const float *g0 = ref_f32(f, "grad.p0", (size_t)steps * 12);
    const float *g1 = ref_f32(f, "grad.p1", (size_t)steps * 5);
    char name[64];
#define REF(field, per) (snprintf(name, sizeof name, "%s." field, prefix), \
                         ref_f32(f, name, (size_t)steps * (per)))
    const float *lr = REF("lr", 1), *norm = REF("norm", 1);
    const float *rp0 = REF("p0", 12), *rp1 = REF("p1", 5);
    const float *rm0 = REF("m0", 12), *rv0 = REF("v0", 12);
    const float *rm1 = REF("m1", 5), *rv1 = REF("v1", 5);
#undef REF

    setup3 s;
    make_groups(ctx, &s);
    assert_ok(ctx, vqj_weights_write(s.g[0], "p0", p0i, 12));
    assert_ok(ctx, vqj_weights_write(s.g[1], "p1", p1i, 5));
    vqj_optimizer_params p;
    params_from_ref(f, &p, kind);
    vqj_optimizer *opt = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, &opt));
    vqj_weights *state = vqj_optimizer_state(opt);
    assert_non_null(state);

    int clipped = 0;
    for (int k = 0; k < steps; k++) {
        float one_lr = vqj_optimizer_lr(opt);
        check_close("vqj_optimizer_lr", k, &one_lr, &lr[k], 1);
        set_grad(s.g[0], "p0", g0 + 12 * k, 12);
        set_grad(s.g[1], "p1", g1 + 5 * k, 5);
        vqj_step_info info = {.size = sizeof info};
        assert_ok(ctx, vqj_optimizer_step(opt, 1.0f, &info));
        assert_int_equal(info.size, sizeof info);
        assert_int_equal(info.applied, 1);
        assert_int_equal(info.step, k + 1);
        assert_int_equal(vqj_optimizer_steps(opt), k + 1);
        check_close("info.lr", k, &info.lr, &lr[k], 1);
        check_close("info.grad_norm", k, &info.grad_norm, &norm[k], 1);
        clipped += norm[k] > p.max_grad_norm;

        float got[12];
        assert_ok(ctx, vqj_weights_read(s.g[0], "p0", got, 12));
        check_close("p0", k, got, rp0 + 12 * k, 12);
        assert_ok(ctx, vqj_weights_read(s.g[1], "p1", got, 5));
        check_close("p1", k, got, rp1 + 5 * k, 5);
        assert_ok(ctx, vqj_weights_read(state, "adam.m.0", got, 12));
        check_close("m0", k, got, rm0 + 12 * k, 12);
        assert_ok(ctx, vqj_weights_read(state, "adam.v.0", got, 12));
        check_close("v0", k, got, rv0 + 12 * k, 12);
        assert_ok(ctx, vqj_weights_read(state, "adam.m.1", got, 5));
        check_close("m1", k, got, rm1 + 5 * k, 5);
        assert_ok(ctx, vqj_weights_read(state, "adam.v.1", got, 5));
        check_close("v1", k, got, rv1 + 5 * k, 5);
    }
    /* The trajectory exercises clipping on some steps only. */
    assert_true(clipped > 0 && clipped < steps);
    /* State tensors of the groups are never touched. */
    float st2[2], st3[3];
    assert_ok(ctx, vqj_weights_read(s.g[0], "stats", st2, 2));
    assert_true(st2[0] == 7.0f && st2[1] == -3.0f);
    assert_ok(ctx, vqj_weights_read(s.g[2], "ema.count", st3, 3));
    assert_true(st3[0] == 1.0f && st3[1] == 2.0f && st3[2] == 3.0f);
    /* Group 2 has no trainable floats, hence no moments. */
    assert_int_equal(vqj_weights_num_tensors(state), 4);

    vqj_optimizer_destroy(opt);
    free_groups(&s);
    vqjt_free(f);
    vqj_context_destroy(ctx);
}

static void test_adam_matches_torch(void **state)
{
    (void)state;
    run_reference(VQJ_OPT_ADAM, "adam");
}

static void test_adamw_matches_torch(void **state)
{
    (void)state;
    run_reference(VQJ_OPT_ADAMW, "adamw");
}

/* ---- Non-finite gradients ---- */

typedef struct opt_snap {
    float *g0, *g1, *g2, *st;
    int64_t steps;
    float lr;
} opt_snap;

static opt_snap take(vqj_optimizer *opt, setup3 *s)
{
    opt_snap o = {snapshot(s->g[0]), snapshot(s->g[1]), snapshot(s->g[2]),
                  snapshot(vqj_optimizer_state(opt)), vqj_optimizer_steps(opt),
                  vqj_optimizer_lr(opt)};
    return o;
}

static void drop(opt_snap *o)
{
    free(o->g0);
    free(o->g1);
    free(o->g2);
    free(o->st);
}

static void feed(setup3 *s, int k)
{
    float g0[12], g1[5];
    test_fill(g0, 12, 100 + (uint32_t)k, 0.3f);
    test_fill(g1, 5, 200 + (uint32_t)k, 0.3f);
    set_grad(s->g[0], "p0", g0, 12);
    set_grad(s->g[1], "p1", g1, 5);
}

static void test_nonfinite_step_is_skipped(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    setup3 a, b;
    make_groups(ctx, &a);
    make_groups(ctx, &b);
    float init[12];
    test_fill(init, 12, 7, 1.0f);
    assert_ok(ctx, vqj_weights_write(a.g[0], "p0", init, 12));
    assert_ok(ctx, vqj_weights_write(b.g[0], "p0", init, 12));
    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    p.kind = VQJ_OPT_ADAMW;
    p.lr = 1e-2f;
    p.weight_decay = 0.1f;
    p.warmup_steps = 2;
    p.total_steps = 8;
    vqj_optimizer *oa = NULL, *ob = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, a.g, 3, &oa));
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, b.g, 3, &ob));

    const float bad[3] = {NAN, INFINITY, -INFINITY};
    int k = 0;
    for (int round = 0; round < 3; round++) {
        /* Two ordinary steps on both, so the moments are not trivially 0. */
        for (int r = 0; r < 2; r++, k++) {
            feed(&a, k);
            feed(&b, k);
            assert_ok(ctx, vqj_optimizer_step(oa, 1.0f, NULL));
            assert_ok(ctx, vqj_optimizer_step(ob, 1.0f, NULL));
        }
        /* A non-finite gradient in the second group only: a skips it. */
        opt_snap before = take(oa, &a);
        feed(&a, 1000 + round);
        float g1[5] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
        g1[round + 1] = bad[round];
        set_grad(a.g[1], "p1", g1, 5);
        vqj_step_info info = {.size = sizeof info};
        assert_ok(ctx, vqj_optimizer_step(oa, 1.0f, &info));
        assert_int_equal(info.applied, 0);
        assert_false(isfinite(info.grad_norm));
        assert_int_equal(info.step, before.steps);
        assert_true(info.lr == before.lr);
        opt_snap after = take(oa, &a);
        assert_memory_equal(before.g0, after.g0, a.g[0]->total * sizeof(float));
        assert_memory_equal(before.g1, after.g1, a.g[1]->total * sizeof(float));
        assert_memory_equal(before.g2, after.g2, a.g[2]->total * sizeof(float));
        assert_memory_equal(before.st, after.st, vqj_optimizer_state(oa)->total * sizeof(float));
        assert_int_equal(after.steps, before.steps);
        assert_memory_equal(&after.lr, &before.lr, sizeof(float));
        drop(&before);
        drop(&after);
    }
    /* The skipped steps left no trace: a and b, fed the same finite
     * gradients, are bit for bit equal (parameters, moments, schedule). */
    for (int r = 0; r < 5; r++, k++) {
        feed(&a, k);
        feed(&b, k);
        assert_ok(ctx, vqj_optimizer_step(oa, 1.0f, NULL));
        assert_ok(ctx, vqj_optimizer_step(ob, 1.0f, NULL));
    }
    opt_snap sa = take(oa, &a), sb = take(ob, &b);
    assert_memory_equal(sa.g0, sb.g0, a.g[0]->total * sizeof(float));
    assert_memory_equal(sa.g1, sb.g1, a.g[1]->total * sizeof(float));
    assert_memory_equal(sa.st, sb.st, vqj_optimizer_state(oa)->total * sizeof(float));
    assert_int_equal(sa.steps, 11);
    assert_int_equal(sb.steps, 11);
    drop(&sa);
    drop(&sb);
    vqj_optimizer_destroy(oa);
    vqj_optimizer_destroy(ob);
    free_groups(&a);
    free_groups(&b);
    vqj_context_destroy(ctx);
}

/* ---- Clipping ---- */

/* First-step moments reveal the gradient the update used: m = (1 - beta1) g. */
static void clip_case(float max_norm, float gval, int expect_clip)
{
    vqj_context *ctx = test_context();
    setup3 s;
    make_groups(ctx, &s);
    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    p.max_grad_norm = max_norm;
    p.weight_decay = 0.0f;
    vqj_optimizer *opt = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, &opt));
    set_grad_value(s.g[0], "p0", 12, gval);
    set_grad_value(s.g[1], "p1", 5, -gval);
    double norm = sqrt(17.0) * fabs((double)gval);
    vqj_step_info info = {.size = sizeof info};
    assert_ok(ctx, vqj_optimizer_step(opt, 1.0f, &info));
    assert_int_equal(info.applied, 1);
    /* The norm reported is the one before clipping. */
    assert_float_equal(info.grad_norm, norm, 1e-6 * norm);
    double coef = expect_clip ? max_norm / (norm + 1e-6) : 1.0;
    float m0[12], m1[5];
    assert_ok(ctx, vqj_weights_read(vqj_optimizer_state(opt), "adam.m.0", m0, 12));
    assert_ok(ctx, vqj_weights_read(vqj_optimizer_state(opt), "adam.m.1", m1, 5));
    double want = (1.0 - (double)p.beta1) * gval * coef;
    for (int i = 0; i < 12; i++)
        assert_float_equal(m0[i], want, 1e-6 * fabs(want));
    for (int i = 0; i < 5; i++)
        assert_float_equal(m1[i], -want, 1e-6 * fabs(want));
    vqj_optimizer_destroy(opt);
    free_groups(&s);
    vqj_context_destroy(ctx);
}

static void test_clipping(void **state)
{
    (void)state;
    clip_case(0.5f, 1.0f, 1);   /* norm sqrt(17) > 0.5: clipped over both groups */
    clip_case(0.5f, 0.05f, 0);  /* norm 0.206 < 0.5: untouched */
    clip_case(0.0f, 3.0f, 0);   /* 0 disables clipping */
}

/* grad_scale multiplies the gradient before everything else: a scale of
 * 0.25 on G gives exactly (bit for bit: powers of two) the step on G / 4. */
static void test_grad_scale(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    setup3 a, b;
    make_groups(ctx, &a);
    make_groups(ctx, &b);
    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    p.lr = 1e-2f;
    p.warmup_steps = 0;
    vqj_optimizer *oa = NULL, *ob = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, a.g, 3, &oa));
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, b.g, 3, &ob));
    for (int k = 0; k < 4; k++) {
        float g0[12], g1[5];
        test_fill(g0, 12, 300 + (uint32_t)k, k % 2 ? 4.0f : 0.5f); /* clipped on odd k */
        test_fill(g1, 5, 400 + (uint32_t)k, k % 2 ? 4.0f : 0.5f);
        set_grad(a.g[0], "p0", g0, 12);
        set_grad(a.g[1], "p1", g1, 5);
        for (int i = 0; i < 12; i++)
            g0[i] *= 0.25f;
        for (int i = 0; i < 5; i++)
            g1[i] *= 0.25f;
        set_grad(b.g[0], "p0", g0, 12);
        set_grad(b.g[1], "p1", g1, 5);
        vqj_step_info ia = {.size = sizeof ia}, ib = {.size = sizeof ib};
        assert_ok(ctx, vqj_optimizer_step(oa, 0.25f, &ia));
        assert_ok(ctx, vqj_optimizer_step(ob, 1.0f, &ib));
        assert_true(ia.grad_norm == ib.grad_norm);
    }
    opt_snap sa = take(oa, &a), sb = take(ob, &b);
    assert_memory_equal(sa.g0, sb.g0, a.g[0]->total * sizeof(float));
    assert_memory_equal(sa.g1, sb.g1, a.g[1]->total * sizeof(float));
    assert_memory_equal(sa.st, sb.st, vqj_optimizer_state(oa)->total * sizeof(float));
    /* The gradient buffers are only read. */
    float g[12], want[12];
    test_fill(want, 12, 303, 4.0f);
    assert_ok(ctx, vqj_weights_read_grad(a.g[0], "p0", g, 12));
    assert_memory_equal(g, want, sizeof g);
    /* zero_grad clears every group. */
    assert_ok(ctx, vqj_optimizer_zero_grad(oa));
    float z0[12], z1[5];
    assert_ok(ctx, vqj_weights_read_grad(a.g[0], "p0", z0, 12));
    assert_ok(ctx, vqj_weights_read_grad(a.g[1], "p1", z1, 5));
    for (int i = 0; i < 12; i++)
        assert_true(z0[i] == 0.0f);
    for (int i = 0; i < 5; i++)
        assert_true(z1[i] == 0.0f);
    drop(&sa);
    drop(&sb);
    vqj_optimizer_destroy(oa);
    vqj_optimizer_destroy(ob);
    free_groups(&a);
    free_groups(&b);
    vqj_context_destroy(ctx);
}

/* ---- Schedules ---- */

static double formula(vqj_lr_schedule sched, double lr, int64_t w, int64_t t, double lo,
                      int64_t s)
{
    if (s < w)
        return lr * (double)(s + 1) / (double)w;
    if (sched == VQJ_LR_CONSTANT)
        return lr;
    double prog = t > w ? fmin(1.0, (double)(s - w) / (double)(t - w)) : 1.0;
    if (sched == VQJ_LR_COSINE)
        return lr * fmax(lo, 0.5 * (1 + cos(3.14159265358979323846 * prog)));
    return lr * fmax(lo, 1 - prog);
}

static void test_schedules(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    setup3 s;
    make_groups(ctx, &s);
    const vqj_lr_schedule kinds[3] = {VQJ_LR_CONSTANT, VQJ_LR_COSINE, VQJ_LR_LINEAR};
    const int64_t cfg[3][2] = {{1000, 1500}, {0, 10}, {5, 5}}; /* warmup, total */
    const int64_t at[] = {0, 1, 4, 5, 6, 9, 10, 11, 500, 999, 1000, 1001, 1250, 1499, 1500,
                          1501, 100000};
    for (int ki = 0; ki < 3; ki++)
        for (int ci = 0; ci < 3; ci++) {
            vqj_optimizer_params p;
            vqj_optimizer_params_default(&p);
            p.schedule = kinds[ki];
            p.lr = 3e-4f;
            p.min_lr_scale = 0.2f;
            p.warmup_steps = cfg[ci][0];
            p.total_steps = cfg[ci][1];
            vqj_optimizer *opt = NULL;
            assert_ok(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, &opt));
            for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
                assert_ok(ctx, vqj_optimizer_set_steps(opt, at[i]));
                assert_int_equal(vqj_optimizer_steps(opt), at[i]);
                double want = formula(p.schedule, p.lr, p.warmup_steps, p.total_steps,
                                      p.min_lr_scale, at[i]);
                float got = vqj_optimizer_lr(opt);
                if (fabs(got - want) > 1e-6 * p.lr)
                    fail_msg("schedule %d warmup %lld total %lld step %lld: lr %.9g, want %.9g",
                             (int)p.schedule, (long long)p.warmup_steps,
                             (long long)p.total_steps, (long long)at[i], got, want);
            }
            vqj_optimizer_destroy(opt);
        }
    /* Spot values written out by hand: warmup 1000, total 1500, floor 0.1;
     * the original's schedule: (s + 1) / W, then max(0.1, cosine). Steps 0,
     * W - 1, W, mid-decay, where the cosine crosses the floor, the end. */
    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    p.lr = 1.0f;
    vqj_optimizer *opt = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, &opt));
    const struct { int64_t step; float lr; } spots[] = {
        {0, 0.001f},    {249, 0.25f},   {999, 1.0f},  {1000, 1.0f},
        {1250, 0.5f},   {1396, 0.1030048f}, {1400, 0.1f}, {1500, 0.1f}, {9999, 0.1f}};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        assert_ok(ctx, vqj_optimizer_set_steps(opt, spots[i].step));
        assert_float_equal(vqj_optimizer_lr(opt), spots[i].lr, 1e-6);
    }
    assert_status(ctx, vqj_optimizer_set_steps(opt, -1), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_optimizer_steps(opt), 9999);
    vqj_optimizer_destroy(opt);
    free_groups(&s);
    vqj_context_destroy(ctx);
}

/* ---- Checkpoint round trip through the state view ---- */

static void test_state_roundtrip(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    setup3 a, b;
    make_groups(ctx, &a);
    make_groups(ctx, &b);
    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    p.lr = 1e-2f;
    p.warmup_steps = 2;
    p.total_steps = 10;
    vqj_optimizer *oa = NULL, *ob = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, a.g, 3, &oa));
    for (int k = 0; k < 3; k++) {
        feed(&a, k);
        assert_ok(ctx, vqj_optimizer_step(oa, 1.0f, NULL));
    }
    /* "Save" a, "load" into a fresh optimizer over copies of the weights. */
    vqj_weights *sa = vqj_optimizer_state(oa);
    assert_int_equal(vqj_weights_num_tensors(sa), 4);
    assert_int_equal(vqj_weights_num_params(sa), 0);
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, b.g, 3, &ob));
    vqj_weights *sb = vqj_optimizer_state(ob);
    const char *names[4] = {"adam.m.0", "adam.v.0", "adam.m.1", "adam.v.1"};
    const size_t counts[4] = {12, 12, 5, 5};
    float buf[12];
    for (int i = 0; i < 4; i++) {
        vqj_weight_info wi;
        assert_ok(ctx, vqj_weights_info(sa, (size_t)i, &wi));
        assert_string_equal(wi.name, names[i]);
        assert_int_equal(wi.count, counts[i]);
        assert_int_equal(wi.trainable, 0);
        assert_ok(ctx, vqj_weights_read(sa, names[i], buf, counts[i]));
        assert_ok(ctx, vqj_weights_write(sb, names[i], buf, counts[i]));
    }
    assert_ok(ctx, vqj_weights_read(a.g[0], "p0", buf, 12));
    assert_ok(ctx, vqj_weights_write(b.g[0], "p0", buf, 12));
    assert_ok(ctx, vqj_weights_read(a.g[1], "p1", buf, 5));
    assert_ok(ctx, vqj_weights_write(b.g[1], "p1", buf, 5));
    assert_ok(ctx, vqj_optimizer_set_steps(ob, vqj_optimizer_steps(oa)));
    for (int k = 3; k < 8; k++) {
        feed(&a, k);
        feed(&b, k);
        assert_ok(ctx, vqj_optimizer_step(oa, 1.0f, NULL));
        assert_ok(ctx, vqj_optimizer_step(ob, 1.0f, NULL));
    }
    opt_snap xa = take(oa, &a), xb = take(ob, &b);
    assert_memory_equal(xa.g0, xb.g0, a.g[0]->total * sizeof(float));
    assert_memory_equal(xa.g1, xb.g1, a.g[1]->total * sizeof(float));
    assert_memory_equal(xa.st, xb.st, sa->total * sizeof(float));
    drop(&xa);
    drop(&xb);
    vqj_optimizer_destroy(oa);
    vqj_optimizer_destroy(ob);
    free_groups(&a);
    free_groups(&b);
    vqj_context_destroy(ctx);
}

/* ---- Target EMA ---- */

static const tspec NET[] = {{"w", 2, 3, 1}, {"norm.count", 2, 1, 0}, {"b", 3, 1, 1}};

static void test_ema(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_weights *t = make_view(ctx, NET, 3), *o = make_view(ctx, NET, 3);
    const float tw[6] = {1, 2, 3, 4, 5, 6}, ow[6] = {-1, 0, 1, 2, 10, 0.5f};
    const float tb[3] = {0.5f, -0.5f, 8}, ob[3] = {1.5f, 0.5f, -8};
    const float tc[2] = {11, 12}, oc[2] = {21, 22};
    assert_ok(ctx, vqj_weights_write(t, "w", tw, 6));
    assert_ok(ctx, vqj_weights_write(o, "w", ow, 6));
    assert_ok(ctx, vqj_weights_write(t, "b", tb, 3));
    assert_ok(ctx, vqj_weights_write(o, "b", ob, 3));
    assert_ok(ctx, vqj_weights_write(t, "norm.count", tc, 2));
    assert_ok(ctx, vqj_weights_write(o, "norm.count", oc, 2));

    assert_ok(ctx, vqj_weights_ema(t, o, 0.75f));
    float w[6], b[3], c[2];
    assert_ok(ctx, vqj_weights_read(t, "w", w, 6));
    assert_ok(ctx, vqj_weights_read(t, "b", b, 3));
    assert_ok(ctx, vqj_weights_read(t, "norm.count", c, 2));
    for (int i = 0; i < 6; i++)
        assert_float_equal(w[i], 0.75 * tw[i] + 0.25 * ow[i], 1e-6);
    for (int i = 0; i < 3; i++)
        assert_float_equal(b[i], 0.75 * tb[i] + 0.25 * ob[i], 1e-6);
    assert_true(c[0] == 11 && c[1] == 12); /* state untouched */
    /* decay 1 keeps the target, decay 0 copies the online weights. */
    assert_ok(ctx, vqj_weights_ema(t, o, 1.0f));
    float w2[6];
    assert_ok(ctx, vqj_weights_read(t, "w", w2, 6));
    assert_memory_equal(w, w2, sizeof w);
    assert_ok(ctx, vqj_weights_ema(t, o, 0.0f));
    assert_ok(ctx, vqj_weights_read(t, "w", w2, 6));
    assert_memory_equal(w2, ow, sizeof w2);
    free_view(t);
    free_view(o);
    vqj_context_destroy(ctx);
}

static void expect_ema_error(vqj_context *ctx, vqj_weights *t, const vqj_weights *o, float decay,
                             const char *needle)
{
    float *before = snapshot(t);
    assert_status(ctx, vqj_weights_ema(t, o, decay), VQJ_ERR_INVALID_ARGUMENT);
    const char *msg = vqj_last_error();
    if (!strstr(msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
    float *after = snapshot(t);
    assert_memory_equal(before, after, t->total * sizeof(float));
    free(before);
    free(after);
}

static void test_ema_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_weights *t = make_view(ctx, NET, 3);
    float init[6] = {1, 2, 3, 4, 5, 6};
    assert_ok(ctx, vqj_weights_write(t, "w", init, 6));
    const tspec renamed[] = {{"w", 2, 3, 1}, {"c", 3, 1, 1}};
    const tspec reshaped[] = {{"w", 3, 2, 1}, {"b", 3, 1, 1}};
    const tspec fewer[] = {{"w", 2, 3, 1}};
    const tspec more[] = {{"w", 2, 3, 1}, {"b", 3, 1, 1}, {"extra", 1, 1, 1}};
    const tspec other_state[] = {{"w", 2, 3, 1}, {"b", 3, 1, 1}, {"other", 7, 1, 0}};
    vqj_weights *v1 = make_view(ctx, renamed, 2), *v2 = make_view(ctx, reshaped, 2);
    vqj_weights *v3 = make_view(ctx, fewer, 1), *v4 = make_view(ctx, more, 3);
    vqj_weights *v5 = make_view(ctx, other_state, 3);
    expect_ema_error(ctx, t, v1, 0.5f, "\"b\" in target but \"c\" in online");
    expect_ema_error(ctx, t, v2, 0.5f, "\"w\" is 2 x 3 in target but 3 x 2 in online");
    expect_ema_error(ctx, t, v3, 0.5f, "online has only 1 trainable");
    expect_ema_error(ctx, t, v4, 0.5f, "target has only 2 trainable");
    expect_ema_error(ctx, t, t, 1.5f, "decay is 1.5");
    expect_ema_error(ctx, t, t, -0.1f, "must be in [0, 1]");
    expect_ema_error(ctx, t, t, NAN, "decay");
    /* Only trainable tensors must agree: different state is fine. */
    assert_ok(ctx, vqj_weights_ema(t, v5, 0.5f));
    vqj_context *ctx2 = test_context();
    vqj_weights *elsewhere = make_view(ctx2, NET, 3);
    expect_ema_error(ctx, t, elsewhere, 0.5f, "different contexts");
    assert_status(ctx, vqj_weights_ema(NULL, t, 0.5f), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_weights_ema(t, NULL, 0.5f), VQJ_ERR_INVALID_ARGUMENT);
    free_view(elsewhere);
    vqj_context_destroy(ctx2);
    free_view(v1);
    free_view(v2);
    free_view(v3);
    free_view(v4);
    free_view(v5);
    free_view(t);
    vqj_context_destroy(ctx);
}

/* ---- Parameter validation and other errors ---- */

typedef void (*breaker)(vqj_optimizer_params *p);
#define BREAK(fn, stmt) static void fn(vqj_optimizer_params *p) { stmt; }
BREAK(bad_kind, p->kind = (vqj_optimizer_kind)2)
BREAK(bad_lr, p->lr = -1e-3f)
BREAK(nan_lr, p->lr = NAN)
BREAK(bad_beta1, p->beta1 = 1.0f)
BREAK(bad_beta2, p->beta2 = -0.1f)
BREAK(bad_eps, p->eps = 0.0f)
BREAK(bad_wd, p->weight_decay = -1e-6f)
BREAK(bad_clip, p->max_grad_norm = INFINITY)
BREAK(bad_sched, p->schedule = (vqj_lr_schedule)7)
BREAK(bad_warmup, p->warmup_steps = -1)
BREAK(bad_total, p->total_steps = -5)
BREAK(bad_floor, p->min_lr_scale = 1.5f)
BREAK(bad_size, p->size = sizeof(size_t))

static void test_bad_params(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    setup3 s;
    make_groups(ctx, &s);
    const struct { breaker fn; const char *needle; } cases[] = {
        {bad_kind, "kind is 2"},
        {bad_lr, "lr is -0.001; it must be finite and >= 0"},
        {nan_lr, "lr is nan"},
        {bad_beta1, "beta1 is 1; it must be in [0, 1)"},
        {bad_beta2, "beta2 is -0.1"},
        {bad_eps, "eps is 0; it must be finite and > 0"},
        {bad_wd, "weight_decay is"},
        {bad_clip, "max_grad_norm is inf"},
        {bad_sched, "schedule is 7"},
        {bad_warmup, "warmup_steps is -1; it must be >= 0"},
        {bad_total, "total_steps is -5"},
        {bad_floor, "min_lr_scale is 1.5; it must be in [0, 1]"},
        {bad_size, "vqj_optimizer_params.size"},
    };
    vqj_optimizer *sentinel = (vqj_optimizer *)&s; /* *out must stay unchanged */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vqj_optimizer_params p;
        vqj_optimizer_params_default(&p);
        cases[i].fn(&p);
        vqj_optimizer *opt = sentinel;
        assert_status(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, &opt),
                      VQJ_ERR_INVALID_ARGUMENT);
        assert_ptr_equal(opt, sentinel);
        const char *msg = vqj_last_error();
        if (!strstr(msg, cases[i].needle))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, msg, cases[i].needle);
    }

    /* A newer caller's struct with an unknown field set. */
    struct {
        vqj_optimizer_params p;
        uint64_t future;
    } big;
    memset(&big, 0, sizeof big);
    vqj_optimizer_params_default(&big.p);
    big.p.size = sizeof big;
    big.future = 1;
    vqj_optimizer *opt = sentinel;
    assert_status(ctx, vqj_optimizer_create(ctx, &big.p, s.g, 3, &opt), VQJ_ERR_UNSUPPORTED);
    big.future = 0; /* zero extra bytes: accepted */
    assert_ok(ctx, vqj_optimizer_create(ctx, &big.p, s.g, 3, &opt));
    vqj_optimizer_destroy(opt);

    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    assert_true(p.size == sizeof p && p.kind == VQJ_OPT_ADAM && p.lr == 5e-5f &&
                p.beta1 == 0.9f && p.beta2 == 0.999f && p.eps == 1e-8f &&
                p.weight_decay == 1e-6f && p.max_grad_norm == 0.5f &&
                p.schedule == VQJ_LR_COSINE && p.warmup_steps == 1000 &&
                p.total_steps == 1500 && p.min_lr_scale == 0.1f);
    opt = sentinel;
    assert_status(ctx, vqj_optimizer_create(ctx, &p, s.g, 0, &opt), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "num_groups is 0"));
    assert_status(ctx, vqj_optimizer_create(ctx, &p, NULL, 3, &opt), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_optimizer_create(ctx, NULL, s.g, 3, &opt), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, NULL), VQJ_ERR_INVALID_ARGUMENT);
    vqj_weights *dup[2] = {s.g[1], s.g[1]};
    assert_status(ctx, vqj_optimizer_create(ctx, &p, dup, 2, &opt), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "same weights view"));
    vqj_weights *with_null[2] = {s.g[0], NULL};
    assert_status(ctx, vqj_optimizer_create(ctx, &p, with_null, 2, &opt),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "groups[1] is NULL"));
    vqj_context *ctx2 = test_context();
    vqj_weights *foreign = make_view(ctx2, G1, 1);
    vqj_weights *mixed[2] = {s.g[0], foreign};
    assert_status(ctx, vqj_optimizer_create(ctx, &p, mixed, 2, &opt), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "another context"));
    assert_ptr_equal(opt, sentinel);
    free_view(foreign);
    vqj_context_destroy(ctx2);

    /* Step arguments. */
    assert_ok(ctx, vqj_optimizer_create(ctx, &p, s.g, 3, &opt));
    vqj_step_info info = {.size = sizeof info};
    assert_status(ctx, vqj_optimizer_step(opt, 0.0f, &info), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "grad_scale is 0"));
    assert_status(ctx, vqj_optimizer_step(opt, NAN, &info), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_optimizer_step(opt, -1.0f, &info), VQJ_ERR_INVALID_ARGUMENT);
    info.size = 4;
    assert_status(ctx, vqj_optimizer_step(opt, 1.0f, &info), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "info->size is 4"));
    assert_int_equal(vqj_optimizer_steps(opt), 0);
    assert_status(ctx, vqj_optimizer_step(NULL, 1.0f, &info), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_optimizer_zero_grad(NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(vqj_optimizer_state(NULL));
    assert_int_equal(vqj_optimizer_steps(NULL), 0);
    assert_true(vqj_optimizer_lr(NULL) == 0.0f);
    vqj_optimizer_destroy(opt);
    vqj_optimizer_destroy(NULL);
    vqj_optimizer_params_default(NULL);
    free_groups(&s);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_matches_torch),
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_nonfinite_step_is_skipped),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_grad_scale),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_ema_errors),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
