/* The one-call training step: accumulation, skipped non-finite steps,
 * determinism, evaluation, invariance views and errors. The stage-by-stage
 * equivalence is examples/train_stages.c (run by `make check`); parity with
 * PyTorch is tests/test_trainer_parity.c. */
#include "testutil.h"
#include "testmodel.h"

#include "core/core.h"
#include "device/tensor.h"
#include "model/tokens.h"

enum { T = 3, B = 4, D = 32, P = 16, K = 16 };

typedef test_model model;

typedef struct options {
    int accum;
    int invariance;
    int target;
    vqj_vq_path vq_path;
} options;

static void model_create(model *m, options o)
{
    test_model_spec s = test_model_spec_default();
    s.hidden = D;
    s.codes = K;
    s.projection = P;
    s.accum = o.accum;
    s.invariance = o.invariance;
    s.target = o.target;
    s.vq_path = o.vq_path;
    s.examples = 400 * B;
    test_model_create(m, &s);
}

static void model_destroy(model *m) { test_model_destroy(m); }

/* Batch `i` of the synthetic data: B examples. */
typedef struct batch {
    vqj_grid context[B * T], targets[B];
} batch;

static batch get_batch(const model *m, int i)
{
    batch b;
    test_model_batch(m, i, B, b.context, b.targets);
    return b;
}

static vqj_status step(model *m, int i, vqj_train_metrics *out)
{
    batch b = get_batch(m, i);
    out->size = sizeof *out;
    return vqj_trainer_step(m->trainer, b.context, b.targets, B, out);
}

/* Every byte of a weights view (gradients excluded), appended to *buf. */
static void snapshot_view(const vqj_weights *w, float **buf, size_t *len)
{
    if (!w)
        return;
    *buf = realloc(*buf, (*len + w->total) * sizeof(float));
    memcpy(*buf + *len, w->data, w->total * sizeof(float));
    *len += w->total;
}

typedef struct snapshot {
    float *data;
    size_t len;
    int64_t micro_step, opt_steps, cb_updates;
    uint64_t dropout_step;
    int cb_init;
} snapshot;

static snapshot take_snapshot(model *m)
{
    snapshot s = {0};
    snapshot_view(vqj_encoder_weights(m->encoder), &s.data, &s.len);
    snapshot_view(vqj_codebook_weights(m->codebook), &s.data, &s.len);
    snapshot_view(vqj_predictor_weights(m->predictor), &s.data, &s.len);
    snapshot_view(vqj_loss_weights(m->loss), &s.data, &s.len);
    snapshot_view(vqj_optimizer_state(m->optimizer), &s.data, &s.len);
    snapshot_view(vqj_trainer_target_encoder_weights(m->trainer), &s.data, &s.len);
    snapshot_view(vqj_trainer_target_predictor_weights(m->trainer), &s.data, &s.len);
    vqj_trainer_get_counters(m->trainer, &s.micro_step, &s.dropout_step);
    s.opt_steps = vqj_optimizer_steps(m->optimizer);
    vqj_codebook_get_progress(m->codebook, &s.cb_updates, &s.cb_init);
    return s;
}

static void assert_same_snapshot(const snapshot *a, const snapshot *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len * sizeof(float));
    assert_int_equal(a->micro_step, b->micro_step);
    assert_int_equal(a->opt_steps, b->opt_steps);
    assert_int_equal(a->dropout_step, b->dropout_step);
    assert_int_equal(a->cb_updates, b->cb_updates);
    assert_int_equal(a->cb_init, b->cb_init);
}

