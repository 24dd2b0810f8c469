/* The frozen ABI test: a program built against the header as released in
 * 0.1 (tests/abi/0.1/vqjepa.h, included instead of include/vqjepa.h: the
 * Makefile gives only -Itests/abi/0.1), so every struct below has its 0.1
 * size, linked against the current libvqjepa.so. It calls the functions of
 * 0.1 that are still present (vqj_context_last_error() is gone: 0.1's
 * vqj_last_error() is the one accessor) and checks that they work: a small
 * model, training steps, an evaluation, checkpoints, inference.
 *
 * Two ways a 0.1 program differs from one built today are reproduced:
 *  - its structs end earlier, and their tail padding (bytes past the last
 *    0.1 field, up to sizeof) holds whatever was there: garbage here, so a
 *    library that read a newer field from it would be caught;
 *  - its *_default() calls. The stable ones (context, dataset, synthetic)
 *    are called on a struct followed by guard bytes, which must stay
 *    untouched. The stage-level ones write the library's current, larger
 *    struct (docs/api-conventions.md, "Params structs carry their size"),
 *    so their 0.1 fields are taken from a call into a large enough buffer.
 *
 * Exit status 0 when every check passed, 1 otherwise. */
#include "vqjepa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if VQJ_VERSION_MAJOR != 0 || VQJ_VERSION_MINOR != 1
#error "abi_test must be compiled against the frozen 0.1 header (tests/abi/0.1)"
#endif

static int failures, checks;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            fprintf(stderr, "abi_test:%d: FAIL: ", __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " (library: %s)\n", vqj_last_error());                            \
        }                                                                                      \
    } while (0)
#define CHECK_OK(call) CHECK((call) == VQJ_OK, "%s", #call)

#define GARBAGE 0xA5
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* Garbage in the tail padding of a 0.1 struct whose last field is `last`. */
#define POISON_PADDING(var, type, last)                                                        \
    memset((unsigned char *)&(var) + END_OF(type, last), GARBAGE,                              \
           sizeof(type) - END_OF(type, last))

/* A stable default function on a 0.1 struct followed by guard bytes: it
 * must write the 0.1 size and nothing past it. */
