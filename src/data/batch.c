/* The batch loader: a list of a dataset's examples, as they are or augmented
 * with a seed per example, in the layout vqj_trainer_step() reads (B*T
 * context grids, B targets). `vqjepa train` and the bindings build their
 * batches here, so that one (seed, epoch, indices) gives one batch
 * everywhere. */
#include "core/formulas.h"
#include "data/data.h"

#include <stdlib.h>

struct vqj_batch {
    vqj_context *ctx;
    size_t n;          /* examples in the batch */
    int T;             /* context grids per example */
    vqj_grid *context; /* n * T */
    vqj_grid *targets; /* n */
    uint8_t *cells;    /* the augmented grids' cells */
    size_t context_cap, targets_cap, cells_cap; /* bytes */
};

uint64_t vqj_augment_seed(uint64_t seed, int64_t epoch, size_t index)
{
    /* hash_combine, then splitmix64's finalizer: one well-mixed seed per
     * (run seed, epoch, example), so any example's augmentation can be
     * redrawn alone. */
    uint64_t a = seed;
    const uint64_t parts[2] = {(uint64_t)epoch, (uint64_t)index};
    for (int k = 0; k < 2; k++)
        a = vqji_mix64(a ^ (parts[k] + VQJI_SPLITMIX64_GAMMA + (a << 6) + (a >> 2)));
    return a;
}

vqj_status vqj_batch_create(vqj_context *ctx, vqj_batch **out)
{
    if (!ctx || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_batch_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_batch *b;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *b, "a batch", (void **)&b);
    if (st)
        return st;
    b->ctx = ctx;
    *out = b;
    return VQJ_OK;
}

void vqj_batch_destroy(vqj_batch *b)
{
    if (!b)
        return;
    free(b->context);
    free(b->targets);
    free(b->cells);
    free(b);
}

vqj_status vqj_batch_fill(vqj_batch *b, const vqj_dataset *ds, const vqj_augment_params *aug,
                          uint64_t seed, int64_t epoch, const size_t *indices, size_t n)
{
    if (!b || !ds || (!indices && n))
        return vqji_fail(b ? b->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_batch_fill: NULL argument");
    vqj_context *ctx = b->ctx;
    vqji_clear_error(ctx);
    b->n = 0; /* empty on every failure below */
    const int T = vqj_dataset_context_window(ds);
    const size_t N = vqj_dataset_num_examples(ds);
    size_t cells = 0, bytes;
    for (size_t e = 0; e < n; e++) {
        if (indices[e] >= N)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_batch_fill: indices[%zu] is %zu; the dataset has %zu examples",
                             e, indices[e], N);
        const vqj_grid *cg, *tg;
        if (vqj_dataset_example(ds, indices[e], &cg, &tg))
            return vqji_fail(ctx, VQJ_ERR_INTERNAL, "vqj_batch_fill: example %zu unreadable",
                             indices[e]);
        for (int k = 0; k < T; k++)
            cells += (size_t)cg[k].height * (size_t)cg[k].width;
        cells += (size_t)tg->height * (size_t)tg->width;
    }
    if (!vqji_mul_size(n, (size_t)T * sizeof *b->context, &bytes))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_batch_fill: %zu examples is too many",
                         n);
    vqj_status st = vqji_reserve(ctx, (void **)&b->context, &b->context_cap, bytes,
                                 "a batch's context grids");
    if (!st)
        st = vqji_reserve(ctx, (void **)&b->targets, &b->targets_cap, n * sizeof *b->targets,
                          "a batch's targets");
    if (!st && aug)
        st = vqji_reserve(ctx, (void **)&b->cells, &b->cells_cap, cells,
                          "a batch's augmented cells");
    if (st)
        return st;
    size_t off = 0;
    for (size_t e = 0; e < n; e++) {
        const vqj_grid *cg, *tg;
        vqj_dataset_example(ds, indices[e], &cg, &tg); /* checked above */
        vqj_grid *ctx_out = b->context + e * (size_t)T;
        if (!aug) {
            for (int k = 0; k < T; k++)
                ctx_out[k] = cg[k];
            b->targets[e] = *tg;
            continue;
        }
        uint8_t *outs[VQJI_MAX_CONTEXT_WINDOW + 1];
        for (int k = 0; k <= T; k++) {
            const vqj_grid *g = k < T ? &cg[k] : tg;
            outs[k] = b->cells + off;
            *(k < T ? &ctx_out[k] : &b->targets[e]) = (vqj_grid){g->height, g->width, outs[k]};
            off += (size_t)g->height * (size_t)g->width;
        }
        st = vqj_augment_example(ctx, aug, vqj_augment_seed(seed, epoch, indices[e]), cg, T, tg,
                                 outs);
        if (st)
            return st;
    }
    b->n = n;
    b->T = T;
    return VQJ_OK;
}

size_t vqj_batch_num_examples(const vqj_batch *b) { return b ? b->n : 0; }

int vqj_batch_context_window(const vqj_batch *b) { return b && b->n ? b->T : 0; }

const vqj_grid *vqj_batch_context(const vqj_batch *b) { return b && b->n ? b->context : NULL; }

const vqj_grid *vqj_batch_targets(const vqj_batch *b) { return b && b->n ? b->targets : NULL; }
