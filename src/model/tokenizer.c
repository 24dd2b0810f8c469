/* The object tokenizer (DESIGN.md section 2): grid -> connected components ->
 * one feature row per kept object, plus the bounding-box adjacency.
 *
 * One row-major sweep labels the cells with union-find (provisional labels
 * merged into the smaller label, so a component's root is the label of its
 * first cell in row-major order) and accumulates every statistic per
 * provisional label at the same time. A pass over the labels, not the cells,
 * then folds each label into its root and numbers the roots 0, 1, ... in order
 * of first appearance. The perimeter needs no labels: two 4-neighbours belong
 * to the same object exactly when their keys (0 for background, the color or
 * 1 otherwise) are equal and non-zero, whatever the connectivity, so each
 * same-object pair is counted once from its lower or right cell.
 *
 * Features are computed in double with the same operations as the reference
 * (tools/reference/vqjepa_ref.py) and rounded once to float, so the two agree
 * bit for bit. */
#include "model/tokens.h"
#include "core/params.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJECTS_LIMIT VQJI_HI_MAX_OBJECTS
/* Below this many candidates an insertion sort beats qsort. */
#define SMALL_SORT 64

void vqj_tokenizer_params_default(vqj_tokenizer_params *params)
{
    if (!params)
        return;
    *params = (vqj_tokenizer_params){
        .size = sizeof *params,
        .max_objects = 16,
        .max_color_features = 10,
        .background = 1,
        .connectivity = 4,
        .normalize = 1,
        .respect_colors = 1,
    };
}

int vqj_tokenizer_feature_dim(const vqj_tokenizer_params *params)
{
    return params ? VQJ_BASE_FEATURES + params->max_color_features : 0;
}

static vqj_status check_params(const vqj_context *ctx, const vqj_tokenizer_params *p)
{
    if (p->max_objects < 1 || p->max_objects > MAX_OBJECTS_LIMIT)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_tokenizer_params.max_objects is %d; must be 1..%d", p->max_objects,
                         MAX_OBJECTS_LIMIT);
    if (p->max_color_features < 0 || p->max_color_features > VQJI_HI_MAX_COLOR_FEATURES)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_tokenizer_params.max_color_features is %d; must be 0..%d",
                         p->max_color_features, VQJ_NUM_COLORS);
    if (p->connectivity != 4 && p->connectivity != 8)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_tokenizer_params.connectivity is %d; must be 4 or 8",
                         p->connectivity);
    return VQJ_OK;
}

static void free_buffers(vqji_token_buffers *b)
{
    free(b->offsets);
    free(b->features);
    free(b->adjacency);
    free(b->adjacency_offsets);
    free(b->grid_features);
    free(b->grid_ids);
}

void vqj_tokens_destroy(vqj_tokens *t)
{
    if (!t)
        return;
    free_buffers(&t->out);
    free_buffers(&t->spare);
    free(t->labels);
    free(t->keys);
    free(t->parent);
    free(t->comps);
    free(t->color_counts);
    free(t->color_first);
    free(t->order);
    free(t);
}

vqj_status vqj_tokens_create(vqj_context *ctx, const vqj_tokenizer_params *params,
                             vqj_tokens **out)
{
    if (!ctx || !params || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_tokens_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, params, VQJI_V1_TOKENIZER_PARAMS,
                                     "vqj_tokenizer_params");
    if (st)
        return st;
    st = check_params(ctx, &p);
    if (st)
        return st;

    vqj_tokens *t;
    st = vqji_calloc(ctx, 1, sizeof *t, "a token batch", (void **)&t);
    if (st)
        return st;
    t->ctx = ctx;
    t->params = p;
    t->feature_dim = vqj_tokenizer_feature_dim(&p);
    /* An empty batch still has its one offset, so readers need no special case. */
    st = vqji_reserve(ctx, (void **)&t->out.offsets, &t->out.offsets_cap, sizeof(int32_t),
                      "token offsets");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->out.adjacency_offsets,
                          &t->out.adjacency_offsets_cap, sizeof(int64_t), "adjacency offsets");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->out.features, &t->out.features_cap, 0,
                          "token features");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->out.adjacency, &t->out.adjacency_cap, 0,
                          "token adjacency");
    if (st) {
        vqj_tokens_destroy(t);
        return st;
    }
    t->out.offsets[0] = 0;
    t->out.adjacency_offsets[0] = 0;
    *out = t;
    return VQJ_OK;
}