static void test_accumulation(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 2, .invariance = 0, .target = 1});
    int fill = -1;
    const char *name = "feature_mlp.fc1.bias";
    vqj_weights *target = vqj_trainer_target_encoder_weights(m.trainer);
    vqj_weight_info info;
    assert_ok(m.ctx, vqj_weights_info(target, 1, &info));
    assert_string_equal(info.name, name);

    float *t0 = malloc(info.count * sizeof *t0), *t1 = malloc(info.count * sizeof *t1);
    assert_ok(m.ctx, vqj_weights_read(target, name, t0, info.count));
    vqj_train_metrics r;
    assert_ok(m.ctx, step(&m, 0, &r));
    assert_int_equal(r.optimizer_step, 0);
    assert_int_equal(r.applied, 0);
    assert_int_equal(r.skipped, 0);
    assert_int_equal(r.micro_step, 1);
    assert_int_equal(r.step, 0);
    assert_ok(m.ctx, vqj_loss_queue_fill(m.loss, &fill));
    assert_int_equal(fill, 0); /* the queue moves on optimizer steps only */
    assert_ok(m.ctx, vqj_weights_read(target, name, t1, info.count));
    assert_memory_equal(t0, t1, info.count * sizeof *t0); /* and so does the target */

    assert_ok(m.ctx, step(&m, 1, &r));
    assert_int_equal(r.optimizer_step, 1);
    assert_int_equal(r.applied, 1);
    assert_int_equal(r.micro_step, 2);
    assert_int_equal(r.step, 1);
    assert_true(r.grad_norm > 0.0f && isfinite(r.grad_norm));
    /* Both micro-batches' target projections enter the queue. */
    assert_ok(m.ctx, vqj_loss_queue_fill(m.loss, &fill));
    assert_int_equal(fill, 2 * B);
    /* Two optimizer steps in (the warmup's first step runs at lr / W), the
     * online weights have moved and the target follows at 1 - 0.99. */
    assert_ok(m.ctx, step(&m, 2, &r));
    assert_ok(m.ctx, step(&m, 3, &r));
    assert_int_equal(r.step, 2);
    assert_true(r.lr > 0.0f);
    assert_ok(m.ctx, vqj_weights_read(target, name, t1, info.count));
    assert_memory_not_equal(t0, t1, info.count * sizeof *t0);
    assert_ok(m.ctx, vqj_loss_queue_fill(m.loss, &fill));
    assert_int_equal(fill, 4 * B);
    free(t0);
    free(t1);
    model_destroy(&m);
}

/* A NaN feature: the step cannot have a finite loss. */
static void poison(vqj_tokens *tokens)
{
    assert_true(tokens->num_objects > 1);
    tokens->out.features[(size_t)tokens->feature_dim + 4] = NAN;
}

static void test_nonfinite_loss_skipped(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 0, .target = 1});
    vqj_train_metrics r;
    for (int i = 0; i < 3; i++)
        assert_ok(m.ctx, step(&m, i, &r));
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *ctok = NULL, *ttok = NULL;
    assert_ok(m.ctx, vqj_tokens_create(m.ctx, &tp, &ctok));
    assert_ok(m.ctx, vqj_tokens_create(m.ctx, &tp, &ttok));
    batch b = get_batch(&m, 3);
    assert_ok(m.ctx, vqj_tokenize(m.ctx, ctok, b.context, B * T));
    assert_ok(m.ctx, vqj_tokenize(m.ctx, ttok, b.targets, B));

    /* Poisoned context (the online path) and poisoned targets (the target
     * path) are each skipped with everything left as it was. */
    for (int which = 0; which < 2; which++) {
        assert_ok(m.ctx, vqj_tokenize(m.ctx, ctok, b.context, B * T));
        assert_ok(m.ctx, vqj_tokenize(m.ctx, ttok, b.targets, B));
        poison(which == 0 ? ctok : ttok);
        snapshot s0 = take_snapshot(&m);
        r.size = sizeof r;
        assert_ok(m.ctx, vqj_trainer_step_tokens(m.trainer, ctok, ttok, &r));
        if (!r.skipped)
            fail_msg("poisoned %s not skipped: loss %g", which ? "targets" : "context",
                     (double)r.loss);
        assert_int_equal(r.applied, 0);
        snapshot s1 = take_snapshot(&m);
        assert_same_snapshot(&s0, &s1);
        free(s0.data);
        free(s1.data);
    }
    /* Training goes on afterwards. */
    assert_ok(m.ctx, step(&m, 4, &r));
    assert_int_equal(r.skipped, 0);
    assert_int_equal(r.applied, 1);
    vqj_tokens_destroy(ctok);
    vqj_tokens_destroy(ttok);
    model_destroy(&m);
}

