/* Evaluation (docs/evaluation.md): retrieval of the right output grid among
 * every distinct output of a set, by a model or by hand-made feature
 * vectors, and the usage and consistency of a model's codes.
 *
 * A set stores each distinct grid once (compared by content through a hash
 * table), so that a duplicate output is one candidate and a duplicate of
 * the right output is right. Queries refer to grids by index. */
#include "core/core.h"
#include "core/params.h"
#include "data/data.h"
#include "model/workspace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define MAX_T VQJI_HI_CONTEXT_WINDOW
/* Grids encoded and contexts predicted per model call. */
#define ENCODE_BATCH 128
#define PREDICT_BATCH 64
/* Largest objects whose areas enter a baseline vector. */
#define BASE_OBJECTS 5
#define BASE_DIM (VQJ_NUM_COLORS + 3 + BASE_OBJECTS)

typedef struct egrid {
    int32_t height, width;
    size_t offset;
} egrid;

struct vqj_eval_set {
    vqj_context *ctx;
    int T;
    uint8_t *cells;
    size_t cells_len, cells_cap;
    egrid *grids;
    size_t num_grids, grids_cap;
    uint32_t *table; /* open addressing: grid index + 1, 0 empty */
    size_t table_cap;
    /* query q: context grids ctx[q*T ..], target, input (= its last context
     * grid), demonstration pair (NONE: none) */
    uint32_t *qctx, *target, *demo_in, *demo_out;
    size_t num_queries, qctx_cap, q_cap;
    /* filled by finish(): candidate index of each grid (NONE: not an
     * output), the grids of the candidates, and the vqj_grid views */
    uint32_t *cand_of, *cand;
    size_t num_cand;
    vqj_grid *views;
};

static uint64_t grid_hash(int h, int w, const uint8_t *cells)
{
    uint64_t x = 1469598103934665603ull;
    x = (x ^ (uint64_t)h) * 1099511628211ull;
    x = (x ^ (uint64_t)w) * 1099511628211ull;
    for (size_t i = 0; i < (size_t)h * (size_t)w; i++)
        x = (x ^ cells[i]) * 1099511628211ull;
    return x;
}

static int same_grid(const vqj_eval_set *s, uint32_t g, int h, int w, const uint8_t *cells)
{
    const egrid *e = &s->grids[g];
    return e->height == h && e->width == w &&
           memcmp(s->cells + e->offset, cells, (size_t)h * (size_t)w) == 0;
}

static void table_put(vqj_eval_set *s, uint32_t g)
{
    const egrid *e = &s->grids[g];
    size_t mask = s->table_cap - 1;
    size_t i = (size_t)grid_hash(e->height, e->width, s->cells + e->offset) & mask;
    while (s->table[i])
        i = (i + 1) & mask;
    s->table[i] = g + 1;
}

/* The index of a grid with these contents, added when new. */
static vqj_status add_grid(vqj_eval_set *s, const vqj_grid *grid, uint32_t *index)
{
    const int h = grid->height, w = grid->width;
    const size_t n = (size_t)h * (size_t)w;
    vqj_status st;
    if (2 * (s->num_grids + 1) > s->table_cap) {
        size_t cap = s->table_cap ? 2 * s->table_cap : 1024;
        uint32_t *t;
        if ((st = vqji_calloc(s->ctx, cap, sizeof *t, "the grid table", (void **)&t)))
            return st;
        free(s->table);
        s->table = t;
        s->table_cap = cap;
        for (uint32_t g = 0; g < s->num_grids; g++)
            table_put(s, g);
    }
    size_t mask = s->table_cap - 1;
    for (size_t i = (size_t)grid_hash(h, w, grid->cells) & mask; s->table[i];
         i = (i + 1) & mask) {
        if (same_grid(s, s->table[i] - 1, h, w, grid->cells)) {
            *index = s->table[i] - 1;
            return VQJ_OK;
        }
    }
    if ((st = vqji_reserve(s->ctx, (void **)&s->cells, &s->cells_cap, s->cells_len + n,
                           "grid cells")) ||
        (st = vqji_reserve(s->ctx, (void **)&s->grids, &s->grids_cap,
                           (s->num_grids + 1) * sizeof *s->grids, "grids")))
        return st;
    memcpy(s->cells + s->cells_len, grid->cells, n);
    s->grids[s->num_grids] = (egrid){h, w, s->cells_len};
    s->cells_len += n;
    table_put(s, (uint32_t)s->num_grids);
    *index = (uint32_t)s->num_grids++;
    return VQJ_OK;
}

