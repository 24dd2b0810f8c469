/* Inference for agents (vqj_model, include/vqjepa.h "Inference for agents"):
 *  - codes, grid embeddings and predictions equal the stage calls
 *    (vqj_tokenize, vqj_encoder_forward, vqj_codebook_forward with
 *    training 0, vqj_predictor_forward_grids / _context) bit for bit, with
 *    and without a target network, single and batched, for every aggregator;
 *  - one code per object, in tokenizer order; empty grids;
 *  - inference changes nothing in the handles (weights, counters, the state
 *    a pending backward pass needs);
 *  - 8 threads sharing one model give exactly the sequential results, and
 *    their errors stay on their own thread;
 *  - the latent distance's properties; bad input.
 * Built with -DVQJ_TSAN by `make tsan` (ThreadSanitizer). */
#include "testutil.h"

#include "model/encoder.h"

#include <pthread.h>

#define D 32
#define HEADS 4
#define LAYERS 2
#define K 16
#define P 16
#define T 3
#define M 16 /* the default max_objects */

/* ---- fixtures ---- */

typedef struct fixture {
    vqj_context *ctx;
    vqj_encoder *enc, *tenc;
    vqj_codebook *cb;
    vqj_predictor *pred, *tpred;
    vqj_model *model; /* with the target network */
    vqj_model *plain; /* without: the online network embeds grids */
    /* for the stage calls */
    vqj_tokens *tok;
    vqj_tensor *z, *q, *y;
} fixture;

typedef struct test_grid {
    int h, w;
    uint8_t cells[16 * 16];
} test_grid;

/* A reproducible grid: `rects` colored rectangles on background (0: empty). */
static void make_grid(test_grid *g, uint32_t seed, int rects)
{
    uint32_t s = seed * 747796405u + 2891336453u;
#define NEXT(n) (s = s * 1664525u + 1013904223u, (int)((s >> 16) % (uint32_t)(n)))
    g->h = 3 + NEXT(14);
    g->w = 3 + NEXT(14);
    memset(g->cells, 0, sizeof g->cells);
    for (int r = 0; r < rects; r++) {
        int c = 1 + NEXT(9), rh = 1 + NEXT(4), rw = 1 + NEXT(4);
        if (rh > g->h)
            rh = g->h;
        if (rw > g->w)
            rw = g->w;
        int y = NEXT(g->h - rh + 1), x = NEXT(g->w - rw + 1);
        for (int i = y; i < y + rh; i++)
            for (int j = x; j < x + rw; j++)
                g->cells[i * g->w + j] = (uint8_t)c;
    }
#undef NEXT
}

static vqj_grid as_grid(const test_grid *g)
{
    return (vqj_grid){.height = g->h, .width = g->w, .cells = g->cells};
}

/* Add reproducible noise to every trainable tensor of a view, so that a
 * target network differs from the online one. */
static void perturb(vqj_context *ctx, vqj_weights *w, uint32_t seed)
{
    for (size_t i = 0; i < vqj_weights_num_tensors(w); i++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        float *x = malloc(info.count * sizeof *x), *n = malloc(info.count * sizeof *n);
        assert_non_null(x);
        assert_non_null(n);
        assert_ok(ctx, vqj_weights_read(w, info.name, x, info.count));
        test_fill(n, info.count, seed + (uint32_t)i, 0.05f);
        for (size_t j = 0; j < info.count; j++)
            x[j] += n[j];
        assert_ok(ctx, vqj_weights_write(w, info.name, x, info.count));
        free(x);
        free(n);
    }
}

/* A small "trained" model: k-means++ seeds the codes from the tokens of a
 * large batch (so codes differ from object to object) and the target
 * network is a perturbed copy of the online one. */
static void setup_with(fixture *f, vqj_context *ctx, vqj_aggregator agg, int vq_enabled)
{
    memset(f, 0, sizeof *f);
    f->ctx = ctx;
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.hidden_dim = D;
    ep.relational_heads = HEADS;
    ep.relational_layers = LAYERS;
    ep.relational_dropout = 0.1f; /* must be off in inference */
    vqj_codebook_params cp;
    vqj_codebook_params_default(&cp);
    cp.dim = D;
    cp.num_embeddings = K;
    cp.enabled = vq_enabled;
    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = D;
    pp.projection_dim = P;
    pp.context_window = T;
    pp.aggregator = agg;
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &f->enc));
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &f->tenc));
    assert_ok(ctx, vqj_codebook_create(ctx, &cp, &f->cb));
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &f->pred));
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &f->tpred));
    perturb(ctx, vqj_encoder_weights(f->tenc), 1000);
    perturb(ctx, vqj_predictor_weights(f->tpred), 2000);
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &f->tok));
    assert_ok(ctx, vqj_tensor_create(ctx, 0, 0, &f->z));
    assert_ok(ctx, vqj_tensor_create(ctx, 0, 0, &f->q));
    assert_ok(ctx, vqj_tensor_create(ctx, 0, 0, &f->y));

    /* "Training": one codebook training forward on 40 grids' tokens. */
    test_grid tg[40];
    vqj_grid g[40];
    for (int i = 0; i < 40; i++) {
        make_grid(&tg[i], 500u + (uint32_t)i, 2 + i % 5);
        g[i] = as_grid(&tg[i]);
    }
    assert_ok(ctx, vqj_tokenize(ctx, f->tok, g, 40));
    assert_true(vqj_tokens_num_objects(f->tok) >= K);
    assert_ok(ctx, vqj_encoder_forward(f->enc, f->tok, 0, f->z));
    assert_ok(ctx, vqj_codebook_forward(f->cb, f->z, 1, f->q, NULL, NULL));

    assert_ok(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, f->pred, f->tenc, f->tpred,
                                    &f->model));
    assert_ok(ctx, vqj_model_create(ctx, &tp, f->enc, f->cb, f->pred, NULL, NULL, &f->plain));
}

static void teardown_fixture(fixture *f)
{
    vqj_model_destroy(f->model);
    vqj_model_destroy(f->plain);
    vqj_tensor_destroy(f->z);
    vqj_tensor_destroy(f->q);
    vqj_tensor_destroy(f->y);
    vqj_tokens_destroy(f->tok);
    vqj_encoder_destroy(f->enc);
    vqj_encoder_destroy(f->tenc);
    vqj_codebook_destroy(f->cb);
    vqj_predictor_destroy(f->pred);
    vqj_predictor_destroy(f->tpred);
    vqj_context *ctx = f->ctx;
    vqj_context_destroy(ctx);
}