/* A NaN gradient (injected into the accumulated encoder gradient between two
 * micro-batches) makes the optimizer refuse the step: the trainer then puts
 * back what the micro-batch changed and drops the cycle. */
static void test_nonfinite_gradient_skipped(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 2, .invariance = 0, .target = 1});
    vqj_train_metrics r;
    for (int i = 0; i < 4; i++)
        assert_ok(m.ctx, step(&m, i, &r));
    assert_ok(m.ctx, step(&m, 4, &r)); /* first half of a cycle */
    assert_int_equal(r.micro_step, 5);
    snapshot s0 = take_snapshot(&m);
    vqj_encoder_weights(m.encoder)->grad[3] = NAN;
    assert_ok(m.ctx, step(&m, 5, &r));
    assert_int_equal(r.optimizer_step, 0);
    assert_int_equal(r.skipped, 1);
    snapshot s1 = take_snapshot(&m);
    /* Parameters, moments, codebook, queue, temperature and target as
     * before the call; the counters back at the start of the cycle. */
    assert_int_equal(s1.micro_step, 4);
    s1.micro_step = s0.micro_step;
    assert_same_snapshot(&s0, &s1);
    /* The poisoned gradient is gone: the next cycle trains normally. */
    assert_ok(m.ctx, step(&m, 6, &r));
    assert_ok(m.ctx, step(&m, 7, &r));
    assert_int_equal(r.applied, 1);
    assert_true(isfinite(r.grad_norm));
    free(s0.data);
    free(s1.data);
    model_destroy(&m);
}

/* The same seed and thread count give bit-identical losses over 100 steps. */
static void test_determinism(void **state)
{
    (void)state;
    enum { STEPS = 100 };
    float losses[2][STEPS];
    for (int run = 0; run < 2; run++) {
        model m;
        model_create(&m, (options){.accum = 1, .invariance = 1, .target = 1});
        for (int i = 0; i < STEPS; i++) {
            vqj_train_metrics r;
            assert_ok(m.ctx, step(&m, i, &r));
            assert_int_equal(r.skipped, 0);
            losses[run][i] = r.loss;
            assert_true(isfinite(r.loss));
        }
        model_destroy(&m);
    }
    assert_memory_equal(losses[0], losses[1], sizeof losses[0]);
}

static void test_invariance_views(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 1, .target = 1});
    vqj_train_metrics r;
    assert_ok(m.ctx, step(&m, 0, &r));
    assert_ok(m.ctx, step(&m, 1, &r));
    assert_true(r.invariance_color > 0.0f);
    assert_true(r.invariance_translation > 0.0f);
    assert_true(r.invariance_symmetry > 0.0f);
    float sum = r.infonce + r.relational + r.commitment + r.sigreg + r.invariance_color +
                r.invariance_translation + r.invariance_symmetry;
    assert_float_equal(r.loss, sum, 1e-5f * fabsf(sum));

    /* From tokens only the palette and flip views have no grids to work on. */
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *ctok = NULL, *ttok = NULL;
    assert_ok(m.ctx, vqj_tokens_create(m.ctx, &tp, &ctok));
    assert_ok(m.ctx, vqj_tokens_create(m.ctx, &tp, &ttok));
    batch b = get_batch(&m, 2);
    assert_ok(m.ctx, vqj_tokenize(m.ctx, ctok, b.context, B * T));
    assert_ok(m.ctx, vqj_tokenize(m.ctx, ttok, b.targets, B));
    r.size = sizeof r;
    assert_ok(m.ctx, vqj_trainer_step_tokens(m.trainer, ctok, ttok, &r));
    assert_true(r.invariance_color == 0.0f);
    assert_true(r.invariance_symmetry == 0.0f);
    assert_true(r.invariance_translation > 0.0f);
    vqj_tokens_destroy(ctok);
    vqj_tokens_destroy(ttok);
    model_destroy(&m);
}