static vqj_status add_query(vqj_eval_set *s, const vqj_grid *const *context,
                            const vqj_grid *target, const vqj_grid *demo_in,
                            const vqj_grid *demo_out)
{
    const size_t q = s->num_queries;
    size_t cap = s->q_cap;
    vqj_status st;
    if ((st = vqji_reserve(s->ctx, (void **)&s->qctx, &s->qctx_cap,
                           (q + 1) * (size_t)s->T * sizeof *s->qctx, "query contexts")))
        return st;
    if (q + 1 > cap) {
        cap = cap ? 2 * cap : 256;
        uint32_t **arrays[3] = {&s->target, &s->demo_in, &s->demo_out};
        for (int a = 0; a < 3; a++) {
            uint32_t *p = realloc(*arrays[a], cap * sizeof *p);
            if (!p)
                return vqji_fail(s->ctx, VQJ_ERR_OUT_OF_MEMORY,
                                 "out of memory for %zu evaluation queries", cap);
            *arrays[a] = p;
        }
        s->q_cap = cap;
    }
    for (int t = 0; t < s->T; t++)
        if ((st = add_grid(s, context[t], &s->qctx[q * (size_t)s->T + (size_t)t])))
            return st;
    s->demo_in[q] = s->demo_out[q] = NONE;
    if ((st = add_grid(s, target, &s->target[q])) ||
        (demo_in && (st = add_grid(s, demo_in, &s->demo_in[q]))) ||
        (demo_out && (st = add_grid(s, demo_out, &s->demo_out[q]))))
        return st;
    s->num_queries++;
    return VQJ_OK;
}

static vqj_status finish(vqj_eval_set *s)
{
    vqj_status st;
    if ((st = vqji_malloc(s->ctx, s->num_grids * sizeof *s->cand_of, "candidates",
                          (void **)&s->cand_of)) ||
        (st = vqji_malloc(s->ctx, s->num_grids * sizeof *s->cand, "candidates",
                          (void **)&s->cand)) ||
        (st = vqji_malloc(s->ctx, s->num_grids * sizeof *s->views, "grid views",
                          (void **)&s->views)))
        return st;
    for (size_t g = 0; g < s->num_grids; g++) {
        s->cand_of[g] = NONE;
        s->views[g] = (vqj_grid){s->grids[g].height, s->grids[g].width,
                                 s->cells + s->grids[g].offset};
    }
    for (size_t q = 0; q < s->num_queries; q++) {
        uint32_t g = s->target[q];
        if (s->cand_of[g] == NONE) {
            s->cand_of[g] = (uint32_t)s->num_cand;
            s->cand[s->num_cand++] = g;
        }
    }
    return VQJ_OK;
}

void vqj_eval_set_destroy(vqj_eval_set *s)
{
    if (!s)
        return;
    free(s->cells);
    free(s->grids);
    free(s->table);
    free(s->qctx);
    free(s->target);
    free(s->demo_in);
    free(s->demo_out);
    free(s->cand_of);
    free(s->cand);
    free(s->views);
    free(s);
}

static vqj_status set_new(vqj_context *ctx, int T, vqj_eval_set **out)
{
    vqj_eval_set *s;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *s, "an evaluation set", (void **)&s);
    if (st)
        return st;
    s->ctx = ctx;
    s->T = T;
    *out = s;
    return VQJ_OK;
}

