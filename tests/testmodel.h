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

static inline void test_model_create(test_model *m, const test_model_spec *s)
{
    m->spec = *s;
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    cp.seed = s->seed;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&cp, &ctx), VQJ_OK);
    m->ctx = ctx;
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.hidden_dim = s->hidden;
    ep.relational_layers = s->layers;
    ep.relational_heads = s->heads;
    ep.relational_dropout = s->dropout;
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &m->encoder));
    vqj_codebook_params bp;
    vqj_codebook_params_default(&bp);
    bp.num_embeddings = s->codes;
    bp.dim = s->hidden;
    bp.refresh_interval = s->refresh_interval;
    bp.refresh_usage_threshold = s->refresh_threshold;
    bp.dead_code_threshold = s->dead_code;
    assert_ok(ctx, vqj_codebook_create(ctx, &bp, &m->codebook));
    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = s->hidden;
    pp.projection_dim = s->projection;
    pp.aggregator = s->aggregator;
    pp.vq_path = s->vq_path;
    pp.grid_features = s->grid_features;
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &m->predictor));
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    lp.projection_dim = s->projection;
    lp.queue_size = s->queue;
    lp.sigreg_num_slices = s->slices;
    lp.objective = s->objective;
    if (!s->invariance)
        lp.color_weight = lp.translation_weight = lp.symmetry_weight = 0.0f;
    assert_ok(ctx, vqj_loss_create(ctx, &lp, &m->loss));
    vqj_optimizer_params op;
    vqj_optimizer_params_default(&op);
    op.lr = s->lr;
    op.warmup_steps = s->warmup;
    op.total_steps = s->total_steps;
    vqj_weights *groups[] = {vqj_encoder_weights(m->encoder), vqj_codebook_weights(m->codebook),
                             vqj_predictor_weights(m->predictor), vqj_loss_weights(m->loss)};
    assert_ok(ctx, vqj_optimizer_create(ctx, &op, groups, 4, &m->optimizer));
    vqj_trainer_params tp;
    vqj_trainer_params_default(&tp);
    tp.grad_accum_steps = s->accum;
    tp.use_target_encoder = s->target;
    assert_ok(ctx, vqj_trainer_create(ctx, &tp, NULL, m->encoder, m->codebook, m->predictor,
                                      m->loss, m->optimizer, &m->trainer));
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
    vqj_trainer_destroy(m->trainer);
    vqj_optimizer_destroy(m->optimizer);
    vqj_loss_destroy(m->loss);
    vqj_predictor_destroy(m->predictor);
    vqj_codebook_destroy(m->codebook);
    vqj_encoder_destroy(m->encoder);
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
