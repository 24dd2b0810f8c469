/* Evaluation (vqj_eval_*): hand-built sets whose ranks are known, ties,
 * duplicates, a set of one pair, grids with no objects, and the model's
 * measures recomputed from the public inference calls. */
#include "testutil.h"
#include "testmodel.h"

#include <unistd.h>

static vqj_arc_task *parse(vqj_context *ctx, const char *json)
{
    vqj_arc_task *t = NULL;
    assert_ok(ctx, vqj_arc_task_parse(ctx, json, strlen(json), "t", &t));
    return t;
}

static vqj_eval_set *set_of(vqj_context *ctx, const char *json, int T)
{
    vqj_arc_task *t = parse(ctx, json);
    vqj_eval_set *s = NULL;
    const vqj_arc_task *tasks[1] = {t};
    assert_ok(ctx, vqj_eval_set_from_tasks(ctx, tasks, 1, T, &s));
    vqj_arc_task_destroy(t);
    return s;
}

static vqj_eval_result baseline(vqj_context *ctx, const vqj_eval_set *s, vqj_eval_method m)
{
    vqj_eval_result r = {.size = sizeof r};
    assert_ok(ctx, vqj_eval_baseline(ctx, s, m, &r));
    return r;
}

/* Identity pairs over distinct grids: the input's vector is the target's,
 * so the features baseline ranks every query first, hard or not (the input
 * is the target). Pairs without an output are not queries; a duplicate
 * output is one candidate. */
static void test_counts_and_identity(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_eval_set *s = set_of(ctx,
                             "{\"train\":[{\"input\":[[1,0],[0,0]],\"output\":[[1,0],[0,0]]},"
                             "{\"input\":[[2,2],[0,0]],\"output\":[[2,2],[0,0]]},"
                             "{\"input\":[[3,3,3]],\"output\":[[3,3,3]]},"
                             "{\"input\":[[2,2],[0,0]],\"output\":[[2,2],[0,0]]}],"
                             "\"test\":[{\"input\":[[4]],\"output\":[[4]]},{\"input\":[[5]]}]}",
                             3);
    assert_int_equal(vqj_eval_set_num_queries(s), 5);
    assert_int_equal(vqj_eval_set_num_candidates(s), 4);
    assert_int_equal(vqj_eval_set_context_window(s), 3);
    vqj_eval_result r = baseline(ctx, s, VQJ_EVAL_FEATURES);
    assert_int_equal(r.queries, 5);
    assert_int_equal(r.candidates, 4);
    assert_true(fabs(r.chance - 0.25) < 1e-12);
    assert_true(r.top1 == 1.0 && r.top5 == 1.0 && r.hard_top1 == 1.0 && r.mean_rank == 1.0);
    assert_int_equal(r.objects, 0);
    vqj_eval_set_destroy(s);
    vqj_context_destroy(ctx);
}

/* Outputs differ from inputs: the input itself beats the target for the
 * features baseline in hard retrieval; the analogy input + (demo out -
 * demo in) recolors 1 to 2 exactly and ranks the target first. */
static void test_analogy_and_hard(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_eval_set *s = set_of(ctx,
                             "{\"train\":[{\"input\":[[1,1,0],[0,0,1]],\"output\":[[2,2,0],[0,0,2]]},"
                             "{\"input\":[[1,1,1],[0,0,0]],\"output\":[[2,2,2],[0,0,0]]}]}",
                             3);
    assert_int_equal(vqj_eval_set_num_queries(s), 2);
    vqj_eval_result f = baseline(ctx, s, VQJ_EVAL_FEATURES);
    assert_true(f.hard_top1 == 0.0);
    vqj_eval_result a = baseline(ctx, s, VQJ_EVAL_ANALOGY);
    assert_true(a.top1 == 1.0 && a.hard_top1 == 1.0);
    vqj_eval_set_destroy(s);
    vqj_context_destroy(ctx);
}

/* A grid and its mirror have one feature vector: a tie, broken at random
 * in expectation: top-1 1/2, top-5 1, mean rank 1.5. */
static void test_ties(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_eval_set *s = set_of(ctx,
                             "{\"train\":[{\"input\":[[1,0,0]],\"output\":[[1,0,0]]},"
                             "{\"input\":[[0,0,1]],\"output\":[[0,0,1]]}]}",
                             3);
    vqj_eval_result r = baseline(ctx, s, VQJ_EVAL_FEATURES);
    assert_int_equal(r.candidates, 2);
    assert_true(fabs(r.top1 - 0.5) < 1e-12);
    assert_true(r.top5 == 1.0);
    assert_true(fabs(r.mean_rank - 1.5) < 1e-12);
    vqj_eval_set_destroy(s);
    vqj_context_destroy(ctx);
}

