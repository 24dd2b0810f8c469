/* The model stack: encoder -> codebook -> predictor (docs/model.md).
 *  - finite differences of the whole stack, for sampled entries of every
 *    weight tensor and of the input features, with dropout on;
 *  - parity with the PyTorch reference's vectors (tests/data/model.bin),
 *    which come from the padded formulation: packed equals padded;
 *  - error paths and documented results for degenerate input;
 *  - determinism: the same seed gives bit-identical outputs and gradients. */
#include "testutil.h"

#include "core/core.h"
#include "model/encoder.h"
#include "model/predictor.h"
#include "model/tokens.h"
#include "vectors.h"

#define MODEL_BIN "tests/data/model.bin"

/* ---- small helpers ---- */

static float *read_tensor(vqj_context *ctx, const vqj_tensor *t)
{
    size_t n = (size_t)vqj_tensor_rows(t) * (size_t)vqj_tensor_cols(t);
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    assert_ok(ctx, vqj_tensor_read(t, x, n));
    return x;
}

static void set_tensor(vqj_context *ctx, vqj_tensor *t, int rows, int cols, const float *src)
{
    assert_ok(ctx, vqj_tensor_reshape(t, rows, cols));
    size_t n = (size_t)rows * (size_t)cols;
    if (src) {
        assert_ok(ctx, vqj_tensor_write(t, src, n));
    } else {
        float *zero = calloc(n ? n : 1, sizeof *zero);
        assert_non_null(zero);
        assert_ok(ctx, vqj_tensor_write(t, zero, n));
        free(zero);
    }
}

static vqj_tensor *new_tensor(vqj_context *ctx)
{
    vqj_tensor *t = NULL;
    assert_ok(ctx, vqj_tensor_create(ctx, 0, 0, &t));
    return t;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* A reproducible grid: a few colored rectangles on background, or empty. */
typedef struct test_grid {
    int h, w;
    uint8_t cells[16 * 16];
} test_grid;

static void make_grid(test_grid *g, uint32_t seed, int rects)
{
    uint32_t s = seed * 747796405u + 2891336453u;
#define NEXT(n) (s = s * 1664525u + 1013904223u, (int)((s >> 16) % (uint32_t)(n)))
    g->h = 5 + NEXT(5);
    g->w = 5 + NEXT(5);
    memset(g->cells, 0, sizeof g->cells);
    for (int r = 0; r < rects; r++) {
        int c = 1 + NEXT(9), rh = 1 + NEXT(3), rw = 1 + NEXT(3);
        int y = NEXT(g->h - rh + 1), x = NEXT(g->w - rw + 1);
        for (int i = y; i < y + rh; i++)
            for (int j = x; j < x + rw; j++)
                g->cells[i * g->w + j] = (uint8_t)c;
    }
#undef NEXT
}

static void tokenize_test_grids(vqj_context *ctx, vqj_tokens *tokens, test_grid *tg, int n,
                                const int *rects, uint32_t seed)
{
    vqj_grid grids[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        make_grid(&tg[i], seed + (uint32_t)i, rects[i]);
        grids[i].height = tg[i].h;
        grids[i].width = tg[i].w;
        grids[i].cells = tg[i].cells;
    }
    assert_ok(ctx, vqj_tokenize(ctx, tokens, grids, (size_t)n));
}

/* ---- the stack used by the gradient and determinism tests ---- */

#define S_D 16
#define S_HEADS 4
#define S_LAYERS 2
#define S_K 12
#define S_P 8
#define S_T 3
#define S_B 2
#define S_G (S_B * S_T)
#define S_STEP 7

typedef struct stack {
    vqj_context *ctx;
    vqj_tokens *tokens;
    test_grid grids[S_G];
    vqj_encoder *enc;
    vqj_codebook *cb;
    vqj_predictor *pred;
    vqj_tensor *z, *q, *qin, *out, *dout, *dq, *dz, *dfeat, *qtmp;
    int N, F;
    int beside;
    float R[S_B * S_P];
    /* The base point of the last analytic pass. */
    float *z0, *q0;
    int32_t *codes0;
} stack;

/* The predictor's optional parts (vqj_predictor_params). */
typedef struct stack_opts {
    int final_activation, slot_embedding, grid_features;
    int beside; /* VQJ_VQ_BESIDE: the predictor reads z, not q */
    int analogy_residual;
} stack_opts;

static void stack_init_opts(stack *s, uint64_t seed, vqj_aggregator agg, vqj_activation act,
                            float dropout, stack_opts o)
{
    memset(s, 0, sizeof *s);
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    cp.seed = seed;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&cp, &ctx), VQJ_OK);
    s->ctx = ctx;

    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &s->tokens));
    /* Grid 1 is empty: an example whose context has a grid with no objects. */
    const int rects[S_G] = {3, 0, 4, 2, 5, 3};
    tokenize_test_grids(ctx, s->tokens, s->grids, S_G, rects, 11);
    s->N = (int)vqj_tokens_num_objects(s->tokens);
    s->F = vqj_tokens_feature_dim(s->tokens);
    assert_true(s->N >= 8);

    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.feature_dim = s->F;
    ep.hidden_dim = S_D;
    ep.relational_layers = S_LAYERS;
    ep.relational_heads = S_HEADS;
    ep.relational_dropout = dropout;
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &s->enc));

    vqj_codebook_params bp;
    vqj_codebook_params_default(&bp);
    bp.num_embeddings = S_K;
    bp.dim = S_D;
    bp.ema_decay = 0.0f; /* gradient-trained codes: a forward changes nothing */
    bp.refresh_enabled = 0;
    bp.kmeans_init = 0;
    assert_ok(ctx, vqj_codebook_create(ctx, &bp, &s->cb));

    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = S_D;
    pp.projection_dim = S_P;
    pp.projection_layers = 2;
    pp.projection_activation = act;
    pp.aggregator = agg;
    pp.context_window = S_T;
    pp.final_activation = o.final_activation;
    pp.slot_embedding = o.slot_embedding;
    pp.grid_features = o.grid_features;
    pp.analogy_residual = o.analogy_residual;
    pp.vq_path = o.beside ? VQJ_VQ_BESIDE : VQJ_VQ_STRAIGHT_THROUGH;
    s->beside = o.beside;
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &s->pred));

    vqj_tensor **ts[] = {&s->z, &s->q, &s->qin, &s->out, &s->dout, &s->dq, &s->dz, &s->dfeat,
                         &s->qtmp};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        *ts[i] = new_tensor(ctx);
    test_fill(s->R, S_B * S_P, 99, 1.0f);
}

static void stack_init(stack *s, uint64_t seed, vqj_aggregator agg, vqj_activation act,
                       float dropout)
{
    stack_init_opts(s, seed, agg, act, dropout, (stack_opts){1, 0, 0, 0, 0});
}

/* Put the codes near the encoder's outputs (as a trained codebook would be)
 * so that tokens spread over several codes with clear margins. */
static void stack_place_codes(stack *s)
{
    vqj_context *ctx = s->ctx;
    assert_ok(ctx, vqj_encoder_forward(s->enc, s->tokens, 0, s->z));
    float *z = read_tensor(ctx, s->z);
    float e[S_K * S_D], noise[S_K * S_D];
    test_fill(noise, S_K * S_D, 5, 0.2f);
    for (int k = 0; k < S_K; k++)
        for (int j = 0; j < S_D; j++)
            e[k * S_D + j] = z[(size_t)((k * 5) % s->N) * S_D + j] + noise[k * S_D + j];
    assert_ok(ctx, vqj_weights_write(vqj_codebook_weights(s->cb), "codebook.embedding", e,
                                     S_K * S_D));
    free(z);
}

static void stack_free(stack *s)
{
    vqj_tensor *ts[] = {s->z, s->q, s->qin, s->out, s->dout, s->dq, s->dz, s->dfeat, s->qtmp};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        vqj_tensor_destroy(ts[i]);
    vqj_predictor_destroy(s->pred);
    vqj_codebook_destroy(s->cb);
    vqj_encoder_destroy(s->enc);
    vqj_tokens_destroy(s->tokens);
    vqj_context_destroy(s->ctx);
    free(s->z0);
    free(s->q0);
    free(s->codes0);
}

/* Forward and backward of L = Σ head(c) ⊙ R + commitment (+ the code term),
 * every gradient zeroed first. Training mode: dropout on, at step S_STEP. */
