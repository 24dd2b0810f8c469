/* Parity of the one-call training step with the PyTorch reference: ten
 * micro-steps of vqj_trainer_step() from the reference's initial weights on
 * the reference's batches match tests/data/train.bin (written by
 * tools/reference/train_ref.py) in every loss component, the temperature,
 * the gradient norm, the learning rate, the codebook statistics, the
 * projections of every step and the final weights of the online network,
 * the codebook, the loss (temperature, queue) and the target network.
 * Three runs: grad_accum_steps 2 (five optimizer steps) and 1 (ten), and
 * "switches" (accumulation 1) through the built-in default's predictor
 * path: codes beside the path, grid features, slot embedding, GRU
 * aggregation, the analogy residual and a linear last head layer; and
 * "dropout", the switches run (from an initial state of its own) with
 * object dropout on the context and dead-code replacement by count with a
 * cap: the twin's context token counts (the dropout mask) and re-seeded
 * codes must be the library's.
 *
 * Run from the repository root (or set VQJ_TEST_DATA to the folder holding
 * train.bin). */
#include "testutil.h"

#include "vectors.h"

/* Loss components, temperature, gradient norm and projections: 1e-4
 * relative, the bound (measured: at most 3e-6, in the invariance
 * terms). Each scalar is compared as |c - ref| <= TOL * max(|ref|,
 * VALUE_FLOOR). The floor is for terms at or near 0 (a relational term of a
 * batch without adjacent objects, an invariance term whose view changes
 * little): they are means of squared differences of O(1) vectors, so their
 * float32 rounding is relative to the vectors, not to the tiny result, and
 * a purely relative test would fail on noise. VALUE_FLOOR = 1e-4 compares
 * such terms at 1e-8 absolute, below one ulp of the total (2.4e-7 at
 * 2..4) to which they are added; the one term of this run below the floor
 * (a translation term of 2.5e-5) differs by 2e-10. The code statistics
 * (refreshed, active codes) and the accumulation flags must be equal. */
#define TOL 1e-4
#define VALUE_FLOOR 1e-4
/* The learning rate is computed in double on both sides and rounded once. */
#define LR_TOL 1e-6
/* Final weights (online network, codebook and its EMA state, temperature,
 * queue, target network), max-norm relative per tensor, floor 1e-2 for
 * tensors near 0. Both sides start from the same floats; the float32 run
 * drifts from the float64 reference by its rounding, amplified a little by
 * ten steps: measured 2.7e-6 (switches), 1.1e-5 (accum2) and 5.3e-5
 * (accum1, a layer-0 qkv weight) with the committed file, init seed 146
 * (with seed 145 and the earlier objective: 2.6e-6). Adam divides each
 * gradient component by its own moments: a component whose gradient is
 * small beside its float rounding (the weight decay, 1e-4 |p|, keeps it
 * away from eps = 1e-8 but not from that) moves by up to lr per step on
 * rounding alone, which is where the larger figures come from. 1e-4 leaves
 * a margin of 2 on this machine, while the smallest deviation from the
 * documented step tried (one translation for the whole batch instead of
 * one per example) moves the weights by 2e-3 (tools/reference/README.md,
 * "train.bin"). */
#define WEIGHT_TOL 1e-4
#define WEIGHT_FLOOR 1e-2

static vqjt_file *load_ref(void)
{
    char path[512], err[256];
    const char *dir = getenv("VQJ_TEST_DATA");
    snprintf(path, sizeof path, "%s/train.bin", dir ? dir : "tests/data");
    vqjt_file *f = vqjt_load(path, err, sizeof err);
    if (!f)
        fail_msg("%s (regenerate with /usr/bin/python3 tools/reference/train_ref.py)", err);
    return f;
}

static int cfg_int(const vqjt_file *f, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "config.%s", name);
    const int32_t *v = vqjt_i32(f, key, NULL);
    if (!v)
        fail_msg("train.bin has no i32 %s", key);
    return (int)v[0];
}

