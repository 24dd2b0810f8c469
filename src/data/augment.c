/* Training augmentations (DESIGN.md section 1) and the invariance views
 * (section 4). Both work on grids, so that the tokenizer recomputes every
 * feature of a transformed grid consistently; only the translation view
 * works on features, because translating a grid's contents is invisible
 * after normalization unless objects move relative to the frame. */
#include "data/data.h"
#include "core/params.h"
#include "model/tokens.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* RNG streams: the palette view, and per example the shared draws (0) and
 * grid g's own draws (g + 1). */
#define VIEW_PALETTE_STREAM 0x50414c45ull
/* The object dropout's draws. */
#define OBJECT_DROPOUT_STREAM 0x4f424a44524f50ull /* "OBJDROP" */

void vqj_augment_params_default(vqj_augment_params *params)
{
    if (!params)
        return;
    *params = (vqj_augment_params){
        .size = sizeof *params,
        .mask_ratio = 0.1f,
        .random_crop_radius = 1,
        .min_grid_size_for_crop = 8,
        .palette_permutation = 1,
        .gaussian_noise_std = 0.05f,
        .background = 0,
    };
}

static vqj_status resolve_params(const vqj_context *ctx, const vqj_augment_params *in,
                                 vqj_augment_params *out)
{
    vqj_augment_params p;
    vqj_augment_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, in, VQJI_V1_AUGMENT_PARAMS,
                                     "vqj_augment_params");
    if (st)
        return st;
    if (!(p.mask_ratio >= 0.0f && p.mask_ratio <= 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_augment_params.mask_ratio is %g; must be in [0, 1]",
                         (double)p.mask_ratio);
    if (p.random_crop_radius < VQJI_LO_RANDOM_CROP_RADIUS ||
        p.random_crop_radius > VQJI_HI_RANDOM_CROP_RADIUS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_augment_params.random_crop_radius is %d; must be 0..%d",
                         p.random_crop_radius, VQJI_HI_RANDOM_CROP_RADIUS);
    if (p.min_grid_size_for_crop < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_augment_params.min_grid_size_for_crop is %d; must be >= 0",
                         p.min_grid_size_for_crop);
    if (!(p.gaussian_noise_std >= 0.0f && isfinite(p.gaussian_noise_std)))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_augment_params.gaussian_noise_std is %g; must be finite and >= 0",
                         (double)p.gaussian_noise_std);
    if (p.background < 0 || p.background >= VQJ_NUM_COLORS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_augment_params.background is %d; must be 0..%d", p.background,
                         VQJ_NUM_COLORS - 1);
    *out = p;
    return VQJ_OK;
}

static vqj_status check_grid(const vqj_context *ctx, const char *fn, const char *what,
                             const vqj_grid *g, const uint8_t *out)
{
    if (!g || !g->cells || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s: NULL grid, cells or output",
                         fn, what);
    if (g->height < 1 || g->height > VQJ_MAX_GRID_SIDE || g->width < 1 ||
        g->width > VQJ_MAX_GRID_SIDE)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %s is %d x %d; sides must be 1..%d", fn, what, g->height, g->width,
                         VQJ_MAX_GRID_SIDE);
    const size_t n = (size_t)g->height * (size_t)g->width;
    for (size_t i = 0; i < n; i++)
        if (g->cells[i] >= VQJ_NUM_COLORS)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: %s: cell (%zu, %zu) is %d; colors are 0..%d", fn, what,
                             i / (size_t)g->width, i % (size_t)g->width, g->cells[i],
                             VQJ_NUM_COLORS - 1);
    return VQJ_OK;
}

void vqji_palette_permutation(vqji_rng *rng, uint16_t background_mask,
                              uint8_t perm[VQJ_NUM_COLORS])
{
    uint8_t free_colors[VQJ_NUM_COLORS], shuffled[VQJ_NUM_COLORS];
    int n = 0;
    for (int c = 0; c < VQJ_NUM_COLORS; c++) {
        perm[c] = (uint8_t)c;
        if (!(background_mask >> c & 1u))
            free_colors[n++] = (uint8_t)c;
    }
    memcpy(shuffled, free_colors, (size_t)n);
    for (int i = n; i > 1; i--) {
        const int j = (int)vqji_rng_below(rng, (uint64_t)i);
        const uint8_t t = shuffled[i - 1];
        shuffled[i - 1] = shuffled[j];
        shuffled[j] = t;
    }
    for (int i = 0; i < n; i++)
        perm[free_colors[i]] = shuffled[i];
}

/* The four steps of vqj_augment_grid() on one grid, with the shared draws
 * (perm may be NULL, dy/dx) given and the per-grid ones from `rng`. */
