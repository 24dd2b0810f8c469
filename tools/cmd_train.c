/* `vqjepa train`: train a configuration, then write the run's report. */
#include "cli.h"
#include "run.h"
#include "core/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vqjepa train [--config F] [--data PATH] [--out DIR] [--epochs N | --steps N]\n"
            "                    [--resume CKPT] [--threads T] [--seed S] [--batch B]\n"
            "                    [--device cpu|cuda] [--checkpoint-steps N]\n"
            "                    [--abort-on-collapse] [--skip-bad] [--quiet]\n\n"
            "Trains the configuration F (default: the built-in defaults, the seed's gentle\n"
            "run) on PATH (an ARC task file or folder, or a .jsonl manifest; default: the\n"
            "config's dataset, else the built-in synthetic generator). DIR (default the\n"
            "config's training.checkpoint_dir) receives config.yaml, the JSONL metrics,\n"
            "checkpoints (best, every checkpoint_interval epochs, last) and report.html.\n"
            "--device overrides the config's training.device (a build without CUDA refuses\n"
            "cuda). --steps N stops after N optimizer steps. Ctrl-C writes a checkpoint and stops.\n"
            "--checkpoint-steps N (training.checkpoint_steps) rewrites last.safetensors\n"
            "atomically every N optimizer steps (0: only at the end), so a killed run loses\n"
            "at most N steps; --resume DIR/last.safetensors continues it.\n"
            "--abort-on-collapse stops when one of the seed's abort criteria fires.\n"
            "Exit status: 0 done, 1 failed, 2 bad input, 3 aborted on collapse, 130\n"
            "interrupted.\n");
}

/* Parse an integer option value; -1 on error (after a message). */
static long long number(const char *opt, const char *value, long long lo)
{
    char *end = NULL;
    long long v = value ? strtoll(value, &end, 10) : 0;
    if (!value || *end || v < lo) {
        fprintf(stderr, "vqjepa: %s needs an integer >= %lld\n", opt, lo);
        return -1;
    }
    return v;
}

/* The options train and ablate share; returns 1 when argv[*i] was one,
 * 0 when not, -1 on error. */
int run_parse_option(run_options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long n;
#define VALUE()                                                                                \
    do {                                                                                       \
        if (!v) {                                                                              \
            fprintf(stderr, "vqjepa: %s needs a value\n", a);                                  \
            return -1;                                                                         \
        }                                                                                      \
        (*i)++;                                                                                \
    } while (0)
    if (!strcmp(a, "--config")) {
        VALUE();
        o->config_path = v;
    } else if (!strcmp(a, "--data")) {
        VALUE();
        o->data_path = v;
    } else if (!strcmp(a, "--out")) {
        VALUE();
        o->out_dir = v;
    } else if (!strcmp(a, "--epochs")) {
        VALUE();
        if ((n = number(a, v, 1)) < 0)
            return -1;
        o->epochs = (int)n;
    } else if (!strcmp(a, "--steps")) {
        VALUE();
        if ((n = number(a, v, 1)) < 0)
            return -1;
        o->steps = n;
    } else if (!strcmp(a, "--threads")) {
        VALUE();
        if ((n = number(a, v, 0)) < 0)
            return -1;
        o->threads = (int)n;
    } else if (!strcmp(a, "--seed")) {
        VALUE();
        if ((n = number(a, v, 0)) < 0)
            return -1;
        o->seed = n;
    } else if (!strcmp(a, "--device")) {
        VALUE();
        vqj_device_kind d;
        if (run_parse_device("train", v, &d))
            return -1;
        o->device = (int)d;
    } else if (!strcmp(a, "--batch")) {
        VALUE();
        if ((n = number(a, v, 1)) < 0)
            return -1;
        o->batch = (int)n;
    } else if (!strcmp(a, "--checkpoint-steps")) {
        VALUE();
        if ((n = number(a, v, 0)) < 0 || n > VQJI_HI_CHECKPOINT_STEPS) {
            if (n > VQJI_HI_CHECKPOINT_STEPS)
                fprintf(stderr, "vqjepa: --checkpoint-steps must be at most %d\n",
                        VQJI_HI_CHECKPOINT_STEPS);
            return -1;
        }
        o->checkpoint_steps = n ? (int)n : -1;
    } else if (!strcmp(a, "--skip-bad")) {
        o->skip_bad = 1;
    } else if (!strcmp(a, "--quiet")) {
        o->quiet = 1;
    } else {
        return 0;
    }
#undef VALUE
    return 1;
}

int cmd_train(int argc, char **argv)
{
    run_options o = {.seed = -1, .device = -1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        }
        int r = run_parse_option(&o, argc, argv, &i);
        if (r < 0)
            return CLI_BAD_INPUT;
        if (r)
            continue;
        if (!strcmp(argv[i], "--resume") && i + 1 < argc)
            o.resume = argv[++i];
        else if (!strcmp(argv[i], "--abort-on-collapse"))
            o.abort_on_collapse = 1;
        else {
            fprintf(stderr, "vqjepa train: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CLI_BAD_INPUT;
        }
    }
    if (o.epochs > 0 && o.steps > 0) {
        fprintf(stderr, "vqjepa train: give --epochs or --steps, not both\n");
        return CLI_BAD_INPUT;
    }
    run_outcome out;
    int rc = run_training(&o, &out);
    if (run_rank() == 0 && (rc == CLI_OK || rc == RUN_INTERRUPTED || rc == RUN_ABORTED)) {
        char report[4200];
        snprintf(report, sizeof report, "%s/report.html", out.out_dir);
        if (report_write(out.out_dir, report) == CLI_OK)
            printf("report: %s\n", report);
        else if (rc == CLI_OK) /* the report could not be written: say so in the status */
            rc = CLI_FAILED;
    }
    return rc;
}