static float cfg_float(const vqjt_file *f, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "config.%s", name);
    const float *v = vqjt_f32(f, key, NULL);
    if (!v)
        fail_msg("train.bin has no f32 %s", key);
    return v[0];
}

static const float *ref_f32(const vqjt_file *f, const char *name, size_t expect)
{
    size_t n;
    const float *x = vqjt_f32(f, name, &n);
    if (!x)
        fail_msg("train.bin has no f32 tensor %s", name);
    if (n != expect)
        fail_msg("train.bin: %s has %zu values, expected %zu", name, n, expect);
    return x;
}

static const int32_t *ref_i32(const vqjt_file *f, const char *name, size_t expect)
{
    size_t n;
    const int32_t *x = vqjt_i32(f, name, &n);
    if (!x)
        fail_msg("train.bin has no i32 tensor %s", name);
    if (n != expect)
        fail_msg("train.bin: %s has %zu values, expected %zu", name, n, expect);
    return x;
}

/* Everything the run needs, built through the public API. */
typedef struct rig {
    vqj_context *ctx;
    vqj_encoder *encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor;
    vqj_loss *loss;
    vqj_optimizer *optimizer;
    vqj_trainer *trainer;
    vqj_grid *grids; /* steps * (B*T + B) */
    int steps, batch, window, projection;
} rig;

/* The queue's grid ids (the duplicate-negative mask's bookkeeping) have no
 * counterpart in the twin, whose batches hold no duplicate target grids:
 * they stay as created and are not compared. */
static int twin_lacks(const char *name) { return strcmp(name, "loss.queue_ids") == 0; }

/* Overwrite every tensor of a view with "<init><name>" (init: "init.", or
 * a run's own "dropout.init."); a tensor the file lacks fails the test, so
 * the EMA state and the queue are set too. */
static void write_init(vqj_context *ctx, const vqjt_file *f, vqj_weights *w, const char *init)
{
    for (size_t i = 0; i < vqj_weights_num_tensors(w); i++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        if (twin_lacks(info.name))
            continue;
        char key[160];
        snprintf(key, sizeof key, "%s%s", init, info.name);
        const float *x = ref_f32(f, key, info.count);
        assert_ok(ctx, vqj_weights_write(w, info.name, x, info.count));
    }
}

/* An int of run `pre` ("accum2.", "switches."), or `fallback`. */
static int run_int(const vqjt_file *f, const char *pre, const char *name, int fallback)
{
    char key[160];
    snprintf(key, sizeof key, "%s%s", pre, name);
    return vqjt_int(f, key, fallback);
}

/* A float of run `pre`, or `fallback`. */
static float run_float(const vqjt_file *f, const char *pre, const char *name, float fallback)
{
    char key[160];
    snprintf(key, sizeof key, "%s%s", pre, name);
    return vqjt_float(f, key, fallback);
}

