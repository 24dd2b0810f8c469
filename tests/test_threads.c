/* The CPU backend's thread pool: every parallel kernel gives the same bits
 * at 1, 2 and 3 threads (src/device/threadpool.h), and whole training steps
 * at 2 threads repeat bit for bit and stay within rounding of 1 thread. */
#include "testutil.h"
#include "testmodel.h"

#include "core/core.h"
#include "device/device.h"

/* A CPU context with `threads` threads. */
static vqj_context *threads_context(int threads)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = threads;
    p.seed = 42;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK)
        fail_msg("vqj_context_create: %s", vqj_last_error());
    return ctx;
}

static float *rand_floats(size_t n, uint32_t seed, float scale)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    test_fill(x, n, seed, scale);
    return x;
}

static float *dup_floats(const float *x, size_t n)
{
    float *y = malloc((n ? n : 1) * sizeof *y);
    assert_non_null(y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* Packed grids of 1..24 tokens with a random symmetric adjacency: offsets
 * [g + 1], adjacency offsets [g + 1] (sum of n_g²), adjacency bytes. */
typedef struct packed {
    int grids, tokens;
    int32_t *offsets;
    int64_t *adj_offsets;
    uint8_t *adj;
} packed;

static packed make_packed(int grids, uint32_t seed)
{
    packed p = {.grids = grids};
    p.offsets = calloc((size_t)grids + 1, sizeof *p.offsets);
    p.adj_offsets = calloc((size_t)grids + 1, sizeof *p.adj_offsets);
    assert_true(p.offsets && p.adj_offsets);
    uint32_t s = seed;
    for (int g = 0; g < grids; g++) {
        s = s * 1664525u + 1013904223u;
        int n = 1 + (int)((s >> 10) % 24);
        p.offsets[g + 1] = p.offsets[g] + n;
        p.adj_offsets[g + 1] = p.adj_offsets[g] + (int64_t)n * n;
    }
    p.tokens = p.offsets[grids];
    p.adj = calloc((size_t)p.adj_offsets[grids] + 1, 1);
    assert_non_null(p.adj);
    for (int g = 0; g < grids; g++) {
        int n = p.offsets[g + 1] - p.offsets[g];
        uint8_t *a = p.adj + p.adj_offsets[g];
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) {
                s = s * 1664525u + 1013904223u;
                a[i * n + j] = a[j * n + i] = (uint8_t)((s >> 16) % 3 == 0);
            }
    }
    return p;
}

static void free_packed(packed *p)
{
    free(p->offsets);
    free(p->adj_offsets);
    free(p->adj);
}

#define SAME(a, b, n) assert_memory_equal((a), (b), (n) * sizeof *(a))

/* Each kernel on the 1-thread device (d1) and on a many-thread one (dn)
 * from the same inputs: identical outputs. Sizes are large enough that
 * every kernel splits its range. */
static void check_kernels(int threads)
{
    vqj_context *c1 = test_context(), *cn = threads_context(threads);
    vqji_device *d1 = c1->device, *dn = cn->device;
    const vqji_device_ops *o = d1->ops;
    assert_int_equal(dn->num_threads, threads);
    const int n = 3001, c = 160;
    const size_t nc = (size_t)n * c;

    /* Elementwise: fill, scale, axpy, copy, activations, dropout, Adam, EMA. */
    float *x = rand_floats(nc, 1, 3.0f), *dy = rand_floats(nc, 2, 1.0f);
    float *y1 = rand_floats(nc, 3, 1.0f), *yn = dup_floats(y1, nc);
    float *m1 = rand_floats(nc, 4, 1.0f), *mn = dup_floats(m1, nc);
    o->fill(d1, nc - 5, 0.0f, y1 + 3);
    o->fill(dn, nc - 5, 0.0f, yn + 3);
    SAME(y1, yn, nc);
    o->fill(d1, nc, -0.0f, y1);
    o->fill(dn, nc, -0.0f, yn);
    SAME(y1, yn, nc);
    o->fill(d1, nc, 1.5f, y1);
    o->fill(dn, nc, 1.5f, yn);
    o->scale(d1, nc, 0.3f, y1);
    o->scale(dn, nc, 0.3f, yn);
    o->axpy(d1, nc, -1.7f, x, y1);
    o->axpy(dn, nc, -1.7f, x, yn);
    SAME(y1, yn, nc);
    o->copy(d1, y1, x, nc * sizeof *x);
    o->copy(dn, yn, x, nc * sizeof *x);
    SAME(y1, yn, nc);
    o->copy(d1, y1 + 1, y1, (nc - 1) * sizeof *x); /* overlapping: memmove */
    o->copy(dn, yn + 1, yn, (nc - 1) * sizeof *x);
    SAME(y1, yn, nc);
    o->gelu_forward(d1, nc, x, y1);
    o->gelu_forward(dn, nc, x, yn);
    SAME(y1, yn, nc);
    o->gelu_forward(d1, nc, y1, y1); /* in place */
    o->gelu_forward(dn, nc, yn, yn);
    SAME(y1, yn, nc);
    o->gelu_backward(d1, nc, x, dy, y1);
    o->gelu_backward(dn, nc, x, dy, yn);
    SAME(y1, yn, nc);
    o->relu_forward(d1, nc, x, y1);
    o->relu_forward(dn, nc, x, yn);
    o->relu_backward(d1, nc, x, dy, y1);
    o->relu_backward(dn, nc, x, dy, yn);
    SAME(y1, yn, nc);
    o->tanh_forward(d1, nc, x, y1);
    o->tanh_forward(dn, nc, x, yn);
    SAME(y1, yn, nc);
    o->tanh_backward(d1, nc, x, dy, y1);
    o->tanh_backward(dn, nc, x, dy, yn);
    SAME(y1, yn, nc);
    o->dropout_forward(d1, nc, 0.3f, 77, x, y1, m1);
    o->dropout_forward(dn, nc, 0.3f, 77, x, yn, mn);
    SAME(y1, yn, nc);
    SAME(m1, mn, nc);
    o->dropout_backward(d1, nc, m1, dy, y1);
    o->dropout_backward(dn, nc, mn, dy, yn);
    SAME(y1, yn, nc);
    o->ema_blend(d1, nc, 0.99f, x, y1);
    o->ema_blend(dn, nc, 0.99f, x, yn);
    SAME(y1, yn, nc);
    {
        float *p1 = rand_floats(nc, 5, 1.0f), *pn = dup_floats(p1, nc);
        float *v1 = rand_floats(nc, 6, 1.0f), *vn;
        for (size_t i = 0; i < nc; i++)
            v1[i] = fabsf(v1[i]);
        vn = dup_floats(v1, nc);
        memcpy(mn, m1, nc * sizeof *m1);
        for (int decoupled = 0; decoupled < 2; decoupled++) {
            o->adam_update(d1, nc, p1, dy, m1, v1, 1e-3, 0.9f, 0.999f, 1e-8f, 0.01f, decoupled,
                           0.1, 0.01, 0.5f);
            o->adam_update(dn, nc, pn, dy, mn, vn, 1e-3, 0.9f, 0.999f, 1e-8f, 0.01f, decoupled,
                           0.1, 0.01, 0.5f);
        }
        SAME(p1, pn, nc);
        SAME(m1, mn, nc);
        SAME(v1, vn, nc);
        free(p1);
        free(pn);
        free(v1);
        free(vn);
    }

    /* Rows: bias, layer norm, L2 norm. */
    float *gamma = rand_floats((size_t)c, 7, 1.0f), *beta = rand_floats((size_t)c, 8, 1.0f);
    float *mean1 = calloc((size_t)n, sizeof(float)), *meann = calloc((size_t)n, sizeof(float));
    float *rstd1 = calloc((size_t)n, sizeof(float)), *rstdn = calloc((size_t)n, sizeof(float));
    float *g1 = rand_floats((size_t)c, 9, 1.0f), *gn = dup_floats(g1, (size_t)c);
    float *b1 = rand_floats((size_t)c, 10, 1.0f), *bn = dup_floats(b1, (size_t)c);
    assert_true(mean1 && meann && rstd1 && rstdn);
    o->bias_forward(d1, n, c, beta, y1);
    o->bias_forward(dn, n, c, beta, yn);
    SAME(y1, yn, nc);
    o->bias_backward(d1, n, c, dy, b1);
    o->bias_backward(dn, n, c, dy, bn);
    SAME(b1, bn, (size_t)c);
    o->layernorm_forward(d1, n, c, x, gamma, beta, 1e-5f, y1, mean1, rstd1);
    o->layernorm_forward(dn, n, c, x, gamma, beta, 1e-5f, yn, meann, rstdn);
    SAME(y1, yn, nc);
    SAME(mean1, meann, (size_t)n);
    SAME(rstd1, rstdn, (size_t)n);
    memcpy(m1, y1, nc * sizeof *m1);
    memcpy(mn, y1, nc * sizeof *mn);
    o->layernorm_backward(d1, n, c, dy, x, gamma, mean1, rstd1, m1, g1, b1);
    o->layernorm_backward(dn, n, c, dy, x, gamma, meann, rstdn, mn, gn, bn);
    SAME(m1, mn, nc);
    SAME(g1, gn, (size_t)c);
    SAME(b1, bn, (size_t)c);
    o->l2norm_forward(d1, n, c, x, 1e-6f, y1, mean1);
    o->l2norm_forward(dn, n, c, x, 1e-6f, yn, meann);
    SAME(y1, yn, nc);
    SAME(mean1, meann, (size_t)n);
    o->l2norm_backward(d1, n, c, x, y1, mean1, 1e-6f, dy, m1);
    o->l2norm_backward(dn, n, c, x, yn, meann, 1e-6f, dy, mn);
    SAME(m1, mn, nc);

    /* Grids: attention, segment means, relational distances. */
    packed pk = make_packed(400, 11);
    const int heads = 4, d = 32, mcap = 24;
    size_t t3 = (size_t)pk.tokens * 3 * d, td = (size_t)pk.tokens * d;
    size_t np = (size_t)heads * (size_t)pk.adj_offsets[pk.grids];
    float *qkv = rand_floats(t3, 12, 1.0f), *dout = rand_floats(td, 13, 1.0f);
    float *o1 = calloc(td, sizeof(float)), *on = calloc(td, sizeof(float));
    float *pr1 = calloc(np, sizeof(float)), *prn = calloc(np, sizeof(float));
    float *dq1 = rand_floats(t3, 14, 1.0f), *dqn = dup_floats(dq1, t3);
    assert_true(o1 && on && pr1 && prn);
    o->attention_forward(d1, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, heads, qkv, o1, pr1);
    o->attention_forward(dn, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, heads, qkv, on, prn);
    SAME(o1, on, td);
    SAME(pr1, prn, np);
    o->attention_backward(d1, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, heads, qkv, pr1,
                          dout, dq1);
    o->attention_backward(dn, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, heads, qkv, prn,
                          dout, dqn);
    SAME(dq1, dqn, t3);
    size_t gd = (size_t)pk.grids * d;
    o->segment_mean_forward(d1, pk.grids, pk.offsets, d, dout, o1);
    o->segment_mean_forward(dn, pk.grids, pk.offsets, d, dout, on);
    SAME(o1, on, gd);
    memcpy(dq1, qkv, td * sizeof *dq1);
    memcpy(dqn, qkv, td * sizeof *dqn);
    o->segment_mean_backward(d1, pk.grids, pk.offsets, d, dout, dq1);
    o->segment_mean_backward(dn, pk.grids, pk.offsets, d, dout, dqn);
    SAME(dq1, dqn, td);
    size_t rmm = (size_t)pk.grids * mcap * mcap;
    float *r1 = calloc(rmm, sizeof(float)), *rn = calloc(rmm, sizeof(float));
    float *dr = rand_floats(rmm, 15, 1.0f);
    assert_true(r1 && rn);
    o->relational_distances_forward(d1, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, mcap,
                                    dout, r1);
    o->relational_distances_forward(dn, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, mcap,
                                    dout, rn);
    SAME(r1, rn, rmm);
    o->relational_distances_backward(d1, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, mcap,
                                     dout, dr, dq1);
    o->relational_distances_backward(dn, pk.grids, pk.offsets, pk.adj, pk.adj_offsets, d, mcap,
                                     dout, dr, dqn);
    SAME(dq1, dqn, td);

    /* Codebook: assignment, statistics, gather, EMA codes, k-means++ scan. */
    const int k = 512;
    float *e = rand_floats((size_t)k * c, 16, 3.0f);
    float *scratch = calloc(((size_t)n + 1) * k, sizeof(float));
    int32_t *i1 = calloc((size_t)n, sizeof *i1), *in = calloc((size_t)n, sizeof *in);
    float *cnt1 = calloc((size_t)k, sizeof(float)), *cntn = calloc((size_t)k, sizeof(float));
    float *s1 = calloc((size_t)k * c, sizeof(float)), *sn = calloc((size_t)k * c, sizeof(float));
    assert_true(scratch && i1 && in && cnt1 && cntn && s1 && sn);
    o->vq_assign(d1, n, c, k, x, e, scratch, i1, mean1);
    o->vq_assign(dn, n, c, k, x, e, scratch, in, meann);
    SAME(i1, in, (size_t)n);
    SAME(mean1, meann, (size_t)n);
    o->vq_accumulate(d1, n, c, k, x, i1, cnt1, s1);
    o->vq_accumulate(dn, n, c, k, x, in, cntn, sn);
    SAME(cnt1, cntn, (size_t)k);
    SAME(s1, sn, (size_t)k * c);
    o->vq_gather(d1, n, c, x, e, i1, y1, mean1);
    o->vq_gather(dn, n, c, x, e, in, yn, meann);
    SAME(y1, yn, nc);
    SAME(mean1, meann, (size_t)n);
    o->vq_ema_normalize(d1, k, c, 1e-5f, (float)n, cnt1, s1, y1);
    o->vq_ema_normalize(dn, k, c, 1e-5f, (float)n, cntn, sn, yn);
    SAME(y1, yn, (size_t)k * c);
    o->vq_min_sqdist(d1, n, c, x, e + c, mean1);
    o->vq_min_sqdist(dn, n, c, x, e + c, meann);
    SAME(mean1, meann, (size_t)n);

    /* Losses: InfoNCE rows, SIGReg slices. */
    const int rows = 64, cols = 700;
    float *sim1 = rand_floats((size_t)rows * cols, 17, 1.0f);
    float *simn = dup_floats(sim1, (size_t)rows * cols);
    float *l1 = calloc((size_t)rows, sizeof(float)), *ln = calloc((size_t)rows, sizeof(float));
    float *t1 = calloc((size_t)rows, sizeof(float)), *tn = calloc((size_t)rows, sizeof(float));
    assert_true(l1 && ln && t1 && tn);
    o->infonce_xent(d1, rows, cols, cols, 10.0f, 0.25f, sim1, l1, t1);
    o->infonce_xent(dn, rows, cols, cols, 10.0f, 0.25f, simn, ln, tn);
    SAME(sim1, simn, (size_t)rows * cols);
    SAME(l1, ln, (size_t)rows);
    SAME(t1, tn, (size_t)rows);
    const int slices = 48, points = 17, sn_ = 256;
    float w[17];
    for (int i = 0; i < points; i++)
        w[i] = 0.1f + 0.01f * (float)i;
    float *sx = rand_floats((size_t)slices * sn_, 18, 2.0f);
    o->sigreg_epps_pulley(d1, slices, sn_, points, 0.2f, w, 0.5f, sx, l1, y1);
    o->sigreg_epps_pulley(dn, slices, sn_, points, 0.2f, w, 0.5f, sx, ln, yn);
    SAME(l1, ln, (size_t)slices);
    SAME(y1, yn, (size_t)slices * sn_);

    free(sx);
    free(sim1);
    free(simn);
    free(l1);
    free(ln);
    free(t1);
    free(tn);
    free(e);
    free(scratch);
    free(i1);
    free(in);
    free(cnt1);
    free(cntn);
    free(s1);
    free(sn);
    free(r1);
    free(rn);
    free(dr);
    free(qkv);
    free(dout);
    free(o1);
    free(on);
    free(pr1);
    free(prn);
    free(dq1);
    free(dqn);
    free_packed(&pk);
    free(gamma);
    free(beta);
    free(mean1);
    free(meann);
    free(rstd1);
    free(rstdn);
    free(g1);
    free(gn);
    free(b1);
    free(bn);
    free(x);
    free(dy);
    free(y1);
    free(yn);
    free(m1);
    free(mn);
    vqj_context_destroy(cn);
    vqj_context_destroy(c1);
}

static void test_kernels_two_threads(void **state)
{
    (void)state;
    check_kernels(2);
}

static void test_kernels_three_threads(void **state)
{
    (void)state;
    check_kernels(3);
}

/* Every parameter and optimizer state value of a model, in one buffer. */
static float *model_values(test_model *m, size_t *len)
{
    vqj_weights *views[] = {vqj_encoder_weights(m->encoder), vqj_codebook_weights(m->codebook),
                            vqj_predictor_weights(m->predictor), vqj_loss_weights(m->loss),
                            vqj_optimizer_state(m->optimizer)};
    float *all = NULL;
    size_t n = 0;
    for (size_t v = 0; v < sizeof views / sizeof *views; v++)
        for (size_t i = 0; i < vqj_weights_num_tensors(views[v]); i++) {
            vqj_weight_info info;
            assert_ok(m->ctx, vqj_weights_info(views[v], i, &info));
            all = realloc(all, (n + info.count) * sizeof *all);
            assert_non_null(all);
            assert_ok(m->ctx, vqj_weights_read(views[v], info.name, all + n, info.count));
            n += info.count;
        }
    *len = n;
    return all;
}

/* Train a model of the full objective (views, SIGReg, dropout) at `threads`
 * for `steps` batches of 48; losses into loss[steps]. */
static float *train(int threads, int steps, float *loss, size_t *len)
{
    test_model_spec s = test_model_spec_default();
    s.threads = threads;
    s.hidden = 64;
    s.codes = 32;
    test_model m;
    test_model_create(&m, &s);
    enum { B = 48 };
    const int T = vqj_dataset_context_window(m.data);
    vqj_grid *context = malloc((size_t)B * T * sizeof *context), targets[B];
    assert_non_null(context);
    for (int i = 0; i < steps; i++) {
        vqj_train_metrics met = {.size = sizeof met};
        test_model_batch(&m, i, B, context, targets);
        assert_ok(m.ctx, vqj_trainer_step(m.trainer, context, targets, B, &met));
        assert_int_equal(met.skipped, 0);
        loss[i] = met.loss;
    }
    float *values = model_values(&m, len);
    free(context);
    test_model_destroy(&m);
    return values;
}

/* Train at ta and at tb threads from the same seed. exact: bit-identical
 * losses, parameters and optimizer state. Else within rounding: only
 * OpenBLAS's GEMMs may split differently, so the losses agree to relative
 * 1e-5 and, after three Adam steps of lr 1e-3, each value within 2 lr per
 * step. */
static void compare_runs(int ta, int tb, int exact)
{
    enum { STEPS = 3 };
    float la[STEPS], lb[STEPS];
    size_t na, nb;
    float *a = train(ta, STEPS, la, &na), *b = train(tb, STEPS, lb, &nb);
    assert_int_equal(na, nb);
    if (exact) {
        assert_memory_equal(la, lb, sizeof la);
        assert_memory_equal(a, b, na * sizeof *a);
    }
    for (int i = 0; i < STEPS; i++)
        if (fabsf(la[i] - lb[i]) > 1e-5f * fabsf(la[i]))
            fail_msg("step %d: loss %.9g at %d threads, %.9g at %d", i, (double)la[i], ta,
                     (double)lb[i], tb);
    double worst = 0.0;
    for (size_t i = 0; i < na; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        worst = d > worst ? d : worst;
    }
    if (!(worst <= 2.0 * 1e-3 * STEPS))
        fail_msg("parameters differ by %.3g between %d and %d threads", worst, ta, tb);
    free(a);
    free(b);
}

static void test_steps_repeat_at_two_threads(void **state)
{
    (void)state;
    compare_runs(2, 2, 1);
}

static void test_one_against_two_threads(void **state)
{
    (void)state;
    compare_runs(1, 2, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_two_threads),
        cmocka_unit_test(test_kernels_three_threads),
        cmocka_unit_test(test_steps_repeat_at_two_threads),
        cmocka_unit_test(test_one_against_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
