/* The trainer's checkpoint schema (docs/checkpoints.md): which weights views
 * a trainer checkpoint holds under which prefixes, and its counters and
 * configuration in "__metadata__". The safetensors file itself is written and
 * read by checkpoint.c. */
#include "device/tensor.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct trainer_views {
    vqj_checkpoint_entry e[7];
    size_t n;
} trainer_views;

/* What a trainer checkpoint holds, under fixed prefixes (docs/checkpoints.md). */
static trainer_views views_of(const vqji_trainer_parts *tp)
{
    trainer_views v = {.n = 0};
    v.e[v.n++] = (vqj_checkpoint_entry){"encoder.", vqj_encoder_weights(tp->encoder)};
    v.e[v.n++] = (vqj_checkpoint_entry){"", vqj_codebook_weights(tp->codebook)};
    v.e[v.n++] = (vqj_checkpoint_entry){"predictor.", vqj_predictor_weights(tp->predictor)};
    v.e[v.n++] = (vqj_checkpoint_entry){"", vqj_loss_weights(tp->loss)};
    v.e[v.n++] = (vqj_checkpoint_entry){"optimizer.", vqj_optimizer_state(tp->optimizer)};
    if (tp->target_encoder)
        v.e[v.n++] = (vqj_checkpoint_entry){"target_encoder.",
                                            vqj_encoder_weights(tp->target_encoder)};
    if (tp->target_predictor)
        v.e[v.n++] = (vqj_checkpoint_entry){"target_predictor.",
                                            vqj_predictor_weights(tp->target_predictor)};
    return v;
}

/* The counters, as decimal strings in "__metadata__" (a float32 tensor
 * would not hold an int64 exactly). */
enum { C_MICRO, C_DROPOUT, C_OPT, C_UPDATES, C_INIT, C_SEED, NUM_COUNTERS };
static const char *const counter_keys[NUM_COUNTERS] = {
    "trainer.micro_step", "trainer.dropout_step", "optimizer.steps",
    "codebook.updates",   "codebook.initialized", "seed"};

static int trainer_key(const char *key)
{
    return !strncmp(key, "trainer.", 8) || !strncmp(key, "optimizer.", 10) ||
           !strncmp(key, "codebook.", 9) || !strcmp(key, "seed") || !strcmp(key, "config");
}

/* The arguments every trainer checkpoint call checks first; the trainer's
 * parts and the context its errors go to. */