static void stack_analytic(stack *s)
{
    vqj_context *ctx = s->ctx;
    vqj_weights_zero_grad(vqj_encoder_weights(s->enc));
    vqj_weights_zero_grad(vqj_codebook_weights(s->cb));
    vqj_weights_zero_grad(vqj_predictor_weights(s->pred));
    vqji_encoder_set_step(s->enc, S_STEP);
    assert_ok(ctx, vqj_encoder_forward(s->enc, s->tokens, 1, s->z));
    free(s->codes0);
    s->codes0 = malloc((size_t)s->N * sizeof *s->codes0);
    assert_ok(ctx, vqj_codebook_forward(s->cb, s->z, 1, s->q, s->codes0, NULL));
    /* Beside (as the trainer does it): the predictor reads z and its
     * gradient goes to dz; the codebook adds its commitment term only. */
    assert_ok(ctx, vqj_predictor_forward_context(s->pred, s->tokens, s->beside ? s->z : s->q,
                                                 s->out));
    set_tensor(ctx, s->dout, S_B, S_P, s->R);
    set_tensor(ctx, s->dq, s->N, S_D, NULL);
    set_tensor(ctx, s->dz, s->N, S_D, NULL);
    assert_ok(ctx, vqj_predictor_backward_context(s->pred, s->dout, s->beside ? s->dz : s->dq));
    assert_ok(ctx, vqj_codebook_backward(s->cb, s->dq, s->dz));
    set_tensor(ctx, s->dfeat, s->N, s->F, NULL);
    assert_ok(ctx, vqj_encoder_backward(s->enc, s->dz, s->dfeat));
    free(s->z0);
    free(s->q0);
    s->z0 = read_tensor(ctx, s->z);
    s->q0 = read_tensor(ctx, s->q);
}

/* The function whose gradient the straight-through estimator computes:
 * q' = z' + (q0 - z0) with the base point's residual held fixed, plus the
 * commitment with the base point's assignment (checked unchanged). The code
 * term is returned apart: only the embedding's gradient comes from it. */
static void stack_eval(stack *s, double *main_loss, double *code_loss)
{
    vqj_context *ctx = s->ctx;
    vqji_encoder_set_step(s->enc, S_STEP);
    assert_ok(ctx, vqj_encoder_forward(s->enc, s->tokens, 1, s->z));
    int32_t codes[256];
    assert_true(s->N <= 256);
    vqj_codebook_stats st = {.size = sizeof st};
    assert_ok(ctx, vqj_codebook_forward(s->cb, s->z, 0, s->qtmp, codes, &st));
    for (int i = 0; i < s->N; i++)
        if (codes[i] != s->codes0[i])
            fail_msg("token %d changed code (%d -> %d) under the finite-difference step", i,
                     s->codes0[i], codes[i]);
    float *z = read_tensor(ctx, s->z);
    for (size_t i = 0; i < (size_t)s->N * S_D && !s->beside; i++)
        z[i] += s->q0[i] - s->z0[i];
    set_tensor(ctx, s->qin, s->N, S_D, z);
    free(z);
    assert_ok(ctx, vqj_predictor_forward_context(s->pred, s->tokens, s->qin, s->out));
    float out[S_B * S_P];
    assert_ok(ctx, vqj_tensor_read(s->out, out, S_B * S_P));
    double l = 0.0;
    for (int i = 0; i < S_B * S_P; i++)
        l += (double)out[i] * s->R[i];
    *main_loss = l + st.commitment_loss;
    *code_loss = st.codebook_loss;
}

/* Finite differences: central, h = 1e-2 (as tests/test_layers.c argues:
 * float rounding of the forward puts ~1e-6 on L, ~5e-5 on the quotient; the
 * truncation error of the smooth functions here is of the same order). The
 * tolerance is 1e-2 relative in max norm over the sampled entries of a
 * tensor: the largest error observed over all tensors is 2.5e-3 (the first
 * layers, where the perturbation passes through the whole stack), while a
 * real bug shows up far above it (reading the attention branch's gradient
 * without its dropout mask gives 6e-2 to 4e-1 on every tensor below it). */
#define FD_H 1e-2f
#define FD_TOL 1e-2
#define FD_SAMPLES 6

/* Sample indices: the entry with the largest analytic gradient and a few
 * pseudo-random others (all of them for small tensors). */
static size_t fd_indices(const float *grad, size_t count, uint32_t seed, size_t *idx)
{
    if (count <= FD_SAMPLES + 1) {
        for (size_t i = 0; i < count; i++)
            idx[i] = i;
        return count;
    }
    size_t best = 0;
    for (size_t i = 1; i < count; i++)
        if (fabsf(grad[i]) > fabsf(grad[best]))
            best = i;
    idx[0] = best;
    uint32_t r = seed * 2654435761u + 7u;
    for (size_t k = 1; k <= FD_SAMPLES; k++) {
        r = r * 1664525u + 1013904223u;
        idx[k] = (r >> 8) % count;
    }
    return FD_SAMPLES + 1;
}

static void fd_check_weights(stack *s, vqj_weights *w, const char *module, int *checked)
{
    vqj_context *ctx = s->ctx;
    for (size_t t = 0; t < vqj_weights_num_tensors(w); t++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, t, &info));
        if (!info.trainable)
            continue;
        int code_term = strcmp(info.name, "codebook.embedding") == 0;
        float *val = malloc(info.count * sizeof *val), *grad = malloc(info.count * sizeof *grad);
        assert_ok(ctx, vqj_weights_read(w, info.name, val, info.count));
        assert_ok(ctx, vqj_weights_read_grad(w, info.name, grad, info.count));
        size_t idx[FD_SAMPLES + 1];
        size_t n = fd_indices(grad, info.count, (uint32_t)t + 1u, idx);
        float ana[FD_SAMPLES + 1], num[FD_SAMPLES + 1];
        for (size_t k = 0; k < n; k++) {
            float v = val[idx[k]];
            double lp, lm, cp, cm;
            val[idx[k]] = v + FD_H;
            float hp = val[idx[k]] - v;
            assert_ok(ctx, vqj_weights_write(w, info.name, val, info.count));
            stack_eval(s, &lp, &cp);
            val[idx[k]] = v - FD_H;
            float hm = v - val[idx[k]];
            assert_ok(ctx, vqj_weights_write(w, info.name, val, info.count));
            stack_eval(s, &lm, &cm);
            val[idx[k]] = v;
            assert_ok(ctx, vqj_weights_write(w, info.name, val, info.count));
            num[k] = (float)((code_term ? cp - cm : lp - lm) / ((double)hp + (double)hm));
            ana[k] = grad[idx[k]];
        }
        double err = test_rel_err(ana, num, n, 1e-3);
        if (err > FD_TOL)
            fail_msg("%s %s: analytic vs finite-difference gradient, relative error %.3g "
                     "(first sample: %g vs %g)",
                     module, info.name, err, (double)ana[0], (double)num[0]);
        (*checked)++;
        free(val);
        free(grad);
    }
}

static void fd_check_features(stack *s)
{
    vqj_context *ctx = s->ctx;
    size_t count = (size_t)s->N * (size_t)s->F;
    float *grad = read_tensor(ctx, s->dfeat);
    float *x = s->tokens->out.features; /* the tokenizer's host output */
    size_t idx[FD_SAMPLES + 1];
    size_t n = fd_indices(grad, count, 1234u, idx);
    float ana[FD_SAMPLES + 1], num[FD_SAMPLES + 1];
    for (size_t k = 0; k < n; k++) {
        float v = x[idx[k]];
        double lp, lm, c;
        x[idx[k]] = v + FD_H;
        float hp = x[idx[k]] - v;
        stack_eval(s, &lp, &c);
        x[idx[k]] = v - FD_H;
        float hm = v - x[idx[k]];
        stack_eval(s, &lm, &c);
        x[idx[k]] = v;
        num[k] = (float)((lp - lm) / ((double)hp + (double)hm));
        ana[k] = grad[idx[k]];
    }
    double err = test_rel_err(ana, num, n, 1e-3);
    if (err > FD_TOL)
        fail_msg("input features: analytic vs finite-difference gradient, relative error %.3g",
                 err);
    free(grad);
}

static void run_stack_gradcheck_opts(vqj_aggregator agg, vqj_activation act, stack_opts o)
{
    stack s;
    stack_init_opts(&s, 42, agg, act, 0.1f, o);
    stack_place_codes(&s);
    stack_analytic(&s);
    int checked = 0;
    fd_check_weights(&s, vqj_encoder_weights(s.enc), "encoder", &checked);
    fd_check_weights(&s, vqj_codebook_weights(s.cb), "codebook", &checked);
    fd_check_weights(&s, vqj_predictor_weights(s.pred), "predictor", &checked);
    /* 4 feature-MLP + 12 per block, the embedding, 4 head tensors, and the
     * aggregator's own. */
    int expected = 4 + 12 * S_LAYERS + 1 + 4 + (agg == VQJ_AGG_GRU ? 4 : 0) +
                   (agg == VQJ_AGG_ATTENTION ? 1 : 0) + o.slot_embedding + 2 * o.grid_features;
    assert_int_equal(checked, expected);
    fd_check_features(&s);
    stack_free(&s);
}

static void run_stack_gradcheck(vqj_aggregator agg, vqj_activation act)
{
    run_stack_gradcheck_opts(agg, act, (stack_opts){1, 0, 0, 0, 0});
}

/* The optional parts, each on its own and all together, through the
 * aggregators they matter for: the slot embedding (mean and attention
 * cannot tell the slots apart without it), grid features, and a linear
 * last head layer. */