static int setup(void **state)
{
    fixture *f = malloc(sizeof *f);
    if (!f)
        return -1;
    setup_with(f, test_context(), VQJ_AGG_ATTENTION, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    teardown_fixture(*state);
    free(*state);
    return 0;
}

/* ---- the stage calls ---- */

/* Codes [N] of the objects of `n` grids (batched as given) and, into emb
 * [n x P], the grid embeddings by the target path (target != 0) or the
 * online one. */
static void stage_encode(fixture *f, const vqj_grid *grids, size_t n, int target,
                         int32_t *codes, size_t *num_objects, float *emb)
{
    vqj_context *ctx = f->ctx;
    assert_ok(ctx, vqj_tokenize(ctx, f->tok, grids, n));
    assert_ok(ctx, vqj_encoder_forward(f->enc, f->tok, 0, f->z));
    assert_ok(ctx, vqj_codebook_forward(f->cb, f->z, 0, f->q, codes, NULL));
    const int32_t *off = vqj_tokens_offsets(f->tok);
    for (size_t g = 0; g < n; g++)
        num_objects[g] = (size_t)(off[g + 1] - off[g]);
    vqj_predictor *pr = f->pred;
    if (target) {
        assert_ok(ctx, vqj_encoder_forward(f->tenc, f->tok, 0, f->z));
        assert_ok(ctx, vqj_codebook_forward(f->cb, f->z, 0, f->q, NULL, NULL));
        pr = f->tpred;
    }
    assert_ok(ctx, vqj_predictor_forward_grids(pr, f->tok, f->q, f->y));
    assert_int_equal(vqj_tensor_rows(f->y), (int)n);
    assert_ok(ctx, vqj_tensor_read(f->y, emb, n * P));
}

/* Predictions [batch x P] of batch * T context grids. */
static void stage_predict(fixture *f, const vqj_grid *context, size_t batch, float *out)
{
    vqj_context *ctx = f->ctx;
    assert_ok(ctx, vqj_tokenize(ctx, f->tok, context, batch * T));
    assert_ok(ctx, vqj_encoder_forward(f->enc, f->tok, 0, f->z));
    assert_ok(ctx, vqj_codebook_forward(f->cb, f->z, 0, f->q, NULL, NULL));
    assert_ok(ctx, vqj_predictor_forward_context(f->pred, f->tok, f->q, f->y));
    assert_ok(ctx, vqj_tensor_read(f->y, out, batch * P));
}

#define NGRIDS 24

static void make_grids(test_grid *tg, vqj_grid *g, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        /* every seventh grid is empty */
        make_grid(&tg[i], seed + (uint32_t)i, i % 7 == 3 ? 0 : 1 + (int)(i % 6));
        g[i] = as_grid(&tg[i]);
    }
}

/* ---- tests ---- */

static void check_parity(fixture *f)
{
    vqj_context *ctx = f->ctx;
    test_grid tg[NGRIDS];
    vqj_grid g[NGRIDS];
    make_grids(tg, g, NGRIDS, 77);
    for (int target = 0; target < 2; target++) {
        const vqj_model *model = target ? f->model : f->plain;
        /* one grid at a time */
        for (size_t i = 0; i < NGRIDS; i++) {
            int32_t want_codes[M], codes[M];
            size_t want_n, n = 99;
            float want[P], emb[P];
            stage_encode(f, &g[i], 1, target, want_codes, &want_n, want);
            assert_ok(ctx, vqj_model_encode_grid(model, &g[i], codes, &n, emb));
            assert_int_equal(n, want_n);
            assert_memory_equal(codes, want_codes, n * sizeof *codes);
            for (size_t j = n; j < M; j++)
                assert_int_equal(codes[j], -1);
            assert_memory_equal(emb, want, sizeof want);
        }
        /* one batch */
        int32_t want_codes[NGRIDS * M], codes[NGRIDS * M];
        size_t want_n[NGRIDS], n[NGRIDS];
        float want[NGRIDS * P], emb[NGRIDS * P];
        stage_encode(f, g, NGRIDS, target, want_codes, want_n, want);
        assert_ok(ctx, vqj_model_encode_grids(model, g, NGRIDS, codes, n, emb));
        size_t first = 0;
        for (size_t i = 0; i < NGRIDS; i++) {
            assert_int_equal(n[i], want_n[i]);
            assert_memory_equal(codes + i * M, want_codes + first, n[i] * sizeof *codes);
            first += n[i];
        }
        assert_memory_equal(emb, want, sizeof want);
    }
    /* predictions: 8 examples of T grids, one at a time and batched */
    enum { B = NGRIDS / T };
    float want[B * P], got[B * P];
    for (size_t b = 0; b < B; b++) {
        stage_predict(f, g + b * T, 1, want);
        assert_ok(ctx, vqj_model_predict(f->model, g + b * T, T, got));
        assert_memory_equal(got, want, P * sizeof *got);
        /* the target network does not enter predictions */
        assert_ok(ctx, vqj_model_predict(f->plain, g + b * T, T, got));
        assert_memory_equal(got, want, P * sizeof *got);
    }
    stage_predict(f, g, B, want);
    assert_ok(ctx, vqj_model_predict_batch(f->model, g, B, got));
    assert_memory_equal(got, want, sizeof want);
    /* unit length */
    double norm = 0.0;
    for (int j = 0; j < P; j++)
        norm += (double)got[j] * got[j];
    assert_true(fabs(norm - 1.0) < 1e-5);
}

static void test_matches_stage_calls(void **state)
{
    (void)state;
    const vqj_aggregator aggs[] = {VQJ_AGG_MEAN, VQJ_AGG_LAST, VQJ_AGG_ATTENTION, VQJ_AGG_GRU};
    for (size_t a = 0; a < sizeof aggs / sizeof aggs[0]; a++) {
        fixture f;
        setup_with(&f, test_context(), aggs[a], 1);
        check_parity(&f);
        teardown_fixture(&f);
    }
}