/* One pair: its own demonstration, one candidate, chance 1. */
static void test_one_pair(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_eval_set *s = set_of(ctx, "{\"train\":[{\"input\":[[1]],\"output\":[[2]]}]}", 5);
    vqj_eval_result r = baseline(ctx, s, VQJ_EVAL_ANALOGY);
    assert_int_equal(r.queries, 1);
    assert_true(r.chance == 1.0 && r.top1 == 1.0);
    assert_true(r.hard_top1 == 1.0); /* the input [[1]] is not [[2]] */
    vqj_eval_set_destroy(s);
    vqj_context_destroy(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_arc_task *t = parse(ctx, "{\"train\":[],\"test\":[{\"input\":[[1]]}]}");
    const vqj_arc_task *tasks[1] = {t};
    vqj_eval_set *s = NULL;
    assert_status(ctx, vqj_eval_set_from_tasks(ctx, tasks, 1, 3, &s), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "no pair with an output"));
    assert_status(ctx, vqj_eval_set_from_tasks(ctx, tasks, 1, 0, &s), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(s);
    vqj_arc_task_destroy(t);
    s = set_of(ctx, "{\"train\":[{\"input\":[[1]],\"output\":[[2]]}]}", 3);
    vqj_eval_result r = {.size = 8};
    assert_status(ctx, vqj_eval_baseline(ctx, s, VQJ_EVAL_FEATURES, &r),
                  VQJ_ERR_INVALID_ARGUMENT);
    r.size = sizeof r;
    assert_status(ctx, vqj_eval_baseline(ctx, s, VQJ_EVAL_MODEL, &r), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_eval_set_load(ctx, "/nonexistent/tasks", 3, &s), VQJ_ERR_IO);
    vqj_eval_set_destroy(s);
    vqj_context_destroy(ctx);
}

/* The model's measures against the same ranking and code statistics
 * computed here from vqj_model_predict() and vqj_model_encode_grid(),
 * on a set with empty grids and repeated objects. */
static void test_model_measures(void **state)
{
    (void)state;
    test_model m;
    test_model_spec spec = test_model_spec_default();
    spec.examples = 8;
    test_model_create(&m, &spec);
    vqj_context *ctx = m.ctx;
    vqj_model *model = NULL;
    assert_ok(ctx, vqj_model_create(ctx, NULL, m.encoder, m.codebook, m.predictor, NULL, NULL,
                                    &model));
    const char *json =
        "{\"train\":[{\"input\":[[1,0,2],[0,0,2]],\"output\":[[2,0,1],[0,0,1]]},"
        "{\"input\":[[0,0],[0,0]],\"output\":[[0,0,0]]},"
        "{\"input\":[[1,0,3],[0,0,3]],\"output\":[[3,0,1],[0,0,1]]},"
        "{\"input\":[[4,4,0],[0,0,5]],\"output\":[[0,0,0]]}],"
        "\"test\":[{\"input\":[[1,0,2],[0,0,2]],\"output\":[[6,6,6],[6,0,6]]}]}";
    vqj_arc_task *task = parse(ctx, json);
    vqj_eval_set *s = NULL;
    const vqj_arc_task *tasks[1] = {task};
    assert_ok(ctx, vqj_eval_set_from_tasks(ctx, tasks, 1, 3, &s));
    vqj_eval_result r = {.size = sizeof r};
    assert_ok(ctx, vqj_eval_model(model, s, &r));

    /* Pairs in order; the demonstration of b is b+1 (cyclic). */
    enum { N = 5, P = 16, MAXO = 16 };
    const vqj_grid *in[N], *out[N];
    for (size_t i = 0; i < 4; i++) {
        in[i] = vqj_arc_task_input(task, VQJ_ARC_TRAIN, i);
        out[i] = vqj_arc_task_output(task, VQJ_ARC_TRAIN, i);
    }
    in[4] = vqj_arc_task_input(task, VQJ_ARC_TEST, 0);
    out[4] = vqj_arc_task_output(task, VQJ_ARC_TEST, 0);
    const int cand[4] = {0, 1, 2, 4}; /* distinct outputs: pair 3's equals pair 1's */
    float e[N][P], p[P];
    for (int i = 0; i < N; i++)
        assert_ok(ctx, vqj_model_encode_grid(model, out[i], NULL, NULL, e[i]));
    double top1 = 0;
    for (int b = 0; b < N; b++) {
        const int a = (b + 1) % N;
        vqj_grid context[3] = {*in[a], *out[a], *in[b]};
        assert_ok(ctx, vqj_model_predict(model, context, 3, p));
        double score[4], st = 0;
        for (int c = 0; c < 4; c++) {
            double d = 0;
            for (int k = 0; k < P; k++)
                d += (double)p[k] * e[cand[c]][k];
            score[c] = d;
            if (cand[c] == b || (b == 3 && cand[c] == 1))
                st = d;
        }
        int better = 0;
        for (int c = 0; c < 4; c++)
            better += score[c] > st + 1e-6;
        top1 += better == 0;
    }
    assert_int_equal(r.queries, N);
    assert_int_equal(r.candidates, 4);
    assert_true(fabs(r.top1 - top1 / N) < 1e-9);

    /* Codes of every distinct grid (inputs 0, 1, 2, 3 and outputs 0, 1, 2,
     * 4; input 4 repeats input 0). */
    const vqj_grid *grids[8] = {in[0], out[0], in[1], out[1], in[2], out[2], in[3], out[4]};
    int32_t codes[8][MAXO];
    size_t nobj[8], total = 0;
    int K = vqj_model_num_codes(model), count[64] = {0};
    for (int g = 0; g < 8; g++) {
        assert_ok(ctx, vqj_model_encode_grid(model, grids[g], codes[g], &nobj[g], NULL));
        total += nobj[g];
        for (size_t o = 0; o < nobj[g]; o++)
            count[codes[g][o]]++;
    }
    assert_int_equal(nobj[2], 0); /* the empty grids */
    assert_int_equal(nobj[3], 0);
    assert_int_equal(r.objects, total);
    assert_int_equal(r.grids, 8);
    double entropy = 0;
    int distinct = 0;
    for (int k = 0; k < K; k++)
        if (count[k]) {
            double q = (double)count[k] / (double)total;
            entropy -= q * log(q);
            distinct++;
        }
    assert_int_equal(r.num_codes, K);
    assert_int_equal(r.distinct_codes, distinct);
    assert_true(fabs(r.code_usage - (double)distinct / K) < 1e-12);
    assert_true(fabs(r.code_perplexity - exp(entropy)) < 1e-9);

    /* Consistency, pair by pair over every object's features. */
    vqj_tokens *tokens = NULL;
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &tokens));
    vqj_grid flat[8];
    for (int g = 0; g < 8; g++)
        flat[g] = *grids[g];
    assert_ok(ctx, vqj_tokenize(ctx, tokens, flat, 8));
    const float *f = vqj_tokens_features(tokens);
    const int F = vqj_tokens_feature_dim(tokens);
    int32_t all[64];
    size_t n = 0;
    for (int g = 0; g < 8; g++)
        for (size_t o = 0; o < nobj[g]; o++)
            all[n++] = codes[g][o];
    double ident = 0, ident_same = 0, diff = 0, diff_same = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            int same_f = memcmp(f + i * F, f + j * F, (size_t)F * sizeof *f) == 0;
            int same_c = all[i] == all[j];
            ident += same_f;
            ident_same += same_f && same_c;
            diff += !same_f;
            diff_same += !same_f && same_c;
        }
    assert_true(ident > 0); /* the 1-cells at (0,0) of in[0] and in[2] */
    assert_true(r.identical_pairs == ident);
    assert_true(fabs(r.code_same_identical - ident_same / ident) < 1e-12);
    assert_true(fabs(r.code_shared_different - diff_same / diff) < 1e-12);

    /* A model of another T is refused. */
    vqj_eval_set *s5 = NULL;
    assert_ok(ctx, vqj_eval_set_from_tasks(ctx, tasks, 1, 5, &s5));
    assert_status(ctx, vqj_eval_model(model, s5, &r), VQJ_ERR_INVALID_ARGUMENT);
    vqj_eval_set_destroy(s5);
    vqj_tokens_destroy(tokens);
    vqj_eval_set_destroy(s);
    vqj_arc_task_destroy(task);
    vqj_model_destroy(model);
    test_model_destroy(&m);
}