static void test_gradcheck_predictor_options(void **state)
{
    (void)state;
    run_stack_gradcheck_opts(VQJ_AGG_MEAN, VQJ_ACT_GELU, (stack_opts){1, 1, 0, 0, 0});
    run_stack_gradcheck_opts(VQJ_AGG_ATTENTION, VQJ_ACT_TANH, (stack_opts){1, 1, 0, 0, 0});
    run_stack_gradcheck_opts(VQJ_AGG_GRU, VQJ_ACT_GELU, (stack_opts){1, 0, 1, 0, 0});
    run_stack_gradcheck_opts(VQJ_AGG_MEAN, VQJ_ACT_RELU, (stack_opts){0, 0, 0, 0, 0});
    run_stack_gradcheck_opts(VQJ_AGG_ATTENTION, VQJ_ACT_GELU, (stack_opts){0, 1, 1, 0, 0});
    /* The analogy residual has no weights: the encoder's and the features'
     * gradients, which flow through it, check it. */
    run_stack_gradcheck_opts(VQJ_AGG_GRU, VQJ_ACT_GELU, (stack_opts){0, 0, 1, 0, 1});
    run_stack_gradcheck_opts(VQJ_AGG_LAST, VQJ_ACT_TANH, (stack_opts){1, 1, 0, 1, 1});
}

/* Codes beside the forward path: L = Σ head(c(z)) ⊙ R + commitment(z, e),
 * no straight-through residual; the codebook's gradient is the code term's
 * as before. */
static void test_gradcheck_beside(void **state)
{
    (void)state;
    run_stack_gradcheck_opts(VQJ_AGG_MEAN, VQJ_ACT_GELU, (stack_opts){1, 0, 0, 1, 0});
    run_stack_gradcheck_opts(VQJ_AGG_GRU, VQJ_ACT_TANH, (stack_opts){1, 1, 1, 1, 0});
}

/* The two rows of the stack's last output differ (by more than 1e-3 in L1)
 * or agree (within 1e-5). */
static void expect_rows_differ(stack *s, int differ)
{
    float out[2 * S_P];
    assert_ok(s->ctx, vqj_tensor_read(s->out, out, 2 * S_P));
    double diff = 0.0;
    for (int i = 0; i < S_P; i++)
        diff += fabs((double)out[i] - out[S_P + i]);
    if (differ)
        assert_true(diff > 1e-3);
    else
        assert_true(diff < 1e-5);
}

/* final_activation on (the original): with ReLU every projection lies in
 * the positive orthant; off: the last layer is linear and some entries are
 * negative. The slot embedding makes attention pooling depend on the order
 * of the context grids; without it a permutation of the slots changes
 * nothing. (Under mean pooling it only adds the constant mean of the slot
 * vectors: docs/model.md.) Grid features make two grids with the same objects but
 * different sizes differ. */
static void test_predictor_options_behaviour(void **state)
{
    (void)state;
    for (int fa = 0; fa <= 1; fa++) {
        stack s;
        stack_init_opts(&s, 42, VQJ_AGG_MEAN, VQJ_ACT_RELU, 0.0f, (stack_opts){fa, 0, 0, 0, 0});
        assert_ok(s.ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
        assert_ok(s.ctx, vqj_predictor_forward_context(s.pred, s.tokens, s.z, s.out));
        float out[S_B * S_P];
        assert_ok(s.ctx, vqj_tensor_read(s.out, out, S_B * S_P));
        int negative = 0;
        for (int i = 0; i < S_B * S_P; i++)
            negative += out[i] < 0.0f;
        if (fa)
            assert_int_equal(negative, 0);
        else
            assert_true(negative > 0);
        stack_free(&s);
    }
    for (int se = 0; se <= 1; se++) {
        stack s;
        stack_init_opts(&s, 42, VQJ_AGG_ATTENTION, VQJ_ACT_GELU, 0.0f, (stack_opts){1, se, 0, 0, 0});
        vqj_context *ctx = s.ctx;
        /* Example 0's slots in order 0 1 2 and 2 1 0, as two examples. */
        vqj_grid g[6];
        const int order[6] = {0, 1, 2, 2, 1, 0};
        for (int i = 0; i < 6; i++)
            g[i] = (vqj_grid){s.grids[order[i]].h, s.grids[order[i]].w,
                              s.grids[order[i]].cells};
        assert_ok(ctx, vqj_tokenize(ctx, s.tokens, g, 6));
        assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
        assert_ok(ctx, vqj_predictor_forward_context(s.pred, s.tokens, s.z, s.out));
        expect_rows_differ(&s, se);
        stack_free(&s);
    }
    for (int gf = 0; gf <= 1; gf++) {
        stack s;
        stack_init_opts(&s, 42, VQJ_AGG_MEAN, VQJ_ACT_GELU, 0.0f, (stack_opts){1, 0, gf, 0, 0});
        vqj_context *ctx = s.ctx;
        /* The same kept object in two 6 x 6 grids; the second also holds a
         * one-cell object that max_objects = 1 drops: only the whole-grid
         * color shares tell the grids apart. */
        uint8_t a[36] = {0}, b[36] = {0};
        a[7] = a[8] = a[13] = a[14] = b[7] = b[8] = b[13] = b[14] = 3;
        b[35] = 5;
        vqj_grid g[2] = {{6, 6, a}, {6, 6, b}};
        vqj_tokenizer_params tp;
        vqj_tokenizer_params_default(&tp);
        tp.max_objects = 1;
        vqj_tokens *one;
        assert_ok(ctx, vqj_tokens_create(ctx, &tp, &one));
        assert_ok(ctx, vqj_tokenize(ctx, one, g, 2));
        vqj_tokens_destroy(s.tokens);
        s.tokens = one;
        assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
        assert_ok(ctx, vqj_predictor_forward_grids(s.pred, s.tokens, s.z, s.out));
        expect_rows_differ(&s, gf);
        stack_free(&s);
    }
}

/* model.analogy_residual in a forward pass: two predictors with the same
 * weights, one with the residual and one without, on the same tokens and
 * token vectors. Their aggregates must differ by exactly
 * r_{b,T} + r_{b,T-1} - r_{b,T-2} (slots from 1: query input + demo output
 * - demo input), r the grid means computed here from the token vectors. A
 * finite-difference check cannot see a wrong sign or slot (the backward is
 * the forward's transpose and would be wrong the same way); this can. T = 4
 * so the demo input is not slot 1, and every aggregator, since the residual
 * is added after any of them. Slot T-1 of example 1 (its demo output) is an
 * empty grid (a zero vector). */
static void test_analogy_residual_forward(void **state)
{
    (void)state;
    enum { T = 4, B = 2, G = B * T, D = 8, P = 4 };
    static const vqj_aggregator aggs[] = {VQJ_AGG_MEAN, VQJ_AGG_LAST, VQJ_AGG_ATTENTION,
                                          VQJ_AGG_GRU};
    vqj_context *ctx = test_context();
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *tokens = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &tokens));
    test_grid tg[G];
    const int rects[G] = {2, 3, 1, 4, 3, 2, 0, 2};
    tokenize_test_grids(ctx, tokens, tg, G, rects, 21);
    const int32_t *o = vqj_tokens_offsets(tokens);
    assert_int_equal(o[T + T - 1] - o[T + T - 2], 0); /* example 1, slot T-1 (from 1): empty */
    const int N = (int)vqj_tokens_num_objects(tokens);
    float *h = malloc((size_t)N * D * sizeof *h);
    assert_non_null(h);
    test_fill(h, (size_t)N * D, 17, 1.0f);
    vqj_tensor *tv = new_tensor(ctx), *out = new_tensor(ctx);
    set_tensor(ctx, tv, N, D, h);
    /* The grid means r [G x D], in double. */
    double r[G][D];
    for (int g = 0; g < G; g++)
        for (int k = 0; k < D; k++) {
            double sum = 0.0;
            for (int i = o[g]; i < o[g + 1]; i++)
                sum += h[(size_t)i * D + k];
            r[g][k] = o[g + 1] > o[g] ? sum / (o[g + 1] - o[g]) : 0.0;
        }
    for (size_t a = 0; a < sizeof aggs / sizeof *aggs; a++) {
        vqj_predictor *pred[2];
        float c[2][B * D];
        for (int on = 0; on <= 1; on++) {
            vqj_predictor_params pp;
            vqj_predictor_params_default(&pp);
            pp.hidden_dim = D;
            pp.projection_dim = P;
            pp.context_window = T;
            pp.aggregator = aggs[a];
            pp.analogy_residual = on;
            assert_ok(ctx, vqj_predictor_create(ctx, &pp, &pred[on]));
            if (on) /* decay 0: the same weights as the first */
                assert_ok(ctx, vqj_weights_ema(vqj_predictor_weights(pred[1]),
                                               vqj_predictor_weights(pred[0]), 0.0f));
            assert_ok(ctx, vqj_predictor_forward_context(pred[on], tokens, tv, out));
            memcpy(c[on], vqji_predictor_context_vectors(pred[on]), sizeof c[on]); /* CPU */
        }
        double diff_max = 0.0;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < D; k++) {
                const double *slot = &r[b * T][0];
                double want = slot[(T - 1) * D + k] + slot[(T - 2) * D + k] -
                              slot[(T - 3) * D + k];
                double got = (double)c[1][b * D + k] - c[0][b * D + k];
                diff_max = fmax(diff_max, fabs(want));
                if (fabs(got - want) > 1e-5)
                    fail_msg("aggregator %d, example %d, column %d: the residual added %g, "
                             "expected r_T + r_(T-1) - r_(T-2) = %g",
                             (int)aggs[a], b, k, got, want);
            }
        assert_true(diff_max > 0.1); /* the check is not vacuous */
        vqj_predictor_destroy(pred[0]);
        vqj_predictor_destroy(pred[1]);
    }
    free(h);
    vqj_tensor_destroy(tv);
    vqj_tensor_destroy(out);
    vqj_tokens_destroy(tokens);
    vqj_context_destroy(ctx);
}