static void test_accessors(void **state)
{
    fixture *f = *state;
    assert_int_equal(vqj_model_embedding_dim(f->model), P);
    assert_int_equal(vqj_model_max_objects(f->model), M);
    assert_int_equal(vqj_model_context_window(f->model), T);
    assert_int_equal(vqj_model_num_codes(f->model), K);
    assert_int_equal(vqj_model_embedding_dim(NULL), 0);
    assert_int_equal(vqj_model_max_objects(NULL), 0);
    assert_int_equal(vqj_model_context_window(NULL), 0);
    assert_int_equal(vqj_model_num_codes(NULL), 0);
    /* a tokenizer with fewer objects */
    vqj_context *ctx = f->ctx;
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.max_objects = 2;
    vqj_model *m = NULL;
    assert_ok(ctx, vqj_model_create(ctx, &tp, f->enc, f->cb, f->pred, NULL, NULL, &m));
    assert_int_equal(vqj_model_max_objects(m), 2);
    test_grid tg;
    make_grid(&tg, 5, 6);
    vqj_grid g = as_grid(&tg);
    int32_t codes[2];
    size_t n;
    assert_ok(ctx, vqj_model_encode_grid(m, &g, codes, &n, NULL));
    assert_true(n <= 2);
    vqj_model_destroy(m);
}

/* vqj_model_encode_grid_levels(): with one level the codes of
 * vqj_model_encode_grid(); with residual or grouped codes of L codes per
 * object (G groups x levels) the first code is vqj_model_encode_grid()'s,
 * the index is the mixed-radix one (first code most significant) and -1
 * where K^L does not fit in 63 bits. */
static void test_level_codes(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    test_grid tg;
    make_grid(&tg, 77, 5);
    vqj_grid g = as_grid(&tg);
    int32_t codes[M], levels[M * 16];
    int64_t index[M];
    size_t n, nl;
    assert_int_equal(vqj_model_num_quantizers(f->model), 1);
    assert_int_equal(vqj_model_num_quantizers(NULL), 0);
    assert_ok(ctx, vqj_model_encode_grid(f->model, &g, codes, &n, NULL));
    assert_ok(ctx, vqj_model_encode_grid_levels(f->model, &g, index, levels, &nl));
    assert_int_equal(n, nl);
    for (int j = 0; j < M; j++) {
        assert_int_equal(index[j], codes[j]);
        assert_int_equal(levels[j], codes[j]);
    }
    /* residual codes of 3 and 16 levels; grouped codes: 2 groups of 2
     * levels, and 16 groups of Euclidean codes (16 codes again: overflow) */
    static const int shapes[4][2] = {{3, 1}, {16, 1}, {2, 2}, {1, 16}};
    for (int sh = 0; sh < 4; sh++) {
        const int G = shapes[sh][1], L = shapes[sh][0] * G; /* codes per object */
        vqj_codebook_params cp;
        vqj_codebook_params_default(&cp);
        cp.dim = D;
        cp.num_embeddings = K;
        cp.quantizer = shapes[sh][0] > 1 ? VQJ_QUANTIZER_RESIDUAL : VQJ_QUANTIZER_EUCLIDEAN;
        cp.num_quantizers = shapes[sh][0];
        cp.num_groups = G;
        cp.kmeans_init = 0;
        vqj_codebook *cb = NULL;
        assert_ok(ctx, vqj_codebook_create(ctx, &cp, &cb));
        vqj_model *m = NULL;
        assert_ok(ctx, vqj_model_create(ctx, NULL, f->enc, cb, f->pred, NULL, NULL, &m));
        assert_int_equal(vqj_model_num_quantizers(m), L);
        assert_int_equal(vqj_model_num_codes(m), K);
        assert_ok(ctx, vqj_model_encode_grid(m, &g, codes, &n, NULL));
        assert_ok(ctx, vqj_model_encode_grid_levels(m, &g, index, levels, &nl));
        assert_int_equal(n, nl);
        assert_true(n > 0);
        for (size_t i = 0; i < M; i++) {
            uint64_t want = 0; /* unsigned: 16^16 wraps, and is not compared */
            for (int l = 0; l < L; l++) {
                int32_t c = levels[i * L + l];
                if (i >= n) {
                    assert_int_equal(c, -1);
                    continue;
                }
                assert_in_range(c, 0, K - 1);
                want = want * (uint64_t)K + (uint64_t)c;
            }
            if (i < n)
                assert_int_equal(levels[i * L], codes[i]);
            /* 16^16 = 2^64 does not fit */
            assert_int_equal(index[i], i >= n || L == 16 ? -1 : (int64_t)want);
        }
        assert_status(ctx, vqj_model_encode_grid_levels(m, NULL, index, levels, &nl),
                      VQJ_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(vqj_last_error(), "grid is NULL"));
        vqj_model_destroy(m);
        vqj_codebook_destroy(cb);
    }
}

/* Three objects that are not adjacent (an empty row between each), of
 * areas 6, 3 and 1: the codes come largest first, and each equals the code
 * of the object alone in an otherwise empty grid of the same size (no
 * neighbour to attend to, same normalized features). */
static void test_codes_in_tokenizer_order(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    enum { H = 9, W = 8 };
    static const uint8_t all[H * W] = {
        0, 0, 0, 0, 0, 0, 5, 0, /* area 1, color 5, seen first */
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 3, 3, 3, 0, 0, 0, 0, /* area 3, color 3 */
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 2, 2, 2, 0, /* area 6, color 2 */
        0, 0, 0, 0, 2, 2, 2, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    };
    uint8_t alone[3][H * W];
    const uint8_t colors[3] = {2, 3, 5}; /* by decreasing area */
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < H * W; i++)
            alone[o][i] = all[i] == colors[o] ? all[i] : 0;
    vqj_grid g = {.height = H, .width = W, .cells = all};
    int32_t codes[M];
    size_t n;
    float emb[P];
    assert_ok(ctx, vqj_model_encode_grid(f->model, &g, codes, &n, emb));
    assert_int_equal(n, 3);
    for (int j = 3; j < M; j++)
        assert_int_equal(codes[j], -1);
    for (int o = 0; o < 3; o++) {
        assert_in_range(codes[o], 0, K - 1);
        vqj_grid go = {.height = H, .width = W, .cells = alone[o]};
        int32_t c1[M];
        size_t n1;
        assert_ok(ctx, vqj_model_encode_grid(f->model, &go, c1, &n1, NULL));
        assert_int_equal(n1, 1);
        assert_int_equal(codes[o], c1[0]);
    }
    /* the trained codebook tells these three objects apart */
    assert_true(codes[0] != codes[1] || codes[1] != codes[2]);
    /* the tokenizer's own order: areas descending */
    assert_ok(ctx, vqj_tokenize(ctx, f->tok, &g, 1));
    const float *feat = vqj_tokens_features(f->tok);
    int fd = vqj_tokens_feature_dim(f->tok);
    assert_true(feat[0] > feat[fd] && feat[fd] > feat[2 * fd]);
    assert_int_equal((int)feat[6], 2); /* dominant color of the first object */
}