/* Evaluation computes the losses and changes nothing. */
static void test_evaluate(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 2, .invariance = 1, .target = 1});
    vqj_train_metrics r;
    for (int i = 0; i < 3; i++)
        assert_ok(m.ctx, step(&m, i, &r));
    snapshot s0 = take_snapshot(&m);
    vqj_weights *lw = vqj_loss_weights(m.loss);
    float tau_grad0 = lw->grad[0]; /* mid-cycle: the temperature's gradient so far */
    batch b = get_batch(&m, 9);
    r.size = sizeof r;
    assert_ok(m.ctx, vqj_trainer_evaluate(m.trainer, b.context, b.targets, B, &r));
    assert_true(isfinite(r.loss) && r.loss > 0.0f);
    assert_true(r.infonce > 0.0f);
    assert_true(r.invariance_color == 0.0f);
    snapshot s1 = take_snapshot(&m);
    assert_same_snapshot(&s0, &s1);
    assert_true(lw->grad[0] == tau_grad0);
    /* Same batch, same answer: no dropout, nothing updated. */
    vqj_train_metrics r2 = {.size = sizeof r2};
    assert_ok(m.ctx, vqj_trainer_evaluate(m.trainer, b.context, b.targets, B, &r2));
    assert_true(r.loss == r2.loss);
    free(s0.data);
    free(s1.data);
    model_destroy(&m);
}

/* The tokens of batch i: B * T context grids into *ct, B targets into *tt. */
static void tokenize_batch(const model *m, int i, vqj_tokens **ct, vqj_tokens **tt)
{
    batch b = get_batch(m, i);
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(m->ctx, vqj_tokens_create(m->ctx, &tp, ct));
    assert_ok(m->ctx, vqj_tokens_create(m->ctx, &tp, tt));
    assert_ok(m->ctx, vqj_tokenize(m->ctx, *ct, b.context, B * T));
    assert_ok(m->ctx, vqj_tokenize(m->ctx, *tt, b.targets, B));
}

/* The codes the diagnostics count: every context and every target token
 * of a step or an evaluation, except on the k-means++ seeding step. */
static void test_codes_for_usage(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 0, .target = 1});
    vqj_tokens *ct = NULL, *tt = NULL;
    tokenize_batch(&m, 0, &ct, &tt);
    assert_true(ct->num_objects >= K); /* enough tokens for k-means++ to run */
    size_t nc = 99, nt = 99;
    assert_null(vqj_trainer_codes(m.trainer, &nc));
    assert_null(vqj_trainer_target_codes(m.trainer, &nt));
    assert_int_equal(nc, 0);
    assert_int_equal(nt, 0);

    vqj_train_metrics r;
    assert_ok(m.ctx, step(&m, 0, &r));
    int64_t updates;
    int seeded;
    assert_ok(m.ctx, vqj_codebook_get_progress(m.codebook, &updates, &seeded));
    assert_true(seeded);
    assert_null(vqj_trainer_codes(m.trainer, &nc)); /* the seeding step: left out */
    assert_null(vqj_trainer_target_codes(m.trainer, &nt));
    assert_int_equal(nc + nt, 0);

    assert_ok(m.ctx, step(&m, 0, &r));
    const int32_t *c = vqj_trainer_codes(m.trainer, &nc);
    const int32_t *t = vqj_trainer_target_codes(m.trainer, &nt);
    assert_non_null(c);
    assert_non_null(t);
    assert_int_equal(nc, ct->num_objects);
    assert_int_equal(nt, tt->num_objects);
    for (size_t i = 0; i < nt; i++)
        assert_true(t[i] >= 0 && t[i] < K);

    /* An evaluation gives its own batch's codes: the target tokens'
     * codes are those of quantizing the target encoder's output. */
    batch e = get_batch(&m, 3);
    vqj_tokens *ec = NULL, *et = NULL;
    tokenize_batch(&m, 3, &ec, &et);
    vqj_train_metrics v = {.size = sizeof v};
    assert_ok(m.ctx, vqj_trainer_evaluate(m.trainer, e.context, e.targets, B, &v));
    t = vqj_trainer_target_codes(m.trainer, &nt);
    assert_int_equal(nt, et->num_objects);
    vqj_tensor *z = NULL, *q = NULL;
    assert_ok(m.ctx, vqj_tensor_create(m.ctx, 0, 1, &z));
    assert_ok(m.ctx, vqj_tensor_create(m.ctx, 0, 1, &q));
    assert_ok(m.ctx, vqj_encoder_forward(vqj_trainer_target_encoder(m.trainer), et, 0, z));
    int32_t *want = malloc((nt + 1) * sizeof *want);
    assert_ok(m.ctx, vqj_codebook_forward(m.codebook, z, 0, q, want, NULL));
    assert_memory_equal(t, want, nt * sizeof *want);
    free(want);
    vqj_tensor_destroy(z);
    vqj_tensor_destroy(q);
    vqj_tokens_destroy(ct);
    vqj_tokens_destroy(tt);
    vqj_tokens_destroy(ec);
    vqj_tokens_destroy(et);
    model_destroy(&m);
}