#define STABLE_DEFAULT(type, fn, var)                                                          \
    do {                                                                                       \
        struct {                                                                               \
            type p;                                                                            \
            unsigned char guard[256];                                                          \
        } g_;                                                                                  \
        memset(&g_, GARBAGE, sizeof g_);                                                       \
        fn(&g_.p);                                                                             \
        int intact_ = 1;                                                                       \
        for (size_t i_ = 0; i_ < sizeof g_.guard; i_++)                                        \
            intact_ &= g_.guard[i_] == GARBAGE;                                                \
        CHECK(intact_, "%s wrote past a 0.1 %s", #fn, #type);                                  \
        CHECK(g_.p.size == sizeof(type), "%s set size %zu, the 0.1 size is %zu", #fn,         \
              g_.p.size, sizeof(type));                                                        \
        (var) = g_.p;                                                                          \
    } while (0)

/* The 0.1 fields of a stage-level struct, with the library's defaults. */
#define STAGE_DEFAULT(type, fn, var, last)                                                     \
    do {                                                                                       \
        union {                                                                                \
            type p;                                                                            \
            unsigned char big[4096];                                                           \
        } u_;                                                                                  \
        fn(&u_.p);                                                                             \
        (var) = u_.p;                                                                          \
        (var).size = sizeof(type);                                                             \
        POISON_PADDING(var, type, last);                                                       \
    } while (0)

static int unit_norm(const float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return fabs(s - 1.0) < 1e-4;
}

static const char task_json[] =
    "{\"train\": [{\"input\": [[1, 0], [0, 0]], \"output\": [[0, 1], [0, 0]]},"
    "             {\"input\": [[0, 0], [2, 0]], \"output\": [[0, 0], [0, 2]]}],"
    " \"test\": [{\"input\": [[3, 3], [0, 0]], \"output\": [[3, 3], [0, 0]]}]}";

int main(void)
{
    enum { B = 8, T = 3, D = 32, P = 16, K = 16, M = 8 };

    /* ---- stable: context, errors ---- */
    vqj_context_params cp;
    STABLE_DEFAULT(vqj_context_params, vqj_context_params_default, cp);
    cp.num_threads = 1;
    cp.seed = 5;
    POISON_PADDING(cp, vqj_context_params, log_level);
    vqj_context *ctx = NULL;
    CHECK_OK(vqj_context_create(&cp, &ctx));
    if (!ctx)
        return 1;
    CHECK(vqj_context_device(ctx) == VQJ_DEVICE_CPU, "device");
    CHECK(vqj_context_num_threads(ctx) == 1, "num_threads");
    CHECK(strcmp(vqj_version(), "") != 0, "version");
    CHECK(strcmp(vqj_status_string(VQJ_ERR_IO), "input/output error") == 0, "status string");
    CHECK(vqj_device_compiled(VQJ_DEVICE_CPU) == 1, "CPU compiled");
    vqj_tensor *bad = NULL;
    CHECK(vqj_tensor_create(ctx, -1, 2, &bad) == VQJ_ERR_INVALID_ARGUMENT && !bad,
          "a negative size is refused");
    CHECK(strstr(vqj_last_error(), "-1") != NULL, "vqj_last_error names the bad size");

    /* ---- a small model from 0.1 structs ---- */
    vqj_tokenizer_params tok;
    STAGE_DEFAULT(vqj_tokenizer_params, vqj_tokenizer_params_default, tok, respect_colors);
    tok.max_objects = M;
    vqj_encoder_params ep;
    STAGE_DEFAULT(vqj_encoder_params, vqj_encoder_params_default, ep, relational_dropout);
    ep.feature_dim = vqj_tokenizer_feature_dim(&tok);
    ep.hidden_dim = D;
    ep.relational_layers = 1;
    ep.relational_heads = 4;
    vqj_codebook_params cbp;
    STAGE_DEFAULT(vqj_codebook_params, vqj_codebook_params_default, cbp, kmeans_init);
    cbp.num_embeddings = K;
    cbp.dim = D;
    cbp.kmeans_init = 0;
    vqj_predictor_params pp;
    STAGE_DEFAULT(vqj_predictor_params, vqj_predictor_params_default, pp, context_window);
    pp.hidden_dim = D;
    pp.projection_dim = P;
    pp.context_window = T;
    vqj_loss_params lp;
    STAGE_DEFAULT(vqj_loss_params, vqj_loss_params_default, lp, infonce_weight);
    lp.projection_dim = P;
    lp.queue_size = 32;
    lp.max_objects = M;
    lp.sigreg_num_slices = 16;
    vqj_optimizer_params op;
    STAGE_DEFAULT(vqj_optimizer_params, vqj_optimizer_params_default, op, min_lr_scale);
    op.lr = 1e-3f;
    op.warmup_steps = 0;
    vqj_trainer_params tp;
    STAGE_DEFAULT(vqj_trainer_params, vqj_trainer_params_default, tp, background);
    tp.grad_accum_steps = 1;

    vqj_encoder *enc = NULL;
    vqj_codebook *cb = NULL;
    vqj_predictor *pred = NULL;
    vqj_loss *loss = NULL;
    vqj_optimizer *opt = NULL;
    vqj_trainer *tr = NULL;
    CHECK_OK(vqj_encoder_create(ctx, &ep, &enc));
    CHECK_OK(vqj_codebook_create(ctx, &cbp, &cb));
    CHECK_OK(vqj_predictor_create(ctx, &pp, &pred));
    CHECK_OK(vqj_loss_create(ctx, &lp, &loss));
    if (enc && cb && pred && loss) {
        vqj_weights *groups[] = {vqj_encoder_weights(enc), vqj_codebook_weights(cb),
                                 vqj_predictor_weights(pred), vqj_loss_weights(loss)};
        CHECK_OK(vqj_optimizer_create(ctx, &op, groups, 4, &opt));
    }
    if (opt)
        CHECK_OK(vqj_trainer_create(ctx, &tp, &tok, enc, cb, pred, loss, opt, &tr));
    if (!tr) {
        fprintf(stderr, "abi_test: no trainer, %d of %d checks failed\n", failures, checks);
        return 1;
    }

    /* ---- stable: datasets, training steps, evaluation ---- */
    vqj_dataset_params dp;
    STABLE_DEFAULT(vqj_dataset_params, vqj_dataset_params_default, dp);
    dp.context_window = T;
    POISON_PADDING(dp, vqj_dataset_params, max_examples_per_task);
    vqj_synthetic_params sp;
    STABLE_DEFAULT(vqj_synthetic_params, vqj_synthetic_params_default, sp);
    sp.num_examples = 64;
    POISON_PADDING(sp, vqj_synthetic_params, max_primitives);
    vqj_dataset *ds = NULL;
    CHECK_OK(vqj_dataset_synthetic(ctx, &dp, &sp, &ds));
    CHECK(vqj_dataset_num_examples(ds) == 64, "64 synthetic examples");
    CHECK(vqj_dataset_context_window(ds) == T, "context window");
    vqj_grid context[B * T], targets[B];
    for (int b = 0; b < B; b++) {
        const vqj_grid *cg = NULL, *tg = NULL;
        CHECK_OK(vqj_dataset_example(ds, (size_t)b, &cg, &tg));
        if (!cg || !tg)
            return 1;
        memcpy(context + b * T, cg, T * sizeof *cg);
        targets[b] = *tg;
    }
    for (int s = 1; s <= 2; s++) {
        vqj_train_metrics m;
        memset(&m, GARBAGE, sizeof m);
        m.size = sizeof m;
        CHECK_OK(vqj_trainer_step(tr, context, targets, B, &m));
        CHECK(!m.skipped && m.applied && m.step == s && m.batch == B,
              "step %d: skipped %d applied %d step %lld batch %d", s, m.skipped, m.applied,
              (long long)m.step, m.batch);
        CHECK(isfinite(m.loss) && m.loss > 0, "step %d: loss %g", s, (double)m.loss);
    }
    vqj_train_metrics ev = {.size = sizeof ev};
    CHECK_OK(vqj_trainer_evaluate(tr, context, targets, B, &ev));
    CHECK(isfinite(ev.loss) && ev.step == 2, "evaluate: loss %g step %lld", (double)ev.loss,
          (long long)ev.step);
    int64_t micro = -1;
    uint64_t dropout = 0;
    CHECK_OK(vqj_trainer_get_counters(tr, &micro, &dropout));
    CHECK(micro == 2, "micro_step %lld", (long long)micro);

    /* ---- stable: checkpoints ---- */
    char path[64];
    snprintf(path, sizeof path, "/tmp/vqjepa_abi_test_%ld.safetensors", (long)getpid());
    const char *meta[] = {"epoch", "1", NULL};
    CHECK_OK(vqj_trainer_save_with_metadata(tr, path, NULL, meta));
    CHECK_OK(vqj_checkpoint_verify(ctx, path));
    char value[64];
    size_t len = 0;
    CHECK_OK(vqj_checkpoint_read_metadata(ctx, path, "epoch", value, sizeof value, &len));
    CHECK(len == 1 && strcmp(value, "1") == 0, "metadata epoch is '%s'", value);
    CHECK_OK(vqj_trainer_load(tr, path));
    remove(path);

    /* ---- stable: inference ---- */
    vqj_model *model = NULL;
    CHECK_OK(vqj_model_create(ctx, &tok, enc, cb, pred, vqj_trainer_target_encoder(tr),
                              vqj_trainer_target_predictor(tr), &model));
    if (model) {
        CHECK(vqj_model_embedding_dim(model) == P && vqj_model_max_objects(model) == M &&
                  vqj_model_context_window(model) == T && vqj_model_num_codes(model) == K,
              "model sizes");
        int32_t codes[M];
        size_t n = 0;
        float emb[P], pred_emb[P], dist = -1;
        CHECK_OK(vqj_model_encode_grid(model, &targets[0], codes, &n, emb));
        CHECK(n >= 1 && n <= M, "%zu objects", n);
        for (size_t i = 0; i < n; i++)
            CHECK(codes[i] >= 0 && codes[i] < K, "code %d", (int)codes[i]);
        CHECK(unit_norm(emb, P), "the grid embedding has unit length");
        int32_t batch_codes[2 * M];
        size_t batch_n[2];
        float batch_emb[2 * P];
        CHECK_OK(vqj_model_encode_grids(model, targets, 2, batch_codes, batch_n, batch_emb));
        CHECK(batch_n[0] == n, "batch object count");
        CHECK_OK(vqj_model_predict(model, context, T, pred_emb));
        CHECK(unit_norm(pred_emb, P), "the prediction has unit length");
        CHECK_OK(vqj_latent_distance(pred_emb, emb, P, &dist));
        CHECK(dist >= 0 && dist <= 4, "latent distance %g", (double)dist);
        vqj_model_destroy(model);
    }

    /* ---- stable: configurations and ARC tasks ---- */
    vqj_config *cfg = NULL;
    static const char yaml[] = "seed: 9\ntraining:\n  epochs: 3\n";
    CHECK_OK(vqj_config_parse(ctx, yaml, strlen(yaml), "abi", &cfg));
    char *text = NULL;
    CHECK_OK(vqj_config_write_yaml(cfg, &text));
    CHECK(text && strstr(text, "epochs: 3"), "the YAML keeps training.epochs");
    vqj_free(text);
    vqj_config_destroy(cfg);
    vqj_arc_task *task = NULL;
    CHECK_OK(vqj_arc_task_parse(ctx, task_json, strlen(task_json), "t", &task));
    CHECK(vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN) == 2 &&
              vqj_arc_task_num_pairs(task, VQJ_ARC_TEST) == 1,
          "task pairs");
    const vqj_grid *g = vqj_arc_task_input(task, VQJ_ARC_TEST, 0);
    CHECK(g && g->height == 2 && g->width == 2 && g->cells[0] == 3, "test input");
    vqj_arc_task_destroy(task);

    vqj_dataset_destroy(ds);
    vqj_trainer_destroy(tr);
    vqj_optimizer_destroy(opt);
    vqj_loss_destroy(loss);
    vqj_predictor_destroy(pred);
    vqj_codebook_destroy(cb);
    vqj_encoder_destroy(enc);
    vqj_context_destroy(ctx);
    printf("abi_test: %d checks, %d failed (0.1 header, library %s)\n", checks, failures,
           vqj_version());
    return failures ? 1 : 0;
}