static vqj_status set_done(vqj_eval_set *s, vqj_status st, const char *fn, vqj_eval_set **out)
{
    if (!st && s->num_queries == 0)
        st = vqji_fail(s->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: no pair with an output", fn);
    if (!st)
        st = finish(s);
    if (st) {
        vqj_eval_set_destroy(s);
        return st;
    }
    *out = s;
    return VQJ_OK;
}

/* The k-th demonstration (k >= 1) of query b among n pairs: the pairs after
 * b in cyclic order, skipping b; b itself when it is the only pair. */
static size_t demo_pair(size_t b, size_t k, size_t n)
{
    return n < 2 ? b : (b + 1 + (k - 1) % (n - 1)) % n;
}

static vqj_status add_task(vqj_eval_set *s, const vqj_arc_task *task)
{
    const size_t most = vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN) +
                        vqj_arc_task_num_pairs(task, VQJ_ARC_TEST);
    const vqj_grid **in;
    vqj_status st = vqji_malloc(s->ctx, 2 * most * sizeof *in, "a task's pairs", (void **)&in);
    if (st)
        return st;
    const vqj_grid **outp = in + most;
    size_t n = 0;
    for (int split = VQJ_ARC_TRAIN; split <= VQJ_ARC_TEST; split++)
        for (size_t i = 0; i < vqj_arc_task_num_pairs(task, (vqj_arc_split)split); i++) {
            const vqj_grid *o = vqj_arc_task_output(task, (vqj_arc_split)split, i);
            if (!o)
                continue;
            in[n] = vqj_arc_task_input(task, (vqj_arc_split)split, i);
            outp[n++] = o;
        }
    for (size_t b = 0; b < n && !st; b++) {
        const vqj_grid *context[MAX_T];
        const int T = s->T;
        context[T - 1] = in[b];
        for (int j = T - 2; j >= 0; j--) {
            const size_t m = (size_t)(T - 1 - j); /* 1: out(a), 2: in(a), 3: out(a2) ... */
            const size_t a = demo_pair(b, (m + 1) / 2, n);
            context[j] = (m % 2) ? outp[a] : in[a];
        }
        const size_t a = demo_pair(b, 1, n);
        st = add_query(s, context, outp[b], in[a], outp[a]);
    }
    free((void *)in);
    return st;
}

vqj_status vqj_eval_set_from_tasks(vqj_context *ctx, const vqj_arc_task *const *tasks,
                                   size_t num_tasks, int context_window, vqj_eval_set **out)
{
    const char *fn = "vqj_eval_set_from_tasks";
    if (!ctx || (!tasks && num_tasks) || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    if (context_window < 1 || context_window > MAX_T)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: context_window is %d; it must be in [1, %d]", fn, context_window,
                         MAX_T);
    vqji_clear_error(ctx);
    vqj_eval_set *s = NULL;
    vqj_status st = set_new(ctx, context_window, &s);
    if (st)
        return st;
    for (size_t i = 0; i < num_tasks && !st; i++)
        st = tasks[i] ? add_task(s, tasks[i])
                      : vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: task %zu is NULL", fn, i);
    return set_done(s, st, fn, out);
}

