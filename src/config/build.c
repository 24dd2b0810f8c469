/* One-call constructors over a configuration: a trainer that owns its
 * modules (vqj_trainer_create_from_config), an inference model over a
 * trainer (vqj_model_from_trainer) or read whole from a checkpoint
 * (vqj_model_load). The configuration is the one description of a model:
 * every shared size and the seed are stated there once, and a checkpoint
 * carries it in its "config" metadata. */
#include "core/core.h"
#include "model/encoder.h"
#include "model/workspace.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every params struct of a configuration, filled from it. */
typedef struct model_params {
    vqj_tokenizer_params tokenizer;
    vqj_encoder_params encoder;
    vqj_codebook_params codebook;
    vqj_predictor_params predictor;
    vqj_loss_params loss;
    vqj_optimizer_params optimizer;
    vqj_trainer_params trainer;
    vqj_run_params run;
} model_params;

static vqj_status params_of(const vqj_config *cfg, model_params *p)
{
    vqj_tokenizer_params_default(&p->tokenizer);
    vqj_encoder_params_default(&p->encoder);
    vqj_codebook_params_default(&p->codebook);
    vqj_predictor_params_default(&p->predictor);
    vqj_loss_params_default(&p->loss);
    vqj_optimizer_params_default(&p->optimizer);
    vqj_trainer_params_default(&p->trainer);
    memset(&p->run, 0, sizeof p->run);
    p->run.size = sizeof p->run;
    vqj_status st;
    if ((st = vqj_config_tokenizer_params(cfg, &p->tokenizer)) ||
        (st = vqj_config_encoder_params(cfg, &p->encoder)) ||
        (st = vqj_config_codebook_params(cfg, &p->codebook)) ||
        (st = vqj_config_predictor_params(cfg, &p->predictor)) ||
        (st = vqj_config_loss_params(cfg, &p->loss)) ||
        (st = vqj_config_optimizer_params(cfg, &p->optimizer)) ||
        (st = vqj_config_trainer_params(cfg, &p->trainer)) ||
        (st = vqj_config_run(cfg, &p->run)))
        return st;
    return VQJ_OK;
}

static const char *device_name(vqj_device_kind d)
{
    return d == VQJ_DEVICE_CUDA ? "cuda" : "cpu";
}

/* ---- The memory estimate (vqj_config_estimate_bytes) ----
 *
 * An upper bound, in float32 counts, of what a trainer made from the
 * configuration holds after its first step:
 *  - state: the trainable weights W of the four modules, each with its
 *    gradient and Adam's two moments (4 W), the target network's copy (W),
 *    the codebook's EMA sums and counts, and the loss's negatives queue;
 *  - encoder: the activations of one micro-batch kept for the backward pass
 *    in three encoder passes held at once (the online pass, the invariance
 *    view's pass and the target's), each of N = batch x (T+1) grids x
 *    max_objects tokens: per token the feature MLP (4 D) and per relational
 *    layer about 16 D values (layer norms, q k v, attention output, the 2 D
 *    feed-forward hidden and its activation, residuals, dropout masks) plus
 *    the heads x max_objects attention weights; plus their gradient (4 D a
 *    token);
 *  - codebook: each token's distances to the K codes of every level;
 *  - loss and predictor: the batch x (batch + queue) logits with their
 *    softmax and gradient, the max_objects^2 relation matrix of every grid
 *    and its gradient, the SIGReg projections (slices x batch x 4) and the
 *    predictor's per-grid vectors and head activations.
 * Counted in doubles so that absurd sizes do not overflow. */
typedef struct mem_estimate {
    double state, encoder, codebook, loss; /* bytes */
    double tokens;                         /* N */
} mem_estimate;

