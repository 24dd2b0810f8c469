/* `vqjepa eval --checkpoint C [--data PATH] [--json]`: how well a trained
 * model's embeddings retrieve the right output grid of ARC pairs, how its
 * codes are used, and the same retrieval by baselines (docs/evaluation.md). */
#include "cli.h"
#include "run.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vqjepa eval --checkpoint C [--data PATH] [--json] [--no-baselines]\n"
            "                   [--threads T] [--device cpu|cuda]\n\n"
            "Ranks every (input, output) pair of the ARC tasks in PATH (a task file, a\n"
            "folder of them, a .jsonl or .jsonl.gz of tasks or of manifest records; default:\n"
            "the built-in ARC-AGI-1 evaluation tasks, " VQJ_ARC_BUILTIN_EVALUATION ")\n"
            "by the model's prediction from [demo input, demo output,\n"
            "query input] against every distinct output grid; measures code usage; and\n"
            "ranks the same pairs by the untrained model (init) and by hand-made feature\n"
            "vectors (features, analogy). --json prints one JSON line; otherwise a table.\n"
            "Exit status 2 for bad input, 1 on failure. See docs/evaluation.md.\n");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static void put_ranks(json_t *o, const char *prefix, const vqj_eval_result *r)
{
    char key[64];
    const struct {
        const char *name;
        double v;
    } f[] = {{"top1", r->top1},
             {"top5", r->top5},
             {"hard_top1", r->hard_top1},
             {"hard_top5", r->hard_top5},
             {"mean_rank", r->mean_rank}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        snprintf(key, sizeof key, "%s_%s", prefix, f[i].name);
        json_object_set_new(o, key, num(f[i].v));
    }
}

json_t *eval_measure(vqj_context *ctx, const vqj_model *model, const vqj_model *init,
                     const vqj_eval_set *set, int baselines)
{
    const double t0 = now();
    vqj_eval_result r = {.size = sizeof r}, b = {.size = sizeof b};
    if (vqj_eval_model(model, set, &r) != VQJ_OK) {
        fprintf(stderr, "vqjepa eval: %s\n", vqj_last_error());
        return NULL;
    }
    json_t *o = json_object();
    put_ranks(o, "retrieval", &r);
    json_object_set_new(o, "retrieval_chance", num(r.chance));
    json_object_set_new(o, "code_usage", num(r.code_usage));
    json_object_set_new(o, "code_perplexity", num(r.code_perplexity));
    json_object_set_new(o, "code_distinct", json_integer(r.distinct_codes));
    json_object_set_new(o, "num_codes", json_integer(r.num_codes));
    json_object_set_new(o, "code_same_identical", num(r.code_same_identical));
    json_object_set_new(o, "code_shared_different", num(r.code_shared_different));
    json_object_set_new(o, "pairs", json_integer((json_int_t)r.queries));
    json_object_set_new(o, "candidates", json_integer((json_int_t)r.candidates));
    json_object_set_new(o, "grids", json_integer((json_int_t)r.grids));
    json_object_set_new(o, "objects", json_integer((json_int_t)r.objects));
    if (baselines) {
        vqj_status st = init ? vqj_eval_model(init, set, &b) : VQJ_OK;
        if (!st && init)
            put_ranks(o, "baseline_init", &b);
        if (!st && !(st = vqj_eval_baseline(ctx, set, VQJ_EVAL_FEATURES, &b)))
            put_ranks(o, "baseline_features", &b);
        if (!st && !(st = vqj_eval_baseline(ctx, set, VQJ_EVAL_ANALOGY, &b)))
            put_ranks(o, "baseline_analogy", &b);
        if (st) {
            fprintf(stderr, "vqjepa eval: %s\n", vqj_last_error());
            json_decref(o);
            return NULL;
        }
    }
    json_object_set_new(o, "seconds", json_real(now() - t0));
    return o;
}

static double get(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return v && json_is_number(v) ? json_number_value(v) : NAN;
}

