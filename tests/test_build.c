/* The one-call constructors: a trainer from a configuration
 * (vqj_trainer_create_from_config), a model from a trainer
 * (vqj_model_from_trainer) or from a checkpoint (vqj_model_load),
 * vqj_config_set, and the memory estimate that guards the first. */
#include "testutil.h"

#include "core/core.h" /* vqji_alloc_fail_at, vqji_alloc_count */

#include <unistd.h>

static const char small_yaml[] = "seed: 9\n"
                                 "tokenizer:\n"
                                 "  max_objects: 16\n"
                                 "object_encoder:\n"
                                 "  hidden_dim: 32\n"
                                 "  num_embeddings: 16\n"
                                 "  relational_layers: 1\n"
                                 "  relational_heads: 4\n"
                                 "  vq_refresh_interval: 3\n"
                                 "model:\n"
                                 "  projection_dim: 16\n"
                                 "  aggregator: gru\n"
                                 "training:\n"
                                 "  grad_accum_steps: 1\n"
                                 "  lr_scheduler:\n"
                                 "    warmup_steps: 2\n"
                                 "    total_steps: 20\n"
                                 "loss:\n"
                                 "  queue_size: 32\n"
                                 "sigreg:\n"
                                 "  num_slices: 16\n";

enum { B = 4, T = 3 };

static vqj_context *context_seeded(uint64_t seed)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = 1;
    p.seed = seed;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK)
        fail_msg("vqj_context_create: %s", vqj_last_error());
    return ctx;
}

static vqj_config *small_config(vqj_context *ctx)
{
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_parse(ctx, small_yaml, strlen(small_yaml), "small", &cfg));
    return cfg;
}

/* B examples of synthetic data, batch i. */
typedef struct data {
    vqj_dataset *set;
    vqj_grid context[B * T], targets[B];
} data;

static void data_create(vqj_context *ctx, data *d)
{
    vqj_dataset_params dp;
    vqj_synthetic_params sp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params_default(&sp);
    sp.num_examples = 64;
    sp.seed = 3;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &d->set));
}

static void data_batch(data *d, int i)
{
    for (int e = 0; e < B; e++) {
        const vqj_grid *cg, *tg;
        assert_int_equal(vqj_dataset_example(d->set, (size_t)(i * B + e) % 64, &cg, &tg), VQJ_OK);
        memcpy(d->context + e * T, cg, T * sizeof *cg);
        d->targets[e] = *tg;
    }
}

/* Every float of a weights view, in index order (caller frees). */
static float *read_all(vqj_context *ctx, vqj_weights *w, size_t *count)
{
    size_t total = 0, n = vqj_weights_num_tensors(w);
    vqj_weight_info info;
    for (size_t i = 0; i < n; i++) {
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        total += info.count;
    }
    float *x = malloc((total + 1) * sizeof *x), *p = x;
    for (size_t i = 0; i < n; i++) {
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        assert_ok(ctx, vqj_weights_read(w, info.name, p, info.count));
        p += info.count;
    }
    *count = total;
    return x;
}

static void assert_same_weights(vqj_context *ctx, vqj_weights *a, vqj_weights *b)
{
    size_t na, nb;
    float *x = read_all(ctx, a, &na), *y = read_all(ctx, b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na * sizeof *x);
    free(x);
    free(y);
}

/* The trainer the configuration describes, assembled by hand in a context
 * seeded with the configuration's seed: what every program wrote before. */
typedef struct by_hand {
    vqj_context *ctx;
    vqj_encoder *enc;
    vqj_codebook *cb;
    vqj_predictor *pred;
    vqj_loss *loss;
    vqj_optimizer *opt;
    vqj_trainer *tr;
} by_hand;

