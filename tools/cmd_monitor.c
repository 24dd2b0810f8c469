/* `vqjepa monitor RUN_DIR`: the seed's health checks and abort criteria
 * over a run folder's JSONL files, one line per check; the exit status is
 * the worst level (0 ok, 1 warn, 2 alert). */
#include "cli.h"
#include "runlog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Codebook health thresholds (docs/diagnostics.md, "Codebook health"), as
 * shares of K: the usage thresholds of the seed read as dead codes, and a
 * perplexity (codes in effective use) of half those. */
#define MONITOR_DEAD_ALERT 0.08       /* alert: fewer than 8% of the codes assigned */
#define MONITOR_DEAD_WARN 0.12        /* warn: fewer than 12% */
#define MONITOR_PERPLEXITY_ALERT 0.04 /* alert: perplexity below 4% of K */
#define MONITOR_PERPLEXITY_WARN 0.06  /* warn: below 6% of K */

/* The last whole diagnostics window; the last record when none is whole
 * (a run shorter than one interval). A run's closing window is shorter and
 * marked partial: its usage is not comparable with the others'. */
static json_t *last_window(json_t *emb)
{
    size_t m = json_array_size(emb);
    for (size_t i = m; i-- > 0;)
        if (!json_is_true(json_object_get(json_array_get(emb, i), "partial")))
            return json_array_get(emb, i);
    return m ? json_array_get(emb, m - 1) : NULL;
}

/* Codebook health beyond the seed's usage check (docs/diagnostics.md,
 * "Codebook health"): perplexity and dead codes as shares of K, on the
 * training window and on the validation split. Prints one line a check and
 * raises *worst. */
static void codebook_checks(const char *run_dir, int *worst)
{
    static const char *const names[] = {"ok", "warn", "alert"};
    json_t *emb = runlog_read(run_dir, RUNLOG_EMBEDDING);
    json_t *last = emb ? last_window(emb) : NULL;
    double usage = last ? runlog_number(last, "vq_usage_ratio") : NAN;
    double active = last ? runlog_number(last, "vq_active_codes") : NAN;
    if (!isnan(usage) && usage > 0 && !isnan(active)) {
        double k = active / usage;
        static const struct {
            const char *name, *field;
            int dead; /* 1: dead codes (higher is worse); 0: perplexity */
        } checks[] = {{"vq_perplexity", "vq_perplexity", 0},
                      {"vq_dead_codes", "vq_dead_codes", 1},
                      {"val_vq_perplexity", "val_vq_perplexity", 0},
                      {"val_vq_dead_codes", "val_vq_dead_codes", 1}};
        for (size_t i = 0; i < sizeof checks / sizeof *checks; i++) {
            double v = runlog_number(last, checks[i].field);
            if (isnan(v))
                continue;
            double share = v / k;
            int level;
            if (checks[i].dead)
                level = share > 1.0 - MONITOR_DEAD_ALERT   ? VQJ_HEALTH_ALERT
                        : share > 1.0 - MONITOR_DEAD_WARN ? VQJ_HEALTH_WARN
                                                            : VQJ_HEALTH_OK;
            else
                level = share < MONITOR_PERPLEXITY_ALERT  ? VQJ_HEALTH_ALERT
                        : share < MONITOR_PERPLEXITY_WARN ? VQJ_HEALTH_WARN
                                                          : VQJ_HEALTH_OK;
            if (checks[i].dead)
                printf("%-5s %s: %.0f of %.0f codes (%.1f%%) had no assignment; alert above "
                       "%.0f%%, warn above %.0f%%\n",
                       names[level], checks[i].name, v, k, 100.0 * share,
                       100.0 * (1.0 - MONITOR_DEAD_ALERT), 100.0 * (1.0 - MONITOR_DEAD_WARN));
            else
                printf("%-5s %s: %.1f (%.1f%% of K); alert below %.0f%%, warn below %.0f%%\n",
                       names[level], checks[i].name, v, 100.0 * share,
                       100.0 * MONITOR_PERPLEXITY_ALERT, 100.0 * MONITOR_PERPLEXITY_WARN);
            if (level > *worst)
                *worst = level;
        }
    }
    json_decref(emb);
}

int monitor_input(const char *run_dir, vqj_health_input *in, float **val_loss)
{
    json_t *epochs = runlog_read(run_dir, RUNLOG_EPOCH);
    json_t *emb = runlog_read(run_dir, RUNLOG_EMBEDDING);
    if (!epochs || !emb) {
        json_decref(epochs);
        json_decref(emb);
        return -1;
    }
    vqj_health_input_default(in);
    size_t n = json_array_size(epochs);
    *val_loss = malloc((n + 1) * sizeof **val_loss);
    size_t i;
    json_t *rec;
    int k = 0;
    json_array_foreach(epochs, i, rec)
    {
        /* A partial record (a run stopped mid-epoch) is no epoch of the trend. */
        if (json_is_true(json_object_get(rec, "partial")))
            continue;
        double v = runlog_number(rec, "val_loss");
        if (!isnan(v))
            (*val_loss)[k++] = (float)v;
        double e = runlog_number(rec, "epoch");
        if (isfinite(e))
            in->epoch = (int)e;
        double md = runlog_number(rec, "min_delta");
        if (isfinite(md) && md >= 0)
            in->min_delta = (float)md;
    }
    in->val_loss = *val_loss;
    in->epochs = k;
    json_t *last = last_window(emb);
    if (last) {
        double usage = runlog_number(last, "vq_usage_ratio");
        if (!isnan(usage)) {
            in->have_vq = 1;
            in->vq_usage = (float)usage;
        }
        double cr = runlog_number(last, "context.effective_rank");
        double tr = runlog_number(last, "target.effective_rank");
        if (!isnan(cr) && !isnan(tr)) {
            in->have_embedding = 1;
            in->context_rank = (float)cr;
            in->target_rank = (float)tr;
        }
    }
    json_decref(epochs);
    json_decref(emb);
    return 0;
}

int cmd_monitor(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: vqjepa monitor RUN_DIR\n"
               "Runs the seed's health checks and abort criteria on a training run's\n"
               "JSONL files: one line per check marked ok, warn or alert.\n"
               "Exit status: 0 all ok, 1 a warning, 2 an alert.\n");
        return CLI_OK;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: vqjepa monitor RUN_DIR\n");
        return CLI_BAD_INPUT;
    }
    vqj_health_input in;
    float *val = NULL;
    if (monitor_input(argv[1], &in, &val) != 0)
        return CLI_BAD_INPUT;
    vqj_health_check checks[VQJ_HEALTH_MAX_CHECKS];
    size_t count = 0;
    vqj_status st = vqj_health_evaluate(&in, checks, VQJ_HEALTH_MAX_CHECKS, &count);
    free(val);
    if (st != VQJ_OK) {
        fprintf(stderr, "vqjepa monitor: %s\n", vqj_last_error());
        return CLI_FAILED;
    }
    if (count == 0) {
        printf("warn  no_data: %s has no diagnostics or validation losses yet\n", argv[1]);
        return VQJ_HEALTH_WARN;
    }
    static const char *const names[] = {"ok", "warn", "alert"};
    int worst = VQJ_HEALTH_OK;
    for (size_t i = 0; i < count; i++) {
        printf("%-5s %s: %s\n", names[checks[i].level], checks[i].name, checks[i].message);
        if ((int)checks[i].level > worst)
            worst = (int)checks[i].level;
    }
    codebook_checks(argv[1], &worst);
    return worst;
}