/* ---- labeling ---------------------------------------------------------- */

static inline int32_t uf_find(int32_t *parent, int32_t x)
{
    /* Path halving keeps parent[x] <= x, which the compaction relies on. */
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static inline void uf_union(int32_t *parent, int32_t a, int32_t b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

/* Label one grid; returns the number of components, whose statistics end up
 * in t->comps[0 .. n-1] (and color_counts/color_first without
 * respect_colors) in order of first appearance. Written once and
 * specialised by the constant flags at each call site. */
#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

static ALWAYS_INLINE int32_t label_grid(vqj_tokens *t, const vqj_grid *g, const uint8_t *lut, int conn8, int track)
{
    const int H = g->height, W = g->width;
    int32_t *parent = t->parent;
    vqji_component *comps = t->comps;
    int32_t *counts = t->color_counts, *first = t->color_first;
    int32_t *lp = t->labels, *lc = t->labels + (W + 2);
    uint8_t *kp = t->keys, *kc = t->keys + (W + 2);
    memset(kp, 0, (size_t)(W + 2));
    memset(lp, 0, (size_t)(W + 2) * sizeof *lp);
    kc[0] = kc[W + 1] = 0;
    lc[0] = lc[W + 1] = 0;
    int32_t L = 0;

    for (int y = 0; y < H; y++) {
        const uint8_t *row = g->cells + (size_t)y * (size_t)W;
        for (int x = 0; x < W; x++) {
            const uint8_t k = lut[row[x]];
            kc[x + 1] = k;
            if (!k) {
                lc[x + 1] = 0;
                continue;
            }
            const int su = kp[x + 1] == k, sl = kc[x] == k;
            int32_t l = 0;
            if (sl)
                l = lc[x];
            if (su) {
                if (!l)
                    l = lp[x + 1];
                else if (lp[x + 1] != l)
                    uf_union(parent, l, lp[x + 1]);
            } else if (conn8) {
                /* With the cell above in the object, the diagonal neighbours
                 * above are its 4-neighbours and already joined to it; with the
                 * left one, so is the upper left. */
                if (!sl && kp[x] == k)
                    l = lp[x];
                if (kp[x + 2] == k) {
                    if (!l)
                        l = lp[x + 2];
                    else if (lp[x + 2] != l)
                        uf_union(parent, l, lp[x + 2]);
                }
            }
            vqji_component *c;
            if (!l) {
                l = ++L;
                parent[l] = l;
                c = &comps[l];
                *c = (vqji_component){.min_y = y, .max_y = y, .min_x = x, .max_x = x,
                                      .color = row[x]};
                if (track)
                    memset(counts + (size_t)l * VQJ_NUM_COLORS, 0,
                           VQJ_NUM_COLORS * sizeof *counts);
            } else {
                c = &comps[l];
                if (x < c->min_x)
                    c->min_x = x;
                if (x > c->max_x)
                    c->max_x = x;
                c->max_y = y;
            }
            lc[x + 1] = l;
            c->area++;
            c->perimeter += 4 - 2 * (su + sl);
            c->sum_y += y;
            c->sum_x += x;
            if (track) {
                int32_t *cnt = counts + (size_t)l * VQJ_NUM_COLORS + row[x];
                if (*cnt == 0)
                    first[(size_t)l * VQJ_NUM_COLORS + row[x]] = y * W + x;
                (*cnt)++;
            }
        }
        int32_t *ltmp = lp;
        lp = lc;
        lc = ltmp;
        uint8_t *ktmp = kp;
        kp = kc;
        kc = ktmp;
    }

    /* Fold labels into their roots. parent[l] < l for every non-root, so the
     * root's final id is known when l is reached; ids reuse the parent array
     * and statistics move down in place (id <= l - 1 always). */
    int32_t n = 0;
    for (int32_t l = 1; l <= L; l++) {
        const int32_t p = parent[l];
        if (p == l) {
            parent[l] = n;
            comps[n] = comps[l];
            if (track) {
                memmove(counts + (size_t)n * VQJ_NUM_COLORS, counts + (size_t)l * VQJ_NUM_COLORS,
                        VQJ_NUM_COLORS * sizeof *counts);
                memmove(first + (size_t)n * VQJ_NUM_COLORS, first + (size_t)l * VQJ_NUM_COLORS,
                        VQJ_NUM_COLORS * sizeof *first);
            }
            n++;
            continue;
        }
        const int32_t f = parent[p];
        parent[l] = f;
        vqji_component *d = &comps[f];
        const vqji_component *s = &comps[l];
        d->area += s->area;
        d->perimeter += s->perimeter;
        d->sum_y += s->sum_y;
        d->sum_x += s->sum_x;
        /* The root holds the first cell, hence the smallest row. */
        if (s->max_y > d->max_y)
            d->max_y = s->max_y;
        if (s->min_x < d->min_x)
            d->min_x = s->min_x;
        if (s->max_x > d->max_x)
            d->max_x = s->max_x;
        if (track) {
            int32_t *dc = counts + (size_t)f * VQJ_NUM_COLORS;
            int32_t *df = first + (size_t)f * VQJ_NUM_COLORS;
            const int32_t *sc = counts + (size_t)l * VQJ_NUM_COLORS;
            const int32_t *sf = first + (size_t)l * VQJ_NUM_COLORS;
            for (int c = 0; c < VQJ_NUM_COLORS; c++) {
                if (!sc[c])
                    continue;
                if (!dc[c] || sf[c] < df[c])
                    df[c] = sf[c];
                dc[c] += sc[c];
            }
        }
    }
    return n;
}

static int32_t label_dispatch(vqj_tokens *t, const vqj_grid *g, const uint8_t *lut)
{
    const int conn8 = t->params.connectivity == 8, track = !t->params.respect_colors;
    if (!conn8 && !track)
        return label_grid(t, g, lut, 0, 0);
    if (conn8 && !track)
        return label_grid(t, g, lut, 1, 0);
    if (!conn8)
        return label_grid(t, g, lut, 0, 1);
    return label_grid(t, g, lut, 1, 1);
}

/* ---- selection --------------------------------------------------------- */

/* Sort key: area descending, then component id (first appearance) ascending. */
static inline uint64_t order_key(const vqji_component *c, int32_t id)
{
    return ((uint64_t)(UINT32_MAX - (uint32_t)c->area) << 32) | (uint32_t)id;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void insertion_sort(uint64_t *k, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        uint64_t v = k[i];
        int32_t j = i;
        while (j > 0 && k[j - 1] > v) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = v;
    }
}

/* Put the keys of the first min(n, K) components in token order into keys[]. */
static int32_t select_objects(const vqji_component *comps, int32_t n, int32_t K, uint64_t *keys)
{
    if (n > K && K <= SMALL_SORT) {
        /* Keep a sorted top-K; most candidates lose to the current last. */
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++) {
            uint64_t v = order_key(&comps[i], i);
            if (m == K) {
                if (v >= keys[K - 1])
                    continue;
                m--;
            }
            int32_t j = m++;
            while (j > 0 && keys[j - 1] > v) {
                keys[j] = keys[j - 1];
                j--;
            }
            keys[j] = v;
        }
        return K;
    }
    for (int32_t i = 0; i < n; i++)
        keys[i] = order_key(&comps[i], i);
    if (n <= SMALL_SORT)
        insertion_sort(keys, n);
    else
        qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    return n < K ? n : K;
}

/* ---- features ---------------------------------------------------------- */

static void write_features(const vqj_tokens *t, const vqj_grid *g, int32_t id, float *f)
{
    const vqj_tokenizer_params *p = &t->params;
    const vqji_component *c = &t->comps[id];
    const double H = g->height, W = g->width, HW = H * W;
    const double bh = c->max_y - c->min_y + 1, bw = c->max_x - c->min_x + 1;
    const double cy = (double)c->sum_y / c->area, cx = (double)c->sum_x / c->area;
    if (p->normalize) {
        f[0] = (float)(c->area / HW);
        f[1] = (float)(c->perimeter / HW);
        f[2] = (float)(bh / H);
        f[3] = (float)(bw / W);
        f[7] = (float)(cy / H);
        f[8] = (float)(cx / W);
        f[9] = (float)(c->min_y / H);
        f[10] = (float)(c->min_x / W);
        f[11] = (float)(c->max_y / H);
        f[12] = (float)(c->max_x / W);
    } else {
        f[0] = (float)c->area;
        f[1] = (float)c->perimeter;
        f[2] = (float)bh;
        f[3] = (float)bw;
        f[7] = (float)cy;
        f[8] = (float)cx;
        f[9] = (float)c->min_y;
        f[10] = (float)c->min_x;
        f[11] = (float)c->max_y;
        f[12] = (float)c->max_x;
    }
    f[4] = (float)(bw / bh);
    float *slots = f + VQJ_BASE_FEATURES;
    const int nslots = p->max_color_features;
    for (int s = 0; s < nslots; s++)
        slots[s] = 0.0f;
    if (p->respect_colors) {
        f[5] = 1.0f;
        f[6] = (float)c->color;
        if (nslots)
            slots[0] = p->normalize ? (float)(c->area / HW) : (float)c->area;
        return;
    }
    const int32_t *counts = t->color_counts + (size_t)id * VQJ_NUM_COLORS;
    const int32_t *first = t->color_first + (size_t)id * VQJ_NUM_COLORS;
    int distinct = 0, dominant = -1;
    for (int col = 0; col < VQJ_NUM_COLORS; col++) {
        if (!counts[col])
            continue;
        if (distinct < nslots)
            slots[distinct] = p->normalize ? (float)(counts[col] / HW) : (float)counts[col];
        distinct++;
        if (dominant < 0 || counts[col] > counts[dominant] ||
            (counts[col] == counts[dominant] && first[col] < first[dominant]))
            dominant = col;
    }
    f[5] = (float)distinct;
    f[6] = (float)dominant;
}

/* The grid's own features (tokens.h) and its content hash: FNV-1a over the
 * height, the width and the cells. */
static void write_grid_features(const vqj_grid *g, int32_t kept, int32_t max_objects, float *f,
                                uint64_t *id)
{
    const size_t cells = (size_t)g->height * (size_t)g->width;
    size_t count[VQJ_NUM_COLORS] = {0};
    uint64_t h = 0xCBF29CE484222325ull;
    h = (h ^ (uint64_t)g->height) * 0x100000001B3ull;
    h = (h ^ (uint64_t)g->width) * 0x100000001B3ull;
    for (size_t i = 0; i < cells; i++) {
        count[g->cells[i]]++;
        h = (h ^ g->cells[i]) * 0x100000001B3ull;
    }
    *id = h ? h : 1;
    f[0] = (float)((double)g->height / 30.0);
    f[1] = (float)((double)g->width / 30.0);
    for (int c = 0; c < VQJ_NUM_COLORS; c++)
        f[2 + c] = (float)((double)count[c] / (double)cells);
    f[2 + VQJ_NUM_COLORS] = (float)((double)kept / (double)max_objects);
}

/* ---- the batch --------------------------------------------------------- */

static vqj_status validate_grids(const vqj_context *ctx, const vqj_grid *grids, size_t num_grids,
                                 size_t *max_cells, int *max_width)
{
    size_t mc = 0;
    int mw = 0;
    for (size_t i = 0; i < num_grids; i++) {
        const vqj_grid *g = &grids[i];
        if (g->height < 1 || g->height > VQJ_MAX_GRID_SIDE || g->width < 1 ||
            g->width > VQJ_MAX_GRID_SIDE)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_tokenize: grid %zu is %d x %d; height and width must be 1..%d",
                             i, g->height, g->width, VQJ_MAX_GRID_SIDE);
        if (!g->cells)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_tokenize: grid %zu: cells is NULL",
                             i);
        const size_t n = (size_t)g->height * (size_t)g->width;
        /* A branch-free maximum vectorises; look for the cell only on failure. */
        uint8_t top = 0;
        for (size_t j = 0; j < n; j++)
            top = g->cells[j] > top ? g->cells[j] : top;
        if (top >= VQJ_NUM_COLORS) {
            size_t j = 0;
            while (g->cells[j] < VQJ_NUM_COLORS)
                j++;
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_tokenize: grid %zu, row %zu, column %zu: color %d is outside "
                             "0..%d",
                             i, j / (size_t)g->width, j % (size_t)g->width, g->cells[j],
                             VQJ_NUM_COLORS - 1);
        }
        if (n > mc)
            mc = n;
        if (g->width > mw)
            mw = g->width;
    }
    *max_cells = mc;
    *max_width = mw;
    return VQJ_OK;
}