static void by_hand_create(by_hand *h, const vqj_config *cfg, uint64_t seed)
{
    h->ctx = context_seeded(seed);
    vqj_tokenizer_params tp;
    vqj_encoder_params ep;
    vqj_codebook_params cp;
    vqj_predictor_params pp;
    vqj_loss_params lp;
    vqj_optimizer_params op;
    vqj_trainer_params trp;
    vqj_tokenizer_params_default(&tp);
    vqj_encoder_params_default(&ep);
    vqj_codebook_params_default(&cp);
    vqj_predictor_params_default(&pp);
    vqj_loss_params_default(&lp);
    vqj_optimizer_params_default(&op);
    vqj_trainer_params_default(&trp);
    assert_ok(h->ctx, vqj_config_tokenizer_params(cfg, &tp));
    assert_ok(h->ctx, vqj_config_encoder_params(cfg, &ep));
    assert_ok(h->ctx, vqj_config_codebook_params(cfg, &cp));
    assert_ok(h->ctx, vqj_config_predictor_params(cfg, &pp));
    assert_ok(h->ctx, vqj_config_loss_params(cfg, &lp));
    assert_ok(h->ctx, vqj_config_optimizer_params(cfg, &op));
    assert_ok(h->ctx, vqj_config_trainer_params(cfg, &trp));
    assert_ok(h->ctx, vqj_encoder_create(h->ctx, &ep, &h->enc));
    assert_ok(h->ctx, vqj_codebook_create(h->ctx, &cp, &h->cb));
    assert_ok(h->ctx, vqj_predictor_create(h->ctx, &pp, &h->pred));
    assert_ok(h->ctx, vqj_loss_create(h->ctx, &lp, &h->loss));
    vqj_weights *groups[] = {vqj_encoder_weights(h->enc), vqj_codebook_weights(h->cb),
                             vqj_predictor_weights(h->pred), vqj_loss_weights(h->loss)};
    assert_ok(h->ctx, vqj_optimizer_create(h->ctx, &op, groups, 4, &h->opt));
    assert_ok(h->ctx, vqj_trainer_create(h->ctx, &trp, &tp, h->enc, h->cb, h->pred, h->loss,
                                         h->opt, &h->tr));
}

static void by_hand_destroy(by_hand *h)
{
    vqj_trainer_destroy(h->tr);
    vqj_optimizer_destroy(h->opt);
    vqj_loss_destroy(h->loss);
    vqj_predictor_destroy(h->pred);
    vqj_codebook_destroy(h->cb);
    vqj_encoder_destroy(h->enc);
    vqj_context_destroy(h->ctx);
}

/* The seed comes from the configuration, not the context: a trainer from
 * the config in a context of any seed trains bit for bit as the handles
 * assembled by hand in a context of the config's seed. */