static void estimate(const model_params *p, mem_estimate *e)
{
    const double F = p->encoder.feature_dim, D = p->encoder.hidden_dim;
    const double L = p->encoder.relational_layers, H = p->encoder.relational_heads;
    const double M = p->tokenizer.max_objects, T = p->predictor.context_window;
    const double P = p->predictor.projection_dim, PL = p->predictor.projection_layers;
    const double B = p->run.batch_size, Q = p->loss.queue_size;
    const double S = p->loss.sigreg_num_slices, K = p->codebook.num_embeddings;
    const double c = p->codebook.code_dim, cw = c > 0 ? c : D;
    /* residual and grouped codes: levels x groups books of K codes of cw / groups */
    const double groups = p->codebook.num_groups > 1 ? p->codebook.num_groups : 1;
    const double levels =
        (p->codebook.quantizer == VQJ_QUANTIZER_RESIDUAL ? p->codebook.num_quantizers : 1) *
        groups;
    const double enc_w = F * D + D * D + 4 * D + L * (8 * D * D + 11 * D);
    const double cb_w = levels * K * cw / groups + (c > 0 ? 2 * D * c + D + c : 0) + D * D;
    const double pred_w = D * P + P + (PL - 1) * (P * P + P) + T * D + 15 * D;
    const double W = enc_w + cb_w + pred_w + 1;
    const double G = T + 1, N = B * G * M;
    e->tokens = N;
    e->state = 4.0 * (5 * W + levels * K * (cw / groups + 1) + Q * P);
    e->encoder = 4.0 * (3 * N * (4 * D + L * (16 * D + H * M)) + 4 * N * D);
    e->codebook = p->codebook.quantizer == VQJ_QUANTIZER_FSQ ? 4.0 * N * D
                                                               : 4.0 * N * levels * K;
    e->loss = 4.0 * (3 * B * (B + Q) + 2 * B * G * M * M + 4 * S * B +
                     B * G * D * 4 + B * P * PL * 4);
}

vqj_status vqj_config_estimate_bytes(const vqj_config *cfg, uint64_t *bytes)
{
    if (!cfg || !bytes)
        return VQJ_ERR_INVALID_ARGUMENT;
    model_params p;
    vqj_status st = params_of(cfg, &p);
    if (st)
        return st;
    mem_estimate e;
    estimate(&p, &e);
    double total = e.state + e.encoder + e.codebook + e.loss;
    *bytes = total >= 1.8e19 ? UINT64_MAX : (uint64_t)total;
    return VQJ_OK;
}

static double gb(double bytes) { return bytes / 1e9; }

/* VQJ_ERR_INVALID_ARGUMENT when the configuration's estimate exceeds the
 * limit, with the biggest parts and the sizes that make them. */
static vqj_status check_memory(vqj_context *ctx, const char *fn, const model_params *p)
{
    double limit;
    const char *source;
    if (vqji_memory_limit(&limit, &source))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: VQJEPA_MEMORY_LIMIT is '%s'; it must be a number of bytes with an "
                         "optional k, M, G or T suffix (0: no limit)",
                         fn, getenv("VQJEPA_MEMORY_LIMIT"));
    mem_estimate e;
    estimate(p, &e);
    double total = e.state + e.encoder + e.codebook + e.loss;
    if (limit <= 0 || total <= limit)
        return VQJ_OK;
    return vqji_fail(
        ctx, VQJ_ERR_INVALID_ARGUMENT,
        "%s: the configuration needs about %.1f GB, more than the limit of %.1f GB (%s): "
        "encoder activations %.1f GB (batch %d x %d grids x %d objects x hidden %d x %d "
        "layers), codebook distances %.1f GB (%.0f tokens x %d codes), weights and "
        "optimizer state %.1f GB, loss %.1f GB (queue %d); lower training.batch_size, "
        "tokenizer.max_objects, object_encoder.hidden_dim or object_encoder.num_embeddings",
        fn, gb(total), gb(limit), source, gb(e.encoder), p->run.batch_size,
        p->predictor.context_window + 1, p->tokenizer.max_objects, p->encoder.hidden_dim,
        p->encoder.relational_layers, gb(e.codebook), e.tokens, p->codebook.num_embeddings,
        gb(e.state), gb(e.loss), p->loss.queue_size);
}