static void rig_create(rig *r, const vqjt_file *f, const char *pre)
{
    memset(r, 0, sizeof *r);
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    cp.seed = (uint64_t)cfg_int(f, "seed"); /* SIGReg and the views draw from it */
    assert_int_equal(vqj_context_create(&cp, &r->ctx), VQJ_OK);
    vqj_context *ctx = r->ctx;
    int D = cfg_int(f, "hidden_dim"), P = cfg_int(f, "projection_dim");
    r->steps = cfg_int(f, "steps");
    r->batch = cfg_int(f, "batch");
    r->window = cfg_int(f, "context_window");
    r->projection = P;

    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    ep.feature_dim = cfg_int(f, "feature_dim");
    ep.hidden_dim = D;
    ep.relational_layers = cfg_int(f, "layers");
    ep.relational_heads = cfg_int(f, "heads");
    ep.relational_dropout = (float)cfg_int(f, "relational_dropout"); /* 0 */
    assert_ok(ctx, vqj_encoder_create(ctx, &ep, &r->encoder));

    vqj_codebook_params bp;
    vqj_codebook_params_default(&bp);
    bp.num_embeddings = cfg_int(f, "num_embeddings");
    bp.dim = D;
    bp.commitment_cost = cfg_float(f, "commitment_cost");
    bp.ema_decay = cfg_float(f, "ema_decay");
    bp.refresh_enabled = 1;
    bp.refresh_interval = cfg_int(f, "refresh_interval");
    bp.refresh_usage_threshold = cfg_float(f, "refresh_threshold");
    bp.kmeans_init = cfg_int(f, "kmeans_init"); /* 0 */
    bp.dead_code_threshold = run_float(f, pre, "dead_code_threshold", 0.0f);
    bp.dead_code_max_per_step = run_int(f, pre, "dead_code_max_per_step", 0);
    assert_ok(ctx, vqj_codebook_create(ctx, &bp, &r->codebook));

    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    pp.hidden_dim = D;
    pp.projection_dim = P;
    pp.projection_layers = cfg_int(f, "projection_layers");
    pp.projection_activation = (vqj_activation)cfg_int(f, "projection_activation");
    pp.aggregator = (vqj_aggregator)run_int(f, pre, "aggregator", VQJ_AGG_MEAN);
    pp.final_activation = run_int(f, pre, "final_activation", 1);
    pp.slot_embedding = run_int(f, pre, "slot_embedding", 0);
    pp.analogy_residual = run_int(f, pre, "analogy_residual", 0);
    pp.grid_features = run_int(f, pre, "grid_features", 0);
    pp.vq_path = (vqj_vq_path)run_int(f, pre, "vq_path", VQJ_VQ_STRAIGHT_THROUGH);
    pp.context_window = r->window;
    assert_ok(ctx, vqj_predictor_create(ctx, &pp, &r->predictor));

    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    lp.projection_dim = P;
    lp.queue_size = cfg_int(f, "queue_size");
    lp.temperature = cfg_float(f, "temperature");
    lp.temperature_min = cfg_float(f, "temperature_min");
    lp.temperature_max = cfg_float(f, "temperature_max");
    lp.learnable_temperature = 1;
    lp.infonce_weight = cfg_float(f, "infonce_weight");
    lp.relational_weight = cfg_float(f, "relational_weight");
    lp.context_self_weight = cfg_float(f, "context_self_weight");
    lp.max_objects = cfg_int(f, "max_objects");
    lp.sigreg_weight = cfg_float(f, "sigreg_weight");
    lp.sigreg_num_slices = cfg_int(f, "sigreg_num_slices");
    lp.sigreg_num_points = cfg_int(f, "sigreg_num_points");
    lp.color_weight = cfg_float(f, "color_weight");
    lp.translation_weight = cfg_float(f, "translation_weight");
    lp.symmetry_weight = cfg_float(f, "symmetry_weight");
    assert_ok(ctx, vqj_loss_create(ctx, &lp, &r->loss));

    /* The weights go in before the trainer copies the target network. */
    char init[160];
    snprintf(init, sizeof init, "%sinit.codebook.embedding", pre);
    snprintf(init, sizeof init, "%s", vqjt_get(f, init) ? pre : "");
    strcat(init, "init.");
    write_init(ctx, f, vqj_encoder_weights(r->encoder), init);
    write_init(ctx, f, vqj_codebook_weights(r->codebook), init);
    write_init(ctx, f, vqj_predictor_weights(r->predictor), init);
    write_init(ctx, f, vqj_loss_weights(r->loss), init);

    vqj_optimizer_params op;
    vqj_optimizer_params_default(&op);
    op.kind = VQJ_OPT_ADAM;
    op.lr = cfg_float(f, "lr");
    op.beta1 = cfg_float(f, "beta1");
    op.beta2 = cfg_float(f, "beta2");
    op.eps = cfg_float(f, "eps");
    op.weight_decay = cfg_float(f, "weight_decay");
    op.max_grad_norm = cfg_float(f, "max_grad_norm");
    op.schedule = (vqj_lr_schedule)cfg_int(f, "schedule");
    op.warmup_steps = cfg_int(f, "warmup_steps");
    op.total_steps = cfg_int(f, "total_steps");
    op.min_lr_scale = cfg_float(f, "min_lr_scale");
    vqj_weights *groups[] = {vqj_encoder_weights(r->encoder), vqj_codebook_weights(r->codebook),
                             vqj_predictor_weights(r->predictor), vqj_loss_weights(r->loss)};
    assert_ok(ctx, vqj_optimizer_create(ctx, &op, groups, 4, &r->optimizer));

    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.max_objects = cfg_int(f, "max_objects");
    vqj_trainer_params trp;
    vqj_trainer_params_default(&trp);
    trp.grad_accum_steps = run_int(f, pre, "grad_accum_steps", -1);
    trp.target_ema_decay = cfg_float(f, "target_ema_decay");
    trp.use_target_encoder = 1;
    trp.translation_max_delta = cfg_float(f, "translation_max_delta");
    trp.symmetry_modes = cfg_int(f, "symmetry_modes");
    trp.background = (uint16_t)cfg_int(f, "background");
    trp.ema_update_passes = (vqj_ema_passes)run_int(f, pre, "ema_update_passes", -1);
    trp.object_dropout = run_float(f, pre, "object_dropout", 0.0f);
    assert_ok(ctx, vqj_trainer_create(ctx, &trp, &tp, r->encoder, r->codebook, r->predictor,
                                      r->loss, r->optimizer, &r->trainer));

    size_t per = (size_t)r->batch * (size_t)(r->window + 1), n = per * (size_t)r->steps;
    const int32_t *shape = ref_i32(f, "grids.shape", 2 * n);
    const int32_t *off = ref_i32(f, "grids.cell_offsets", n + 1);
    const uint8_t *cells = vqjt_u8(f, "grids.cells", NULL);
    assert_non_null(cells);
    r->grids = calloc(n, sizeof *r->grids);
    assert_non_null(r->grids);
    for (size_t i = 0; i < n; i++)
        r->grids[i] = (vqj_grid){shape[2 * i], shape[2 * i + 1], cells + off[i]};
}

