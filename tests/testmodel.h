/* A small trainer over synthetic data, for the tests that need every
 * handle at once (trainer, checkpoints). Include after testutil.h. */
#ifndef VQJ_TESTMODEL_H
#define VQJ_TESTMODEL_H

#include "testutil.h"

/* What differs between the tests' models; zero fields take the values in
 * test_model_spec_default(). */
typedef struct test_model_spec {
    uint64_t seed;
    int hidden, layers, heads;
    float dropout;
    int codes, refresh_interval;
    float refresh_threshold;
    int projection;
    vqj_aggregator aggregator;
    int queue, slices;
    int invariance; /* 0: the three invariance weights are 0 */
    float lr;
    int warmup, total_steps, accum;
    int target; /* use_target_encoder */
    int examples, data_seed, max_side;
    vqj_vq_path vq_path; /* 0: straight-through */
    vqj_objective objective;
    int grid_features;
    int threads; /* the context's num_threads; 0: 1 */
    float dead_code; /* codebook dead_code_threshold (0: off) */
} test_model_spec;

static inline test_model_spec test_model_spec_default(void)
{
    return (test_model_spec){.seed = 11,
                             .hidden = 32,
                             .layers = 2,
                             .heads = 4,
                             .dropout = 0.1f,
                             .codes = 16,
                             .refresh_interval = 4,
                             .refresh_threshold = 0.01f,
                             .projection = 16,
                             .aggregator = VQJ_AGG_ATTENTION,
                             .queue = 32,
                             .slices = 16,
                             .invariance = 1,
                             .lr = 1e-3f,
                             .warmup = 2,
                             .total_steps = 50,
                             .accum = 1,
                             .target = 1,
                             .examples = 1600,
                             .data_seed = 5,
                             .max_side = 14};
}

/* A trainer made by vqj_trainer_create_from_config() and its modules,
 * borrowed from it. */
typedef struct test_model {
    test_model_spec spec;
    vqj_context *ctx;
    vqj_encoder *encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor;
    vqj_loss *loss;
    vqj_optimizer *optimizer;
    vqj_trainer *trainer;
    vqj_dataset *data;
} test_model;

/* Set one configuration key from a printf-style value. */
static inline void test_model_set(vqj_context *ctx, vqj_config *cfg, const char *key,
                                  const char *fmt, ...)
{
    char value[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    assert_ok(ctx, vqj_config_set(cfg, key, value));
}

static inline void test_model_create(test_model *m, const test_model_spec *s)
{
    static const char *const agg[] = {"mean", "last", "attention", "gru"};
    m->spec = *s;
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = s->threads > 0 ? s->threads : 1;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&cp, &ctx), VQJ_OK);
    m->ctx = ctx;
    /* One description: the library's defaults (the params structs' own, so
     * the tokenizer keeps 16 objects) with the spec's keys. */
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    test_model_set(ctx, cfg, "seed", "%llu", (unsigned long long)s->seed);
    test_model_set(ctx, cfg, "tokenizer.max_objects", "16");
    test_model_set(ctx, cfg, "object_encoder.hidden_dim", "%d", s->hidden);
    test_model_set(ctx, cfg, "object_encoder.relational_layers", "%d", s->layers);
    test_model_set(ctx, cfg, "object_encoder.relational_heads", "%d", s->heads);
    test_model_set(ctx, cfg, "object_encoder.relational_dropout", "%.9g", (double)s->dropout);
    test_model_set(ctx, cfg, "object_encoder.num_embeddings", "%d", s->codes);
    test_model_set(ctx, cfg, "object_encoder.vq_refresh_interval", "%d", s->refresh_interval);
    test_model_set(ctx, cfg, "object_encoder.vq_refresh_usage_threshold", "%.9g",
                   (double)s->refresh_threshold);
    test_model_set(ctx, cfg, "object_encoder.vq_path", "%s",
                   s->vq_path == VQJ_VQ_BESIDE ? "beside" : "straight_through");
    test_model_set(ctx, cfg, "object_encoder.grid_features", "%s",
                   s->grid_features ? "true" : "false");
    test_model_set(ctx, cfg, "loss.projection_dim", "%d", s->projection);
    test_model_set(ctx, cfg, "model.aggregator", "%s", agg[s->aggregator]);
    test_model_set(ctx, cfg, "loss.queue_size", "%d", s->queue);
    test_model_set(ctx, cfg, "loss.objective", "%s",
                   s->objective == VQJ_OBJECTIVE_SIGREG ? "sigreg" : "infonce");
    test_model_set(ctx, cfg, "sigreg.num_slices", "%d", s->slices);
    if (!s->invariance) {
        test_model_set(ctx, cfg, "invariance.color_weight", "0");
        test_model_set(ctx, cfg, "invariance.translation_weight", "0");
        test_model_set(ctx, cfg, "invariance.symmetry_weight", "0");
    }
    test_model_set(ctx, cfg, "optimizer.lr", "%.9g", (double)s->lr);
    test_model_set(ctx, cfg, "training.lr_scheduler.warmup_steps", "%d", s->warmup);
    test_model_set(ctx, cfg, "training.lr_scheduler.total_steps", "%d", s->total_steps);
    test_model_set(ctx, cfg, "training.grad_accum_steps", "%d", s->accum);
    test_model_set(ctx, cfg, "loss.use_target_encoder", "%s", s->target ? "true" : "false");
    if (s->dead_code > 0.0f)
        test_model_set(ctx, cfg, "object_encoder.dead_code_threshold", "%.9g", (double)s->dead_code);
    assert_ok(ctx, vqj_trainer_create_from_config(ctx, cfg, &m->trainer));
    vqj_config_destroy(cfg);
    m->encoder = vqj_trainer_encoder(m->trainer);
    m->codebook = vqj_trainer_codebook(m->trainer);
    m->predictor = vqj_trainer_predictor(m->trainer);
    m->loss = vqj_trainer_loss(m->trainer);
    m->optimizer = vqj_trainer_optimizer(m->trainer);
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = s->examples;
    sp.seed = (uint64_t)s->data_seed;
    sp.max_side = s->max_side;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &m->data));
}

static inline void test_model_destroy(test_model *m)
{
    vqj_dataset_destroy(m->data);
    vqj_trainer_destroy(m->trainer); /* and the modules it owns */
    vqj_context_destroy(m->ctx);
}

/* Batch i of the data: examples i*batch .. i*batch+batch-1 (wrapping), T
 * context grids each into context[batch * T], targets into targets[batch]. */
static inline void test_model_batch(const test_model *m, int i, int batch, vqj_grid *context,
                                    vqj_grid *targets)
{
    const int T = vqj_dataset_context_window(m->data);
    size_t n = vqj_dataset_num_examples(m->data);
    for (int e = 0; e < batch; e++) {
        const vqj_grid *cg, *tg;
        assert_int_equal(
            vqj_dataset_example(m->data, ((size_t)i * batch + (size_t)e) % n, &cg, &tg), VQJ_OK);
        for (int k = 0; k < T; k++)
            context[e * T + k] = cg[k];
        targets[e] = *tg;
    }
}

#endif
