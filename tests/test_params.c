/* Versioned params structs (docs/api-conventions.md): a caller built
 * against the first published header passes a struct of its first size
 * (core/params.h states each once); the library must accept it, read
 * nothing past it, and give the fields appended since their defaults. */
#include "testutil.h"

#include "core/params.h"
#include "loss/loss.h"
#include "model/codebook.h"
#include "model/encoder.h"
#include "model/predictor.h"
#include "train/trainer.h"

/* A struct as an old caller passes it: the defaults, size = v1, and every
 * byte past v1 (fields that caller does not have) garbage. */
#define OLD(type, var, v1)                                                                     \
    union {                                                                                    \
        type p;                                                                                \
        unsigned char bytes[sizeof(type)];                                                     \
    } var##_u;                                                                                 \
    type##_default(&var##_u.p);                                                                \
    memset(var##_u.bytes + (v1), 0xA5, sizeof(type) - (v1));                                   \
    var##_u.p.size = (v1);                                                                     \
    type *var = &var##_u.p

/* The same struct one byte short of v1 is refused. */
#define TOO_OLD(ctx, call, var, v1)                                                            \
    do {                                                                                       \
        var->size = (v1) - 1;                                                                  \
        assert_status(ctx, call, VQJ_ERR_INVALID_ARGUMENT);                                    \
        var->size = (v1);                                                                      \
    } while (0)

/* A result struct of its first published size, followed by guard bytes:
 * filled up to that size, nothing past it; one byte less is refused. */
#define RESULT(type, var, v1)                                                                  \
    union {                                                                                    \
        type r;                                                                                \
        unsigned char bytes[sizeof(type) + 8];                                                 \
    } var;                                                                                     \
    memset(var.bytes, 0xA5, sizeof var.bytes);                                                 \
    var.r.size = (v1)
#define RESULT_WRITTEN_UP_TO(var, v1)                                                          \
    do {                                                                                       \
        assert_int_equal(var.r.size, (v1));                                                    \
        for (size_t i_ = (v1); i_ < sizeof var.bytes; i_++)                                    \
            assert_int_equal(var.bytes[i_], 0xA5);                                             \
    } while (0)

static void test_context_v1(void **state)
{
    (void)state;
    OLD(vqj_context_params, cp, VQJI_V1_CONTEXT_PARAMS);
    cp->num_threads = 1;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(cp, &ctx), VQJ_OK);
    vqj_context_destroy(ctx);
    cp->size = VQJI_V1_CONTEXT_PARAMS - 1;
    assert_int_equal(vqj_context_create(cp, &ctx), VQJ_ERR_INVALID_ARGUMENT);
}

/* The modules: each accepts its v1 struct; the fields added since (where
 * there are any) hold their defaults. */