static void test_gradcheck_mean(void **state)
{
    (void)state;
    run_stack_gradcheck(VQJ_AGG_MEAN, VQJ_ACT_GELU);
}

static void test_gradcheck_gru(void **state)
{
    (void)state;
    run_stack_gradcheck(VQJ_AGG_GRU, VQJ_ACT_TANH);
}

static void test_gradcheck_attention(void **state)
{
    (void)state;
    run_stack_gradcheck(VQJ_AGG_ATTENTION, VQJ_ACT_NONE);
}

/* The target path (grids, no aggregator): L = Σ out ⊙ R over G x P, with
 * respect to the token vectors and the head. */
static void test_gradcheck_grids_path(void **state)
{
    (void)state;
    stack s;
    stack_init(&s, 42, VQJ_AGG_LAST, VQJ_ACT_GELU, 0.0f);
    vqj_context *ctx = s.ctx;
    size_t nd = (size_t)s.N * S_D;
    float *tv = malloc(nd * sizeof *tv), R[S_G * S_P];
    test_fill(tv, nd, 3, 1.0f);
    test_fill(R, S_G * S_P, 4, 1.0f);
    set_tensor(ctx, s.qin, s.N, S_D, tv);
    assert_ok(ctx, vqj_predictor_forward_grids(s.pred, s.tokens, s.qin, s.out));
    assert_int_equal(vqj_tensor_rows(s.out), S_G);
    set_tensor(ctx, s.dout, S_G, S_P, R);
    set_tensor(ctx, s.dq, s.N, S_D, NULL);
    vqj_weights *w = vqj_predictor_weights(s.pred);
    vqj_weights_zero_grad(w);
    assert_ok(ctx, vqj_predictor_backward_grids(s.pred, s.dout, s.dq));
    float *grad = read_tensor(ctx, s.dq);

#define GRIDS_LOSS(dst)                                                                        \
    do {                                                                                       \
        float o_[S_G * S_P];                                                                   \
        assert_ok(ctx, vqj_predictor_forward_grids(s.pred, s.tokens, s.qin, s.out));           \
        assert_ok(ctx, vqj_tensor_read(s.out, o_, S_G * S_P));                                 \
        double l_ = 0.0;                                                                       \
        for (int i_ = 0; i_ < S_G * S_P; i_++)                                                 \
            l_ += (double)o_[i_] * R[i_];                                                      \
        (dst) = l_;                                                                            \
    } while (0)

    size_t idx[FD_SAMPLES + 1];
    size_t n = fd_indices(grad, nd, 77u, idx);
    float ana[FD_SAMPLES + 1], num[FD_SAMPLES + 1];
    for (size_t k = 0; k < n; k++) {
        float v = tv[idx[k]];
        double lp, lm;
        tv[idx[k]] = v + FD_H;
        set_tensor(ctx, s.qin, s.N, S_D, tv);
        GRIDS_LOSS(lp);
        tv[idx[k]] = v - FD_H;
        set_tensor(ctx, s.qin, s.N, S_D, tv);
        GRIDS_LOSS(lm);
        tv[idx[k]] = v;
        num[k] = (float)((lp - lm) / (2.0 * FD_H));
        ana[k] = grad[idx[k]];
    }
    set_tensor(ctx, s.qin, s.N, S_D, tv);
    assert_true(test_rel_err(ana, num, n, 1e-3) < FD_TOL);
    /* Every token of the empty grid 1 (none) and of the others gets a
     * gradient; the head's tensors too. */
    for (size_t t = 0; t < vqj_weights_num_tensors(w); t++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, t, &info));
        float *val = malloc(info.count * sizeof *val), *g = malloc(info.count * sizeof *g);
        assert_ok(ctx, vqj_weights_read(w, info.name, val, info.count));
        assert_ok(ctx, vqj_weights_read_grad(w, info.name, g, info.count));
        size_t m = fd_indices(g, info.count, (uint32_t)t + 9u, idx);
        for (size_t k = 0; k < m; k++) {
            float v = val[idx[k]];
            double lp, lm;
            val[idx[k]] = v + FD_H;
            assert_ok(ctx, vqj_weights_write(w, info.name, val, info.count));
            GRIDS_LOSS(lp);
            val[idx[k]] = v - FD_H;
            assert_ok(ctx, vqj_weights_write(w, info.name, val, info.count));
            GRIDS_LOSS(lm);
            val[idx[k]] = v;
            assert_ok(ctx, vqj_weights_write(w, info.name, val, info.count));
            num[k] = (float)((lp - lm) / (2.0 * FD_H));
            ana[k] = g[idx[k]];
        }
        double err = test_rel_err(ana, num, m, 1e-3);
        if (err > FD_TOL)
            fail_msg("grids path %s: relative error %.3g", info.name, err);
        free(val);
        free(g);
    }
#undef GRIDS_LOSS
    free(grad);
    free(tv);
    stack_free(&s);
}

/* ---- parity with the PyTorch reference (tests/data/model.bin) ---- */

#define PARITY_TOL 1e-4

static const float *ref_f32(const vqjt_file *f, const char *name, size_t count)
{
    size_t n = 0;
    const float *x = vqjt_f32(f, name, &n);
    if (!x)
        fail_msg("model.bin has no f32 tensor %s", name);
    if (n != count)
        fail_msg("model.bin %s has %zu values, expected %zu", name, n, count);
    return x;
}

static void expect_close(const char *what, const float *got, const float *ref, size_t n)
{
    double err = test_rel_err(got, ref, n, 1e-6);
    if (!(err <= PARITY_TOL))
        fail_msg("%s differs from the reference: relative error %.3g in max norm", what, err);
}

/* Load every tensor of a weights view from the reference, by name. */
static void load_weights(vqj_context *ctx, vqj_weights *w, const vqjt_file *f)
{
    for (size_t t = 0; t < vqj_weights_num_tensors(w); t++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, t, &info));
        if (!info.trainable && !vqjt_get(f, info.name))
            continue;
        assert_ok(ctx, vqj_weights_write(w, info.name, ref_f32(f, info.name, info.count),
                                         info.count));
    }
}

/* Compare the accumulated gradient of every trainable tensor of a view with
 * grad.<agg>.<name>. Returns how many were compared. */
static int compare_grads(vqj_context *ctx, vqj_weights *w, const vqjt_file *f, const char *agg)
{
    int compared = 0;
    for (size_t t = 0; t < vqj_weights_num_tensors(w); t++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, t, &info));
        if (!info.trainable)
            continue;
        char name[128];
        snprintf(name, sizeof name, "grad.%s.%s", agg, info.name);
        float *g = malloc(info.count * sizeof *g);
        assert_ok(ctx, vqj_weights_read_grad(w, info.name, g, info.count));
        expect_close(name, g, ref_f32(f, name, info.count), info.count);
        free(g);
        compared++;
    }
    return compared;
}