static void test_empty_grid(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    uint8_t zeros[10 * 7] = {0};
    vqj_grid a = {.height = 3, .width = 3, .cells = zeros};
    vqj_grid b = {.height = 10, .width = 7, .cells = zeros};
    int32_t codes[M];
    memset(codes, 0x55, sizeof codes);
    size_t n = 99;
    float ea[P], eb[P], want[P];
    assert_ok(ctx, vqj_model_encode_grid(f->model, &a, codes, &n, ea));
    assert_int_equal(n, 0);
    for (int j = 0; j < M; j++)
        assert_int_equal(codes[j], -1);
    assert_ok(ctx, vqj_model_encode_grid(f->model, &b, NULL, &n, eb));
    assert_int_equal(n, 0);
    /* one fixed vector, the same for every empty grid ... */
    assert_memory_equal(ea, eb, sizeof ea);
    /* ... the head of the zero grid vector, normalized */
    int32_t wc[1];
    size_t wn;
    stage_encode(f, &a, 1, 1, wc, &wn, want);
    assert_memory_equal(ea, want, sizeof want);
    double norm = 0.0;
    for (int j = 0; j < P; j++)
        norm += (double)ea[j] * ea[j];
    assert_true(fabs(norm - 1.0) < 1e-5);
    /* an empty context is defined too */
    vqj_grid ctx3[T] = {a, b, a};
    float pred[P];
    assert_ok(ctx, vqj_model_predict(f->model, ctx3, T, pred));
    for (int j = 0; j < P; j++)
        assert_true(isfinite(pred[j]));
    /* a batch of empty grids; num_grids = 0 is a no-op */
    vqj_grid two[2] = {a, b};
    size_t nn[2];
    float e2[2 * P];
    assert_ok(ctx, vqj_model_encode_grids(f->model, two, 2, NULL, nn, e2));
    assert_int_equal(nn[0] + nn[1], 0);
    assert_ok(ctx, vqj_model_encode_grids(f->model, NULL, 0, NULL, NULL, NULL));
    assert_ok(ctx, vqj_model_predict_batch(f->model, NULL, 0, NULL));
}

static void test_disabled_codebook(void **state)
{
    (void)state;
    fixture f;
    setup_with(&f, test_context(), VQJ_AGG_MEAN, 0);
    test_grid tg;
    make_grid(&tg, 9, 4);
    vqj_grid g = as_grid(&tg);
    int32_t codes[M];
    size_t n;
    float emb[P], want[P];
    assert_ok(f.ctx, vqj_model_encode_grid(f.model, &g, codes, &n, emb));
    assert_true(n > 0);
    for (int j = 0; j < M; j++)
        assert_int_equal(codes[j], -1);
    int64_t index[M];
    assert_ok(f.ctx, vqj_model_encode_grid_levels(f.model, &g, index, codes, &n));
    for (int j = 0; j < M; j++)
        assert_true(index[j] == -1 && codes[j] == -1);
    int32_t wc[M];
    size_t wn;
    stage_encode(&f, &g, 1, 1, wc, &wn, want);
    assert_memory_equal(emb, want, sizeof want);
    teardown_fixture(&f);
}

/* Every value of a weights view, for before/after comparisons. */
static float *snapshot(vqj_context *ctx, vqj_weights *w, size_t *count)
{
    size_t total = 0;
    for (size_t i = 0; i < vqj_weights_num_tensors(w); i++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        total += info.count;
    }
    float *x = malloc(total * sizeof *x), *p = x;
    assert_non_null(x);
    for (size_t i = 0; i < vqj_weights_num_tensors(w); i++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        assert_ok(ctx, vqj_weights_read(w, info.name, p, info.count));
        p += info.count;
    }
    *count = total;
    return x;
}

static float *grads(vqj_context *ctx, vqj_weights *w, size_t *count)
{
    size_t total = vqj_weights_num_params(w);
    float *x = malloc((total ? total : 1) * sizeof *x), *p = x;
    assert_non_null(x);
    for (size_t i = 0; i < vqj_weights_num_tensors(w); i++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        if (!info.trainable)
            continue;
        assert_ok(ctx, vqj_weights_read_grad(w, info.name, p, info.count));
        p += info.count;
    }
    *count = total;
    return x;
}

static void run_backward(fixture *f, vqj_tensor *dc, vqj_tensor *dq, vqj_tensor *dz)
{
    vqj_context *ctx = f->ctx;
    vqj_weights_zero_grad(vqj_encoder_weights(f->enc));
    vqj_weights_zero_grad(vqj_predictor_weights(f->pred));
    size_t nd = (size_t)vqj_tensor_rows(dq) * D;
    float *zero = calloc(nd + 1, sizeof *zero);
    assert_non_null(zero);
    assert_ok(ctx, vqj_tensor_write(dq, zero, nd));
    assert_ok(ctx, vqj_tensor_write(dz, zero, nd));
    free(zero);
    assert_ok(ctx, vqj_predictor_backward_context(f->pred, dc, dq));
    assert_ok(ctx, vqj_codebook_backward(f->cb, dq, dz));
    assert_ok(ctx, vqj_encoder_backward(f->enc, dz, NULL));
}

/* A training forward is pending its backward while the model runs: the
 * model must change nothing in the handles, so the backward gives the same
 * gradients as without the model calls, and the weights, the codebook's
 * counters and the dropout step are as they were. */