void eval_print_table(FILE *f, const json_t *o)
{
    fprintf(f, "%lld pairs, %lld candidate outputs (chance %.3f%%), %lld objects\n",
            (long long)get(o, "pairs"), (long long)get(o, "candidates"),
            100 * get(o, "retrieval_chance"), (long long)get(o, "objects"));
    fprintf(f, "%-10s %7s %7s %9s %9s %9s\n", "ranking", "top-1", "top-5", "hard top-1",
            "hard top-5", "mean rank");
    const char *rows[][2] = {{"model", "retrieval"},
                             {"init", "baseline_init"},
                             {"features", "baseline_features"},
                             {"analogy", "baseline_analogy"}};
    char key[64];
    for (size_t i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s_top1", rows[i][1]);
        if (!json_object_get(o, key))
            continue;
        double v[5];
        const char *names[5] = {"top1", "top5", "hard_top1", "hard_top5", "mean_rank"};
        for (int k = 0; k < 5; k++) {
            snprintf(key, sizeof key, "%s_%s", rows[i][1], names[k]);
            v[k] = get(o, key);
        }
        fprintf(f, "%-10s %6.1f%% %6.1f%% %9.1f%% %9.1f%% %9.1f\n", rows[i][0], 100 * v[0],
                100 * v[1], 100 * v[2], 100 * v[3], v[4]);
    }
    fprintf(f,
            "codes: %lld of %lld used (%.1f%%), perplexity %.1f; identical objects share a "
            "code %.1f%%, different ones %.2f%%\n",
            (long long)get(o, "code_distinct"), (long long)get(o, "num_codes"),
            100 * get(o, "code_usage"), get(o, "code_perplexity"),
            100 * get(o, "code_same_identical"), 100 * get(o, "code_shared_different"));
    fprintf(f, "%.1f s\n", get(o, "seconds"));
}

json_t *eval_checkpoint(const char *ckpt, const char *data, int threads, vqj_device_kind device,
                        int baselines, int *rc)
{
    const double t0 = now();
    run_checkpoint c, init = {0};
    *rc = CLI_BAD_INPUT;
    if (run_checkpoint_open("eval", ckpt, threads, device, 1, NULL, &c))
        return NULL;
    vqj_eval_set *set = NULL;
    json_t *o = NULL;
    if (vqj_eval_set_load(c.ctx, data, vqj_model_context_window(c.model), &set) != VQJ_OK) {
        fprintf(stderr, "vqjepa eval: %s\n", vqj_last_error());
        goto done;
    }
    *rc = CLI_FAILED;
    if (baselines && run_checkpoint_open("eval", ckpt, threads, device, 0, NULL, &init))
        goto done;
    if (!(o = eval_measure(c.ctx, c.model, init.model, set, baselines)))
        goto done;
    json_object_set_new(o, "checkpoint", json_string(ckpt));
    json_object_set_new(o, "data", json_string(data));
    json_object_set_new(o, "seconds", json_real(now() - t0));
    *rc = CLI_OK;
done:
    vqj_eval_set_destroy(set);
    if (init.model)
        run_checkpoint_close(&init);
    run_checkpoint_close(&c);
    return o;
}

int cmd_eval(int argc, char **argv)
{
    const char *ckpt = NULL, *data = VQJ_ARC_BUILTIN_EVALUATION;
    int threads = 0, json = 0, baselines = 1;
    vqj_device_kind device = VQJ_DEVICE_CPU;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            if (run_parse_device("eval", argv[++i], &device))
                return CLI_BAD_INPUT;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--no-baselines")) {
            baselines = 0;
        } else {
            fprintf(stderr, "vqjepa eval: unknown option or missing value '%s'\n", argv[i]);
            return CLI_BAD_INPUT;
        }
    }
    if (!ckpt) {
        usage(stderr);
        return CLI_BAD_INPUT;
    }
    int rc;
    json_t *o = eval_checkpoint(ckpt, data, threads, device, baselines, &rc);
    if (!o)
        return rc;
    if (json) {
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (text)
            printf("%s\n", text);
        free(text);
    } else {
        printf("%s on %s\n", ckpt, data);
        eval_print_table(stdout, o);
    }
    json_decref(o);
    return CLI_OK;
}