static vqj_status reserve_scratch(const vqj_context *ctx, vqj_tokens *t, size_t num_grids,
                                  size_t max_cells, int max_width)
{
    vqji_token_buffers *b = &t->spare;
    const size_t labels = max_cells + 1; /* label 0 is background */
    const size_t row = 2 * ((size_t)max_width + 2);
    vqj_status st =
        vqji_reserve(ctx, (void **)&b->offsets, &b->offsets_cap,
                     (num_grids + 1) * sizeof *b->offsets, "token offsets");
    if (!st)
        st = vqji_reserve(ctx, (void **)&b->adjacency_offsets, &b->adjacency_offsets_cap,
                          (num_grids + 1) * sizeof *b->adjacency_offsets, "adjacency offsets");
    if (!st)
        st = vqji_reserve(ctx, (void **)&b->features, &b->features_cap, 0, "token features");
    if (!st)
        st = vqji_reserve(ctx, (void **)&b->adjacency, &b->adjacency_cap, 0, "token adjacency");
    if (!st)
        st = vqji_reserve(ctx, (void **)&b->grid_features, &b->grid_features_cap,
                          (num_grids ? num_grids : 1) * VQJI_GRID_FEATURES * sizeof(float),
                          "grid features");
    if (!st)
        st = vqji_reserve(ctx, (void **)&b->grid_ids, &b->grid_ids_cap,
                          (num_grids ? num_grids : 1) * sizeof(uint64_t), "grid ids");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->labels, &t->labels_cap, row * sizeof *t->labels,
                          "tokenizer labels");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->keys, &t->keys_cap, row, "tokenizer keys");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->parent, &t->parent_cap, labels * sizeof *t->parent,
                          "tokenizer union-find");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->comps, &t->comps_cap, labels * sizeof *t->comps,
                          "tokenizer components");
    if (!st)
        st = vqji_reserve(ctx, (void **)&t->order, &t->order_cap, labels * sizeof(uint64_t),
                          "tokenizer order");
    if (!st && !t->params.respect_colors) {
        st = vqji_reserve(ctx, (void **)&t->color_counts, &t->color_counts_cap,
                          labels * VQJ_NUM_COLORS * sizeof *t->color_counts,
                          "tokenizer color counts");
        if (!st)
            st = vqji_reserve(ctx, (void **)&t->color_first, &t->color_first_cap,
                              labels * VQJ_NUM_COLORS * sizeof *t->color_first,
                              "tokenizer color order");
    }
    return st;
}