/* A dataset's examples are queries with their own contexts. */
static void test_from_dataset(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = 20;
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds));
    vqj_eval_set *s = NULL;
    assert_ok(ctx, vqj_eval_set_from_dataset(ctx, ds, &s));
    assert_int_equal(vqj_eval_set_num_queries(s), 20);
    assert_true(vqj_eval_set_num_candidates(s) >= 1 && vqj_eval_set_num_candidates(s) <= 20);
    vqj_eval_result r = baseline(ctx, s, VQJ_EVAL_ANALOGY);
    assert_int_equal(r.queries, 20);
    assert_true(r.top1 >= 0 && r.top1 <= 1 && r.hard_top1 <= r.top1 + 1e-12);
    vqj_eval_set_destroy(s);
    vqj_dataset_destroy(ds);
    vqj_context_destroy(ctx);
}

/* Built-in data and a JSONL manifest through vqj_eval_set_load(). */
static void test_load(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_eval_set *s = NULL;
    assert_ok(ctx, vqj_eval_set_load(ctx, VQJ_ARC_BUILTIN_EVALUATION, 3, &s));
    assert_int_equal(vqj_eval_set_num_queries(s), 1782); /* the count */
    vqj_eval_set_destroy(s);
    char dir[] = "/tmp/vqj_test_eval_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"context\":[[[1]],[[2]],[[3]]],\"target\":[[4]]}\n"
          "{\"context\":[[[1]],[[2]],[[5]]],\"target\":[[6]]}\n",
          f);
    fclose(f);
    assert_ok(ctx, vqj_eval_set_load(ctx, path, 3, &s));
    assert_int_equal(vqj_eval_set_num_queries(s), 2);
    assert_int_equal(vqj_eval_set_num_candidates(s), 2);
    vqj_eval_set_destroy(s);
    unlink(path);
    rmdir(dir);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_identity), cmocka_unit_test(test_analogy_and_hard),
        cmocka_unit_test(test_ties),                cmocka_unit_test(test_one_pair),
        cmocka_unit_test(test_errors),              cmocka_unit_test(test_model_measures),
        cmocka_unit_test(test_from_dataset),        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