static void test_parity_reference(void **state)
{
    (void)state;
    char err[256];
    vqjt_file *f = vqjt_load(MODEL_BIN, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    vqj_context *ctx = test_context();
    const int G = vqjt_int(f, "config.num_grids", 0), B = vqjt_int(f, "config.batch", 0);
    const int T = vqjt_int(f, "config.context_window", 0);
    const int F = vqjt_int(f, "config.feature_dim", 0), D = vqjt_int(f, "config.hidden_dim", 0);
    const int K = vqjt_int(f, "config.num_embeddings", 0);
    const int P = vqjt_int(f, "config.projection_dim", 0);
    assert_int_equal(G, 12);
    assert_int_equal(B * T, 9); /* grids 0..8 are the context, 9..11 the targets */

    /* Grids -> tokens, compared with the reference tokenizer. */
    const int32_t *shape = vqjt_i32(f, "grids.shape", NULL);
    const int32_t *cell_off = vqjt_i32(f, "grids.cell_offsets", NULL);
    const uint8_t *cells = vqjt_u8(f, "grids.cells", NULL);
    assert_non_null(shape);
    assert_non_null(cell_off);
    assert_non_null(cells);
    vqj_grid grids[12];
    for (int g = 0; g < G; g++) {
        grids[g].height = shape[2 * g];
        grids[g].width = shape[2 * g + 1];
        grids[g].cells = cells + cell_off[g];
    }
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.max_objects = vqjt_int(f, "tokens.params.max_objects", -1);
    tp.max_color_features = vqjt_int(f, "tokens.params.max_color_features", -1);
    tp.background = (uint16_t)vqjt_int(f, "tokens.params.background", -1);
    tp.connectivity = vqjt_int(f, "tokens.params.connectivity", -1);
    tp.normalize = vqjt_int(f, "tokens.params.normalize", -1);
    tp.respect_colors = vqjt_int(f, "tokens.params.respect_colors", -1);
    vqj_tokens *tokens = NULL, *ctx_tokens = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &tokens));
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &ctx_tokens));
    assert_ok(ctx, vqj_tokenize(ctx, tokens, grids, (size_t)G));
    assert_ok(ctx, vqj_tokenize(ctx, ctx_tokens, grids, (size_t)(B * T)));
    const int N = (int)vqj_tokens_num_objects(tokens);
    const int Nc = (int)vqj_tokens_num_objects(ctx_tokens);
    assert_int_equal(N, 38);
    assert_int_equal(vqj_tokens_feature_dim(tokens), F);
    size_t n_off;
    const int32_t *ref_off = vqjt_i32(f, "tokens.offsets", &n_off);
    assert_int_equal(n_off, (size_t)G + 1);
    assert_memory_equal(vqj_tokens_offsets(tokens), ref_off, n_off * sizeof(int32_t));
    assert_int_equal(Nc, ref_off[B * T]);
    expect_close("tokens.features", vqj_tokens_features(tokens),
                 ref_f32(f, "tokens.features", (size_t)N * F), (size_t)N * F);
    size_t n_adj;
    const uint8_t *ref_adj = vqjt_u8(f, "tokens.adj", &n_adj);
    assert_int_equal(vqji_tokens_adjacency_offsets(tokens)[G], (int64_t)n_adj);
    assert_memory_equal(vqji_tokens_adjacency_all(tokens), ref_adj, n_adj);

    /* The stack with the reference's weights. */
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.feature_dim = F;
    ep.hidden_dim = D;
    ep.relational_heads = vqjt_int(f, "config.heads", 0);
    ep.relational_layers = vqjt_int(f, "config.layers", 0);
    vqj_encoder *enc = NULL;
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &enc));
    load_weights(ctx, vqj_encoder_weights(enc), f);
    vqj_codebook_params bp;
    vqj_codebook_params_default(&bp);
    bp.num_embeddings = K;
    bp.dim = D;
    bp.commitment_cost = vqjt_float(f, "config.commitment_cost", -1.0f);
    bp.ema_decay = vqjt_float(f, "config.ema_decay", -1.0f);
    bp.refresh_enabled = 0;
    bp.kmeans_init = 0;
    vqj_codebook *cb = NULL;
    assert_ok(ctx, vqj_codebook_create(ctx, &bp, &cb));
    load_weights(ctx, vqj_codebook_weights(cb), f);

    /* Encoder (eval mode: dropout off, as in the reference) and codebook. */
    vqj_tensor *z = new_tensor(ctx), *q = new_tensor(ctx), *qc = new_tensor(ctx);
    assert_ok(ctx, vqj_encoder_forward(enc, tokens, 0, z));
    assert_int_equal(vqj_tensor_rows(z), N);
    float *zh = read_tensor(ctx, z);
    expect_close("fwd.z", zh, ref_f32(f, "fwd.z", (size_t)N * D), (size_t)N * D);
    int32_t codes[64];
    vqj_codebook_stats cst = {.size = sizeof cst};
    assert_ok(ctx, vqj_codebook_forward(cb, z, 1, q, codes, &cst));
    float *qh = read_tensor(ctx, q);
    expect_close("fwd.q", qh, ref_f32(f, "fwd.q", (size_t)N * D), (size_t)N * D);
    assert_memory_equal(codes, vqjt_i32(f, "fwd.idx", NULL), (size_t)N * sizeof(int32_t));
    float commit_ref = vqjt_float(f, "fwd.commitment", -1.0f);
    expect_close("fwd.commitment", &cst.commitment_loss, &commit_ref, 1);
    set_tensor(ctx, qc, Nc, D, qh); /* the context grids' tokens come first */

    const float *R = ref_f32(f, "loss.R", (size_t)B * P);
    const char *names[4] = {"mean", "last", "attention", "gru"};
    const vqj_aggregator aggs[4] = {VQJ_AGG_MEAN, VQJ_AGG_LAST, VQJ_AGG_ATTENTION, VQJ_AGG_GRU};
    vqj_tensor *out = new_tensor(ctx), *dout = new_tensor(ctx), *dqc = new_tensor(ctx);
    vqj_tensor *dq = new_tensor(ctx), *dz = new_tensor(ctx), *dfeat = new_tensor(ctx);
    for (int a = 0; a < 4; a++) {
        vqj_predictor_params pp;
        vqj_predictor_params_default(&pp);
        pp.hidden_dim = D;
        pp.projection_dim = P;
        pp.projection_layers = vqjt_int(f, "config.projection_layers", 0);
        pp.projection_activation = (vqj_activation)vqjt_int(f, "config.projection_activation", -1);
        pp.aggregator = aggs[a];
        pp.context_window = T;
        vqj_predictor *pred = NULL;
        assert_ok(ctx, vqj_predictor_create(ctx, &pp, &pred));
        load_weights(ctx, vqj_predictor_weights(pred), f);
        char name[96];

        if (a == 0) {
            /* Grid vectors of all 12 grids (empty grid 1 -> zero vector). */
            assert_ok(ctx, vqj_predictor_forward_grids(pred, tokens, q, out));
            expect_close("fwd.grid_vectors", vqji_predictor_grid_vectors(pred),
                         ref_f32(f, "fwd.grid_vectors", (size_t)G * D), (size_t)G * D);
        }
        assert_ok(ctx, vqj_predictor_forward_context(pred, ctx_tokens, qc, out));
        assert_int_equal(vqj_tensor_rows(out), B);
        snprintf(name, sizeof name, "fwd.context.%s", names[a]);
        expect_close(name, vqji_predictor_context_vectors(pred),
                     ref_f32(f, name, (size_t)B * D), (size_t)B * D);
        float *oh = read_tensor(ctx, out);
        snprintf(name, sizeof name, "fwd.head.%s", names[a]);
        expect_close(name, oh, ref_f32(f, name, (size_t)B * P), (size_t)B * P);
        float loss = cst.commitment_loss;
        for (int i = 0; i < B * P; i++)
            loss += oh[i] * R[i];
        snprintf(name, sizeof name, "loss.%s", names[a]);
        float loss_ref = vqjt_float(f, name, NAN);
        expect_close(name, &loss, &loss_ref, 1);
        free(oh);

        /* Backward of Σ head ⊙ R + commitment through the whole stack. */
        vqj_weights_zero_grad(vqj_encoder_weights(enc));
        vqj_weights_zero_grad(vqj_predictor_weights(pred));
        set_tensor(ctx, dout, B, P, R);
        set_tensor(ctx, dqc, Nc, D, NULL);
        assert_ok(ctx, vqj_predictor_backward_context(pred, dout, dqc));
        float *dqh = calloc((size_t)N * D, sizeof *dqh);
        assert_ok(ctx, vqj_tensor_read(dqc, dqh, (size_t)Nc * D));
        set_tensor(ctx, dq, N, D, dqh); /* the target grids' tokens get none */
        free(dqh);
        set_tensor(ctx, dz, N, D, NULL);
        assert_ok(ctx, vqj_codebook_backward(cb, dq, dz));
        set_tensor(ctx, dfeat, N, F, NULL);
        assert_ok(ctx, vqj_encoder_backward(enc, dz, dfeat));
        float *dfh = read_tensor(ctx, dfeat);
        snprintf(name, sizeof name, "grad.%s.features", names[a]);
        expect_close(name, dfh, ref_f32(f, name, (size_t)N * F), (size_t)N * F);
        free(dfh);
        int n = compare_grads(ctx, vqj_encoder_weights(enc), f, names[a]);
        n += compare_grads(ctx, vqj_predictor_weights(pred), f, names[a]);
        assert_int_equal(n, 4 + 12 * ep.relational_layers + 2 * pp.projection_layers +
                                (aggs[a] == VQJ_AGG_ATTENTION ? 1 : 0) +
                                (aggs[a] == VQJ_AGG_GRU ? 4 : 0));
        vqj_predictor_destroy(pred);
    }
    free(zh);
    free(qh);
    vqj_tensor *ts[] = {z, q, qc, out, dout, dqc, dq, dz, dfeat};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        vqj_tensor_destroy(ts[i]);
    vqj_codebook_destroy(cb);
    vqj_encoder_destroy(enc);
    vqj_tokens_destroy(tokens);
    vqj_tokens_destroy(ctx_tokens);
    vqj_context_destroy(ctx);
    vqjt_free(f);
}