vqj_status vqj_tokenize(vqj_context *ctx, vqj_tokens *t, const vqj_grid *grids, size_t num_grids)
{
    if (!ctx || !t || (!grids && num_grids))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_tokenize: NULL argument");
    vqji_clear_error(ctx);
    size_t max_cells = 0;
    int max_width = 0;
    vqj_status st = validate_grids(ctx, grids, num_grids, &max_cells, &max_width);
    if (st)
        return st;
    /* Keeps the offset arrays' byte counts representable below. */
    if (num_grids > (SIZE_MAX / sizeof(int64_t)) - 1)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_tokenize: %zu grids is too many",
                         num_grids);
    st = reserve_scratch(ctx, t, num_grids, max_cells, max_width);
    if (st)
        return st;

    uint8_t lut[256] = {0};
    for (int c = 0; c < VQJ_NUM_COLORS; c++)
        if (!((t->params.background >> c) & 1))
            lut[c] = t->params.respect_colors ? (uint8_t)(c + 1) : 1;

    vqji_token_buffers *b = &t->spare;
    const size_t F = (size_t)t->feature_dim;
    const int32_t K = t->params.max_objects;
    uint64_t *keys = t->order;
    size_t total = 0;
    int64_t adj_total = 0;
    b->offsets[0] = 0;
    b->adjacency_offsets[0] = 0;
    for (size_t gi = 0; gi < num_grids; gi++) {
        const vqj_grid *g = &grids[gi];
        const int32_t ncomp = label_dispatch(t, g, lut);
        const int32_t n = select_objects(t->comps, ncomp, K, keys);
        if (total + (size_t)n > INT32_MAX)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_tokenize: more than %d objects in one batch; split it",
                             INT32_MAX);
        st = vqji_reserve(ctx, (void **)&b->features, &b->features_cap,
                          (total + (size_t)n) * F * sizeof(float), "token features");
        if (st)
            return st;
        st = vqji_reserve(ctx, (void **)&b->adjacency, &b->adjacency_cap,
                          (size_t)adj_total + (size_t)n * (size_t)n, "token adjacency");
        if (st)
            return st;

        float *rows = b->features + total * F;
        for (int32_t i = 0; i < n; i++)
            write_features(t, g, (int32_t)(uint32_t)keys[i], rows + (size_t)i * F);

        /* Boxes that overlap or touch on both axes; the minima and maxima of
         * the kept objects only. */
        uint8_t *adj = b->adjacency + adj_total;
        for (int32_t i = 0; i < n; i++) {
            const vqji_component *a = &t->comps[(uint32_t)keys[i]];
            adj[(size_t)i * (size_t)n + (size_t)i] = 0;
            for (int32_t j = i + 1; j < n; j++) {
                const vqji_component *c = &t->comps[(uint32_t)keys[j]];
                const uint8_t v = a->min_y <= c->max_y + 1 && c->min_y <= a->max_y + 1 &&
                                  a->min_x <= c->max_x + 1 && c->min_x <= a->max_x + 1;
                adj[(size_t)i * (size_t)n + (size_t)j] = v;
                adj[(size_t)j * (size_t)n + (size_t)i] = v;
            }
        }
        write_grid_features(g, n, K, b->grid_features + gi * VQJI_GRID_FEATURES,
                            &b->grid_ids[gi]);
        total += (size_t)n;
        adj_total += (int64_t)n * n;
        b->offsets[gi + 1] = (int32_t)total;
        b->adjacency_offsets[gi + 1] = adj_total;
    }

    vqji_token_buffers tmp = t->out;
    t->out = t->spare;
    t->spare = tmp;
    t->num_grids = num_grids;
    t->num_objects = total;
    return VQJ_OK;
}

