/* Allocation-failure injection (docs/failures.md): for each operation, n
 * walks over every allocation it makes and the n-th one fails
 * (vqji_alloc_fail_at(), src/core/alloc.c; jansson's allocations go
 * through the same countdown). Each failure must give VQJ_ERR_OUT_OF_MEMORY
 * or another documented error with a message, leave the objects usable
 * (the same call then succeeds) or cleanly destroyable, and leak nothing:
 * the program is built with AddressSanitizer, whose LeakSanitizer fails
 * it at exit if a failure path forgot a free. libyaml's and OpenBLAS's
 * allocations are outside the countdown. */
#include "testutil.h"

#include <jansson.h>
#include <unistd.h>

#include "core/core.h"

/* jansson's allocations count when this is set: not while it parses, since
 * jansson 2.14's parser asserts (load.c, lex_scan_string) when an
 * allocation fails there, which no caller can handle. */
static int count_jansson;

static void *counted_malloc(size_t n)
{
    return count_jansson && vqji_alloc_injected() ? NULL : malloc(n);
}

/* Everything a training run and inference need, small. */
typedef struct rig {
    vqj_context *ctx;
    vqj_encoder *enc;
    vqj_codebook *cb;
    vqj_predictor *pred;
    vqj_loss *loss;
    vqj_optimizer *opt;
    vqj_trainer *tr;
    vqj_dataset *data;
    vqj_model *model;
    vqj_tokens *tokens;
    vqj_grid context[4 * 2], targets[4];
    char path[64];
} rig;

enum { B = 4 };

static void rig_destroy(rig *r)
{
    vqj_tokens_destroy(r->tokens);
    vqj_model_destroy(r->model);
    vqj_dataset_destroy(r->data);
    vqj_trainer_destroy(r->tr);
    vqj_optimizer_destroy(r->opt);
    vqj_loss_destroy(r->loss);
    vqj_predictor_destroy(r->pred);
    vqj_codebook_destroy(r->cb);
    vqj_encoder_destroy(r->enc);
    vqj_context_destroy(r->ctx);
    r->tokens = NULL;
    r->model = NULL;
    r->data = NULL;
    r->tr = NULL;
    r->opt = NULL;
    r->loss = NULL;
    r->pred = NULL;
    r->cb = NULL;
    r->enc = NULL;
    r->ctx = NULL;
}

/* Create every handle; on failure what was made is destroyed. */
static vqj_status rig_create(rig *r)
{
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    vqj_status st = vqj_context_create(&cp, &r->ctx);
    if (st)
        return st;
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.hidden_dim = 16;
    ep.relational_layers = 1;
    ep.relational_heads = 2;
    vqj_codebook_params bp;
    vqj_codebook_params_default(&bp);
    bp.num_embeddings = 8;
    bp.dim = 16;
    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = 16;
    pp.projection_dim = 8;
    pp.context_window = 2;
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    lp.projection_dim = 8;
    lp.queue_size = 8;
    lp.sigreg_num_slices = 4;
    vqj_optimizer_params op;
    vqj_optimizer_params_default(&op);
    vqj_trainer_params tp;
    vqj_trainer_params_default(&tp);
    tp.grad_accum_steps = 1;
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    dp.context_window = 2;
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = 8;
    sp.max_side = 8;
    vqj_tokenizer_params kp;
    vqj_tokenizer_params_default(&kp);
    if ((st = vqj_encoder_create(r->ctx, &ep, &r->enc)) ||
        (st = vqj_codebook_create(r->ctx, &bp, &r->cb)) ||
        (st = vqj_predictor_create(r->ctx, &pp, &r->pred)) ||
        (st = vqj_loss_create(r->ctx, &lp, &r->loss)))
        goto fail;
    vqj_weights *groups[] = {vqj_encoder_weights(r->enc), vqj_codebook_weights(r->cb),
                             vqj_predictor_weights(r->pred), vqj_loss_weights(r->loss)};
    if ((st = vqj_optimizer_create(r->ctx, &op, groups, 4, &r->opt)) ||
        (st = vqj_trainer_create(r->ctx, &tp, NULL, r->enc, r->cb, r->pred, r->loss, r->opt,
                                 &r->tr)) ||
        (st = vqj_dataset_synthetic(r->ctx, &dp, &sp, &r->data)) ||
        (st = vqj_model_create(r->ctx, NULL, r->enc, r->cb, r->pred, NULL, NULL, &r->model)) ||
        (st = vqj_tokens_create(r->ctx, &kp, &r->tokens)))
        goto fail;
    for (int e = 0; e < B; e++) {
        const vqj_grid *cg, *tg;
        if ((st = vqj_dataset_example(r->data, (size_t)e, &cg, &tg)))
            goto fail;
        r->context[2 * e] = cg[0];
        r->context[2 * e + 1] = cg[1];
        r->targets[e] = *tg;
    }
    return VQJ_OK;
fail:
    if (!*vqj_last_error())
        fail_msg("status %d without a message", (int)st);
    rig_destroy(r);
    return st;
}

/* One operation under test: `setup` (not counted) makes what it needs,
 * `run` is walked, `again` (may be NULL) must then succeed on the same
 * objects, `teardown` destroys them. */
typedef struct op {
    const char *name;
    vqj_status (*setup)(rig *r);
    vqj_status (*run)(rig *r);
    vqj_status (*again)(rig *r);
    void (*teardown)(rig *r);
    int json; /* jansson's allocations fail too */
} op;