/* ---- parameters, initialization, errors ---- */

static void test_encoder_params(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_encoder_params p;
    vqj_encoder_params_default(&p);
    assert_int_equal(p.size, sizeof p);
    assert_int_equal(p.feature_dim, 23);
    assert_int_equal(p.hidden_dim, 384);
    assert_int_equal(p.relational_layers, 3);
    assert_int_equal(p.relational_heads, 8);
    assert_true(p.relational_dropout == 0.1f);
    vqj_encoder_params_default(NULL);

    vqj_encoder *e = (vqj_encoder *)&e; /* must stay untouched on failure */
    vqj_encoder *const sentinel = e;
#define EXPECT_BAD(field, value, needle)                                                       \
    do {                                                                                       \
        vqj_encoder_params_default(&p);                                                        \
        p.field = value;                                                                       \
        assert_status(ctx, vqj_encoder_create(ctx, &p, &e), VQJ_ERR_INVALID_ARGUMENT);         \
        assert_ptr_equal(e, sentinel);                                                         \
        assert_non_null(strstr(vqj_last_error(), needle));                          \
    } while (0)
    EXPECT_BAD(hidden_dim, 100, "not divisible");
    EXPECT_BAD(hidden_dim, 0, "hidden_dim");
    EXPECT_BAD(relational_heads, 0, "relational_heads");
    EXPECT_BAD(relational_heads, 385, "relational_heads");
    EXPECT_BAD(relational_layers, -1, "relational_layers");
    EXPECT_BAD(relational_dropout, 1.0f, "relational_dropout");
    EXPECT_BAD(relational_dropout, -0.1f, "relational_dropout");
    EXPECT_BAD(relational_dropout, NAN, "relational_dropout");
    EXPECT_BAD(feature_dim, 0, "feature_dim");
    EXPECT_BAD(size, 4, "size");
#undef EXPECT_BAD
    assert_status(ctx, vqj_encoder_create(ctx, NULL, &e), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_encoder_create(NULL, &p, &e), VQJ_ERR_INVALID_ARGUMENT);

    /* A newer caller's struct with unknown fields set is refused. */
    struct {
        vqj_encoder_params p;
        int extra;
    } newer;
    memset(&newer, 0, sizeof newer); /* padding bytes count as fields */
    vqj_encoder_params_default(&newer.p);
    newer.p.size = sizeof newer;
    newer.extra = 1;
    assert_status(ctx, vqj_encoder_create(ctx, &newer.p, &e), VQJ_ERR_UNSUPPORTED);
    newer.extra = 0;
    e = NULL;
    assert_ok(ctx, vqj_encoder_create(ctx, &newer.p, &e));
    vqj_encoder_destroy(e);

    /* The default encoder: names, shapes and init as docs/model.md says. */
    vqj_encoder_params_default(&p);
    e = NULL;
    assert_ok(ctx, vqj_encoder_create(ctx, &p, &e));
    vqj_weights *w = vqj_encoder_weights(e);
    assert_int_equal(vqj_weights_num_tensors(w), 4 + 12 * 3);
    size_t D = 384, F = 23;
    size_t expect_params = F * D + D + D * D + D +
                           3 * (2 * D + 3 * D * D + 3 * D + D * D + D + 2 * D + 2 * D * D +
                                2 * D + 2 * D * D + D);
    assert_int_equal(vqj_weights_num_params(w), expect_params);
    vqj_weight_info info;
    assert_ok(ctx, vqj_weights_info(w, 0, &info));
    assert_string_equal(info.name, "feature_mlp.fc1.weight");
    assert_int_equal(info.shape[0], 384);
    assert_int_equal(info.shape[1], 23);
    const char *names[] = {"relational.2.attn.qkv.weight", "relational.0.ffn.fc2.weight",
                           "relational.1.ln2.bias", "feature_mlp.fc2.bias"};
    for (size_t i = 0; i < 4; i++) {
        size_t k = 0;
        for (; k < vqj_weights_num_tensors(w); k++) {
            assert_ok(ctx, vqj_weights_info(w, k, &info));
            if (strcmp(info.name, names[i]) == 0)
                break;
        }
        assert_true(k < vqj_weights_num_tensors(w));
    }
    float *buf = malloc(3 * D * D * sizeof *buf);
    assert_ok(ctx, vqj_weights_read(w, "relational.2.attn.qkv.weight", buf, 3 * D * D));
    float bound = 1.0f / sqrtf((float)D), mx = 0.0f;
    double mean = 0.0;
    for (size_t i = 0; i < 3 * D * D; i++) {
        mx = fmaxf(mx, fabsf(buf[i]));
        mean += buf[i];
    }
    assert_true(mx <= bound && mx > 0.99f * bound);
    assert_true(fabs(mean / (3.0 * D * D)) < 0.01 * bound);
    assert_ok(ctx, vqj_weights_read(w, "relational.1.ln1.weight", buf, D));
    for (size_t i = 0; i < D; i++)
        assert_true(buf[i] == 1.0f);
    assert_ok(ctx, vqj_weights_read(w, "relational.1.ln1.bias", buf, D));
    for (size_t i = 0; i < D; i++)
        assert_true(buf[i] == 0.0f);
    /* Different tensors draw different streams. */
    float a[8], b[8];
    assert_ok(ctx, vqj_weights_read(w, "relational.0.attn.out.weight", buf, D * D));
    memcpy(a, buf, sizeof a);
    assert_ok(ctx, vqj_weights_read(w, "relational.1.attn.out.weight", buf, D * D));
    memcpy(b, buf, sizeof b);
    assert_true(memcmp(a, b, sizeof a) != 0);
    free(buf);
    vqj_encoder_destroy(e);
    vqj_encoder_destroy(NULL);
    assert_null(vqj_encoder_weights(NULL));
    vqj_context_destroy(ctx);
}

static void test_predictor_params(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_predictor_params p;
    vqj_predictor_params_default(&p);
    assert_int_equal(p.size, sizeof p);
    assert_int_equal(p.hidden_dim, 384);
    assert_int_equal(p.projection_dim, 256);
    assert_int_equal(p.projection_layers, 2);
    assert_int_equal(p.projection_activation, VQJ_ACT_RELU);
    assert_int_equal(p.aggregator, VQJ_AGG_MEAN);
    assert_int_equal(p.context_window, 3);
    assert_int_equal(p.final_activation, 1);
    assert_int_equal(p.slot_embedding, 0);
    assert_int_equal(p.grid_features, 0);
    assert_int_equal(p.vq_path, VQJ_VQ_STRAIGHT_THROUGH);
    assert_int_equal(p.analogy_residual, 0);
    vqj_predictor *pr = NULL;
#define EXPECT_BAD(field, value, needle)                                                       \
    do {                                                                                       \
        vqj_predictor_params_default(&p);                                                      \
        p.field = value;                                                                       \
        assert_status(ctx, vqj_predictor_create(ctx, &p, &pr), VQJ_ERR_INVALID_ARGUMENT);      \
        assert_null(pr);                                                                       \
        assert_non_null(strstr(vqj_last_error(), needle));                          \
    } while (0)
    EXPECT_BAD(hidden_dim, 0, "hidden_dim");
    EXPECT_BAD(projection_dim, -3, "projection_dim");
    EXPECT_BAD(projection_layers, 0, "projection_layers");
    EXPECT_BAD(projection_layers, 17, "projection_layers");
    EXPECT_BAD(projection_activation, (vqj_activation)9, "projection_activation");
    EXPECT_BAD(aggregator, (vqj_aggregator)-1, "aggregator");
    EXPECT_BAD(context_window, 0, "context_window");
    EXPECT_BAD(final_activation, 2, "final_activation");
    EXPECT_BAD(slot_embedding, -1, "slot_embedding");
    EXPECT_BAD(vq_path, (vqj_vq_path)2, "vq_path");
    EXPECT_BAD(analogy_residual, 2, "analogy_residual");
    vqj_predictor_params_default(&p);
    p.analogy_residual = 1;
    p.context_window = 2;
    assert_status(ctx, vqj_predictor_create(ctx, &p, &pr), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "context_window >= 3"));