static void test_handles_untouched(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    test_grid tg[2 * T];
    vqj_grid g[2 * T];
    make_grids(tg, g, 2 * T, 300);
    assert_ok(ctx, vqj_tokenize(ctx, f->tok, g, 2 * T));
    vqj_tensor *c, *dc, *dq, *dz;
    assert_ok(ctx, vqj_tensor_create(ctx, 0, 0, &c));
    assert_ok(ctx, vqj_encoder_forward(f->enc, f->tok, 1, f->z));
    assert_ok(ctx, vqj_codebook_forward(f->cb, f->z, 1, f->q, NULL, NULL));
    assert_ok(ctx, vqj_predictor_forward_context(f->pred, f->tok, f->q, c));
    int n = vqj_tensor_rows(f->z);
    float dcv[2 * P];
    test_fill(dcv, 2 * P, 5, 0.1f);
    assert_ok(ctx, vqj_tensor_create(ctx, 2, P, &dc));
    assert_ok(ctx, vqj_tensor_write(dc, dcv, 2 * P));
    assert_ok(ctx, vqj_tensor_create(ctx, n, D, &dq));
    assert_ok(ctx, vqj_tensor_create(ctx, n, D, &dz));

    size_t ne, nc, np, nt;
    float *we = snapshot(ctx, vqj_encoder_weights(f->enc), &ne);
    float *wc = snapshot(ctx, vqj_codebook_weights(f->cb), &nc);
    float *wp = snapshot(ctx, vqj_predictor_weights(f->pred), &np);
    float *wt = snapshot(ctx, vqj_encoder_weights(f->tenc), &nt);
    int64_t updates0, updates1;
    int init0, init1;
    assert_ok(ctx, vqj_codebook_get_progress(f->cb, &updates0, &init0));
    uint64_t step0 = vqji_encoder_step(f->enc);

    /* inference on other (larger) batches in between */
    test_grid tb[NGRIDS];
    vqj_grid gb[NGRIDS];
    make_grids(tb, gb, NGRIDS, 900);
    int32_t codes[NGRIDS * M];
    size_t cnt[NGRIDS];
    float emb[NGRIDS * P];
    assert_ok(ctx, vqj_model_encode_grids(f->model, gb, NGRIDS, codes, cnt, emb));
    assert_ok(ctx, vqj_model_encode_grids(f->plain, gb, NGRIDS, codes, cnt, emb));
    assert_ok(ctx, vqj_model_predict_batch(f->model, gb, NGRIDS / T, emb));
    assert_ok(ctx, vqj_model_encode_grid(f->model, gb, codes, cnt, emb));

    run_backward(f, dc, dq, dz);
    size_t ng1, ng2, nq;
    float *g1 = grads(ctx, vqj_encoder_weights(f->enc), &ng1);
    float *gp1 = grads(ctx, vqj_predictor_weights(f->pred), &nq);
    float *dz1 = malloc((size_t)n * D * sizeof *dz1);
    assert_non_null(dz1);
    assert_ok(ctx, vqj_tensor_read(dz, dz1, (size_t)n * D));
    /* the same backward again, with no model call before it */
    run_backward(f, dc, dq, dz);
    float *g2 = grads(ctx, vqj_encoder_weights(f->enc), &ng2);
    float *gp2 = grads(ctx, vqj_predictor_weights(f->pred), &nq);
    float *dz2 = malloc((size_t)n * D * sizeof *dz2);
    assert_non_null(dz2);
    assert_ok(ctx, vqj_tensor_read(dz, dz2, (size_t)n * D));
    assert_memory_equal(g1, g2, ng1 * sizeof *g1);
    assert_memory_equal(gp1, gp2, nq * sizeof *gp1);
    assert_memory_equal(dz1, dz2, (size_t)n * D * sizeof *dz1);

    size_t n2;
    float *x;
    x = snapshot(ctx, vqj_encoder_weights(f->enc), &n2);
    assert_memory_equal(x, we, ne * sizeof *x);
    free(x);
    x = snapshot(ctx, vqj_codebook_weights(f->cb), &n2);
    assert_memory_equal(x, wc, nc * sizeof *x);
    free(x);
    x = snapshot(ctx, vqj_predictor_weights(f->pred), &n2);
    assert_memory_equal(x, wp, np * sizeof *x);
    free(x);
    x = snapshot(ctx, vqj_encoder_weights(f->tenc), &n2);
    assert_memory_equal(x, wt, nt * sizeof *x);
    free(x);
    assert_ok(ctx, vqj_codebook_get_progress(f->cb, &updates1, &init1));
    assert_int_equal(updates0, updates1);
    assert_int_equal(init0, init1);
    assert_int_equal(vqji_encoder_step(f->enc), step0);

    free(we), free(wc), free(wp), free(wt), free(g1), free(g2), free(gp1), free(gp2);
    free(dz1), free(dz2);
    vqj_tensor_destroy(c);
    vqj_tensor_destroy(dc);
    vqj_tensor_destroy(dq);
    vqj_tensor_destroy(dz);
}

/* ---- threads ---- */

#define TG 48       /* grids */
#define TC 16       /* context examples */
#define TCHUNK 8    /* grids per batched encode */
#define TPCHUNK 4   /* examples per batched predict */
#define NTHREADS 8

typedef struct shared_refs {
    const vqj_model *model;
    const vqj_context *ctx;
    vqj_grid grids[TG];
    vqj_grid context[TC * T];
    /* sequential results, single calls and batched calls */
    int32_t codes[TG][M], bcodes[TG][M];
    size_t n[TG], bn[TG];
    float emb[TG][P], bemb[TG][P];
    float pred[TC][P], bpred[TC][P];
    int rounds;
    pthread_barrier_t start; /* every thread starts at once */
} shared_refs;

typedef struct thread_arg {
    shared_refs *s;
    int id;
    int mismatches;
    int failures;
    int bad_errors;
    char message[256];
} thread_arg;