/* The codebook's EMA updates per micro-batch: one per online training
 * pass with all_online (the main pass, and each invariance view's context
 * and target passes), one with main. A skipped step takes them all back. */
static void test_ema_update_passes(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 1, .target = 1});
    vqj_trainer_params tp;
    vqj_trainer_params_default(&tp);
    assert_int_equal(tp.ema_update_passes, VQJ_EMA_PASSES_ALL_ONLINE);
    int64_t u0, u1, u2;
    int init;
    vqj_train_metrics r;
    assert_ok(m.ctx, vqj_codebook_get_progress(m.codebook, &u0, &init));
    assert_ok(m.ctx, step(&m, 0, &r));
    assert_ok(m.ctx, vqj_codebook_get_progress(m.codebook, &u1, &init));
    assert_int_equal(u1 - u0, 1 + 2 * 3); /* color, translation, symmetry views */

    /* Tokens only: the translation view alone. */
    vqj_tokens *ct = NULL, *tt = NULL;
    tokenize_batch(&m, 1, &ct, &tt);
    r.size = sizeof r;
    assert_ok(m.ctx, vqj_trainer_step_tokens(m.trainer, ct, tt, &r));
    assert_ok(m.ctx, vqj_codebook_get_progress(m.codebook, &u2, &init));
    assert_int_equal(u2 - u1, 1 + 2);

    /* main: one update a micro-batch, by a second trainer over the first
     * one's modules (it owns them, so it stays until the end). */
    vqj_trainer *owner = m.trainer;
    m.trainer = NULL;
    tp.ema_update_passes = VQJ_EMA_PASSES_MAIN;
    assert_ok(m.ctx, vqj_trainer_create(m.ctx, &tp, NULL, m.encoder, m.codebook, m.predictor,
                                        m.loss, m.optimizer, &m.trainer));
    assert_ok(m.ctx, step(&m, 2, &r));
    assert_ok(m.ctx, vqj_codebook_get_progress(m.codebook, &u1, &init));
    assert_int_equal(u1 - u2, 1);

    /* A value outside the enum is refused. */
    vqj_trainer *bad = NULL;
    tp.ema_update_passes = (vqj_ema_passes)2;
    assert_status(m.ctx, vqj_trainer_create(m.ctx, &tp, NULL, m.encoder, m.codebook,
                                            m.predictor, m.loss, m.optimizer, &bad),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_null(bad);
    vqj_tokens_destroy(ct);
    vqj_tokens_destroy(tt);
    vqj_trainer_destroy(m.trainer);
    m.trainer = owner;
    model_destroy(&m);
}