#undef EXPECT_BAD
    /* A caller built before final_activation existed: the defaults of the
     * newer fields (final activation on). */
    vqj_predictor_params_default(&p);
    p.size = offsetof(vqj_predictor_params, final_activation);
    p.final_activation = 0;
    assert_ok(ctx, vqj_predictor_create(ctx, &p, &pr));
    assert_int_equal(vqji_predictor_params(pr)->final_activation, 1);
    vqj_predictor_destroy(pr);
    pr = NULL;

    /* Tensors per aggregator. */
    const vqj_aggregator aggs[4] = {VQJ_AGG_MEAN, VQJ_AGG_LAST, VQJ_AGG_ATTENTION, VQJ_AGG_GRU};
    const size_t extra[4] = {0, 0, 1, 4};
    for (int a = 0; a < 4; a++) {
        vqj_predictor_params_default(&p);
        p.aggregator = aggs[a];
        p.projection_layers = 3;
        assert_ok(ctx, vqj_predictor_create(ctx, &p, &pr));
        vqj_weights *w = vqj_predictor_weights(pr);
        assert_int_equal(vqj_weights_num_tensors(w), 6 + extra[a]);
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, 2, &info));
        assert_string_equal(info.name, "head.1.weight");
        assert_int_equal(info.shape[0], 256);
        assert_int_equal(info.shape[1], 256);
        if (aggs[a] == VQJ_AGG_GRU) {
            assert_ok(ctx, vqj_weights_info(w, 6, &info));
            assert_string_equal(info.name, "aggregator.gru.weight_ih");
            assert_int_equal(info.shape[0], 3 * 384);
        }
        if (aggs[a] == VQJ_AGG_ATTENTION) {
            /* query ~ N(0, 1/D): its sample variance is close to 1/D. */
            float qv[384];
            assert_ok(ctx, vqj_weights_read(w, "aggregator.query", qv, 384));
            double ss = 0.0;
            for (int i = 0; i < 384; i++)
                ss += (double)qv[i] * qv[i];
            assert_true(fabs(ss / 384.0 * 384.0 - 1.0) < 0.25);
        }
        vqj_predictor_destroy(pr);
        pr = NULL;
    }
    vqj_predictor_destroy(NULL);
    assert_null(vqj_predictor_weights(NULL));
    vqj_context_destroy(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    stack s;
    stack_init(&s, 42, VQJ_AGG_MEAN, VQJ_ACT_RELU, 0.1f);
    vqj_context *ctx = s.ctx;

    /* Backward before any forward. */
    set_tensor(ctx, s.dz, s.N, S_D, NULL);
    assert_status(ctx, vqj_encoder_backward(s.enc, s.dz, NULL), VQJ_ERR_STATE);
    assert_non_null(strstr(vqj_last_error(), "no forward"));
    set_tensor(ctx, s.dout, S_B, S_P, NULL);
    assert_status(ctx, vqj_predictor_backward_context(s.pred, s.dout, s.dq), VQJ_ERR_STATE);
    assert_status(ctx, vqj_predictor_backward_grids(s.pred, s.dout, s.dq), VQJ_ERR_STATE);

    /* NULLs. */
    assert_status(ctx, vqj_encoder_forward(s.enc, NULL, 0, s.z), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_encoder_forward(NULL, s.tokens, 0, s.z), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_predictor_forward_context(s.pred, s.tokens, NULL, s.out),
                  VQJ_ERR_INVALID_ARGUMENT);

    /* Tokens with another feature dimension than the encoder's. */
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.max_color_features = 5;
    vqj_tokens *narrow = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &narrow));
    vqj_grid g0 = {s.grids[0].h, s.grids[0].w, s.grids[0].cells};
    assert_ok(ctx, vqj_tokenize(ctx, narrow, &g0, 1));
    assert_status(ctx, vqj_encoder_forward(s.enc, narrow, 0, s.z), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "18 features"));
    vqj_tokens_destroy(narrow);

    /* A good forward, then mismatched backward shapes. */
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 1, s.z));
    set_tensor(ctx, s.dz, s.N + 1, S_D, NULL);
    assert_status(ctx, vqj_encoder_backward(s.enc, s.dz, NULL), VQJ_ERR_INVALID_ARGUMENT);
    set_tensor(ctx, s.dz, s.N, S_D - 1, NULL);
    assert_status(ctx, vqj_encoder_backward(s.enc, s.dz, NULL), VQJ_ERR_INVALID_ARGUMENT);
    set_tensor(ctx, s.dz, s.N, S_D, NULL);
    set_tensor(ctx, s.dfeat, s.N, s.F + 1, NULL);
    assert_status(ctx, vqj_encoder_backward(s.enc, s.dz, s.dfeat), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "dfeatures"));
    set_tensor(ctx, s.dfeat, s.N, s.F, NULL);
    assert_ok(ctx, vqj_encoder_backward(s.enc, s.dz, s.dfeat));

    /* Predictor: token vectors of the wrong shape, out aliasing them, a grid
     * count that is not whole examples, the wrong backward path. */
    set_tensor(ctx, s.q, s.N - 1, S_D, NULL);
    assert_status(ctx, vqj_predictor_forward_context(s.pred, s.tokens, s.q, s.out),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "token_vectors"));
    set_tensor(ctx, s.q, s.N, S_D + 1, NULL);
    assert_status(ctx, vqj_predictor_forward_grids(s.pred, s.tokens, s.q, s.out),
                  VQJ_ERR_INVALID_ARGUMENT);
    set_tensor(ctx, s.q, s.N, S_D, NULL);
    assert_status(ctx, vqj_predictor_forward_context(s.pred, s.tokens, s.q, s.q),
                  VQJ_ERR_INVALID_ARGUMENT);
    vqj_tokens *five = NULL;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &five));
    vqj_grid g5[5];
    for (int i = 0; i < 5; i++)
        g5[i] = (vqj_grid){s.grids[i].h, s.grids[i].w, s.grids[i].cells};
    assert_ok(ctx, vqj_tokenize(ctx, five, g5, 5));
    vqj_tensor *tv5 = new_tensor(ctx);
    set_tensor(ctx, tv5, (int)vqj_tokens_num_objects(five), S_D, NULL);
    assert_status(ctx, vqj_predictor_forward_context(s.pred, five, tv5, s.out),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "context_window"));
    assert_ok(ctx, vqj_predictor_forward_grids(s.pred, five, tv5, s.out));
    assert_int_equal(vqj_tensor_rows(s.out), 5);
    set_tensor(ctx, s.dout, 5, S_P, NULL);
    assert_status(ctx, vqj_predictor_backward_context(s.pred, s.dout, tv5), VQJ_ERR_STATE);
    set_tensor(ctx, s.dout, 4, S_P, NULL);
    assert_status(ctx, vqj_predictor_backward_grids(s.pred, s.dout, tv5),
                  VQJ_ERR_INVALID_ARGUMENT);
    set_tensor(ctx, s.dout, 5, S_P, NULL);
    assert_ok(ctx, vqj_predictor_backward_grids(s.pred, s.dout, tv5));
    vqj_tensor_destroy(tv5);
    vqj_tokens_destroy(five);

    /* NaN and infinite input features: rejected, naming the token, before
     * anything changes (the previous forward can still be differentiated). */
    float *x = s.tokens->out.features;
    const int32_t *off = vqj_tokens_offsets(s.tokens);
    size_t tok = (size_t)off[2] + 1; /* grid 2, object 1 */
    float keep = x[tok * (size_t)s.F + 4];
    x[tok * (size_t)s.F + 4] = NAN;
    assert_status(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z), VQJ_ERR_NUMERIC);
    char expect[64];
    snprintf(expect, sizeof expect, "feature 4 of token %zu (grid 2, object 1) is NaN", tok);
    assert_non_null(strstr(vqj_last_error(), expect));
    set_tensor(ctx, s.dz, s.N, S_D, NULL);
    assert_ok(ctx, vqj_encoder_backward(s.enc, s.dz, NULL));
    x[tok * (size_t)s.F + 4] = -INFINITY;
    assert_status(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z), VQJ_ERR_NUMERIC);
    assert_non_null(strstr(vqj_last_error(), "infinite"));
    x[tok * (size_t)s.F + 4] = keep;
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));

    /* Tensors from another context. */
    vqj_context *other = test_context();
    vqj_tensor *foreign = new_tensor(other);
    assert_status(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, foreign),
                  VQJ_ERR_INVALID_ARGUMENT);
    vqj_tensor_destroy(foreign);
    vqj_context_destroy(other);
    stack_free(&s);
}

/* Batches with no objects at all: z is 0 x D, every grid vector is the zero
 * vector, the outputs are normalize(head(0)) and finite, the backward pass
 * leaves the encoder's gradients at 0 and nothing is NaN. */