static void augment_one(const vqj_augment_params *p, const uint8_t *perm, int dy, int dx,
                        vqji_rng *rng, const vqj_grid *in, uint8_t *out)
{
    const int h = in->height, w = in->width, n = h * w;
    const uint8_t bg = (uint8_t)p->background;
    const int shift = (h < w ? h : w) >= p->min_grid_size_for_crop;
    if (!shift)
        dy = dx = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int sy = y - dy, sx = x - dx;
            out[y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? in->cells[sy * w + sx] : bg;
        }
    if (perm)
        for (int i = 0; i < n; i++)
            out[i] = perm[out[i]];
    if (p->mask_ratio > 0.0f)
        for (int i = 0; i < n; i++)
            if (out[i] != bg && vqji_rng_uniform(rng) < p->mask_ratio)
                out[i] = bg;
    if (p->gaussian_noise_std > 0.0f) {
        int lo = VQJ_NUM_COLORS, hi = -1;
        for (int i = 0; i < n; i++)
            if (out[i] != bg) {
                lo = out[i] < lo ? out[i] : lo;
                hi = out[i] > hi ? out[i] : hi;
            }
        for (int i = 0; i < n; i++) {
            if (out[i] == bg)
                continue;
            int v = out[i] + (int)lrintf(p->gaussian_noise_std * vqji_rng_normal(rng));
            v = v < lo ? lo : v > hi ? hi : v;
            if (v != bg) /* jitter never erases a cell: that is masking's job */
                out[i] = (uint8_t)v;
        }
    }
}

static vqj_status augment(vqj_context *ctx, const char *fn, const vqj_augment_params *params,
                          uint64_t seed, const vqj_grid *context, int count,
                          const vqj_grid *target, uint8_t *const *out_cells)
{
    vqj_augment_params p;
    vqj_augment_params_default(&p); /* quiets a false maybe-uninitialized */
    vqj_status st = resolve_params(ctx, params, &p);
    if (st)
        return st;
    char what[32];
    for (int g = 0; g <= count; g++) {
        const vqj_grid *grid = g < count ? &context[g] : target;
        if (!grid)
            continue;
        if (g < count)
            snprintf(what, sizeof what, "grid %d", g);
        else
            snprintf(what, sizeof what, "the target");
        st = check_grid(ctx, fn, what, grid, out_cells[g]);
        if (st)
            return st;
    }

    vqji_rng shared;
    vqji_rng_seed(&shared, seed, 0);
    uint8_t perm[VQJ_NUM_COLORS];
    if (p.palette_permutation)
        vqji_palette_permutation(&shared, (uint16_t)(1u << p.background), perm);
    int dy = 0, dx = 0;
    if (p.random_crop_radius > 0) {
        const uint64_t span = 2 * (uint64_t)p.random_crop_radius + 1;
        dy = (int)vqji_rng_below(&shared, span) - p.random_crop_radius;
        dx = (int)vqji_rng_below(&shared, span) - p.random_crop_radius;
    }
    for (int g = 0; g <= count; g++) {
        const vqj_grid *grid = g < count ? &context[g] : target;
        if (!grid)
            continue;
        vqji_rng rng;
        vqji_rng_seed(&rng, seed, (uint64_t)g + 1);
        augment_one(&p, p.palette_permutation ? perm : NULL, dy, dx, &rng, grid, out_cells[g]);
    }
    return VQJ_OK;
}

vqj_status vqj_augment_grid(vqj_context *ctx, const vqj_augment_params *params, uint64_t seed,
                            const vqj_grid *in, uint8_t *out_cells)
{
    if (!ctx || !params || !in || !out_cells)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_augment_grid: NULL argument");
    vqji_clear_error(ctx);
    uint8_t *outs[1] = {out_cells};
    return augment(ctx, "vqj_augment_grid", params, seed, in, 1, NULL, outs);
}

vqj_status vqj_augment_example(vqj_context *ctx, const vqj_augment_params *params, uint64_t seed,
                               const vqj_grid *context, int context_window,
                               const vqj_grid *target, uint8_t *const *out_cells)
{
    if (!ctx || !params || !context || !out_cells)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_augment_example: NULL argument");
    vqji_clear_error(ctx);
    if (context_window < 1 || context_window > VQJI_MAX_CONTEXT_WINDOW)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_augment_example: context_window is %d; must be 1..%d",
                         context_window, VQJI_MAX_CONTEXT_WINDOW);
    return augment(ctx, "vqj_augment_example", params, seed, context, context_window, target,
                   out_cells);
}