static void *worker(void *p)
{
    thread_arg *a = p;
    const shared_refs *s = a->s;
    uint8_t bad_cells[4] = {1, 2, 11, 0};
    vqj_grid bad = {.height = 2, .width = 2, .cells = bad_cells};
    pthread_barrier_wait(&a->s->start);
    for (int r = 0; r < s->rounds; r++) {
        const int batched = (r + a->id) % 2;
        for (int k = 0; k < TG; k++) {
            int i = (k + a->id * 7) % TG;
            if (batched) {
                if (i % TCHUNK)
                    continue;
                int32_t codes[TCHUNK][M];
                size_t n[TCHUNK];
                float emb[TCHUNK][P];
                if (vqj_model_encode_grids(s->model, s->grids + i, TCHUNK, &codes[0][0], n,
                                           &emb[0][0])) {
                    a->failures++;
                    snprintf(a->message, sizeof a->message, "%s",
                             vqj_last_error());
                    continue;
                }
                if (memcmp(codes, s->bcodes[i], sizeof codes) || memcmp(n, s->bn + i, sizeof n) ||
                    memcmp(emb, s->bemb[i], sizeof emb))
                    a->mismatches++;
            } else {
                int32_t codes[M];
                size_t n;
                float emb[P];
                if (vqj_model_encode_grid(s->model, &s->grids[i], codes, &n, emb)) {
                    a->failures++;
                    continue;
                }
                if (memcmp(codes, s->codes[i], sizeof codes) || n != s->n[i] ||
                    memcmp(emb, s->emb[i], sizeof emb))
                    a->mismatches++;
            }
            if (k % 6 == 0) {
                int e = (k / 6 + a->id) % TC;
                float pred[TPCHUNK][P];
                if (batched && e % TPCHUNK == 0) {
                    if (vqj_model_predict_batch(s->model, s->context + (size_t)e * T, TPCHUNK,
                                                &pred[0][0]))
                        a->failures++;
                    else if (memcmp(pred, s->bpred[e], sizeof pred))
                        a->mismatches++;
                } else {
                    if (vqj_model_predict(s->model, s->context + (size_t)e * T, T, pred[0]))
                        a->failures++;
                    else if (memcmp(pred[0], s->pred[e], sizeof pred[0]))
                        a->mismatches++;
                }
            }
            if (k % 16 == a->id % 16) {
                /* a failing call: its message is this thread's own */
                int32_t codes[M];
                size_t n;
                vqj_status st = vqj_model_encode_grid(s->model, &bad, codes, &n, NULL);
                const char *msg = vqj_last_error();
                if (st != VQJ_ERR_INVALID_ARGUMENT || !strstr(msg, "color 11") ||
                    !strstr(msg, "vqj_model_encode_grid"))
                    a->bad_errors++;
                /* and the next success clears it */
                if (vqj_model_encode_grid(s->model, &s->grids[i], codes, &n, NULL) ||
                    strcmp(vqj_last_error(), "") != 0)
                    a->bad_errors++;
            }
        }
    }
    return NULL;
}

static void run_threads(fixture *f, int rounds)
{
    vqj_context *ctx = f->ctx;
    shared_refs *s = calloc(1, sizeof *s);
    test_grid *tg = malloc((TG + TC * T) * sizeof *tg);
    assert_non_null(s);
    assert_non_null(tg);
    s->model = f->model;
    s->ctx = ctx;
    s->rounds = rounds;
    make_grids(tg, s->grids, TG, 4000);
    make_grids(tg + TG, s->context, TC * T, 5000);
    /* the sequential references */
    for (int i = 0; i < TG; i++)
        assert_ok(ctx, vqj_model_encode_grid(f->model, &s->grids[i], s->codes[i], &s->n[i],
                                             s->emb[i]));
    for (int i = 0; i < TG; i += TCHUNK)
        assert_ok(ctx, vqj_model_encode_grids(f->model, s->grids + i, TCHUNK, s->bcodes[i],
                                              s->bn + i, s->bemb[i]));
    for (int e = 0; e < TC; e++)
        assert_ok(ctx, vqj_model_predict(f->model, s->context + (size_t)e * T, T, s->pred[e]));
    for (int e = 0; e < TC; e += TPCHUNK)
        assert_ok(ctx, vqj_model_predict_batch(f->model, s->context + (size_t)e * T, TPCHUNK,
                                               s->bpred[e]));
    int objects = 0;
    for (int i = 0; i < TG; i++)
        objects += (int)s->n[i];
    assert_true(objects > TG); /* the references are not trivially empty */

    pthread_t th[NTHREADS];
    thread_arg args[NTHREADS];
    assert_int_equal(pthread_barrier_init(&s->start, NULL, NTHREADS), 0);
    for (int t = 0; t < NTHREADS; t++) {
        args[t] = (thread_arg){.s = s, .id = t};
        assert_int_equal(pthread_create(&th[t], NULL, worker, &args[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&s->start);
    for (int t = 0; t < NTHREADS; t++) {
        if (args[t].failures)
            fail_msg("thread %d: %d failed calls (%s)", t, args[t].failures, args[t].message);
        assert_int_equal(args[t].mismatches, 0);
        assert_int_equal(args[t].bad_errors, 0);
    }
    /* the results after the threads are still the sequential ones */
    int32_t codes[M];
    size_t n;
    float emb[P];
    assert_ok(ctx, vqj_model_encode_grid(f->model, &s->grids[5], codes, &n, emb));
    assert_memory_equal(emb, s->emb[5], sizeof emb);
    free(tg);
    free(s);
}

static void test_threads(void **state)
{
    fixture *f = *state;
    run_threads(f, 16);
}

#ifndef VQJ_TSAN
/* The same with OpenBLAS running 2 threads of its own inside each call
 * (under ThreadSanitizer only the single-threaded form runs: OpenBLAS is
 * not instrumented, so its workers' hand-offs would be false reports). */
static void test_threads_blas_threads(void **state)
{
    (void)state;
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 2;
    cp.seed = 42;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&cp, &ctx), VQJ_OK);
    fixture f;
    setup_with(&f, ctx, VQJ_AGG_GRU, 1);
    run_threads(&f, 4);
    teardown_fixture(&f);
    vqj_context_destroy(test_context()); /* back to one OpenBLAS thread */
}
#endif

/* ---- latent distance ---- */

static void test_distance(void **state)
{
    (void)state;
    float a[P], b[P], c[P], na[P], d, d2;
    test_fill(a, P, 1, 1.0f);
    test_fill(b, P, 2, 1.0f);
    assert_int_equal(vqj_latent_distance(a, a, P, &d), VQJ_OK);
    assert_true(d == 0.0f);
    memcpy(c, a, sizeof c);
    assert_int_equal(vqj_latent_distance(a, c, P, &d), VQJ_OK);
    assert_true(d == 0.0f);
    /* symmetric, exactly */
    assert_int_equal(vqj_latent_distance(a, b, P, &d), VQJ_OK);
    assert_int_equal(vqj_latent_distance(b, a, P, &d2), VQJ_OK);
    assert_true(d == d2);
    assert_true(d > 0.0f && d < 4.0f);
    /* = 2 - 2 cos */
    double dot = 0, aa = 0, bb = 0;
    for (int i = 0; i < P; i++)
        dot += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    assert_true(fabs(d - (2.0 - 2.0 * dot / sqrt(aa * bb))) < 1e-6);
    /* scale invariant */
    for (int i = 0; i < P; i++)
        c[i] = 3.7f * a[i];
    assert_int_equal(vqj_latent_distance(c, b, P, &d2), VQJ_OK);
    assert_true(fabs(d2 - d) < 1e-6);
    for (int i = 0; i < P; i++)
        c[i] = 1e-3f * b[i];
    assert_int_equal(vqj_latent_distance(a, c, P, &d2), VQJ_OK);
    assert_true(fabs(d2 - d) < 1e-6);
    /* opposite unit vectors: 4; opposite directions of any length: 4 */
    float u[3] = {0.6f, 0.0f, 0.8f}, v[3] = {-0.6f, 0.0f, -0.8f}, w[3] = {0.0f, 5.0f, 0.0f};
    assert_int_equal(vqj_latent_distance(u, v, 3, &d2), VQJ_OK);
    assert_true(fabs(d2 - 4.0f) < 1e-6);
    for (int i = 0; i < P; i++)
        na[i] = -2.0f * a[i];
    assert_int_equal(vqj_latent_distance(a, na, P, &d2), VQJ_OK);
    assert_true(fabs(d2 - 4.0f) < 1e-6);
    /* orthogonal: 2; a zero vector: 1 from anything nonzero, 0 from itself */
    assert_int_equal(vqj_latent_distance(u, w, 3, &d2), VQJ_OK);
    assert_true(fabs(d2 - 2.0f) < 1e-6);
    float zero[3] = {0};
    assert_int_equal(vqj_latent_distance(zero, w, 3, &d2), VQJ_OK);
    assert_true(fabs(d2 - 1.0f) < 1e-6);
    assert_int_equal(vqj_latent_distance(zero, zero, 3, &d2), VQJ_OK);
    assert_true(d2 == 0.0f);

    /* errors leave *out alone */
    d2 = 123.0f;
    assert_int_equal(vqj_latent_distance(NULL, b, P, &d2), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "vqj_latent_distance"));
    assert_int_equal(vqj_latent_distance(a, NULL, P, &d2), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_latent_distance(a, b, P, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_latent_distance(a, b, 0, &d2), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "dim is 0"));
    c[0] = NAN;
    assert_int_equal(vqj_latent_distance(a, c, P, &d2), VQJ_ERR_NUMERIC);
    assert_non_null(strstr(vqj_last_error(), "b[0] is NaN"));
    c[0] = INFINITY;
    assert_int_equal(vqj_latent_distance(c, a, P, &d2), VQJ_ERR_NUMERIC);
    assert_non_null(strstr(vqj_last_error(), "a[0] is infinite"));
    assert_true(d2 == 123.0f);
    /* a success clears the message */
    assert_int_equal(vqj_latent_distance(a, b, P, &d2), VQJ_OK);
    assert_string_equal(vqj_last_error(), "");
}

