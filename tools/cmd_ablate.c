/* `vqjepa ablate`: the seed's four-way comparison (its assessment's first
 * tables) and every quantizer, on one dataset, seed and budget. Each variant
 * is the base configuration with a few keys changed: the seed's four change
 * what distinguished the reference runs (../shared/reference-configs/
 * README.md) and put the codes back on the straight-through path without
 * dead-code replacement, as the original had them. Each trained model is
 * then measured by `vqjepa eval` on the built-in evaluation tasks. */
#include "cli.h"
#include "run.h"
#include "runlog.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct variant {
    const char *dir;   /* sub-folder of the output */
    const char *title; /* the seed's column name */
    const char *keys[8][2];
} variant;

/* The original's codes: straight-through, no replacement by count. */
#define ORIGINAL_VQ {"vq_path", "straight_through"}, {"dead_code_threshold", "0"}

static const variant variants[] = {
    {"vq_refresh",
     "Sixth Run (VQ+Refresh)",
     {ORIGINAL_VQ,
      {"commitment_cost", "0.3"},
      {"ema_decay", "0.99"},
      {"vq_refresh_interval", "500"},
      {"vq_refresh_usage_threshold", "0.05"}}},
    {"no_vq", "No VQ", {{"vq_enabled", "false"}}},
    {"vq_no_refresh", "VQ No Refresh", {ORIGINAL_VQ, {"vq_refresh_enabled", "false"}}},
    {"vq_gentle", "VQ Gentle", {ORIGINAL_VQ}},
    {"st_dead_code", "Straight-through + dead-code", {{"vq_path", "straight_through"}}},
    {"st_rotation", "Rotation trick + dead-code",
     {{"vq_path", "straight_through"}, {"gradient_estimator", "rotation"}}},
    {"base", "Base (F)", {{NULL, NULL}}},
    {"cosine", "Cosine codes", {{"quantizer", "cosine"}}},
    {"code_dim_32", "32-dim lookup", {{"code_dim", "32"}}},
    {"simvq", "SimVQ", {{"quantizer", "simvq"}, {"dead_code_threshold", "0"}}},
    {"fsq", "FSQ 8-5-5-5", {{"quantizer", "fsq"}, {"dead_code_threshold", "0"}}},
    {"residual", "Residual 2 levels", {{"quantizer", "residual"}, {"num_quantizers", "2"}}},
    {"grouped", "Grouped 2 groups", {{"num_groups", "2"}}},
};
#define NUM_VARIANTS (sizeof variants / sizeof *variants)

/* Replace the value of the first line "<indent>key: value" in a YAML text
 * written by vqj_config_write_yaml() (one key per line). NULL when absent. */
static char *yaml_set(const char *text, const char *key, const char *value)
{
    size_t klen = strlen(key);
    for (const char *line = text; *line;) {
        const char *p = line;
        while (*p == ' ')
            p++;
        if (p > line && !strncmp(p, key, klen) && p[klen] == ':') {
            const char *eol = strchr(p, '\n');
            if (!eol)
                eol = p + strlen(p);
            size_t head = (size_t)(p - text) + klen + 1, tail = strlen(eol);
            char *out = malloc(head + 1 + strlen(value) + tail + 1);
            if (!out)
                return NULL;
            memcpy(out, text, head);
            sprintf(out + head, " %s%s", value, eol);
            return out;
        }
        const char *eol = strchr(line, '\n');
        if (!eol)
            break;
        line = eol + 1;
    }
    return NULL;
}

static void cell(FILE *f, double v, int percent)
{
    if (isnan(v))
        fprintf(f, " n/a |");
    else if (percent)
        fprintf(f, " %.1f%% |", 100 * v);
    else
        fprintf(f, " %.2f |", v);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vqjepa ablate [--config F] [--data PATH] [--steps N | --epochs N]\n"
            "                     [--out DIR] [--threads T] [--seed S] [--batch B]\n"
            "                     [--eval-data PATH] [--variants A,B,...]\n\n"
            "Trains, on the same data, seed and budget, the seed's four variants (VQ with\n"
            "aggressive refresh: commitment 0.3, codebook EMA 0.99, refresh every 500 steps\n"
            "at 0.05; no VQ; VQ without refresh; the gentle VQ), each with the original's\n"
            "straight-through codes, then every quantizer over the base configuration F\n"
            "(default: the built-in one), and measures each with `vqjepa eval` on PATH\n"
            "(default: the built-in ARC-AGI-1 evaluation tasks). Writes DIR/ablation.md (default DIR:\n"
            "ablation) and DIR/<variant>/ with each run and its report.html.\n\n"
            "--variants runs only the named variants, in the table's order:");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        fprintf(f, "%s %s", v ? "," : "", variants[v].dir);
    fprintf(f, ".\n");
}