static void test_modules_v1(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    /* Where a refused create would write (it must not). */
    vqj_tokens *spare_tokens = NULL;
    vqj_encoder *spare_enc = NULL;
    vqj_codebook *spare_cb = NULL;
    vqj_predictor *spare_pred = NULL;
    vqj_loss *spare_loss = NULL;
    vqj_optimizer *spare_opt = NULL;
    vqj_trainer *spare_tr = NULL;
    OLD(vqj_tokenizer_params, tp, VQJI_V1_TOKENIZER_PARAMS);
    vqj_tokens *tokens = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, tp, &tokens));
    TOO_OLD(ctx, vqj_tokens_create(ctx, tp, &spare_tokens), tp, VQJI_V1_TOKENIZER_PARAMS);

    OLD(vqj_encoder_params, ep, VQJI_V1_ENCODER_PARAMS);
    ep->hidden_dim = 16;
    ep->relational_heads = 4;
    vqj_encoder *enc = NULL;
    assert_ok(ctx, vqj_encoder_create(ctx, ep, &enc));
    TOO_OLD(ctx, vqj_encoder_create(ctx, ep, &spare_enc), ep, VQJI_V1_ENCODER_PARAMS);

    vqj_codebook_params cd;
    vqj_codebook_params_default(&cd);
    OLD(vqj_codebook_params, bp, VQJI_V1_CODEBOOK_PARAMS);
    bp->num_embeddings = 8;
    bp->dim = 16;
    vqj_codebook *cb = NULL;
    assert_ok(ctx, vqj_codebook_create(ctx, bp, &cb));
    const vqj_codebook_params *bg = vqji_codebook_params(cb);
    assert_true(bg->dead_code_threshold == cd.dead_code_threshold);
    assert_int_equal(bg->quantizer, cd.quantizer);
    assert_int_equal(bg->gradient_estimator, cd.gradient_estimator);
    TOO_OLD(ctx, vqj_codebook_create(ctx, bp, &spare_cb), bp, VQJI_V1_CODEBOOK_PARAMS);
    /* A 0.1 program passes its sizeof(): v1 and the tail padding, garbage
     * there, where today's struct has dead_code_threshold. */
    bp->size = VQJI_V1_PADDED(VQJI_V1_CODEBOOK_PARAMS);
    assert_true(bp->size > VQJI_V1_CODEBOOK_PARAMS);
    vqj_codebook *cb_padded = NULL;
    assert_ok(ctx, vqj_codebook_create(ctx, bp, &cb_padded));
    assert_true(vqji_codebook_params(cb_padded)->dead_code_threshold == cd.dead_code_threshold);
    vqj_codebook_destroy(cb_padded);
    bp->size = VQJI_V1_CODEBOOK_PARAMS;

    vqj_predictor_params pd;
    vqj_predictor_params_default(&pd);
    OLD(vqj_predictor_params, pp, VQJI_V1_PREDICTOR_PARAMS);
    pp->hidden_dim = 16;
    pp->projection_dim = 8;
    vqj_predictor *pred = NULL;
    assert_ok(ctx, vqj_predictor_create(ctx, pp, &pred));
    const vqj_predictor_params *pg = vqji_predictor_params(pred);
    assert_int_equal(pg->final_activation, pd.final_activation);
    assert_int_equal(pg->vq_path, pd.vq_path);
    assert_int_equal(pg->analogy_residual, pd.analogy_residual);
    TOO_OLD(ctx, vqj_predictor_create(ctx, pp, &spare_pred), pp, VQJI_V1_PREDICTOR_PARAMS);

    vqj_loss_params ld;
    vqj_loss_params_default(&ld);
    OLD(vqj_loss_params, lp, VQJI_V1_LOSS_PARAMS);
    lp->projection_dim = 8;
    lp->queue_size = 16;
    lp->sigreg_num_slices = 4;
    vqj_loss *loss = NULL;
    assert_ok(ctx, vqj_loss_create(ctx, lp, &loss));
    const vqj_loss_params *lg = vqji_loss_params(loss);
    assert_int_equal(lg->mask_duplicate_negatives, ld.mask_duplicate_negatives);
    assert_int_equal(lg->objective, ld.objective);
    TOO_OLD(ctx, vqj_loss_create(ctx, lp, &spare_loss), lp, VQJI_V1_LOSS_PARAMS);
    /* Results are written up to the caller's size only. */
    union {
        vqj_loss_values v;
        unsigned char bytes[sizeof(vqj_loss_values) + 8];
    } lv;
    memset(lv.bytes, 0xA5, sizeof lv.bytes);
    lv.v.size = VQJI_V1_LOSS_VALUES;
    assert_ok(ctx, vqj_loss_get_values(loss, &lv.v));
    assert_int_equal(lv.v.size, VQJI_V1_LOSS_VALUES);
    for (size_t i = VQJI_V1_LOSS_VALUES; i < sizeof lv.bytes; i++)
        assert_int_equal(lv.bytes[i], 0xA5);

    OLD(vqj_optimizer_params, op, VQJI_V1_OPTIMIZER_PARAMS);
    vqj_weights *groups[] = {vqj_encoder_weights(enc), vqj_codebook_weights(cb),
                             vqj_predictor_weights(pred), vqj_loss_weights(loss)};
    vqj_optimizer *opt = NULL;
    assert_ok(ctx, vqj_optimizer_create(ctx, op, groups, 4, &opt));
    TOO_OLD(ctx, vqj_optimizer_create(ctx, op, groups, 4, &spare_opt), op,
            VQJI_V1_OPTIMIZER_PARAMS);

    vqj_trainer_params trd;
    vqj_trainer_params_default(&trd);
    OLD(vqj_trainer_params, trp, VQJI_V1_TRAINER_PARAMS);
    vqj_trainer *tr = NULL;
    assert_ok(ctx, vqj_trainer_create(ctx, trp, tp, enc, cb, pred, loss, opt, &tr));
    const vqj_trainer_params *tg = vqji_trainer_params(tr);
    assert_int_equal(tg->ema_update_passes, trd.ema_update_passes);
    assert_true(tg->object_dropout == trd.object_dropout);
    TOO_OLD(ctx, vqj_trainer_create(ctx, trp, tp, enc, cb, pred, loss, opt, &spare_tr), trp,
            VQJI_V1_TRAINER_PARAMS);

    /* The trainer's metrics are written up to the caller's size. */
    vqj_dataset_params dsp;
    vqj_synthetic_params syp;
    vqj_dataset_params_default(&dsp);
    vqj_synthetic_params_default(&syp);
    syp.num_examples = 2;
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, &dsp, &syp, &ds));
    const int T = vqj_dataset_context_window(ds);
    vqj_grid cgrids[2 * 8], tgrids[2];
    assert_true(T <= 8);
    for (int b = 0; b < 2; b++) {
        const vqj_grid *cg, *tgr;
        assert_ok(ctx, vqj_dataset_example(ds, (size_t)b, &cg, &tgr));
        memcpy(cgrids + b * T, cg, (size_t)T * sizeof *cg);
        tgrids[b] = *tgr;
    }
    RESULT(vqj_train_metrics, tm, VQJI_V1_TRAIN_METRICS);
    assert_ok(ctx, vqj_trainer_evaluate(tr, cgrids, tgrids, 2, &tm.r));
    RESULT_WRITTEN_UP_TO(tm, VQJI_V1_TRAIN_METRICS);
    assert_int_equal(tm.r.batch, 2);
    assert_true(isfinite(tm.r.loss));
    tm.r.size = VQJI_V1_TRAIN_METRICS - 1;
    assert_status(ctx, vqj_trainer_evaluate(tr, cgrids, tgrids, 2, &tm.r),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_trainer_step(tr, cgrids, tgrids, 2, &tm.r), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "vqj_train_metrics"));
    vqj_dataset_destroy(ds);

    assert_true(!spare_tokens && !spare_enc && !spare_cb && !spare_pred && !spare_loss &&
                !spare_opt && !spare_tr);
    vqj_trainer_destroy(tr);
    vqj_optimizer_destroy(opt);
    vqj_loss_destroy(loss);
    vqj_predictor_destroy(pred);
    vqj_codebook_destroy(cb);
    vqj_encoder_destroy(enc);
    vqj_tokens_destroy(tokens);
    vqj_context_destroy(ctx);
}