/* ---- bad input ---- */

#define assert_error(ctx, call, code, text)                                                    \
    do {                                                                                       \
        assert_status(ctx, call, code);                                                        \
        if (!strstr(vqj_last_error(), text))                                        \
            fail_msg("%s: message \"%s\" lacks \"%s\"", #call, vqj_last_error(),   \
                     text);                                                                    \
    } while (0)

static void test_errors(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    const vqj_model *m = f->model;
    int32_t codes[M];
    size_t n = 77;
    float emb[P];
    for (int j = 0; j < M; j++)
        codes[j] = 77;
    for (int j = 0; j < P; j++)
        emb[j] = 77.0f;
    uint8_t cells[300 * 2] = {0};
    vqj_grid zero_side = {.height = 0, .width = 5, .cells = cells};
    vqj_grid too_big = {.height = 300, .width = 2, .cells = cells};
    uint8_t colored[4] = {0, 1, 11, 2};
    vqj_grid bad_color = {.height = 2, .width = 2, .cells = colored};
    vqj_grid no_cells = {.height = 2, .width = 2, .cells = NULL};

    assert_int_equal(vqj_model_encode_grid(NULL, &bad_color, codes, &n, emb),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "model is NULL"));
    assert_error(ctx, vqj_model_encode_grid(m, NULL, codes, &n, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "grid is NULL");
    assert_error(ctx, vqj_model_encode_grid(m, &zero_side, codes, &n, emb),
                 VQJ_ERR_INVALID_ARGUMENT, "grid 0 is 0 x 5; height and width must be 1..256");
    assert_error(ctx, vqj_model_encode_grid(m, &too_big, codes, &n, emb),
                 VQJ_ERR_INVALID_ARGUMENT, "grid 0 is 300 x 2");
    assert_error(ctx, vqj_model_encode_grid(m, &bad_color, codes, &n, emb),
                 VQJ_ERR_INVALID_ARGUMENT, "vqj_model_encode_grid: vqj_tokenize: grid 0, row 1, "
                                           "column 0: color 11 is outside 0..9");
    assert_error(ctx, vqj_model_encode_grid(m, &no_cells, codes, &n, emb),
                 VQJ_ERR_INVALID_ARGUMENT, "cells is NULL");
    /* nothing was written by the failures */
    assert_int_equal(n, 77);
    for (int j = 0; j < M; j++)
        assert_int_equal(codes[j], 77);
    for (int j = 0; j < P; j++)
        assert_true(emb[j] == 77.0f);

    /* a batch names the bad grid */
    test_grid tg[4];
    vqj_grid g[4];
    make_grids(tg, g, 4, 11);
    g[2] = bad_color;
    int32_t bc[4 * M];
    size_t bn[4];
    float be[4 * P];
    assert_error(ctx, vqj_model_encode_grids(m, g, 4, bc, bn, be), VQJ_ERR_INVALID_ARGUMENT,
                 "vqj_model_encode_grids: vqj_tokenize: grid 2, row 1");
    assert_error(ctx, vqj_model_encode_grids(m, NULL, 3, bc, bn, be), VQJ_ERR_INVALID_ARGUMENT,
                 "grids is NULL");
    assert_error(ctx, vqj_model_encode_grids(m, g, (size_t)1 << 30, bc, bn, be),
                 VQJ_ERR_INVALID_ARGUMENT, "at most");

    /* predictions: wrong T, NULLs, bad grids */
    make_grids(tg, g, 4, 12);
    assert_error(ctx, vqj_model_predict(m, g, T - 1, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "2 context grids given; the predictor's context_window is 3");
    assert_error(ctx, vqj_model_predict(m, g, T + 1, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "4 context grids given");
    assert_error(ctx, vqj_model_predict(m, g, 0, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "0 context grids given");
    assert_error(ctx, vqj_model_predict(m, NULL, T, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "context is NULL");
    assert_error(ctx, vqj_model_predict(m, g, T, NULL), VQJ_ERR_INVALID_ARGUMENT,
                 "embedding is NULL");
    assert_int_equal(vqj_model_predict(NULL, g, T, emb), VQJ_ERR_INVALID_ARGUMENT);
    g[1] = too_big;
    assert_error(ctx, vqj_model_predict(m, g, T, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "vqj_model_predict: vqj_tokenize: grid 1 is 300 x 2");
    for (int j = 0; j < P; j++)
        assert_true(emb[j] == 77.0f);
    assert_error(ctx, vqj_model_predict_batch(m, NULL, 2, emb), VQJ_ERR_INVALID_ARGUMENT,
                 "context is NULL");

    /* a success after failures clears the message */
    make_grids(tg, g, 4, 13);
    assert_ok(ctx, vqj_model_predict(m, g, T, emb));
    assert_string_equal(vqj_last_error(), "");
}

static void test_create_errors(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    vqj_model *out = (vqj_model *)&out; /* a sentinel: unchanged on failure */
    vqj_model *const sentinel = out;
    assert_error(ctx, vqj_model_create(ctx, NULL, NULL, f->cb, f->pred, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "NULL encoder");
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, NULL, f->pred, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "NULL codebook");
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, NULL, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "NULL predictor");
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, f->pred, NULL, NULL, NULL),
                 VQJ_ERR_INVALID_ARGUMENT, "NULL out");
    assert_int_equal(vqj_model_create(NULL, NULL, f->enc, f->cb, f->pred, NULL, NULL, &out),
                     VQJ_ERR_INVALID_ARGUMENT);
    assert_ptr_equal(out, sentinel);

    /* tokenizer params: out of range, or a feature dimension that does not
     * fit the encoder */
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.max_objects = 0;
    assert_error(ctx, vqj_model_create(ctx, &tp, f->enc, f->cb, f->pred, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "max_objects");
    vqj_tokenizer_params_default(&tp);
    tp.max_color_features = 5;
    assert_error(ctx, vqj_model_create(ctx, &tp, f->enc, f->cb, f->pred, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "18 features per object");
    vqj_tokenizer_params_default(&tp);
    tp.size = 4;
    assert_error(ctx, vqj_model_create(ctx, &tp, f->enc, f->cb, f->pred, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "vqj_tokenizer_params.size");

    /* sizes that do not fit together */
    vqj_codebook_params cp;
    vqj_codebook_params_default(&cp);
    cp.dim = D + 1;
    cp.num_embeddings = 4;
    vqj_codebook *cb2;
    assert_ok(ctx, vqj_codebook_create(ctx, &cp, &cb2));
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, cb2, f->pred, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "the codebook's dim 33 differs");
    vqj_codebook_destroy(cb2);
    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = D;
    pp.projection_dim = P + 1;
    vqj_predictor *p2;
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &p2));
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, f->pred, NULL, p2, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "projection_dim 17");
    pp.hidden_dim = 2 * D;
    vqj_predictor *p3;
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &p3));
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, p3, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "hidden_dim 64");
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.hidden_dim = 2 * D;
    ep.relational_heads = HEADS;
    ep.relational_layers = 1;
    vqj_encoder *e2;
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &e2));
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, f->pred, e2, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "target encoder");
    vqj_encoder_destroy(e2);
    vqj_predictor_destroy(p2);
    vqj_predictor_destroy(p3);

    /* a handle of another context */
    vqj_context *other = test_context();
    vqj_predictor *po;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = D;
    pp.projection_dim = P;
    assert_ok(other, vqj_predictor_create(other, &pp, &po));
    assert_error(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, po, NULL, NULL, &out),
                 VQJ_ERR_INVALID_ARGUMENT, "another context");
    vqj_predictor_destroy(po);
    vqj_context_destroy(other);
    assert_ptr_equal(out, sentinel);

    /* the target handles may be the online ones */
    vqj_model *same = NULL;
    assert_ok(ctx, vqj_model_create(ctx, NULL, f->enc, f->cb, f->pred, f->enc, f->pred, &same));
    test_grid tg;
    make_grid(&tg, 3, 3);
    vqj_grid g = as_grid(&tg);
    float e1[P], e2v[P];
    assert_ok(ctx, vqj_model_encode_grid(same, &g, NULL, NULL, e1));
    assert_ok(ctx, vqj_model_encode_grid(f->plain, &g, NULL, NULL, e2v));
    assert_memory_equal(e1, e2v, sizeof e1);
    vqj_model_destroy(same);
    vqj_model_destroy(NULL);
}