static void rig_destroy(rig *r)
{
    vqj_trainer_destroy(r->trainer);
    vqj_optimizer_destroy(r->optimizer);
    vqj_loss_destroy(r->loss);
    vqj_predictor_destroy(r->predictor);
    vqj_codebook_destroy(r->codebook);
    vqj_encoder_destroy(r->encoder);
    vqj_context_destroy(r->ctx);
    free(r->grids);
}

static double scalar_err(double got, double want, double floor_)
{
    double scale = fabs(want) > floor_ ? fabs(want) : floor_;
    double d = fabs(got - want);
    return isnan(d) ? INFINITY : d / scale;
}

enum { NUM_VALUES = 10 };
static const char *const VALUE_NAMES[NUM_VALUES] = {
    "infonce",          "relational",  "commitment", "sigreg",
    "invariance_color", "invariance_translation",    "invariance_symmetry",
    "total",            "temperature", "grad_norm"};

static float metric_value(const vqj_train_metrics *m, int k)
{
    const float v[NUM_VALUES] = {m->infonce,          m->relational,
                                 m->commitment,       m->sigreg,
                                 m->invariance_color, m->invariance_translation,
                                 m->invariance_symmetry, m->loss,
                                 m->temperature,      m->grad_norm};
    return v[k];
}

/* Compare every tensor of a view with "<prefix><name>"; returns the largest
 * relative error and names it. */
static double compare_view(vqj_context *ctx, const vqjt_file *f, const vqj_weights *w,
                           const char *prefix, char *worst, size_t worst_len)
{
    double max_err = 0.0;
    for (size_t i = 0; i < vqj_weights_num_tensors(w); i++) {
        vqj_weight_info info;
        assert_ok(ctx, vqj_weights_info(w, i, &info));
        if (twin_lacks(info.name))
            continue;
        char key[160];
        snprintf(key, sizeof key, "%s%s", prefix, info.name);
        const float *want = ref_f32(f, key, info.count);
        float *got = malloc(info.count * sizeof *got);
        assert_non_null(got);
        assert_ok(ctx, vqj_weights_read(w, info.name, got, info.count));
        double e = test_rel_err(got, want, info.count, WEIGHT_FLOOR);
        if (e > max_err || isnan(e)) {
            max_err = isnan(e) ? INFINITY : e;
            snprintf(worst, worst_len, "%s", key);
        }
        free(got);
    }
    return max_err;
}