/* Codes beside the forward path: the trainer still assigns one code per
 * context token and reports the commitment, but the projections (and so
 * the InfoNCE, SIGReg and relational terms) do not depend on the
 * codebook's contents; with straight-through they do. */
static void test_vq_beside(void **state)
{
    (void)state;
    for (int bs = 0; bs <= 1; bs++) {
        model m;
        model_create(&m, (options){.accum = 1, .invariance = 1, .target = 1,
                                   .vq_path = bs ? VQJ_VQ_BESIDE : VQJ_VQ_STRAIGHT_THROUGH});
        vqj_train_metrics r;
        for (int i = 0; i < 4; i++) {
            assert_ok(m.ctx, step(&m, i, &r));
            assert_true(isfinite(r.loss) && r.commitment > 0.0f);
        }
        size_t n = 0;
        const int32_t *codes = vqj_trainer_codes(m.trainer, &n);
        assert_true(codes && n == (size_t)r.context_tokens);
        for (size_t i = 0; i < n; i++)
            assert_true(codes[i] >= 0 && codes[i] < K);
        batch b = get_batch(&m, 7);
        vqj_train_metrics e0 = {.size = sizeof e0}, e1 = {.size = sizeof e1};
        assert_ok(m.ctx, vqj_trainer_evaluate(m.trainer, b.context, b.targets, B, &e0));
        /* vqj_model too: embeddings and predictions before and after. */
        vqj_model *vm = NULL;
        assert_ok(m.ctx, vqj_model_create(m.ctx, NULL, m.encoder, m.codebook, m.predictor,
                                          vqj_trainer_target_encoder(m.trainer),
                                          vqj_trainer_target_predictor(m.trainer), &vm));
        int32_t codes0[B * 16], codes1[B * 16];
        float emb0[B * P], emb1[B * P], pred0[P], pred1[P];
        assert_ok(m.ctx, vqj_model_encode_grids(vm, b.targets, B, codes0, NULL, emb0));
        assert_ok(m.ctx, vqj_model_predict(vm, b.context, T, pred0));
        /* Move every code. */
        vqj_weights *cw = vqj_codebook_weights(m.codebook);
        float emb[K * D];
        assert_ok(m.ctx, vqj_weights_read(cw, "codebook.embedding", emb, K * D));
        for (int i = 0; i < K * D; i++)
            emb[i] += 0.5f * (float)((i * 7) % 5 - 2);
        assert_ok(m.ctx, vqj_weights_write(cw, "codebook.embedding", emb, K * D));
        assert_ok(m.ctx, vqj_trainer_evaluate(m.trainer, b.context, b.targets, B, &e1));
        assert_ok(m.ctx, vqj_model_encode_grids(vm, b.targets, B, codes1, NULL, emb1));
        assert_ok(m.ctx, vqj_model_predict(vm, b.context, T, pred1));
        vqj_model_destroy(vm);
        int same = !memcmp(emb0, emb1, sizeof emb0) && !memcmp(pred0, pred1, sizeof pred0);
        assert_int_equal(same, bs);
        if (bs) {
            assert_true(e0.infonce == e1.infonce && e0.sigreg == e1.sigreg &&
                        e0.relational == e1.relational);
            assert_true(e0.commitment != e1.commitment);
        } else {
            assert_true(e0.infonce != e1.infonce);
        }
        model_destroy(&m);
    }
}

/* objective sigreg trains: the prediction term (in the infonce slot) is an
 * L2 distance of unit vectors, so in [0, 4]. (Its lack of a temperature
 * gradient is tests/test_loss.c's.) */
static void test_objective_sigreg(void **state)
{
    (void)state;
    test_model_spec s = test_model_spec_default();
    s.hidden = D;
    s.codes = K;
    s.projection = P;
    s.objective = VQJ_OBJECTIVE_SIGREG;
    model m;
    test_model_create(&m, &s);
    vqj_train_metrics r;
    for (int i = 0; i < 4; i++) {
        assert_ok(m.ctx, step(&m, i, &r));
        assert_true(!r.skipped && isfinite(r.loss));
        assert_true(r.infonce >= 0.0f && r.infonce <= 4.0f);
        assert_true(r.sigreg > 0.0f);
    }
    model_destroy(&m);
}