static void test_data_v1(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_dataset *spare_data = NULL;
    OLD(vqj_dataset_params, dp, VQJI_V1_DATASET_PARAMS);
    OLD(vqj_synthetic_params, sp, VQJI_V1_SYNTHETIC_PARAMS);
    sp->num_examples = 4;
    vqj_dataset *data = NULL;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, dp, sp, &data));
    assert_int_equal(vqj_dataset_num_examples(data), 4);
    TOO_OLD(ctx, vqj_dataset_synthetic(ctx, dp, sp, &spare_data), dp, VQJI_V1_DATASET_PARAMS);
    TOO_OLD(ctx, vqj_dataset_synthetic(ctx, dp, sp, &spare_data), sp, VQJI_V1_SYNTHETIC_PARAMS);

    OLD(vqj_augment_params, ap, VQJI_V1_AUGMENT_PARAMS);
    const vqj_grid *cg, *tg;
    assert_ok(ctx, vqj_dataset_example(data, 0, &cg, &tg));
    uint8_t cells[VQJ_MAX_GRID_SIDE * VQJ_MAX_GRID_SIDE];
    assert_ok(ctx, vqj_augment_grid(ctx, ap, 7, tg, cells));
    TOO_OLD(ctx, vqj_augment_grid(ctx, ap, 7, tg, cells), ap, VQJI_V1_AUGMENT_PARAMS);
    assert_null(spare_data);
    vqj_dataset_destroy(data);
    vqj_context_destroy(ctx);
}

