/* Driving training stage by stage from a host program.
 *
 * Builds two identical models from the same seed. One is trained by
 * vqj_trainer_step(); the other by this program calling each stage itself,
 * in the order include/vqjepa.h ("Trainer") lists. After a few steps the two
 * must hold bit-identical weights: the exit status says whether they do.
 *
 *   bin/example_train_stages [steps]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vqjepa_stages.h>

#define CHECK(call)                                                                            \
    do {                                                                                       \
        vqj_status st_ = (call);                                                               \
        if (st_ != VQJ_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                       \
                    vqj_last_error());                                                         \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

enum { T = 3, BATCH = 4, ACCUM = 2 };

/* A small model, built in one call from a configuration: a trainer and the
 * parts it lends (online and target network, loss, optimizer). */
typedef struct model {
    vqj_context *ctx;
    vqj_config *cfg;
    vqj_trainer *trainer;
    vqj_encoder *encoder, *target_encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor, *target_predictor;
    vqj_loss *loss;
    vqj_optimizer *optimizer;
} model;

static void model_create(model *m)
{
    static const char *const keys[][2] = {
        {"seed", "7"},
        {"object_encoder.hidden_dim", "32"},
        {"object_encoder.relational_layers", "2"},
        {"object_encoder.relational_heads", "4"},
        {"object_encoder.num_embeddings", "16"},
        {"object_encoder.vq_refresh_interval", "3"},
        {"loss.projection_dim", "16"},
        {"model.aggregator", "gru"},
        {"loss.queue_size", "32"},
        {"sigreg.num_slices", "16"},
        /* The invariance views are the trainer's own machinery (grid views,
         * re-tokenizing): this program shows the core step. */
        {"invariance.color_weight", "0"},
        {"invariance.translation_weight", "0"},
        {"invariance.symmetry_weight", "0"},
        {"optimizer.lr", "1e-3"},
        {"training.lr_scheduler.warmup_steps", "2"},
        {"training.lr_scheduler.total_steps", "10"},
        {"training.grad_accum_steps", "2"}, /* ACCUM */
    };
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    CHECK(vqj_context_create(&cp, &m->ctx));
    CHECK(vqj_config_default(m->ctx, &m->cfg));
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        CHECK(vqj_config_set(m->cfg, keys[k][0], keys[k][1]));
    CHECK(vqj_trainer_create_from_config(m->ctx, m->cfg, &m->trainer));
    m->encoder = vqj_trainer_encoder(m->trainer);
    m->codebook = vqj_trainer_codebook(m->trainer);
    m->predictor = vqj_trainer_predictor(m->trainer);
    m->loss = vqj_trainer_loss(m->trainer);
    m->optimizer = vqj_trainer_optimizer(m->trainer);
    m->target_encoder = vqj_trainer_target_encoder(m->trainer);
    m->target_predictor = vqj_trainer_target_predictor(m->trainer);
}

static void model_destroy(model *m)
{
    vqj_trainer_destroy(m->trainer);
    vqj_config_destroy(m->cfg);
    vqj_context_destroy(m->ctx);
}

/* The host's own state for the stage path: the tensors passed between
 * stages. */
typedef struct stages {
    vqj_tokens *context_tokens, *target_tokens;
    vqj_tensor *z, *q, *c, *dc, *dq, *dz, *zt, *qt, *t;
    vqj_tensor *pending; /* the cycle's target projections, pushed at its end */
    float *pending_host;
    uint64_t *pending_ids; /* their target grids' ids, for the duplicate mask */
    int pending_rows;
    int micro_step;
} stages;

static void zeros_like(vqj_tensor *x, const vqj_tensor *like)
{
    int rows = vqj_tensor_rows(like), cols = vqj_tensor_cols(like);
    CHECK(vqj_tensor_reshape(x, rows, cols));
    float *zero = calloc((size_t)rows * (size_t)cols + 1, sizeof *zero);
    CHECK(vqj_tensor_write(x, zero, (size_t)rows * (size_t)cols));
    free(zero);
}