vqj_status vqj_eval_set_from_dataset(vqj_context *ctx, const vqj_dataset *dataset,
                                     vqj_eval_set **out)
{
    const char *fn = "vqj_eval_set_from_dataset";
    if (!ctx || !dataset || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    const int T = vqj_dataset_context_window(dataset);
    vqj_eval_set *s;
    vqj_status st = set_new(ctx, T, &s);
    if (st)
        return st;
    for (size_t e = 0; e < vqj_dataset_num_examples(dataset) && !st; e++) {
        const vqj_grid *context = NULL, *target = NULL, *ptrs[MAX_T];
        if ((st = vqj_dataset_example(dataset, e, &context, &target)))
            break;
        for (int t = 0; t < T; t++)
            ptrs[t] = &context[t];
        st = add_query(s, ptrs, target, T >= 3 ? &context[T - 3] : NULL,
                       T >= 3 ? &context[T - 2] : NULL);
    }
    return set_done(s, st, fn, out);
}

vqj_status vqj_eval_set_load(vqj_context *ctx, const char *path, int context_window,
                             vqj_eval_set **out)
{
    if (!ctx || !path || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_eval_set_load: NULL argument");
    vqji_clear_error(ctx);
    if (vqji_is_jsonl(path) && !vqji_jsonl_holds_tasks(ctx, path)) {
        /* Manifest records: every example is a query with its own context. */
        vqj_dataset_params dp;
        vqj_dataset_params_default(&dp);
        if (context_window < 1 || context_window > MAX_T)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_eval_set_load: context_window is %d; it must be in [1, %d]",
                             context_window, MAX_T);
        dp.context_window = context_window;
        vqj_dataset *ds = NULL;
        vqj_status st = vqj_dataset_from_jsonl(ctx, &dp, path, &ds);
        if (!st)
            st = vqj_eval_set_from_dataset(ctx, ds, out);
        vqj_dataset_destroy(ds);
        return st;
    }
    vqj_arc_task **tasks = NULL;
    size_t n = 0;
    vqj_status st = vqji_arc_tasks_load(ctx, path, &tasks, &n);
    if (st)
        return st;
    st = vqj_eval_set_from_tasks(ctx, (const vqj_arc_task *const *)tasks, n, context_window,
                                 out);
    vqji_arc_tasks_destroy(tasks, n);
    return st;
}

size_t vqj_eval_set_num_queries(const vqj_eval_set *s) { return s ? s->num_queries : 0; }
size_t vqj_eval_set_num_candidates(const vqj_eval_set *s) { return s ? s->num_cand : 0; }
int vqj_eval_set_context_window(const vqj_eval_set *s) { return s ? s->T : 0; }

/* ---- ranking ---- */

typedef struct tally {
    double top1, top5, hard_top1, hard_top5, rank_sum;
} tally;

/* P(rank <= k) when the target's rank is 1 + better + U, U uniform on
 * 0..ties: ties are broken at random, in expectation. */
static double hit(size_t better, size_t ties, size_t k)
{
    if (better >= k)
        return 0;
    const size_t in = k - better < ties + 1 ? k - better : ties + 1;
    return (double)in / (double)(ties + 1);
}

/* Rank query q given every candidate's score (higher is better) and the
 * score of its input grid. */
static void rank_query(const vqj_eval_set *s, size_t q, const double *cand_score,
                       double input_score, tally *t)
{
    const uint32_t tc = s->cand_of[s->target[q]];
    const double st = cand_score[tc];
    size_t better = 0, ties = 0;
    for (size_t c = 0; c < s->num_cand; c++) {
        better += c != tc && cand_score[c] > st;
        ties += c != tc && cand_score[c] == st;
    }
    t->top1 += hit(better, ties, 1);
    t->top5 += hit(better, ties, 5);
    t->rank_sum += 1.0 + (double)better + 0.5 * (double)ties;
    const uint32_t input = s->qctx[q * (size_t)s->T + (size_t)s->T - 1];
    if (s->cand_of[input] == NONE) {
        better += input_score > st;
        ties += input_score == st;
    }
    t->hard_top1 += hit(better, ties, 1);
    t->hard_top5 += hit(better, ties, 5);
}

static vqj_status check_out(const vqj_context *ctx, const vqj_eval_result *out, const char *fn)
{
    return vqji_result_check(ctx, out->size, VQJI_V1_EVAL_RESULT, fn, "vqj_eval_result");
}

static void fill_retrieval(const vqj_eval_set *s, const tally *t, vqj_eval_result *r)
{
    const double n = (double)s->num_queries;
    r->queries = s->num_queries;
    r->candidates = s->num_cand;
    r->chance = 1.0 / (double)s->num_cand;
    r->top1 = t->top1 / n;
    r->top5 = t->top5 / n;
    r->hard_top1 = t->hard_top1 / n;
    r->hard_top5 = t->hard_top5 / n;
    r->mean_rank = t->rank_sum / n;
    r->grids = s->num_grids;
}

/* ---- code usage and consistency ---- */

typedef struct object_item {
    const float *f;
    int F;
    int32_t code;
} object_item;

static int compare_objects(const void *pa, const void *pb)
{
    const object_item *a = pa, *b = pb;
    int c = memcmp(a->f, b->f, (size_t)a->F * sizeof *a->f);
    if (c)
        return c;
    return (a->code > b->code) - (a->code < b->code);
}

static double pairs_of(size_t n) { return 0.5 * (double)n * (double)(n - (n > 0)); }

/* Usage, perplexity and consistency of `n` objects' codes (-1: none). */
static vqj_status code_stats(const vqj_context *ctx, object_item *items, size_t n, int K,
                             vqj_eval_result *r)
{
    size_t *count;
    vqj_status st = vqji_calloc(ctx, (size_t)(K > 0 ? K : 1), sizeof *count, "code counts",
                                (void **)&count);
    if (st)
        return st;
    size_t coded = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].code >= 0 && items[i].code < K) {
            count[items[i].code]++;
            coded++;
        }
    double entropy = 0, same_code = 0;
    int distinct = 0;
    for (int k = 0; k < K; k++)
        if (count[k]) {
            const double p = (double)count[k] / (double)coded;
            entropy -= p * log(p);
            distinct++;
            same_code += pairs_of(count[k]);
        }
    free(count);
    r->objects = n;
    r->num_codes = K;
    r->distinct_codes = distinct;
    r->code_usage = K > 0 ? (double)distinct / K : 0;
    r->code_perplexity = coded ? exp(entropy) : 0;
    if (n)
        qsort(items, n, sizeof *items, compare_objects);
    double identical = 0, identical_same = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && memcmp(items[j].f, items[i].f, (size_t)items[i].F * sizeof(float)) == 0)
            j++;
        identical += pairs_of(j - i);
        for (size_t a = i; a < j;) {
            size_t b = a;
            while (b < j && items[b].code == items[a].code)
                b++;
            if (items[a].code >= 0)
                identical_same += pairs_of(b - a);
            a = b;
        }
        i = j;
    }
    const double different = pairs_of(n) - identical;
    r->identical_pairs = identical;
    r->code_same_identical = identical > 0 ? identical_same / identical : 1.0;
    r->code_shared_different = different > 0 ? (same_code - identical_same) / different : 0.0;
    return VQJ_OK;
}