/* The target network changes grid embeddings but not codes. */
static void test_target_network(void **state)
{
    fixture *f = *state;
    vqj_context *ctx = f->ctx;
    test_grid tg;
    make_grid(&tg, 21, 5);
    vqj_grid g = as_grid(&tg);
    int32_t c1[M], c2[M];
    size_t n1, n2;
    float e1[P], e2[P], d;
    assert_ok(ctx, vqj_model_encode_grid(f->model, &g, c1, &n1, e1));
    assert_ok(ctx, vqj_model_encode_grid(f->plain, &g, c2, &n2, e2));
    assert_int_equal(n1, n2);
    assert_memory_equal(c1, c2, sizeof c1);
    assert_int_equal(vqj_latent_distance(e1, e2, P, &d), VQJ_OK);
    assert_true(d > 0.0f);
    /* without codes the target path runs alone and gives the same bits */
    float e3[P];
    assert_ok(ctx, vqj_model_encode_grid(f->model, &g, NULL, NULL, e3));
    assert_memory_equal(e1, e3, sizeof e1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_stage_calls),
        cmocka_unit_test_setup_teardown(test_accessors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_in_tokenizer_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_grid, setup, teardown),
        cmocka_unit_test(test_disabled_codebook),
        cmocka_unit_test_setup_teardown(test_handles_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_network, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
#ifndef VQJ_TSAN
        cmocka_unit_test(test_threads_blas_threads),
#endif
        cmocka_unit_test(test_distance),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