/* ---- accessors --------------------------------------------------------- */

size_t vqj_tokens_num_grids(const vqj_tokens *t) { return t ? t->num_grids : 0; }
size_t vqj_tokens_num_objects(const vqj_tokens *t) { return t ? t->num_objects : 0; }
int vqj_tokens_feature_dim(const vqj_tokens *t) { return t ? t->feature_dim : 0; }
const int32_t *vqj_tokens_offsets(const vqj_tokens *t) { return t ? t->out.offsets : NULL; }
const float *vqj_tokens_features(const vqj_tokens *t) { return t ? t->out.features : NULL; }
const uint64_t *vqj_tokens_grid_ids(const vqj_tokens *t) { return t ? t->out.grid_ids : NULL; }

const uint8_t *vqj_tokens_adjacency(const vqj_tokens *t, size_t grid)
{
    if (!t || grid >= t->num_grids)
        return NULL;
    return t->out.adjacency + t->out.adjacency_offsets[grid];
}

const int64_t *vqji_tokens_adjacency_offsets(const vqj_tokens *t)
{
    return t ? t->out.adjacency_offsets : NULL;
}

vqj_status vqji_tokens_reserve_like(vqj_tokens *dst, const vqj_tokens *src, const char *what)
{
    if (dst->feature_dim != src->feature_dim)
        return vqji_fail(dst->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: feature dimensions differ (%d and %d)", what, dst->feature_dim,
                         src->feature_dim);
    const size_t G = src->num_grids, N = src->num_objects, F = (size_t)src->feature_dim;
    const size_t A = (size_t)src->out.adjacency_offsets[G];
    vqji_token_buffers *b = &dst->out;
    vqj_status st = vqji_reserve(dst->ctx, (void **)&b->offsets, &b->offsets_cap,
                                 (G + 1) * sizeof *b->offsets, "token offsets");
    if (!st)
        st = vqji_reserve(dst->ctx, (void **)&b->adjacency_offsets, &b->adjacency_offsets_cap,
                          (G + 1) * sizeof *b->adjacency_offsets, "token adjacency offsets");
    if (!st)
        st = vqji_reserve(dst->ctx, (void **)&b->features, &b->features_cap,
                          (N ? N : 1) * F * sizeof(float), "token features");
    if (!st)
        st = vqji_reserve(dst->ctx, (void **)&b->adjacency, &b->adjacency_cap, A ? A : 1,
                          "token adjacency");
    if (!st)
        st = vqji_reserve(dst->ctx, (void **)&b->grid_features, &b->grid_features_cap,
                          (G ? G : 1) * VQJI_GRID_FEATURES * sizeof(float), "grid features");
    if (!st)
        st = vqji_reserve(dst->ctx, (void **)&b->grid_ids, &b->grid_ids_cap,
                          (G ? G : 1) * sizeof(uint64_t), "grid ids");
    return st;
}