static long walk(const op *o, rig *r)
{
    long n;
    int absorbed = 0;
    for (n = 1;; n++) {
        if (o->setup && o->setup(r) != VQJ_OK)
            fail_msg("%s: setup failed", o->name);
        count_jansson = o->json;
        vqji_alloc_fail_at(n);
        vqj_status st = o->run(r);
        long made = vqji_alloc_count();
        vqji_alloc_fail_at(0);
        count_jansson = 0;
        if (made < n) { /* nothing failed: every allocation has been tried */
            if (st != VQJ_OK)
                fail_msg("%s: status %d without an injected failure: %s", o->name, (int)st,
                         vqj_last_error());
            if (o->teardown)
                o->teardown(r);
            break;
        }
        if (st == VQJ_OK) {
            absorbed++; /* a fallback took over (e.g. a cache that is optional) */
        } else {
            const char *msg = vqj_last_error();
            if (st == VQJ_ERR_INTERNAL || st == VQJ_ERR_DEVICE || !msg || !*msg)
                fail_msg("%s: allocation %ld failed into status %d, message '%s'", o->name, n,
                         (int)st, msg ? msg : "(null)");
        }
        if (o->again && r->ctx && (st = o->again(r)) != VQJ_OK)
            fail_msg("%s: after allocation %ld failed, the retry gives %d: %s", o->name, n,
                     (int)st, vqj_last_error());
        if (o->teardown)
            o->teardown(r);
    }
    printf("alloc_fail_test: %-18s %4ld allocations, each failed once (%d absorbed)\n", o->name,
           n - 1, absorbed);
    return n - 1;
}

/* ---- the operations ---- */

static vqj_status create_all(rig *r)
{
    vqj_status st = rig_create(r);
    if (st == VQJ_OK)
        rig_destroy(r);
    return st;
}

static vqj_status step(rig *r)
{
    vqj_train_metrics m = {.size = sizeof m};
    return vqj_trainer_step(r->tr, r->context, r->targets, B, &m);
}

static vqj_status setup_trained(rig *r)
{
    vqj_status st = rig_create(r);
    if (!st)
        st = step(r);
    snprintf(r->path, sizeof r->path, "/tmp/vqj-alloc-%ld.safetensors", (long)getpid());
    if (!st && access(r->path, F_OK) != 0)
        st = vqj_trainer_save(r->tr, r->path, "seed: 1\n");
    return st;
}

static vqj_status save(rig *r) { return vqj_trainer_save(r->tr, r->path, "seed: 1\n"); }

/* After a failed save the previous file is whole and loads. */
static vqj_status save_again(rig *r)
{
    vqj_status st = vqj_checkpoint_verify(r->ctx, r->path);
    return st ? st : vqj_trainer_load(r->tr, r->path);
}

static vqj_status load(rig *r) { return vqj_trainer_load(r->tr, r->path); }

static const char config_text[] =
    "seed: 7\nobject_encoder:\n  hidden_dim: 16\n  num_embeddings: 8\n"
    "  fsq_levels: [8, 5, 5]\ntraining:\n  batch_size: 4\n  checkpoint_steps: 10\n"
    "  grad_clip: {max_norm: 1.0, norm_type: 2}\n"
    "invariance:\n  symmetry_modes: [vertical]\n";

static vqj_status setup_ctx(rig *r)
{
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    return vqj_context_create(&cp, &r->ctx);
}

static vqj_status config(rig *r)
{
    vqj_config *cfg = NULL;
    char *yaml = NULL;
    vqj_status st = vqj_config_parse(r->ctx, config_text, sizeof config_text - 1, "walk", &cfg);
    if (!st)
        st = vqj_config_write_yaml(cfg, &yaml);
    vqj_free(yaml);
    vqj_config_destroy(cfg);
    return st;
}

static vqj_status setup_tokens(rig *r)
{
    vqj_status st = rig_create(r);
    /* a fresh token batch: its buffers grow on first use */
    vqj_tokens_destroy(r->tokens);
    r->tokens = NULL;
    vqj_tokenizer_params kp;
    vqj_tokenizer_params_default(&kp);
    return st ? st : vqj_tokens_create(r->ctx, &kp, &r->tokens);
}

static vqj_status tokenize(rig *r) { return vqj_tokenize(r->ctx, r->tokens, r->context, 2 * B); }

static vqj_status setup_model(rig *r)
{
    vqj_status st = rig_create(r);
    vqj_model_destroy(r->model);
    r->model = NULL;
    return st;
}

static vqj_status inference(rig *r)
{
    vqj_status st = VQJ_OK;
    if (!r->model)
        st = vqj_model_create(r->ctx, NULL, r->enc, r->cb, r->pred, NULL, NULL, &r->model);
    int32_t codes[64];
    size_t n = 0;
    float emb[8], pred[8];
    if (!st)
        st = vqj_model_encode_grid(r->model, &r->targets[0], codes, &n, emb);
    if (!st)
        st = vqj_model_predict(r->model, r->context, 2, pred);
    return st;
}

static void test_walks(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    json_set_alloc_funcs(counted_malloc, free);
    rig r;
    memset(&r, 0, sizeof r);
    const op ops[] = {
        {"create", NULL, create_all, NULL, NULL, 1},
        {"training step", setup_model, step, step, rig_destroy, 1},
        {"checkpoint save", setup_trained, save, save_again, rig_destroy, 1},
        {"checkpoint load", setup_trained, load, step, rig_destroy, 0},
        {"config parse", setup_ctx, config, config, rig_destroy, 1},
        {"tokenizer", setup_tokens, tokenize, tokenize, rig_destroy, 1},
        {"inference", setup_model, inference, inference, rig_destroy, 1},
    };
    long total = 0;
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        long n = walk(&ops[i], &r);
        if (n < 1 && ops[i].run != config)
            fail_msg("%s made no allocation through the library's allocator", ops[i].name);
        total += n;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/vqj-alloc-%ld.safetensors", (long)getpid());
    unlink(path);
    printf("alloc_fail_test: %ld injected failures in all\n", total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_walks)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