static void test_trainer_from_config(void **state)
{
    (void)state;
    vqj_context *ctx = context_seeded(1234);
    vqj_config *cfg = small_config(ctx);
    vqj_trainer *tr = NULL;
    assert_ok(ctx, vqj_trainer_create_from_config(ctx, cfg, &tr));
    by_hand h;
    by_hand_create(&h, cfg, 9);
    assert_same_weights(ctx, vqj_encoder_weights(vqj_trainer_encoder(tr)),
                        vqj_encoder_weights(h.enc));
    data d;
    data_create(ctx, &d);
    for (int i = 0; i < 4; i++) {
        data_batch(&d, i);
        vqj_train_metrics a = {.size = sizeof a}, b = {.size = sizeof b};
        assert_ok(ctx, vqj_trainer_step(tr, d.context, d.targets, B, &a));
        assert_ok(h.ctx, vqj_trainer_step(h.tr, d.context, d.targets, B, &b));
        assert_false(a.skipped);
        assert_memory_equal(&a.loss, &b.loss, sizeof a.loss);
    }
    assert_same_weights(ctx, vqj_encoder_weights(vqj_trainer_encoder(tr)),
                        vqj_encoder_weights(h.enc));
    assert_same_weights(ctx, vqj_codebook_weights(vqj_trainer_codebook(tr)),
                        vqj_codebook_weights(h.cb));
    assert_same_weights(ctx, vqj_predictor_weights(vqj_trainer_predictor(tr)),
                        vqj_predictor_weights(h.pred));
    assert_same_weights(ctx, vqj_loss_weights(vqj_trainer_loss(tr)), vqj_loss_weights(h.loss));
    assert_int_equal(vqj_optimizer_steps(vqj_trainer_optimizer(tr)), 4);

    /* Stage calls on the borrowed modules take the caller's tensors. */
    vqj_tensor *rows = NULL;
    assert_ok(ctx, vqj_tensor_create(ctx, 2, 16, &rows));
    float ones[32];
    for (int i = 0; i < 32; i++)
        ones[i] = 0.25f;
    assert_ok(ctx, vqj_tensor_write(rows, ones, 32));
    assert_ok(ctx, vqj_loss_queue_push(vqj_trainer_loss(tr), rows));
    vqj_tensor_destroy(rows);

    /* Errors of the trainer's calls are read through the caller's context. */
    assert_status(ctx, vqj_trainer_step(tr, d.context, d.targets, 0, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_true(strlen(vqj_last_error()) > 0);

    assert_null(vqj_trainer_encoder(NULL));
    assert_null(vqj_trainer_optimizer(NULL));
    vqj_trainer *bad = NULL;
    assert_status(ctx, vqj_trainer_create_from_config(ctx, NULL, &bad), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(bad);
    vqj_dataset_destroy(d.set);
    by_hand_destroy(&h);
    vqj_trainer_destroy(tr);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* A checkpoint of a trainer made from a configuration carries it, and
 * vqj_model_load() rebuilds the model from the file alone: its codes and
 * embeddings equal, bit for bit, those of the model over the trainer. */
static void test_model_load(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_config *cfg = small_config(ctx);
    vqj_trainer *tr = NULL;
    assert_ok(ctx, vqj_trainer_create_from_config(ctx, cfg, &tr));
    data d;
    data_create(ctx, &d);
    for (int i = 0; i < 3; i++) {
        data_batch(&d, i);
        assert_ok(ctx, vqj_trainer_step(tr, d.context, d.targets, B, NULL));
    }
    char path[] = "/tmp/vqj_test_build_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_ok(ctx, vqj_trainer_save(tr, path, NULL));

    vqj_model *live = NULL, *loaded = NULL;
    assert_ok(ctx, vqj_model_from_trainer(tr, &live));
    assert_ok(ctx, vqj_model_load(ctx, path, &loaded));
    assert_int_equal(vqj_model_embedding_dim(loaded), 16);
    assert_int_equal(vqj_model_num_codes(loaded), 16);
    assert_int_equal(vqj_model_max_objects(loaded), 16);
    assert_int_equal(vqj_model_context_window(loaded), T);
    const size_t G = B * T;
    int32_t ca[G * 16], cb[G * 16];
    size_t na[G], nb[G];
    float ea[G * 16], eb[G * 16], pa[B * 16], pb[B * 16];
    assert_ok(ctx, vqj_model_encode_grids(live, d.context, G, ca, na, ea));
    assert_ok(ctx, vqj_model_encode_grids(loaded, d.context, G, cb, nb, eb));
    assert_memory_equal(na, nb, sizeof na);
    assert_memory_equal(ca, cb, sizeof ca);
    assert_memory_equal(ea, eb, sizeof ea);
    assert_ok(ctx, vqj_model_predict_batch(live, d.context, B, pa));
    assert_ok(ctx, vqj_model_predict_batch(loaded, d.context, B, pb));
    assert_memory_equal(pa, pb, sizeof pa);

    /* Another tokenizer over the loaded handles. */
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_model_tokenizer_params(loaded, &tp));
    assert_int_equal(tp.max_objects, 16);
    tp.max_objects = 2;
    vqj_model *few = NULL;
    assert_ok(ctx, vqj_model_with_tokenizer(loaded, &tp, &few));
    assert_int_equal(vqj_model_max_objects(few), 2);
    tp.max_color_features = 3; /* the encoder takes 13 + 10 features */
    vqj_model *bad = NULL;
    assert_status(ctx, vqj_model_with_tokenizer(loaded, &tp, &bad), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(bad);
    vqj_model_destroy(few);
    vqj_model_destroy(loaded);
    vqj_model_destroy(live);

    /* A file without its configuration, and no file at all. */
    char *yaml = NULL;
    assert_ok(ctx, vqj_config_write_yaml(cfg, &yaml));
    vqj_checkpoint_entry e = {"encoder.", vqj_encoder_weights(vqj_trainer_encoder(tr))};
    assert_ok(ctx, vqj_checkpoint_save(ctx, path, &e, 1, NULL));
    assert_status(ctx, vqj_model_load(ctx, path, &bad), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "no \"config\" metadata"));
    assert_null(bad);
    unlink(path);
    assert_status(ctx, vqj_model_load(ctx, path, &bad), VQJ_ERR_IO);
    assert_null(bad);
    assert_status(ctx, vqj_model_load(ctx, NULL, &bad), VQJ_ERR_INVALID_ARGUMENT);
    vqj_free(yaml);
    vqj_dataset_destroy(d.set);
    vqj_trainer_destroy(tr);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* vqj_config_set checks values as the parser does and leaves the
 * configuration unchanged on failure. */
static void test_config_set(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_config *cfg = small_config(ctx);
    vqj_run_params rp = {.size = sizeof rp};
    assert_ok(ctx, vqj_config_set(cfg, "seed", "77"));
    assert_ok(ctx, vqj_config_set(cfg, "training.epochs", "3"));
    assert_ok(ctx, vqj_config_set(cfg, "logging.run_name", "\"a b\""));
    assert_ok(ctx, vqj_config_set(cfg, "training.device", "cpu"));
    assert_ok(ctx, vqj_config_run(cfg, &rp));
    assert_int_equal(rp.seed, 77);
    assert_int_equal(rp.epochs, 3);
    assert_string_equal(rp.run_name, "a b");
    assert_ok(ctx, vqj_config_set(cfg, "optimizer.betas", "[0.8, 0.9]"));
    vqj_optimizer_params op;
    vqj_optimizer_params_default(&op);
    assert_ok(ctx, vqj_config_optimizer_params(cfg, &op));
    assert_float_equal(op.beta1, 0.8f, 0.0f);

    char *before = NULL, *after = NULL;
    assert_ok(ctx, vqj_config_write_yaml(cfg, &before));
    assert_status(ctx, vqj_config_set(cfg, "training.epochs", "0"), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "training.epochs is 0"));
    assert_status(ctx, vqj_config_set(cfg, "training.epochs", "[1"), VQJ_ERR_PARSE);
    assert_status(ctx, vqj_config_set(cfg, "training.nope", "1"), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_set(cfg, "model.type", "conv"), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_set(cfg, "seed", ""), VQJ_ERR_INVALID_ARGUMENT);
    /* A rule between keys: heads must divide hidden_dim (32). */
    assert_status(ctx, vqj_config_set(cfg, "object_encoder.relational_heads", "3"),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "must divide"));
    /* A string key refused by a rule keeps its old text. */
    assert_ok(ctx, vqj_config_set(cfg, "data.arc_path", "\"tasks\""));
    assert_status(ctx, vqj_config_set(cfg, "dataset_manifest", "\"m.jsonl\""),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_ok(ctx, vqj_config_set(cfg, "data.arc_path", "null"));
    assert_ok(ctx, vqj_config_write_yaml(cfg, &after));
    assert_string_equal(before, after);
    assert_status(ctx, vqj_config_set(NULL, "seed", "1"), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_set(cfg, NULL, "1"), VQJ_ERR_INVALID_ARGUMENT);
    vqj_free(before);
    vqj_free(after);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* The memory estimate (vqj_config_estimate_bytes) grows with the batch, K
 * and D, and vqj_trainer_create_from_config() refuses a configuration whose
 * estimate exceeds VQJEPA_MEMORY_LIMIT before it allocates anything. */
static uint64_t estimate_with(vqj_context *ctx, vqj_config *cfg, const char *key,
                              const char *value)
{
    assert_ok(ctx, vqj_config_set(cfg, key, value));
    uint64_t bytes = 0;
    assert_int_equal(vqj_config_estimate_bytes(cfg, &bytes), VQJ_OK);
    return bytes;
}

static void test_memory_estimate(void **state)
{
    (void)state;
    vqj_context *ctx = context_seeded(1);
    vqj_config *cfg = small_config(ctx);
    uint64_t small = 0;
    assert_int_equal(vqj_config_estimate_bytes(cfg, &small), VQJ_OK);
    assert_true(small > 0);
    assert_int_equal(vqj_config_estimate_bytes(NULL, &small), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_config_estimate_bytes(cfg, NULL), VQJ_ERR_INVALID_ARGUMENT);
    struct { const char *key, *lo, *hi; } grow[] = {
        {"training.batch_size", "8", "64"},
        {"object_encoder.num_embeddings", "32", "4096"},
        {"object_encoder.hidden_dim", "16", "256"},
        {"tokenizer.max_objects", "8", "64"},
        {"loss.queue_size", "0", "65536"},
    };
    for (size_t i = 0; i < sizeof grow / sizeof grow[0]; i++) {
        vqj_config *c = small_config(ctx);
        uint64_t lo = estimate_with(ctx, c, grow[i].key, grow[i].lo);
        uint64_t hi = estimate_with(ctx, c, grow[i].key, grow[i].hi);
        if (!(hi > lo))
            fail_msg("%s: %s gives %llu bytes, %s %llu", grow[i].key, grow[i].lo,
                     (unsigned long long)lo, grow[i].hi, (unsigned long long)hi);
        vqj_config_destroy(c);
    }

    /* The small config fits 1 GiB; at batch 1000000 it does not, and it is
     * refused with the estimate and the limit named, before any allocation. */
    assert_int_equal(setenv("VQJEPA_MEMORY_LIMIT", "1G", 1), 0);
    vqj_trainer *tr = NULL;
    assert_true(small < (1u << 30));
    assert_ok(ctx, vqj_trainer_create_from_config(ctx, cfg, &tr));
    vqj_trainer_destroy(tr);
    tr = NULL;
    assert_ok(ctx, vqj_config_set(cfg, "training.batch_size", "1000000"));
    vqji_alloc_fail_at(0);
    assert_status(ctx, vqj_trainer_create_from_config(ctx, cfg, &tr), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqji_alloc_count(), 0);
    assert_null(tr);
    const char *msg = vqj_last_error();
    assert_non_null(strstr(msg, "needs about"));
    assert_non_null(strstr(msg, "more than the limit of 1.1 GB (VQJEPA_MEMORY_LIMIT)"));
    assert_non_null(strstr(msg, "batch 1000000"));
    /* A malformed limit is refused. */
    assert_int_equal(setenv("VQJEPA_MEMORY_LIMIT", "lots", 1), 0);
    assert_status(ctx, vqj_trainer_create_from_config(ctx, cfg, &tr), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "VQJEPA_MEMORY_LIMIT is 'lots'"));
    /* Without the variable, a model far beyond any machine is refused too. */
    assert_int_equal(unsetenv("VQJEPA_MEMORY_LIMIT"), 0);
    assert_ok(ctx, vqj_config_set(cfg, "object_encoder.hidden_dim", "16384"));
    assert_ok(ctx, vqj_config_set(cfg, "tokenizer.max_objects", "4096"));
    assert_status(ctx, vqj_trainer_create_from_config(ctx, cfg, &tr), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "physical memory"));
    assert_null(tr);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainer_from_config),
        cmocka_unit_test(test_model_load),
        cmocka_unit_test(test_config_set),
        cmocka_unit_test(test_memory_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
