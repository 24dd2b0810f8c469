/* `vqjepa monitor RUN_DIR`: the seed's health checks and abort criteria
 * over a run folder's JSONL files, one line per check; the exit status is
 * the worst level (0 ok, 1 warn, 2 alert). */
#include "cli.h"
#include "runlog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    size_t m = json_array_size(emb);
    if (m) {
        json_t *last = json_array_get(emb, m - 1);
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
    return worst;
}