static vqj_status begin(const char *fn, vqj_trainer *trainer, const char *path,
                        vqji_trainer_parts *tp, vqj_context **ctx)
{
    if (!trainer)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: trainer is NULL", fn);
    *tp = vqji_trainer_get_parts(trainer);
    *ctx = vqj_encoder_weights(tp->encoder)->ctx;
    vqji_clear_error(*ctx);
    if (!path)
        return vqji_fail(*ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: path is NULL", fn);
    return VQJ_OK;
}

static vqj_status trainer_save(const char *fn, vqj_trainer *trainer, const char *path,
                               const char *config_yaml, const char *const *extra)
{
    vqji_trainer_parts tp;
    vqj_context *ctx;
    vqj_status st = begin(fn, trainer, path, &tp, &ctx);
    if (st)
        return st;
    size_t num_extra = 0;
    for (; extra && extra[num_extra]; num_extra += 2) {
        if (trainer_key(extra[num_extra]))
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: metadata key \"%s\" is reserved for the trainer's state", fn,
                             extra[num_extra]);
        if (!extra[num_extra + 1])
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: metadata key \"%s\" has no value", fn, extra[num_extra]);
    }
    /* The accumulated gradient of an unfinished cycle is not saved, and
     * vqj_trainer_set_counters() starts a new cycle: a resume from there
     * would not continue the same run. */
    if (vqji_trainer_cycle_open(trainer))
        return vqji_fail(ctx, VQJ_ERR_STATE,
                         "%s: %s: the trainer is inside a gradient-accumulation cycle; save "
                         "right after an optimizer step (metrics.optimizer_step = 1)",
                         fn, path);
    int64_t micro, updates;
    uint64_t dropout;
    int initialized;
    if ((st = vqj_trainer_get_counters(trainer, &micro, &dropout)) ||
        (st = vqj_codebook_get_progress(tp.codebook, &updates, &initialized)))
        return st;
    char values[NUM_COUNTERS][32];
    snprintf(values[C_MICRO], 32, "%" PRId64, micro);
    snprintf(values[C_DROPOUT], 32, "%" PRIu64, dropout);
    snprintf(values[C_OPT], 32, "%" PRId64, vqj_optimizer_steps(tp.optimizer));
    snprintf(values[C_UPDATES], 32, "%" PRId64, updates);
    snprintf(values[C_INIT], 32, "%d", initialized ? 1 : 0);
    snprintf(values[C_SEED], 32, "%" PRIu64, ctx->params.seed);
    const char **meta;
    if ((st = vqji_malloc(ctx, (2 * NUM_COUNTERS + 3 + num_extra) * sizeof *meta,
                          "checkpoint metadata", (void **)&meta)))
        return st;
    size_t m = 0;
    for (int c = 0; c < NUM_COUNTERS; c++) {
        meta[m++] = counter_keys[c];
        meta[m++] = values[c];
    }
    if (!config_yaml) /* a trainer made from a configuration records it */
        config_yaml = vqji_trainer_config_yaml(trainer);
    if (config_yaml) {
        meta[m++] = "config";
        meta[m++] = config_yaml;
    }
    for (size_t i = 0; i < num_extra; i++)
        meta[m++] = extra[i];
    meta[m] = NULL;
    trainer_views v = views_of(&tp);
    st = vqji_checkpoint_save_meta(ctx, fn, path, v.e, v.n, meta);
    free(meta);
    return st;
}

vqj_status vqj_trainer_save(vqj_trainer *trainer, const char *path, const char *config_yaml)
{
    return trainer_save("vqj_trainer_save", trainer, path, config_yaml, NULL);
}

vqj_status vqj_trainer_save_with_metadata(vqj_trainer *trainer, const char *path,
                                          const char *config_yaml, const char *const *metadata)
{
    return trainer_save("vqj_trainer_save_with_metadata", trainer, path, config_yaml, metadata);
}

vqj_status vqj_trainer_load(vqj_trainer *trainer, const char *path)
{
    const char *fn = "vqj_trainer_load";
    vqji_trainer_parts tp;
    vqj_context *ctx;
    vqj_status st = begin(fn, trainer, path, &tp, &ctx);
    if (st)
        return st;
    trainer_views v = views_of(&tp);
    uint64_t c[NUM_COUNTERS];
    const uint64_t max[NUM_COUNTERS] = {INT64_MAX, UINT64_MAX, INT64_MAX, INT64_MAX, 1,
                                        UINT64_MAX};
    st = vqji_checkpoint_load_counters(ctx, fn, path, v.e, v.n, counter_keys, max,
                                       NUM_COUNTERS, c);
    if (!st) {
        /* Counters last: they were validated above, so these cannot fail. */
        st = vqj_codebook_set_progress(tp.codebook, (int64_t)c[C_UPDATES], (int)c[C_INIT]);
        if (!st)
            st = vqj_optimizer_set_steps(tp.optimizer, (int64_t)c[C_OPT]);
        if (!st)
            st = vqj_trainer_set_counters(trainer, (int64_t)c[C_MICRO], c[C_DROPOUT]);
        /* A gradient accumulated before the load belongs to another run. */
        if (!st)
            st = vqj_optimizer_zero_grad(tp.optimizer);
        if (!st && c[C_SEED] != ctx->params.seed)
            vqji_log(ctx, VQJ_LOG_WARNING,
                     "%s: %s was written with seed %llu, this context has %llu: the resumed "
                     "run draws different dropout masks, views and SIGReg directions",
                     fn, path, (unsigned long long)c[C_SEED],
                     (unsigned long long)ctx->params.seed);
    }
    return st;
}