/* Object dropout on tokens: p = 0 copies; p = 0.5 keeps a seeded subset
 * of each grid's rows in order, with their adjacency and the object count
 * feature updated; the trainer's step sees fewer context tokens. */
static void test_object_dropout(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 0, .target = 1});
    batch b = get_batch(&m, 3);
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *in, *out;
    assert_ok(m.ctx, vqj_tokens_create(m.ctx, &tp, &in));
    assert_ok(m.ctx, vqj_tokens_create(m.ctx, &tp, &out));
    assert_ok(m.ctx, vqj_tokenize(m.ctx, in, b.context, B * T));
    const size_t F = (size_t)vqj_tokens_feature_dim(in), G = vqj_tokens_num_grids(in);
    assert_ok(m.ctx, vqji_tokens_drop_objects(out, in, 0.0f, 1));
    assert_int_equal(vqj_tokens_num_objects(out), vqj_tokens_num_objects(in));
    assert_memory_equal(vqj_tokens_features(out), vqj_tokens_features(in),
                        vqj_tokens_num_objects(in) * F * sizeof(float));
    assert_ok(m.ctx, vqji_tokens_drop_objects(out, in, 0.5f, 1));
    size_t n_in = vqj_tokens_num_objects(in), n_out = vqj_tokens_num_objects(out);
    assert_true(n_out > 0 && n_out < n_in);
    assert_int_equal(vqj_tokens_num_grids(out), G);
    for (size_t g = 0; g < G; g++) {
        const int32_t *oi = vqj_tokens_offsets(in), *oo = vqj_tokens_offsets(out);
        int ni = oi[g + 1] - oi[g], no = oo[g + 1] - oo[g];
        /* Each kept row is an original row, in order: match greedily. */
        int kept[64], k = 0;
        for (int i = 0; i < ni && k < no; i++)
            if (!memcmp(vqj_tokens_features(in) + (size_t)(oi[g] + i) * F,
                        vqj_tokens_features(out) + (size_t)(oo[g] + k) * F, F * sizeof(float)))
                kept[k++] = i;
        assert_int_equal(k, no);
        const uint8_t *ai = vqj_tokens_adjacency(in, g), *ao = vqj_tokens_adjacency(out, g);
        for (int r = 0; r < no; r++)
            for (int c = 0; c < no; c++)
                assert_int_equal(ao[r * no + c], ai[kept[r] * ni + kept[c]]);
        assert_float_equal(vqji_tokens_grid_features(out)[g * VQJI_GRID_FEATURES + 12],
                           (float)no / (float)tp.max_objects, 1e-7f);
        assert_true(vqj_tokens_grid_ids(out)[g] == vqj_tokens_grid_ids(in)[g]);
    }
    vqj_tokens_destroy(in);
    vqj_tokens_destroy(out);
    model_destroy(&m);

    /* The trainer: the same batch with and without dropout. */
    size_t seen[2];
    for (int d = 0; d < 2; d++) {
        test_model_spec s = test_model_spec_default();
        s.hidden = D;
        s.codes = K;
        s.projection = P;
        s.examples = 400 * B;
        test_model_create(&m, &s);
        vqj_trainer *owner = m.trainer; /* owns the modules: kept to the end */
        vqj_trainer_params trp;
        vqj_trainer_params_default(&trp);
        trp.grad_accum_steps = 1;
        trp.object_dropout = d ? 0.5f : 0.0f;
        assert_ok(m.ctx, vqj_trainer_create(m.ctx, &trp, NULL, m.encoder, m.codebook, m.predictor,
                                            m.loss, m.optimizer, &m.trainer));
        vqj_train_metrics r;
        assert_ok(m.ctx, step(&m, 3, &r));
        assert_true(!r.skipped && isfinite(r.loss));
        seen[d] = (size_t)r.context_tokens;
        vqj_trainer *bad = NULL;
        trp.object_dropout = 1.0f;
        assert_status(m.ctx, vqj_trainer_create(m.ctx, &trp, NULL, m.encoder, m.codebook,
                                                m.predictor, m.loss, m.optimizer, &bad),
                      VQJ_ERR_INVALID_ARGUMENT);
        vqj_trainer_destroy(m.trainer);
        m.trainer = owner;
        model_destroy(&m);
    }
    assert_true(seen[1] < seen[0]);
}