static void stage_step(model *m, stages *s, const vqj_grid *context, const vqj_grid *targets,
                       int batch)
{
    /* 1. tokenize */
    CHECK(vqj_tokenize(m->ctx, s->context_tokens, context, (size_t)batch * T));
    CHECK(vqj_tokenize(m->ctx, s->target_tokens, targets, (size_t)batch));
    vqj_loss_reset(m->loss);
    /* 2. target path: no dropout, codebook not updated */
    CHECK(vqj_encoder_forward(m->target_encoder, s->target_tokens, 0, s->zt));
    CHECK(vqj_codebook_forward(m->codebook, s->zt, 0, s->qt, NULL, NULL));
    CHECK(vqj_predictor_forward_grids(m->target_predictor, s->target_tokens, s->qt, s->t));
    /* 3. online path */
    vqj_codebook_stats cs = {.size = sizeof cs};
    CHECK(vqj_encoder_forward(m->encoder, s->context_tokens, 1, s->z));
    CHECK(vqj_codebook_forward(m->codebook, s->z, 1, s->q, NULL, &cs));
    CHECK(vqj_predictor_forward_context(m->predictor, s->context_tokens, s->q, s->c));
    /* 4. losses with their gradients */
    zeros_like(s->dc, s->c);
    zeros_like(s->dq, s->q);
    CHECK(vqj_loss_infonce_ids(m->loss, s->c, s->t, vqj_tokens_grid_ids(s->target_tokens), s->dc,
                               NULL));
    CHECK(vqj_loss_sigreg(m->loss, s->c, (uint64_t)s->micro_step, s->dc, NULL));
    CHECK(vqj_loss_relational(m->loss, s->context_tokens, s->q, s->dq, s->target_tokens, s->qt,
                              NULL, NULL));
    CHECK(vqj_loss_add_commitment(m->loss, cs.commitment_loss + cs.codebook_loss));
    /* 5. backward */
    CHECK(vqj_predictor_backward_context(m->predictor, s->dc, s->dq));
    zeros_like(s->dz, s->z);
    CHECK(vqj_codebook_backward(m->codebook, s->dq, s->dz));
    CHECK(vqj_encoder_backward(m->encoder, s->dz, NULL));
    /* 7. keep t for the queue; an optimizer step every ACCUM micro-batches,
     * then the target EMA and the push of the cycle's t */
    int rows = vqj_tensor_rows(s->t), cols = vqj_tensor_cols(s->t);
    s->pending_host = realloc(s->pending_host,
                              (size_t)(s->pending_rows + rows) * (size_t)cols * sizeof(float));
    CHECK(vqj_tensor_read(s->t, s->pending_host + (size_t)s->pending_rows * (size_t)cols,
                          (size_t)rows * (size_t)cols));
    s->pending_ids = realloc(s->pending_ids, (size_t)(s->pending_rows + rows) * sizeof(uint64_t));
    memcpy(s->pending_ids + s->pending_rows, vqj_tokens_grid_ids(s->target_tokens),
           (size_t)rows * sizeof(uint64_t));
    s->pending_rows += rows;
    s->micro_step++;
    if (s->micro_step % ACCUM == 0) {
        vqj_step_info info = {.size = sizeof info};
        CHECK(vqj_optimizer_step(m->optimizer, 1.0f / ACCUM, &info));
        if (info.applied) {
            CHECK(vqj_weights_ema(vqj_encoder_weights(m->target_encoder),
                                  vqj_encoder_weights(m->encoder), 0.99f));
            CHECK(vqj_weights_ema(vqj_predictor_weights(m->target_predictor),
                                  vqj_predictor_weights(m->predictor), 0.99f));
            CHECK(vqj_tensor_reshape(s->pending, s->pending_rows, cols));
            CHECK(vqj_tensor_write(s->pending, s->pending_host,
                                   (size_t)s->pending_rows * (size_t)cols));
            CHECK(vqj_loss_queue_push_ids(m->loss, s->pending, s->pending_ids));
        }
        CHECK(vqj_optimizer_zero_grad(m->optimizer));
        s->pending_rows = 0;
    }
}