static void run_parity(const char *pre)
{
    vqjt_file *f = load_ref();
    rig r;
    rig_create(&r, f, pre);
    vqj_context *ctx = r.ctx;
    char key[160];

    size_t S = (size_t)r.steps, BP = (size_t)r.batch * (size_t)r.projection;
    const float *want[NUM_VALUES];
    for (int k = 0; k < NUM_VALUES; k++) {
        snprintf(key, sizeof key, "%s%s", pre, VALUE_NAMES[k]);
        want[k] = ref_f32(f, key, S);
    }
    snprintf(key, sizeof key, "%slr", pre);
    const float *want_lr = ref_f32(f, key, S);
    snprintf(key, sizeof key, "%sperplexity", pre);
    const float *want_perp = ref_f32(f, key, S);
    snprintf(key, sizeof key, "%soptimizer_step", pre);
    const int32_t *want_opt = ref_i32(f, key, S);
    snprintf(key, sizeof key, "%srefreshed", pre);
    const int32_t *want_refreshed = ref_i32(f, key, S);
    snprintf(key, sizeof key, "%sactive_codes", pre);
    const int32_t *want_active = ref_i32(f, key, S);
    snprintf(key, sizeof key, "%sdead_replaced", pre);
    const int32_t *want_replaced = ref_i32(f, key, S);
    snprintf(key, sizeof key, "%scontext_tokens", pre);
    const int32_t *want_tokens = ref_i32(f, key, S);
    const int cap = run_int(f, pre, "dead_code_max_per_step", 0);
    snprintf(key, sizeof key, "%sc", pre);
    const float *want_c = ref_f32(f, key, S * BP);
    snprintf(key, sizeof key, "%st", pre);
    const float *want_t = ref_f32(f, key, S * BP);

    double err[NUM_VALUES] = {0}, err_lr = 0, err_perp = 0, err_c = 0, err_t = 0;
    int refreshes = 0, replacements = 0, capped = 0;
    float *proj = malloc(BP * sizeof *proj);
    assert_non_null(proj);
    size_t per = (size_t)r.batch * (size_t)(r.window + 1), nctx = (size_t)r.batch * r.window;
    for (size_t s = 0; s < S; s++) {
        const vqj_grid *g = r.grids + s * per;
        vqj_train_metrics m = {.size = sizeof m};
        assert_ok(ctx, vqj_trainer_step(r.trainer, g, g + nctx, r.batch, &m));
        assert_int_equal(m.skipped, 0);
        assert_int_equal(m.optimizer_step, want_opt[s]);
        assert_int_equal(m.applied, want_opt[s]);
        assert_int_equal(m.refreshed, want_refreshed[s]);
        assert_int_equal(m.active_codes, want_active[s]);
        /* the dropout mask and the dead codes: the twin's counts */
        assert_int_equal(m.context_tokens, want_tokens[s]);
        assert_int_equal(m.dead_replaced, want_replaced[s]);
        refreshes += m.refreshed > 0;
        replacements += m.dead_replaced > 0;
        capped += cap > 0 && m.dead_replaced == cap;
        for (int k = 0; k < NUM_VALUES; k++) {
            double e = scalar_err(metric_value(&m, k), want[k][s], VALUE_FLOOR);
            if (e > err[k])
                err[k] = e;
            if (e > TOL)
                fail_msg("%s step %zu: %s is %.9g, reference %.9g (relative %.3g)", pre, s,
                         VALUE_NAMES[k], (double)metric_value(&m, k), (double)want[k][s], e);
        }
        double e = scalar_err(m.lr, want_lr[s], 1e-30);
        err_lr = e > err_lr ? e : err_lr;
        e = scalar_err(m.perplexity, want_perp[s], 1.0);
        err_perp = e > err_perp ? e : err_perp;
        assert_ok(ctx, vqj_tensor_read(vqj_trainer_context_projections(r.trainer), proj, BP));
        e = test_rel_err(proj, want_c + s * BP, BP, 0.0);
        err_c = e > err_c ? e : err_c;
        assert_ok(ctx, vqj_tensor_read(vqj_trainer_target_projections(r.trainer), proj, BP));
        e = test_rel_err(proj, want_t + s * BP, BP, 0.0);
        err_t = e > err_t ? e : err_t;
    }
    free(proj);
    /* The run is meant to exercise these; a regenerated file must too (the
     * refresh finds few dead codes where replacement by count keeps them
     * alive). */
    if (run_float(f, pre, "dead_code_threshold", 0.0f) > 0.0f) {
        if (!(refreshes >= 1 && replacements >= 2 && capped >= 1))
            fail_msg("%s: refreshes in %d steps, dead-code replacement in %d, at the cap in %d",
                     pre, refreshes, replacements, capped);
    } else {
        assert_true(refreshes >= 2);
    }

    char worst[160] = "", where[160] = "";
    double err_w = 0.0, e;
    snprintf(key, sizeof key, "%sfinal.", pre);
    vqj_weights *views[] = {vqj_encoder_weights(r.encoder), vqj_codebook_weights(r.codebook),
                            vqj_predictor_weights(r.predictor), vqj_loss_weights(r.loss)};
    for (size_t v = 0; v < 4; v++)
        if ((e = compare_view(ctx, f, views[v], key, where, sizeof where)) > err_w || isinf(e)) {
            err_w = e;
            snprintf(worst, sizeof worst, "%s", where);
        }
    snprintf(key, sizeof key, "%starget.", pre);
    vqj_weights *targets[] = {vqj_trainer_target_encoder_weights(r.trainer),
                              vqj_trainer_target_predictor_weights(r.trainer)};
    for (size_t v = 0; v < 2; v++)
        if ((e = compare_view(ctx, f, targets[v], key, where, sizeof where)) > err_w || isinf(e)) {
            err_w = e;
            snprintf(worst, sizeof worst, "%s", where);
        }

    printf("%s %zu micro-steps: max |c - ref| / max(|ref|, floor)\n", pre, S);
    for (int k = 0; k < NUM_VALUES; k++)
        printf("  %-24s %.3g\n", VALUE_NAMES[k], err[k]);
    printf("  %-24s %.3g\n  %-24s %.3g\n  %-24s %.3g\n  %-24s %.3g\n", "lr", err_lr,
           "perplexity", err_perp, "context projections", err_c, "target projections", err_t);
    printf("  %-24s %.3g (%s)\n", "final weights", err_w, worst);

    assert_true(err_lr <= LR_TOL);
    assert_true(err_perp <= TOL);
    if (err_c > TOL || err_t > TOL)
        fail_msg("projections differ: c %.3g, t %.3g", err_c, err_t);
    if (err_w > WEIGHT_TOL)
        fail_msg("final weights differ: %s at %.3g", worst, err_w);
    rig_destroy(&r);
    vqjt_free(f);
}

static void test_accum2_matches_torch(void **state)
{
    (void)state;
    run_parity("accum2.");
}

static void test_accum1_matches_torch(void **state)
{
    (void)state;
    run_parity("accum1.");
}

static void test_switches_match_torch(void **state)
{
    (void)state;
    run_parity("switches.");
}

static void test_dropout_dead_codes_match_torch(void **state)
{
    (void)state;
    run_parity("dropout.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accum2_matches_torch),
        cmocka_unit_test(test_accum1_matches_torch),
        cmocka_unit_test(test_switches_match_torch),
        cmocka_unit_test(test_dropout_dead_codes_match_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