vqj_status vqji_tokens_copy(vqj_tokens *dst, const vqj_tokens *src)
{
    vqj_status st = vqji_tokens_reserve_like(dst, src, "token copy");
    if (st)
        return st;
    const size_t G = src->num_grids, N = src->num_objects, F = (size_t)src->feature_dim;
    const size_t A = (size_t)src->out.adjacency_offsets[G];
    vqji_token_buffers *b = &dst->out;
    if (G) {
        memcpy(b->grid_features, src->out.grid_features,
               G * VQJI_GRID_FEATURES * sizeof(float));
        memcpy(b->grid_ids, src->out.grid_ids, G * sizeof(uint64_t));
    }
    memcpy(b->offsets, src->out.offsets, (G + 1) * sizeof *b->offsets);
    memcpy(b->adjacency_offsets, src->out.adjacency_offsets, (G + 1) * sizeof *b->adjacency_offsets);
    if (N)
        memcpy(b->features, src->out.features, N * F * sizeof(float));
    if (A)
        memcpy(b->adjacency, src->out.adjacency, A);
    dst->num_grids = G;
    dst->num_objects = N;
    return VQJ_OK;
}

vqj_status vqj_tokens_padded(vqj_context *ctx, const vqj_tokens *t, size_t grid, float *features,
                             float *mask, float *adjacency)
{
    if (!t)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_tokens_padded: tokens is NULL");
    vqji_clear_error(ctx);
    if (grid >= t->num_grids)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_tokens_padded: grid %zu is out of range (the batch has %zu)", grid,
                         t->num_grids);
    const size_t M = (size_t)t->params.max_objects, F = (size_t)t->feature_dim;
    const size_t first = (size_t)t->out.offsets[grid];
    const size_t n = (size_t)t->out.offsets[grid + 1] - first;
    if (features) {
        memcpy(features, t->out.features + first * F, n * F * sizeof *features);
        memset(features + n * F, 0, (M - n) * F * sizeof *features);
    }
    if (mask)
        for (size_t i = 0; i < M; i++)
            mask[i] = i < n ? 1.0f : 0.0f;
    if (adjacency) {
        const uint8_t *a = t->out.adjacency + t->out.adjacency_offsets[grid];
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < M; j++)
                adjacency[i * M + j] = i < n && j < n ? (float)a[i * n + j] : 0.0f;
    }
    return VQJ_OK;
}