/* Compare every tensor of two weights views, bit for bit. */
static int same_weights(const vqj_weights *a, const vqj_weights *b)
{
    size_t n = vqj_weights_num_tensors(a);
    if (n != vqj_weights_num_tensors(b))
        return 0;
    for (size_t i = 0; i < n; i++) {
        vqj_weight_info ia, ib;
        CHECK(vqj_weights_info(a, i, &ia));
        CHECK(vqj_weights_info(b, i, &ib));
        float *x = malloc(ia.count * sizeof *x), *y = malloc(ib.count * sizeof *y);
        CHECK(vqj_weights_read(a, ia.name, x, ia.count));
        CHECK(vqj_weights_read(b, ib.name, y, ib.count));
        int same = ia.count == ib.count && memcmp(x, y, ia.count * sizeof *x) == 0;
        if (!same)
            fprintf(stderr, "tensor %s differs\n", ia.name);
        free(x);
        free(y);
        if (!same)
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 6;
    model a, b;
    model_create(&a);
    model_create(&b);

    /* Model a trains through vqj_trainer_step(); model b's parts (its
     * trainer is never stepped) are driven stage by stage below. */
    stages s = {0};
    vqj_tokenizer_params tk;
    vqj_tokenizer_params_default(&tk);
    CHECK(vqj_config_tokenizer_params(b.cfg, &tk));
    CHECK(vqj_tokens_create(b.ctx, &tk, &s.context_tokens));
    CHECK(vqj_tokens_create(b.ctx, &tk, &s.target_tokens));
    vqj_tensor **tensors[] = {&s.z,  &s.q,  &s.c, &s.dc,     &s.dq,
                              &s.dz, &s.zt, &s.qt, &s.t, &s.pending};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        CHECK(vqj_tensor_create(b.ctx, 0, 1, tensors[i]));

    /* Data: the built-in synthetic generator. */
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = steps * BATCH;
    vqj_dataset *data = NULL;
    CHECK(vqj_dataset_synthetic(a.ctx, &dp, &sp, &data));

    vqj_grid context[BATCH * T], targets[BATCH];
    for (int step = 0; step < steps; step++) {
        for (int e = 0; e < BATCH; e++) {
            const vqj_grid *cg, *tg;
            CHECK(vqj_dataset_example(data, (size_t)(step * BATCH + e), &cg, &tg));
            for (int k = 0; k < T; k++)
                context[e * T + k] = cg[k];
            targets[e] = *tg;
        }
        vqj_train_metrics m = {.size = sizeof m};
        CHECK(vqj_trainer_step(a.trainer, context, targets, BATCH, &m));
        stage_step(&b, &s, context, targets, BATCH);
        vqj_loss_values v = {.size = sizeof v};
        CHECK(vqj_loss_get_values(b.loss, &v));
        printf("step %d: one-call loss %.6f, stage loss %.6f\n", step, (double)m.loss,
               (double)v.total);
    }

    int same = same_weights(vqj_encoder_weights(a.encoder), vqj_encoder_weights(b.encoder)) &&
               same_weights(vqj_codebook_weights(a.codebook), vqj_codebook_weights(b.codebook)) &&
               same_weights(vqj_predictor_weights(a.predictor),
                            vqj_predictor_weights(b.predictor)) &&
               same_weights(vqj_loss_weights(a.loss), vqj_loss_weights(b.loss)) &&
               same_weights(vqj_trainer_target_encoder_weights(a.trainer),
                            vqj_encoder_weights(b.target_encoder));
    printf("%s\n", same ? "bit-identical" : "DIFFERENT");

    vqj_dataset_destroy(data);
    free(s.pending_host);
    free(s.pending_ids);
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        vqj_tensor_destroy(*tensors[i]);
    vqj_tokens_destroy(s.context_tokens);
    vqj_tokens_destroy(s.target_tokens);
    model_destroy(&a);
    model_destroy(&b);
    return same ? 0 : 1;
}