/* ---- the model ---- */

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

vqj_status vqj_eval_model(const vqj_model *model, const vqj_eval_set *s, vqj_eval_result *out)
{
    const char *fn = "vqj_eval_model";
    if (!model || !s || !out)
        return vqji_fail(model ? vqji_model_context(model) : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: NULL argument", fn);
    vqj_context *ctx = vqji_model_context(model);
    vqji_clear_error(ctx);
    vqj_status st = check_out(ctx, out, fn);
    if (st)
        return st;
    const int T = vqj_model_context_window(model), P = vqj_model_embedding_dim(model);
    const int M = vqj_model_max_objects(model), K = vqj_model_num_codes(model);
    if (T != s->T)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the set's contexts have %d grids; the model takes %d", fn, s->T, T);
    const size_t G = s->num_grids, Q = s->num_queries;
    float *emb = NULL, *pred = NULL;
    int32_t *codes = NULL;
    size_t *nobj = NULL;
    double *score = NULL;
    vqj_grid *batch = NULL;
    vqj_tokens *tokens = NULL;
    object_item *items = NULL;
    size_t num_items = 0, items_cap = 0;
    float *features = NULL;
    size_t features_cap = 0;
    if ((st = vqji_malloc(ctx, G * (size_t)P * sizeof *emb, "grid embeddings", (void **)&emb)) ||
        (st = vqji_malloc(ctx, G * (size_t)M * sizeof *codes, "codes", (void **)&codes)) ||
        (st = vqji_malloc(ctx, G * sizeof *nobj, "object counts", (void **)&nobj)) ||
        (st = vqji_malloc(ctx, (size_t)PREDICT_BATCH * (size_t)P * sizeof *pred, "predictions",
                          (void **)&pred)) ||
        (st = vqji_malloc(ctx, s->num_cand * sizeof *score, "scores", (void **)&score)) ||
        (st = vqji_malloc(ctx, (size_t)PREDICT_BATCH * (size_t)T * sizeof *batch, "a batch",
                          (void **)&batch)) ||
        (st = vqj_tokens_create(ctx, vqji_model_tokenizer(model), &tokens)))
        goto done;
    /* Every distinct grid: embedding, codes, and (for consistency) features. */
    const int F = vqj_tokenizer_feature_dim(vqji_model_tokenizer(model));
    for (size_t g0 = 0; g0 < G; g0 += ENCODE_BATCH) {
        const size_t n = G - g0 < ENCODE_BATCH ? G - g0 : ENCODE_BATCH;
        if ((st = vqj_model_encode_grids(model, s->views + g0, n, codes + g0 * (size_t)M,
                                         nobj + g0, emb + g0 * (size_t)P)) ||
            (st = vqj_tokenize(ctx, tokens, s->views + g0, n)))
            goto done;
        const size_t nt = vqj_tokens_num_objects(tokens);
        if ((st = vqji_reserve(ctx, (void **)&features, &features_cap,
                               (num_items + nt) * (size_t)F * sizeof *features, "features")) ||
            (st = vqji_reserve(ctx, (void **)&items, &items_cap,
                               (num_items + nt) * sizeof *items, "objects")))
            goto done;
        memcpy(features + num_items * (size_t)F, vqj_tokens_features(tokens),
               nt * (size_t)F * sizeof *features);
        const int32_t *off = vqj_tokens_offsets(tokens);
        for (size_t g = 0; g < n; g++)
            for (int32_t o = off[g]; o < off[g + 1]; o++)
                items[num_items + (size_t)o].code = codes[(g0 + g) * (size_t)M + (size_t)(o - off[g])];
        num_items += nt;
    }
    for (size_t i = 0; i < num_items; i++) {
        items[i].f = features + i * (size_t)F;
        items[i].F = F;
    }
    tally t = {0};
    for (size_t q0 = 0; q0 < Q; q0 += PREDICT_BATCH) {
        const size_t n = Q - q0 < PREDICT_BATCH ? Q - q0 : PREDICT_BATCH;
        for (size_t i = 0; i < n * (size_t)T; i++)
            batch[i] = s->views[s->qctx[q0 * (size_t)T + i]];
        if ((st = vqj_model_predict_batch(model, batch, n, pred)))
            goto done;
        for (size_t i = 0; i < n; i++) {
            const size_t q = q0 + i;
            const float *p = pred + i * (size_t)P;
            for (size_t c = 0; c < s->num_cand; c++)
                score[c] = dot(p, emb + (size_t)s->cand[c] * (size_t)P, P);
            const uint32_t input = s->qctx[q * (size_t)T + (size_t)T - 1];
            rank_query(s, q, score, dot(p, emb + (size_t)input * (size_t)P, P), &t);
        }
    }
    vqj_eval_result r;
    memset(&r, 0, sizeof r);
    r.size = out->size;
    fill_retrieval(s, &t, &r);
    if ((st = code_stats(ctx, items, num_items, K, &r)))
        goto done;
    vqji_result_copy(out, &r, sizeof r);
done:
    free(emb);
    free(codes);
    free(nobj);
    free(pred);
    free(score);
    free(batch);
    free(items);
    free(features);
    vqj_tokens_destroy(tokens);
    return st;
}

/* ---- the baselines ---- */

/* The baseline vector of each distinct grid: color shares of the cells,
 * height / 30, width / 30, object count / 100, and the areas of the largest
 * BASE_OBJECTS objects as shares of the cells (0 past the last). */
static vqj_status base_vectors(vqj_context *ctx, const vqj_eval_set *s, double *v)
{
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.max_objects = VQJI_HI_MAX_OBJECTS; /* every object */
    tp.max_color_features = 0;
    tp.normalize = 0;
    vqj_tokens *tokens;
    vqj_status st = vqj_tokens_create(ctx, &tp, &tokens);
    if (st)
        return st;
    for (size_t g0 = 0; g0 < s->num_grids && !st; g0 += ENCODE_BATCH) {
        const size_t n = s->num_grids - g0 < ENCODE_BATCH ? s->num_grids - g0 : ENCODE_BATCH;
        if ((st = vqj_tokenize(ctx, tokens, s->views + g0, n)))
            break;
        const int32_t *off = vqj_tokens_offsets(tokens);
        const float *f = vqj_tokens_features(tokens);
        const int F = vqj_tokens_feature_dim(tokens);
        for (size_t g = 0; g < n; g++) {
            const vqj_grid *grid = &s->views[g0 + g];
            const double cells = (double)grid->height * grid->width;
            double *x = v + (g0 + g) * BASE_DIM;
            memset(x, 0, BASE_DIM * sizeof *x);
            for (size_t i = 0; i < (size_t)grid->height * (size_t)grid->width; i++)
                x[grid->cells[i]] += 1.0 / cells;
            x[VQJ_NUM_COLORS] = grid->height / 30.0;
            x[VQJ_NUM_COLORS + 1] = grid->width / 30.0;
            x[VQJ_NUM_COLORS + 2] = (off[g + 1] - off[g]) / 100.0;
            for (int k = 0; k < BASE_OBJECTS && off[g] + k < off[g + 1]; k++)
                x[VQJ_NUM_COLORS + 3 + k] = f[(size_t)(off[g] + k) * (size_t)F] / cells;
        }
    }
    vqj_tokens_destroy(tokens);
    return st;
}

static double neg_dist2(const double *a, const double *b)
{
    double d = 0;
    for (int i = 0; i < BASE_DIM; i++)
        d += (a[i] - b[i]) * (a[i] - b[i]);
    return -d;
}

vqj_status vqj_eval_baseline(vqj_context *ctx, const vqj_eval_set *s, vqj_eval_method method,
                             vqj_eval_result *out)
{
    const char *fn = "vqj_eval_baseline";
    if (!ctx || !s || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    vqj_status st = check_out(ctx, out, fn);
    if (st)
        return st;
    if (method != VQJ_EVAL_FEATURES && method != VQJ_EVAL_ANALOGY)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: method is %d; it must be VQJ_EVAL_FEATURES or VQJ_EVAL_ANALOGY "
                         "(VQJ_EVAL_MODEL is vqj_eval_model())",
                         fn, (int)method);
    double *v = NULL, *score = NULL;
    if ((st = vqji_malloc(ctx, s->num_grids * BASE_DIM * sizeof *v, "baseline vectors",
                          (void **)&v)) ||
        (st = vqji_malloc(ctx, s->num_cand * sizeof *score, "scores", (void **)&score)) ||
        (st = base_vectors(ctx, s, v)))
        goto done;
    tally t = {0};
    for (size_t q = 0; q < s->num_queries; q++) {
        const uint32_t input = s->qctx[q * (size_t)s->T + (size_t)s->T - 1];
        double p[BASE_DIM];
        for (int i = 0; i < BASE_DIM; i++)
            p[i] = v[input * BASE_DIM + (size_t)i];
        if (method == VQJ_EVAL_ANALOGY && s->demo_in[q] != NONE)
            for (int i = 0; i < BASE_DIM; i++)
                p[i] += v[s->demo_out[q] * BASE_DIM + (size_t)i] -
                        v[s->demo_in[q] * BASE_DIM + (size_t)i];
        for (size_t c = 0; c < s->num_cand; c++)
            score[c] = neg_dist2(p, v + s->cand[c] * BASE_DIM);
        rank_query(s, q, score, neg_dist2(p, v + input * BASE_DIM), &t);
    }
    vqj_eval_result r;
    memset(&r, 0, sizeof r);
    r.size = out->size;
    fill_retrieval(s, &t, &r);
    r.code_same_identical = 1.0;
    vqji_result_copy(out, &r, sizeof r);
done:
    free(v);
    free(score);
    return st;
}