static void test_results_v1(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();

    const float x[8] = {1, 2, 0, 1, 3, 5, 2, 2};
    RESULT(vqj_embedding_metrics, em, VQJI_V1_EMBEDDING_METRICS);
    assert_ok(ctx, vqj_embedding_metrics_compute(ctx, x, 4, 2, &em.r));
    RESULT_WRITTEN_UP_TO(em, VQJI_V1_EMBEDDING_METRICS);
    assert_int_equal(em.r.samples, 4);
    assert_true(em.r.variance > 0);
    em.r.size = VQJI_V1_EMBEDDING_METRICS - 1;
    assert_status(ctx, vqj_embedding_metrics_compute(ctx, x, 4, 2, &em.r),
                  VQJ_ERR_INVALID_ARGUMENT);

    vqj_metrics_window *w = NULL;
    assert_ok(ctx, vqj_metrics_window_create(ctx, 2, 8, 4, &w));
    assert_ok(ctx, vqj_metrics_window_add_projections(w, x, x, 4));
    RESULT(vqj_window_metrics, wm, VQJI_V1_WINDOW_METRICS);
    assert_ok(ctx, vqj_metrics_window_compute(w, &wm.r));
    RESULT_WRITTEN_UP_TO(wm, VQJI_V1_WINDOW_METRICS);
    assert_int_equal(wm.r.context.samples, 4);
    wm.r.size = VQJI_V1_WINDOW_METRICS - 1;
    assert_status(ctx, vqj_metrics_window_compute(w, &wm.r), VQJ_ERR_INVALID_ARGUMENT);
    vqj_metrics_window_destroy(w);

    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    RESULT(vqj_run_params, rp, VQJI_V1_RUN_PARAMS);
    assert_ok(ctx, vqj_config_run(cfg, &rp.r));
    RESULT_WRITTEN_UP_TO(rp, VQJI_V1_RUN_PARAMS);
    assert_int_equal(rp.r.epochs, 30);
    assert_string_equal(rp.r.run_name, "vqjepa");
    rp.r.size = VQJI_V1_RUN_PARAMS - 1;
    assert_status(ctx, vqj_config_run(cfg, &rp.r), VQJ_ERR_INVALID_ARGUMENT);
    /* The config's params getters: a first-release struct gets the fields
     * it knows and nothing past its size. */
    RESULT(vqj_codebook_params, cb, VQJI_V1_CODEBOOK_PARAMS);
    assert_ok(ctx, vqj_config_codebook_params(cfg, &cb.r));
    RESULT_WRITTEN_UP_TO(cb, VQJI_V1_CODEBOOK_PARAMS);
    vqj_codebook_params cb_now;
    vqj_codebook_params_default(&cb_now);
    assert_ok(ctx, vqj_config_codebook_params(cfg, &cb_now));
    assert_int_equal(cb.r.num_embeddings, cb_now.num_embeddings);
    assert_true(cb.r.ema_decay == cb_now.ema_decay);
    RESULT(vqj_predictor_params, pr, VQJI_V1_PREDICTOR_PARAMS);
    assert_ok(ctx, vqj_config_predictor_params(cfg, &pr.r));
    RESULT_WRITTEN_UP_TO(pr, VQJI_V1_PREDICTOR_PARAMS);
    RESULT(vqj_loss_params, lo, VQJI_V1_LOSS_PARAMS);
    assert_ok(ctx, vqj_config_loss_params(cfg, &lo.r));
    RESULT_WRITTEN_UP_TO(lo, VQJI_V1_LOSS_PARAMS);
    RESULT(vqj_trainer_params, tr, VQJI_V1_TRAINER_PARAMS);
    assert_ok(ctx, vqj_config_trainer_params(cfg, &tr.r));
    RESULT_WRITTEN_UP_TO(tr, VQJI_V1_TRAINER_PARAMS);
    cb.r.size = VQJI_V1_CODEBOOK_PARAMS - 1;
    assert_status(ctx, vqj_config_codebook_params(cfg, &cb.r), VQJ_ERR_INVALID_ARGUMENT);
    vqj_config_destroy(cfg);

    static const char task[] = "{\"train\": [{\"input\": [[1, 0]], \"output\": [[0, 1]]},"
                               "{\"input\": [[2, 0]], \"output\": [[0, 2]]}]}";
    vqj_arc_task *t = NULL;
    assert_ok(ctx, vqj_arc_task_parse(ctx, task, strlen(task), "t", &t));
    const vqj_arc_task *tasks[] = {t};
    vqj_eval_set *set = NULL;
    assert_ok(ctx, vqj_eval_set_from_tasks(ctx, tasks, 1, 3, &set));
    RESULT(vqj_eval_result, er, VQJI_V1_EVAL_RESULT);
    assert_ok(ctx, vqj_eval_baseline(ctx, set, VQJ_EVAL_FEATURES, &er.r));
    RESULT_WRITTEN_UP_TO(er, VQJI_V1_EVAL_RESULT);
    assert_int_equal(er.r.queries, 2);
    er.r.size = VQJI_V1_EVAL_RESULT - 1;
    assert_status(ctx, vqj_eval_baseline(ctx, set, VQJ_EVAL_FEATURES, &er.r),
                  VQJ_ERR_INVALID_ARGUMENT);
    vqj_eval_set_destroy(set);
    vqj_arc_task_destroy(t);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_v1),
        cmocka_unit_test(test_modules_v1),
        cmocka_unit_test(test_data_v1),
        cmocka_unit_test(test_results_v1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