/* Mark the variants named in the comma-separated `list`; 0 and a message
 * on an unknown or empty name. */
static int select_variants(const char *list, int *selected)
{
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        selected[v] = 0;
    for (const char *p = list;;) {
        size_t len = strcspn(p, ",");
        size_t v = 0;
        while (v < NUM_VARIANTS &&
               (strlen(variants[v].dir) != len || strncmp(variants[v].dir, p, len) != 0))
            v++;
        if (v == NUM_VARIANTS) {
            fprintf(stderr, "vqjepa ablate: --variants: no variant '%.*s'\n", (int)len, p);
            usage(stderr);
            return 0;
        }
        selected[v] = 1;
        if (!p[len])
            return 1;
        p += len + 1;
    }
}

int cmd_ablate(int argc, char **argv)
{
    run_options base = {.seed = -1, .device = -1};
    const char *eval_data = VQJ_ARC_BUILTIN_EVALUATION;
    int selected[NUM_VARIANTS];
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        selected[v] = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--eval-data") && i + 1 < argc) {
            eval_data = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--variants") && i + 1 < argc) {
            if (!select_variants(argv[++i], selected))
                return CLI_BAD_INPUT;
            continue;
        }
        int r = run_parse_option(&base, argc, argv, &i);
        if (r < 0)
            return CLI_BAD_INPUT;
        if (!r) {
            fprintf(stderr, "vqjepa ablate: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CLI_BAD_INPUT;
        }
    }
    const char *out_dir = base.out_dir ? base.out_dir : "ablation";
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "vqjepa ablate: cannot create %s: %s\n", out_dir, strerror(errno));
        return CLI_FAILED;
    }
    vqj_context *ctx = run_context("ablate", 1, VQJ_DEVICE_CPU);
    if (!ctx)
        return CLI_FAILED;
    vqj_config *cfg = run_load_config(ctx, &base);
    char *yaml = NULL;
    if (!cfg || vqj_config_write_yaml(cfg, &yaml) != VQJ_OK) {
        if (cfg)
            fprintf(stderr, "vqjepa ablate: %s\n", vqj_last_error());
        vqj_config_destroy(cfg);
        vqj_context_destroy(ctx);
        return cfg ? CLI_FAILED : CLI_BAD_INPUT;
    }
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);

    run_outcome res[NUM_VARIANTS];
    double top1[NUM_VARIANTS], hard1[NUM_VARIANTS];
    json_t *base_eval = NULL; /* the base variant's evaluation, with the baselines */
    /* The baselines come with the base variant, or the first one run without it. */
    size_t baseline_of = NUM_VARIANTS;
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v] && (baseline_of == NUM_VARIANTS || variants[v].keys[0][0] == NULL))
            baseline_of = v;
    int rc = CLI_OK;
    for (size_t v = 0; v < NUM_VARIANTS && rc == CLI_OK; v++) {
        if (!selected[v])
            continue;
        char *text = strdup(yaml);
        for (int k = 0; text && variants[v].keys[k][0]; k++) {
            char *next = yaml_set(text, variants[v].keys[k][0], variants[v].keys[k][1]);
            if (!next)
                fprintf(stderr, "vqjepa ablate: the configuration has no key %s\n",
                        variants[v].keys[k][0]);
            free(text);
            text = next;
        }
        if (!text) {
            rc = CLI_FAILED;
            break;
        }
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", out_dir, variants[v].dir);
        run_options o = base;
        o.config_path = NULL;
        o.config_text = text;
        o.out_dir = dir;
        o.label = variants[v].dir;
        int r = run_training(&o, &res[v]);
        free(text);
        if (r != CLI_OK && r != RUN_ABORTED) {
            rc = r;
            break;
        }
        char report[4200];
        snprintf(report, sizeof report, "%s/report.html", dir);
        report_write(dir, report);
        char ckpt[4200];
        snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", dir);
        int erc, is_base = v == baseline_of;
        json_t *e = eval_checkpoint(ckpt, eval_data, base.threads,
                                    base.device >= 0 ? (vqj_device_kind)base.device : VQJ_DEVICE_CPU,
                                    is_base, &erc);
        if (!e) {
            rc = erc;
            break;
        }
        top1[v] = json_number_value(json_object_get(e, "retrieval_top1"));
        hard1[v] = json_number_value(json_object_get(e, "retrieval_hard_top1"));
        if (is_base)
            base_eval = e;
        else
            json_decref(e);
    }
    free(yaml);
    if (rc != CLI_OK) {
        json_decref(base_eval);
        return rc;
    }

    /* Written whole or not at all, like the run folders' files. */
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/ablation.md", out_dir);
    FILE *f = runlog_create(path, tmp, sizeof tmp);
    if (!f) {
        json_decref(base_eval);
        return CLI_FAILED;
    }
    fprintf(f, "# Quantizer ablation\n\nSame data and seed for every variant; %s.\n\n",
            base.steps > 0 ? "each trained for the same number of optimizer steps"
                           : "each trained for the configured epochs");
    fprintf(f, "| Metric |");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v])
            fprintf(f, " %s |", variants[v].title);
    fprintf(f, "\n|---|");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v])
            fprintf(f, "---|");
    fprintf(f, "\n| **Steps Completed** |");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v])
            fprintf(f, " %lld%s |", (long long)res[v].steps, res[v].aborted ? " (aborted)" : "");
    static const struct {
        const char *name;
        size_t offset;
        int percent;
    } rows[] = {
        {"Final Val Loss", offsetof(run_outcome, final_val), 0},
        {"Best Val Loss", offsetof(run_outcome, best_val), 0},
        {"Final Val InfoNCE", offsetof(run_outcome, final_val_infonce), 0},
        {"Context Eff. Rank (Start)", offsetof(run_outcome, context_rank_start), 0},
        {"Context Eff. Rank (End)", offsetof(run_outcome, context_rank_end), 0},
        {"Target Eff. Rank (Start)", offsetof(run_outcome, target_rank_start), 0},
        {"Target Eff. Rank (End)", offsetof(run_outcome, target_rank_end), 0},
        {"VQ Usage (Start)", offsetof(run_outcome, usage_start), 1},
        {"VQ Usage (Minimum)", offsetof(run_outcome, usage_min), 1},
        {"VQ Usage (End)", offsetof(run_outcome, usage_end), 1},
        {"VQ Usage (Min. after warmup)", offsetof(run_outcome, usage_min_after_warmup), 1},
        {"VQ Perplexity (End)", offsetof(run_outcome, perplexity_end), 0},
    };
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        fprintf(f, "\n| **%s** |", rows[r].name);
        for (size_t v = 0; v < NUM_VARIANTS; v++)
            if (selected[v])
                cell(f, *(const double *)((const char *)&res[v] + rows[r].offset), rows[r].percent);
    }
    fprintf(f, "\n| **Most codes re-seeded in a step after warmup** |");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v])
            fprintf(f, " %lld |", (long long)res[v].reseeded_max_after_warmup);
    fprintf(f, "\n| **Retrieval top-1** |");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v])
            cell(f, top1[v], 1);
    fprintf(f, "\n| **Retrieval hard top-1** |");
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v])
            cell(f, hard1[v], 1);
    fprintf(f, "\n\nVQ usage is the share of the K codes used by real tokens, context and target, "
               "in a diagnostics window; n/a where a variant has no codebook or no "
               "measurement. Retrieval is `vqjepa eval` on %s (%.0f pairs, chance %.3f%%); on "
               "the same pairs the hand-made baselines "
               "give top-1 %.1f%% (features) and %.1f%% (analogy), hard top-1 %.1f%% and "
               "%.1f%%, and the %s configuration untrained %.1f%% (hard %.1f%%).\n",
            eval_data, json_number_value(json_object_get(base_eval, "pairs")),
            100 * json_number_value(json_object_get(base_eval, "retrieval_chance")),
            100 * json_number_value(json_object_get(base_eval, "baseline_features_top1")),
            100 * json_number_value(json_object_get(base_eval, "baseline_analogy_top1")),
            100 * json_number_value(json_object_get(base_eval, "baseline_features_hard_top1")),
            100 * json_number_value(json_object_get(base_eval, "baseline_analogy_hard_top1")),
            variants[baseline_of].keys[0][0] ? variants[baseline_of].title : "base",
            100 * json_number_value(json_object_get(base_eval, "baseline_init_top1")),
            100 * json_number_value(json_object_get(base_eval, "baseline_init_hard_top1")));
    json_decref(base_eval);
    for (size_t v = 0; v < NUM_VARIANTS; v++)
        if (selected[v] && res[v].aborted)
            fprintf(f, "\n%s stopped on an abort criterion: %s\n", variants[v].title,
                    res[v].abort_reason);
    if (runlog_commit(f, tmp, path, 1)) /* checks the stream's errors too */
        return CLI_FAILED;
    FILE *in = fopen(path, "r");
    if (in) {
        char line[1024];
        while (fgets(line, sizeof line, in))
            fputs(line, stdout);
        fclose(in);
    }
    printf("\ntable: %s\n", path);
    return CLI_OK;
}