/* Without a target network the online one encodes the targets. */
static void test_without_target_network(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 0, .target = 0});
    assert_null(vqj_trainer_target_encoder_weights(m.trainer));
    vqj_train_metrics r;
    for (int i = 0; i < 3; i++) {
        assert_ok(m.ctx, step(&m, i, &r));
        assert_true(isfinite(r.loss));
    }
    model_destroy(&m);
}

static void test_errors(void **state)
{
    (void)state;
    model m;
    model_create(&m, (options){.accum = 1, .invariance = 0, .target = 1});
    vqj_context *ctx = m.ctx;
    batch b = get_batch(&m, 0);
    vqj_train_metrics r = {.size = sizeof r};
    assert_status(ctx, vqj_trainer_step(m.trainer, b.context, b.targets, 0, &r),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "batch"));
    assert_status(ctx, vqj_trainer_step(m.trainer, NULL, b.targets, B, &r),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_trainer_step(NULL, b.context, b.targets, B, &r),
                     VQJ_ERR_INVALID_ARGUMENT);
    /* A bad grid is named. */
    uint8_t bad[4] = {0, 1, 12, 0};
    b.context[2] = (vqj_grid){2, 2, bad};
    assert_status(ctx, vqj_trainer_step(m.trainer, b.context, b.targets, B, &r),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "grid 2"));

    /* Grid counts that do not make examples. */
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *ctok = NULL, *ttok = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &ctok));
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &ttok));
    b = get_batch(&m, 0);
    assert_ok(ctx, vqj_tokenize(ctx, ctok, b.context, B * T - 1));
    assert_ok(ctx, vqj_tokenize(ctx, ttok, b.targets, B));
    assert_status(ctx, vqj_trainer_step_tokens(m.trainer, ctok, ttok, &r),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "B * 3"));
    vqj_tokens_destroy(ctok);
    vqj_tokens_destroy(ttok);

    /* Bad params and handles that do not fit together. */
    vqj_trainer_params tpar;
    vqj_trainer_params_default(&tpar);
    tpar.grad_accum_steps = 0;
    vqj_trainer *tr = NULL;
    assert_status(ctx, vqj_trainer_create(ctx, &tpar, NULL, m.encoder, m.codebook, m.predictor,
                                          m.loss, m.optimizer, &tr),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "grad_accum_steps"));
    assert_null(tr);
    vqj_trainer_params_default(&tpar);
    vqj_tokenizer_params tk;
    vqj_tokenizer_params_default(&tk);
    tk.max_color_features = 4; /* 17 features: the encoder takes 23 */
    assert_status(ctx, vqj_trainer_create(ctx, &tpar, &tk, m.encoder, m.codebook, m.predictor,
                                          m.loss, m.optimizer, &tr),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "features"));
    assert_status(ctx, vqj_trainer_create(ctx, &tpar, NULL, NULL, m.codebook, m.predictor,
                                          m.loss, m.optimizer, &tr),
                  VQJ_ERR_INVALID_ARGUMENT);
    model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_vq_beside),
        cmocka_unit_test(test_object_dropout),
        cmocka_unit_test(test_objective_sigreg),
        cmocka_unit_test(test_nonfinite_loss_skipped),
        cmocka_unit_test(test_nonfinite_gradient_skipped),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_invariance_views),
        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_codes_for_usage),
        cmocka_unit_test(test_ema_update_passes),
        cmocka_unit_test(test_without_target_network),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