static void test_empty_batch(void **state)
{
    (void)state;
    stack s;
    stack_init(&s, 42, VQJ_AGG_GRU, VQJ_ACT_RELU, 0.1f);
    vqj_context *ctx = s.ctx;
    test_grid tg[S_G];
    const int rects[S_G] = {0, 0, 0, 0, 0, 0};
    tokenize_test_grids(ctx, s.tokens, tg, S_G, rects, 5);
    assert_int_equal(vqj_tokens_num_objects(s.tokens), 0);
    vqj_weights *ew = vqj_encoder_weights(s.enc), *pw = vqj_predictor_weights(s.pred);
    vqj_weights_zero_grad(ew);
    vqj_weights_zero_grad(pw);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 1, s.z));
    assert_int_equal(vqj_tensor_rows(s.z), 0);
    assert_int_equal(vqj_tensor_cols(s.z), S_D);
    vqj_codebook_stats st = {.size = sizeof st};
    assert_ok(ctx, vqj_codebook_forward(s.cb, s.z, 1, s.q, NULL, &st));
    assert_true(st.commitment_loss == 0.0f);
    assert_ok(ctx, vqj_predictor_forward_context(s.pred, s.tokens, s.q, s.out));
    assert_int_equal(vqj_tensor_rows(s.out), S_B);
    float *gv = malloc(S_G * S_D * sizeof *gv);
    memcpy(gv, vqji_predictor_grid_vectors(s.pred), S_G * S_D * sizeof *gv); /* CPU device */
    for (int i = 0; i < S_G * S_D; i++)
        assert_true(gv[i] == 0.0f);
    free(gv);
    float *out = read_tensor(ctx, s.out);
    assert_true(all_finite(out, S_B * S_P));
    free(out);
    set_tensor(ctx, s.dout, S_B, S_P, s.R);
    set_tensor(ctx, s.dq, 0, S_D, NULL);
    assert_ok(ctx, vqj_predictor_backward_context(s.pred, s.dout, s.dq));
    set_tensor(ctx, s.dz, 0, S_D, NULL);
    assert_ok(ctx, vqj_codebook_backward(s.cb, s.dq, s.dz));
    set_tensor(ctx, s.dfeat, 0, s.F, NULL);
    assert_ok(ctx, vqj_encoder_backward(s.enc, s.dz, s.dfeat));
    vqj_weights *views[2] = {ew, pw};
    for (int v = 0; v < 2; v++)
        for (size_t t = 0; t < vqj_weights_num_tensors(views[v]); t++) {
            vqj_weight_info info;
            assert_ok(ctx, vqj_weights_info(views[v], t, &info));
            float *g = malloc(info.count * sizeof *g);
            assert_ok(ctx, vqj_weights_read_grad(views[v], info.name, g, info.count));
            assert_true(all_finite(g, info.count));
            if (v == 0) /* no token, no encoder gradient */
                for (size_t i = 0; i < info.count; i++)
                    assert_true(g[i] == 0.0f);
            free(g);
        }
    /* The grids path on the empty batch, and no grids at all. */
    assert_ok(ctx, vqj_predictor_forward_grids(s.pred, s.tokens, s.q, s.out));
    assert_int_equal(vqj_tensor_rows(s.out), S_G);
    out = read_tensor(ctx, s.out);
    assert_true(all_finite(out, S_G * S_P));
    free(out);
    assert_ok(ctx, vqj_tokenize(ctx, s.tokens, NULL, 0));
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 1, s.z));
    assert_int_equal(vqj_tensor_rows(s.z), 0);
    assert_ok(ctx, vqj_predictor_forward_context(s.pred, s.tokens, s.z, s.out));
    assert_int_equal(vqj_tensor_rows(s.out), 0);
    set_tensor(ctx, s.dout, 0, S_P, NULL);
    assert_ok(ctx, vqj_predictor_backward_context(s.pred, s.dout, s.dq));
    stack_free(&s);
}

/* ---- determinism ---- */

typedef struct run_result {
    float *z, *out;
    float *grads; /* every trainable gradient of the encoder, then the predictor */
    size_t z_n, out_n, grads_n;
} run_result;

static void collect_grads(vqj_context *ctx, vqj_weights *w, run_result *r)
{
    for (size_t t = 0; t < vqj_weights_num_tensors(w); t++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, t, &info));
        if (!info.trainable)
            continue;
        r->grads = realloc(r->grads, (r->grads_n + info.count) * sizeof *r->grads);
        assert_ok(ctx, vqj_weights_read_grad(w, info.name, r->grads + r->grads_n, info.count));
        r->grads_n += info.count;
    }
}

static void run_once(uint64_t seed, run_result *r)
{
    stack s;
    stack_init(&s, seed, VQJ_AGG_GRU, VQJ_ACT_RELU, 0.1f);
    stack_analytic(&s);
    memset(r, 0, sizeof *r);
    r->z = read_tensor(s.ctx, s.z);
    r->z_n = (size_t)s.N * S_D;
    r->out = read_tensor(s.ctx, s.out);
    r->out_n = S_B * S_P;
    collect_grads(s.ctx, vqj_encoder_weights(s.enc), r);
    collect_grads(s.ctx, vqj_predictor_weights(s.pred), r);
    stack_free(&s);
}

static void free_run(run_result *r)
{
    free(r->z);
    free(r->out);
    free(r->grads);
}

static void test_determinism(void **state)
{
    (void)state;
    run_result a, b, c;
    run_once(42, &a);
    run_once(42, &b);
    run_once(43, &c);
    assert_int_equal(a.grads_n, b.grads_n);
    assert_memory_equal(a.z, b.z, a.z_n * sizeof(float));
    assert_memory_equal(a.out, b.out, a.out_n * sizeof(float));
    assert_memory_equal(a.grads, b.grads, a.grads_n * sizeof(float));
    assert_true(all_finite(a.grads, a.grads_n));
    /* Another seed: other weights and masks. */
    assert_true(memcmp(a.z, c.z, a.z_n * sizeof(float)) != 0);
    free_run(&a);
    free_run(&b);
    free_run(&c);
}

/* Dropout: training draws a new mask each step (the step counter advances),
 * the same step gives the same mask, and evaluation has none. */
static void test_dropout_steps(void **state)
{
    (void)state;
    stack s;
    stack_init(&s, 42, VQJ_AGG_MEAN, VQJ_ACT_RELU, 0.3f);
    vqj_context *ctx = s.ctx;
    size_t n = (size_t)s.N * S_D;
    assert_int_equal(vqji_encoder_step(s.enc), 0);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
    assert_int_equal(vqji_encoder_step(s.enc), 0); /* evaluation does not advance it */
    float *eval1 = read_tensor(ctx, s.z);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 1, s.z));
    float *train0 = read_tensor(ctx, s.z);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 1, s.z));
    float *train1 = read_tensor(ctx, s.z);
    assert_int_equal(vqji_encoder_step(s.enc), 2);
    vqji_encoder_set_step(s.enc, 0);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 1, s.z));
    float *again0 = read_tensor(ctx, s.z);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
    float *eval2 = read_tensor(ctx, s.z);
    assert_true(memcmp(eval1, train0, n * sizeof(float)) != 0);
    assert_true(memcmp(train0, train1, n * sizeof(float)) != 0);
    assert_memory_equal(train0, again0, n * sizeof(float));
    assert_memory_equal(eval1, eval2, n * sizeof(float));
    free(eval1);
    free(train0);
    free(train1);
    free(again0);
    free(eval2);
    stack_free(&s);
}

/* Buffers are reused: a bigger batch after a small one, then the small one
 * again, gives the same result as the first time. */
static void test_batch_sizes(void **state)
{
    (void)state;
    stack s;
    stack_init(&s, 42, VQJ_AGG_ATTENTION, VQJ_ACT_RELU, 0.0f);
    vqj_context *ctx = s.ctx;
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
    float *small1 = read_tensor(ctx, s.z);
    size_t n_small = (size_t)s.N * S_D;
    vqj_tokens *big = NULL;
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &big));
    test_grid tg[30];
    int rects[30];
    for (int i = 0; i < 30; i++)
        rects[i] = 2 + i % 5;
    tokenize_test_grids(ctx, big, tg, 30, rects, 100);
    assert_ok(ctx, vqj_encoder_forward(s.enc, big, 0, s.z));
    assert_int_equal(vqj_tensor_rows(s.z), (int)vqj_tokens_num_objects(big));
    assert_ok(ctx, vqj_predictor_forward_context(s.pred, big, s.z, s.out));
    assert_int_equal(vqj_tensor_rows(s.out), 10);
    assert_ok(ctx, vqj_encoder_forward(s.enc, s.tokens, 0, s.z));
    float *small2 = read_tensor(ctx, s.z);
    assert_memory_equal(small1, small2, n_small * sizeof(float));
    free(small1);
    free(small2);
    vqj_tokens_destroy(big);
    stack_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder_params),
        cmocka_unit_test(test_predictor_params),
        cmocka_unit_test(test_gradcheck_mean),
        cmocka_unit_test(test_gradcheck_predictor_options),
        cmocka_unit_test(test_gradcheck_beside),
        cmocka_unit_test(test_predictor_options_behaviour),
        cmocka_unit_test(test_analogy_residual_forward),
        cmocka_unit_test(test_gradcheck_gru),
        cmocka_unit_test(test_gradcheck_attention),
        cmocka_unit_test(test_gradcheck_grids_path),
        cmocka_unit_test(test_parity_reference),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_empty_batch),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_dropout_steps),
        cmocka_unit_test(test_batch_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