vqj_status vqj_view_palette(vqj_context *ctx, uint64_t seed, uint16_t background,
                            const vqj_grid *in, uint8_t *out_cells)
{
    vqji_clear_error(ctx);
    vqj_status st = check_grid(ctx, "vqj_view_palette", "the grid", in, out_cells);
    if (st)
        return st;
    vqji_rng rng;
    vqji_rng_seed(&rng, seed, VIEW_PALETTE_STREAM);
    uint8_t perm[VQJ_NUM_COLORS];
    vqji_palette_permutation(&rng, background, perm);
    const size_t n = (size_t)in->height * (size_t)in->width;
    for (size_t i = 0; i < n; i++)
        out_cells[i] = perm[in->cells[i]];
    return VQJ_OK;
}

vqj_status vqj_view_flip(vqj_context *ctx, const vqj_grid *in, int horizontal,
                         uint8_t *out_cells)
{
    vqji_clear_error(ctx);
    vqj_status st = check_grid(ctx, "vqj_view_flip", "the grid", in, out_cells);
    if (st)
        return st;
    const vqji_prim flip = {horizontal ? VQJI_PRIM_MIRROR_H : VQJI_PRIM_MIRROR_V, 0, 0};
    int h, w;
    vqji_prim_apply(&flip, in->height, in->width, in->cells, &h, &w, out_cells, NULL);
    return VQJ_OK;
}

vqj_status vqji_tokens_drop_objects(vqj_tokens *dst, const vqj_tokens *src, float p,
                                    uint64_t seed)
{
    const size_t G = src->num_grids, F = (size_t)src->feature_dim;
    vqji_token_buffers *b = &dst->out;
    int32_t most = 0; /* the largest grid: the kept indices' scratch */
    for (size_t g = 0; g < G; g++)
        if (src->out.offsets[g + 1] - src->out.offsets[g] > most)
            most = src->out.offsets[g + 1] - src->out.offsets[g];
    vqj_status st = vqji_tokens_reserve_like(dst, src, "object dropout");
    if (!st)
        st = vqji_reserve(dst->ctx, (void **)&dst->parent, &dst->parent_cap,
                          (most ? (size_t)most : 1) * sizeof *dst->parent, "object dropout");
    if (st)
        return st;
    b->offsets[0] = 0;
    b->adjacency_offsets[0] = 0;
    vqji_rng rng;
    vqji_rng_seed(&rng, seed, OBJECT_DROPOUT_STREAM);
    int32_t *keep = dst->parent;
    size_t total = 0;
    int64_t adj_total = 0;
    for (size_t g = 0; g < G; g++) {
        const int32_t first = src->out.offsets[g], n = src->out.offsets[g + 1] - first;
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++)
            if (vqji_rng_uniform(&rng) >= p)
                keep[k++] = i;
        const uint8_t *in_adj = src->out.adjacency + src->out.adjacency_offsets[g];
        uint8_t *out_adj = b->adjacency + adj_total;
        for (int32_t r = 0; r < k; r++) {
            memcpy(b->features + (total + (size_t)r) * F,
                   src->out.features + ((size_t)first + (size_t)keep[r]) * F, F * sizeof(float));
            for (int32_t c = 0; c < k; c++)
                out_adj[(size_t)r * (size_t)k + (size_t)c] =
                    in_adj[(size_t)keep[r] * (size_t)n + (size_t)keep[c]];
        }
        float *gf = b->grid_features + g * VQJI_GRID_FEATURES;
        memcpy(gf, src->out.grid_features + g * VQJI_GRID_FEATURES,
               VQJI_GRID_FEATURES * sizeof(float));
        gf[VQJI_GRID_FEATURES - 1] = (float)((double)k / (double)src->params.max_objects);
        b->grid_ids[g] = src->out.grid_ids[g];
        total += (size_t)k;
        adj_total += (int64_t)k * k;
        b->offsets[g + 1] = (int32_t)total;
        b->adjacency_offsets[g + 1] = adj_total;
    }
    dst->num_grids = G;
    dst->num_objects = total;
    return VQJ_OK;
}

vqj_status vqj_view_translate_features(vqj_context *ctx, float *features, size_t n,
                                       int feature_dim, float dy, float dx)
{
    vqji_clear_error(ctx);
    if (!features && n > 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_view_translate_features: features is NULL");
    if (feature_dim < VQJ_BASE_FEATURES)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_view_translate_features: feature_dim is %d; must be >= %d",
                         feature_dim, VQJ_BASE_FEATURES);
    if (!isfinite(dy) || !isfinite(dx))
        return vqji_fail(ctx, VQJ_ERR_NUMERIC,
                         "vqj_view_translate_features: dy %g, dx %g; both must be finite",
                         (double)dy, (double)dx);
    /* Centroid (7, 8), bbox min (9, 10) and max (11, 12): y then x. */
    for (size_t i = 0; i < n; i++) {
        float *f = features + i * (size_t)feature_dim;
        f[7] += dy;
        f[8] += dx;
        f[9] += dy;
        f[10] += dx;
        f[11] += dy;
        f[12] += dx;
    }
    return VQJ_OK;
}