vqj_status vqj_trainer_create_from_config(vqj_context *ctx, const vqj_config *cfg,
                                          vqj_trainer **out)
{
    const char *fn = "vqj_trainer_create_from_config";
    if (!ctx || !cfg || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    model_params p;
    vqj_status st = params_of(cfg, &p);
    if (st)
        return st;
    if (p.run.device != vqj_context_device(ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the configuration's training.device is %s but the context computes "
                         "on %s; create the context with that device",
                         fn, device_name(p.run.device), device_name(vqj_context_device(ctx)));
    if ((st = check_memory(ctx, fn, &p)))
        return st;
    char *yaml = NULL;
    if ((st = vqj_config_write_yaml(cfg, &yaml)))
        return st;
    /* The modules draw their initial weights, dropout masks and views from
     * the configuration's seed, whatever the caller's context says. */
    vqj_context *own = NULL;
    vqj_encoder *enc = NULL;
    vqj_codebook *cb = NULL;
    vqj_predictor *pred = NULL;
    vqj_loss *loss = NULL;
    vqj_optimizer *opt = NULL;
    vqj_trainer *tr = NULL;
    if (!(st = vqji_context_derive(ctx, p.run.seed, &own)) &&
        !(st = vqj_encoder_create(own, &p.encoder, &enc)) &&
        !(st = vqj_codebook_create(own, &p.codebook, &cb)) &&
        !(st = vqj_predictor_create(own, &p.predictor, &pred)) &&
        !(st = vqj_loss_create(own, &p.loss, &loss))) {
        vqj_weights *groups[] = {vqj_encoder_weights(enc), vqj_codebook_weights(cb),
                                 vqj_predictor_weights(pred), vqj_loss_weights(loss)};
        if (!(st = vqj_optimizer_create(own, &p.optimizer, groups, 4, &opt)))
            st = vqj_trainer_create(own, &p.trainer, &p.tokenizer, enc, cb, pred, loss, opt, &tr);
    }
    if (st) {
        vqj_optimizer_destroy(opt);
        vqj_loss_destroy(loss);
        vqj_predictor_destroy(pred);
        vqj_codebook_destroy(cb);
        vqj_encoder_destroy(enc);
        vqj_context_destroy(own);
        free(yaml);
        return st;
    }
    vqji_trainer_adopt(tr, own, yaml);
    *out = tr;
    return VQJ_OK;
}

vqj_encoder *vqj_trainer_encoder(vqj_trainer *trainer)
{
    return trainer ? vqji_trainer_get_parts(trainer).encoder : NULL;
}

vqj_codebook *vqj_trainer_codebook(vqj_trainer *trainer)
{
    return trainer ? vqji_trainer_get_parts(trainer).codebook : NULL;
}

vqj_predictor *vqj_trainer_predictor(vqj_trainer *trainer)
{
    return trainer ? vqji_trainer_get_parts(trainer).predictor : NULL;
}

vqj_loss *vqj_trainer_loss(vqj_trainer *trainer)
{
    return trainer ? vqji_trainer_get_parts(trainer).loss : NULL;
}

vqj_optimizer *vqj_trainer_optimizer(vqj_trainer *trainer)
{
    return trainer ? vqji_trainer_get_parts(trainer).optimizer : NULL;
}

vqj_status vqj_model_from_trainer(vqj_trainer *trainer, vqj_model **out)
{
    if (!trainer || !out)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_model_from_trainer: NULL argument");
    vqji_trainer_parts tp = vqji_trainer_get_parts(trainer);
    return vqj_model_create(vqji_encoder_context(tp.encoder), vqji_trainer_tokenizer(trainer),
                            tp.encoder, tp.codebook, tp.predictor, tp.target_encoder,
                            tp.target_predictor, out);
}

/* A metadata value of `path` as a new string (NULL on failure). */
static vqj_status read_meta(vqj_context *ctx, const char *path, const char *key, char **out)
{
    size_t len = 0;
    vqj_status st = vqj_checkpoint_read_metadata(ctx, path, key, NULL, 0, &len);
    char *text = NULL;
    if (!st)
        st = vqji_malloc(ctx, len + 1, "checkpoint metadata", (void **)&text);
    if (!st)
        st = vqj_checkpoint_read_metadata(ctx, path, key, text, len + 1, &len);
    if (st) {
        free(text);
        return st;
    }
    *out = text;
    return VQJ_OK;
}

/* The codebook's progress counters of a trainer checkpoint. */
static vqj_status load_progress(vqj_context *ctx, const char *path, vqj_codebook *cb)
{
    char *updates = NULL, *initialized = NULL;
    vqj_status st = read_meta(ctx, path, "codebook.updates", &updates);
    if (!st)
        st = read_meta(ctx, path, "codebook.initialized", &initialized);
    if (!st) {
        char *e1 = NULL, *e2 = NULL;
        long long u = strtoll(updates, &e1, 10), i = strtoll(initialized, &e2, 10);
        if (!*updates || *e1 || u < 0 || !*initialized || *e2 || (i != 0 && i != 1))
            st = vqji_fail(ctx, VQJ_ERR_PARSE,
                           "vqj_model_load: %s: codebook.updates \"%s\" or codebook.initialized "
                           "\"%s\" is not a counter",
                           path, updates, initialized);
        else
            st = vqj_codebook_set_progress(cb, (int64_t)u, (int)i);
    }
    free(updates);
    free(initialized);
    return st;
}

vqj_status vqj_model_load(vqj_context *ctx, const char *path, vqj_model **out)
{
    const char *fn = "vqj_model_load";
    if (!ctx || !path || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    char *yaml = NULL;
    vqj_status st = read_meta(ctx, path, "config", &yaml);
    if (st) {
        if (st == VQJ_ERR_INVALID_ARGUMENT) /* no such key */
            vqji_fail(ctx, st,
                      "%s: %s has no \"config\" metadata (a checkpoint saved without its "
                      "configuration); create the handles and use vqj_checkpoint_load()",
                      fn, path);
        return st;
    }
    vqj_config *cfg = NULL;
    st = vqj_config_parse(ctx, yaml, strlen(yaml), path, &cfg);
    free(yaml);
    if (st)
        return st;
    model_params p;
    st = params_of(cfg, &p);
    const int target = p.run.use_target_encoder;
    vqj_config_destroy(cfg);
    if (st)
        return st;

    vqj_encoder *enc = NULL, *tenc = NULL;
    vqj_codebook *cb = NULL;
    vqj_predictor *pred = NULL, *tpred = NULL;
    vqj_model *model = NULL;
    if (!(st = vqj_encoder_create(ctx, &p.encoder, &enc)) &&
        !(st = vqj_codebook_create(ctx, &p.codebook, &cb)) &&
        !(st = vqj_predictor_create(ctx, &p.predictor, &pred)) && target &&
        !(st = vqj_encoder_create(ctx, &p.encoder, &tenc)))
        st = vqj_predictor_create(ctx, &p.predictor, &tpred);
    if (!st) {
        vqj_checkpoint_entry e[5] = {{"encoder.", vqj_encoder_weights(enc)},
                                     {"", vqj_codebook_weights(cb)},
                                     {"predictor.", vqj_predictor_weights(pred)},
                                     {"target_encoder.", vqj_encoder_weights(tenc)},
                                     {"target_predictor.", vqj_predictor_weights(tpred)}};
        st = vqj_checkpoint_load(ctx, path, e, target ? 5 : 3, VQJ_CHECKPOINT_ALLOW_EXTRA);
    }
    if (!st)
        st = load_progress(ctx, path, cb);
    if (!st)
        st = vqj_model_create(ctx, &p.tokenizer, enc, cb, pred, tenc, tpred, &model);
    if (st) {
        vqj_predictor_destroy(tpred);
        vqj_encoder_destroy(tenc);
        vqj_predictor_destroy(pred);
        vqj_codebook_destroy(cb);
        vqj_encoder_destroy(enc);
        return st;
    }
    vqji_model_adopt(model, enc, cb, pred, tenc, tpred);
    *out = model;
    return VQJ_OK;
}
