/* Shared by the example programs: build every handle of a configuration.
 * A configuration (YAML) is what a checkpoint records, so a program that
 * loads a checkpoint builds the same model from the text stored in it. */
#ifndef VQJ_EXAMPLES_COMMON_H
#define VQJ_EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <vqjepa.h>

#define CHECK(ctx, call)                                                                       \
    do {                                                                                       \
        if ((call) != VQJ_OK) {                                                                \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                       \
                    (ctx) ? vqj_context_last_error(ctx) : vqj_last_error());                   \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

typedef struct example_model {
    vqj_tokenizer_params tokenizer;
    vqj_encoder *encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor;
    vqj_loss *loss;
    vqj_optimizer *optimizer;
    vqj_trainer *trainer;
} example_model;

static inline void example_model_create(vqj_context *ctx, const vqj_config *cfg,
                                        example_model *m)
{
    vqj_encoder_params ep;
    vqj_codebook_params cp;
    vqj_predictor_params pp;
    vqj_loss_params lp;
    vqj_optimizer_params op;
    vqj_trainer_params tp;
    vqj_tokenizer_params_default(&m->tokenizer);
    vqj_encoder_params_default(&ep);
    vqj_codebook_params_default(&cp);
    vqj_predictor_params_default(&pp);
    vqj_loss_params_default(&lp);
    vqj_optimizer_params_default(&op);
    vqj_trainer_params_default(&tp);
    CHECK(ctx, vqj_config_tokenizer_params(cfg, &m->tokenizer));
    CHECK(ctx, vqj_config_encoder_params(cfg, &ep));
    CHECK(ctx, vqj_config_codebook_params(cfg, &cp));
    CHECK(ctx, vqj_config_predictor_params(cfg, &pp));
    CHECK(ctx, vqj_config_loss_params(cfg, &lp));
    CHECK(ctx, vqj_config_optimizer_params(cfg, &op));
    CHECK(ctx, vqj_config_trainer_params(cfg, &tp));
    CHECK(ctx, vqj_encoder_create(ctx, &ep, &m->encoder));
    CHECK(ctx, vqj_codebook_create(ctx, &cp, &m->codebook));
    CHECK(ctx, vqj_predictor_create(ctx, &pp, &m->predictor));
    CHECK(ctx, vqj_loss_create(ctx, &lp, &m->loss));
    vqj_weights *groups[] = {vqj_encoder_weights(m->encoder), vqj_codebook_weights(m->codebook),
                             vqj_predictor_weights(m->predictor), vqj_loss_weights(m->loss)};
    CHECK(ctx, vqj_optimizer_create(ctx, &op, groups, 4, &m->optimizer));
    CHECK(ctx, vqj_trainer_create(ctx, &tp, &m->tokenizer, m->encoder, m->codebook,
                                  m->predictor, m->loss, m->optimizer, &m->trainer));
}

static inline void example_model_destroy(example_model *m)
{
    vqj_trainer_destroy(m->trainer);
    vqj_optimizer_destroy(m->optimizer);
    vqj_loss_destroy(m->loss);
    vqj_predictor_destroy(m->predictor);
    vqj_codebook_destroy(m->codebook);
    vqj_encoder_destroy(m->encoder);
}

/* A checkpoint's configuration text and context seed (caller frees the text). */
static inline char *example_checkpoint_config(vqj_context *ctx, const char *path, uint64_t *seed)
{
    size_t len = 0;
    char seedbuf[32];
    CHECK(ctx, vqj_checkpoint_read_metadata(ctx, path, "config", NULL, 0, &len));
    char *yaml = malloc(len + 1);
    if (!yaml)
        exit(1);
    CHECK(ctx, vqj_checkpoint_read_metadata(ctx, path, "config", yaml, len + 1, &len));
    CHECK(ctx, vqj_checkpoint_read_metadata(ctx, path, "seed", seedbuf, sizeof seedbuf, &len));
    *seed = strtoull(seedbuf, NULL, 10);
    return yaml;
}

#endif
