/* `vqjepa bench`: time parts of the library on the ARC training set (or on
 * the built-in synthetic data when the default folder is absent). Each
 * measurement is a row of the table below that fills a bench_result (or
 * prints its own lines); add new ones there. */
#include "cli.h"
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DATA "../shared/data/arc-agi-1/data/training"
#define DEFAULT_REPEAT 20

/* What every measurement gets: the loaded tasks and their grids. */
typedef struct bench_env {
    vqj_context *ctx; /* one thread */
    vqj_arc_task **tasks;
    size_t num_tasks;
    vqj_grid *grids; /* every grid of every task, in tokenize order */
    size_t num_grids;
    int repeat; /* timed runs; the best is reported */
    vqj_dataset *synthetic; /* owns the grids when there is no ARC folder */
    const char *data_dir;   /* NULL: synthetic */
    int batch, steps, warmup, threads, json; /* train_step options */
    const char *variant;                     /* "core", "full" or "both" */
} bench_env;

typedef struct bench_result {
    const char *item; /* what is counted, singular: "grid" */
    size_t items;
    double us_per_item;
    int printed; /* the measurement printed its own lines */
} bench_result;

typedef struct bench_measurement {
    const char *what;
    int (*run)(const bench_env *env, bench_result *out); /* an exit status */
} bench_measurement;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The whole set in one vqj_tokenize() call, as a data loader would. */
static int bench_tokenizer(const bench_env *env, bench_result *out)
{
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    vqj_tokens *tokens = NULL;
    if (vqj_tokens_create(env->ctx, &p, &tokens) != VQJ_OK)
        goto fail;
    double best = -1.0;
    /* One untimed run grows the buffers and warms the caches. */
    for (int r = 0; r <= env->repeat; r++) {
        double t0 = now_s();
        if (vqj_tokenize(env->ctx, tokens, env->grids, env->num_grids) != VQJ_OK)
            goto fail;
        double dt = now_s() - t0;
        if (r > 0 && (best < 0 || dt < best))
            best = dt;
    }
    vqj_tokens_destroy(tokens);
    out->item = "grid";
    out->items = env->num_grids;
    out->us_per_item = env->num_grids ? best * 1e6 / (double)env->num_grids : 0.0;
    return CLI_OK;
fail:
    fprintf(stderr, "vqjepa bench: tokenizer: %s\n", vqj_last_error());
    vqj_tokens_destroy(tokens);
    return CLI_FAILED;
}

/* tools/bench_encoder.c: the encoder's training forward + backward on all
 * cores, with its details and the sgemm reference on stderr. */
int bench_encoder(vqj_context *table_ctx, const vqj_grid *grids, size_t num_grids, int repeat,
                  int threads, size_t *tokens_out, double *us_per_token);
static int bench_encoder_row(const bench_env *env, bench_result *out)
{
    out->item = "token";
    return bench_encoder(env->ctx, env->grids, env->num_grids, env->repeat, 0, &out->items,
                         &out->us_per_item);
}

/* tools/bench_train.c: whole training steps, one line per variant. */
int bench_train(vqj_context *table_ctx, const char *data_dir, int batch, int steps, int warmup,
                const char *variant, int threads, int json);
static int bench_train_row(const bench_env *env, bench_result *out)
{
    out->printed = 1;
    return bench_train(env->ctx, env->data_dir, env->batch, env->steps, env->warmup,
                       env->variant, env->threads, env->json);
}

static const bench_measurement measurements[] = {
    {"tokenizer", bench_tokenizer},
    {"encoder fwd+bwd", bench_encoder_row},
    {"train_step", bench_train_row},
};

/* --only NAME selects a measurement by its name or its name's first word. */
static int selected(const char *what, const char *only)
{
    size_t n = only ? strlen(only) : 0;
    return !only || (strncmp(what, only, n) == 0 && (what[n] == 0 || what[n] == ' '));
}

static void help(FILE *f)
{
    fprintf(f,
            "usage: vqjepa bench [--data DIR] [--json] [--repeat N] [--only NAME]\n"
            "                    [--batch B] [--steps N] [--warmup W] [--variant core|full]\n"
            "                    [--max-objects N] [--phases]\n"
            "                    [--threads T] [--device cpu|cuda]\n"
            "                    [--config FILE|builtin:NAME] [--set KEY=VALUE ...]\n\n"
            "Load every *.json ARC task in DIR (default: $VQJ_ARC_DATA, else\n"
            "  " DEFAULT_DATA "\n"
            "when it exists; else the built-in synthetic data) and time each measurement:\n"
            "  tokenizer   one thread, best of N runs (default %d);\n"
            "  encoder     forward + backward on all cores, best of min(N, 3) runs;\n"
            "  train_step  W untimed (default 2) then N timed (default 5) training steps\n"
            "              of B examples (default 256) on T threads (default 0: all\n"
            "              cores), for the \"full\" reference configuration and \"core\"\n"
            "              (SIGReg and invariance off), both unless --variant picks one;\n"
            "              a step is one micro-batch, optimizer step included\n"
            "              (docs/benchmarks.md).\n"
            "--only NAME runs one of them. --json prints one JSON object per line.\n"
            "--device runs train_step there (cpu by default; a build without CUDA refuses\n"
            "cuda).\n"
            "--phases adds train_step's time by kind of op and its GEMMs replayed\n"
            "  through plain sgemm (the step's share of the sgemm rate).\n"
            "--config times train_step on that configuration (e.g. builtin:default)\n"
            "  instead of the library's defaults (grad_accum_steps set to 1,\n"
            "  tokenizer.max_objects kept unless --max-objects is given); each --set\n"
            "  KEY=VALUE then changes one key (`make bench-quantizers` uses them).\n",
            DEFAULT_REPEAT);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load the tasks of `dir` in name order; an exit status. */
static int load_tasks(bench_env *env, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "vqjepa bench: cannot open %s: %s\n", dir, strerror(errno));
        return CLI_BAD_INPUT;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int status = CLI_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 512;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                status = CLI_FAILED;
                break;
            }
            names = grown;
        }
        if (!(names[n] = malloc(strlen(dir) + len + 2))) {
            status = CLI_FAILED;
            break;
        }
        sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (status == CLI_OK && n)
        qsort(names, n, sizeof *names, cmp_names);
    if (status == CLI_OK && !(env->tasks = calloc(n ? n : 1, sizeof *env->tasks)))
        status = CLI_FAILED;
    if (status == CLI_FAILED)
        fprintf(stderr, "vqjepa bench: out of memory\n");
    size_t grids = 0;
    for (size_t i = 0; status == CLI_OK && i < n; i++) {
        if (vqj_arc_task_load(env->ctx, names[i], &env->tasks[i]) != VQJ_OK) {
            fprintf(stderr, "vqjepa bench: %s\n", vqj_last_error());
            status = CLI_BAD_INPUT;
            break;
        }
        env->num_tasks = i + 1;
        for (int s = VQJ_ARC_TRAIN; s <= VQJ_ARC_TEST; s++)
            grids += 2 * vqj_arc_task_num_pairs(env->tasks[i], (vqj_arc_split)s);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (status != CLI_OK)
        return status;
    if (!(env->grids = malloc((grids ? grids : 1) * sizeof *env->grids))) {
        fprintf(stderr, "vqjepa bench: out of memory\n");
        return CLI_FAILED;
    }
    for (size_t i = 0; i < env->num_tasks; i++)
        for (int s = VQJ_ARC_TRAIN; s <= VQJ_ARC_TEST; s++)
            for (size_t j = 0; j < vqj_arc_task_num_pairs(env->tasks[i], (vqj_arc_split)s); j++) {
                const vqj_grid *g = vqj_arc_task_input(env->tasks[i], (vqj_arc_split)s, j);
                env->grids[env->num_grids++] = *g;
                if ((g = vqj_arc_task_output(env->tasks[i], (vqj_arc_split)s, j)))
                    env->grids[env->num_grids++] = *g;
            }
    if (!env->num_grids) {
        fprintf(stderr, "vqjepa bench: no grids in %s (no *.json task files?)\n", dir);
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

/* Without an ARC folder: the grids of built-in synthetic examples. */
static int load_synthetic(bench_env *env)
{
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = 1000; /* 4000 grids, about ARC-AGI-1's training set */
    if (vqj_dataset_synthetic(env->ctx, &dp, &sp, &env->synthetic) != VQJ_OK) {
        fprintf(stderr, "vqjepa bench: %s\n", vqj_last_error());
        return CLI_FAILED;
    }
    size_t n = vqj_dataset_num_examples(env->synthetic);
    int T = vqj_dataset_context_window(env->synthetic);
    if (!(env->grids = malloc(n * (size_t)(T + 1) * sizeof *env->grids))) {
        fprintf(stderr, "vqjepa bench: out of memory\n");
        return CLI_FAILED;
    }
    for (size_t i = 0; i < n; i++) {
        const vqj_grid *c, *t;
        vqj_dataset_example(env->synthetic, i, &c, &t);
        for (int k = 0; k < T; k++)
            env->grids[env->num_grids++] = c[k];
        env->grids[env->num_grids++] = *t;
    }
    return CLI_OK;
}

/* Parse a count option's value into *out; an exit status. */
static int count_option(const char *name, const char *arg, long lo, long hi, int *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (!*arg || *end || v < lo || v > hi) {
        fprintf(stderr, "vqjepa bench: %s needs a count in %ld..%ld, got '%s'\n", name, lo, hi,
                arg);
        return CLI_BAD_INPUT;
    }
    *out = (int)v;
    return CLI_OK;
}

int cmd_bench(int argc, char **argv)
{
    const char *dir = getenv("VQJ_ARC_DATA");
    int dir_given = dir && *dir;
    if (!dir_given)
        dir = DEFAULT_DATA;
    int json = 0;
    long repeat = DEFAULT_REPEAT;
    const char *only = NULL;
    bench_env opt = {.batch = 256, .steps = 5, .warmup = 2, .variant = "both"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            dir = argv[++i];
            dir_given = 1;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc) {
            opt.variant = argv[++i];
            if (strcmp(opt.variant, "core") && strcmp(opt.variant, "full")) {
                fprintf(stderr, "vqjepa bench: --variant is core or full, got '%s'\n",
                        opt.variant);
                return CLI_BAD_INPUT;
            }
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            if (count_option(argv[i], argv[i + 1], 1, 1000000, &opt.batch) != CLI_OK)
                return CLI_BAD_INPUT;
            i++;
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            if (count_option(argv[i], argv[i + 1], 1, 1000000, &opt.steps) != CLI_OK)
                return CLI_BAD_INPUT;
            i++;
        } else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc) {
            if (count_option(argv[i], argv[i + 1], 0, 1000000, &opt.warmup) != CLI_OK)
                return CLI_BAD_INPUT;
            i++;
        } else if (strcmp(argv[i], "--phases") == 0) {
            extern int bench_phases; /* tools/bench_train.c */
            bench_phases = 1;
        } else if (strcmp(argv[i], "--max-objects") == 0 && i + 1 < argc) {
            extern int bench_max_objects; /* tools/bench_train.c */
            if (count_option(argv[i], argv[i + 1], 1, 4096, &bench_max_objects) != CLI_OK)
                return CLI_BAD_INPUT;
            i++;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            extern const char *bench_config; /* tools/bench_train.c */
            bench_config = argv[++i];
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            extern const char *bench_sets[]; /* tools/bench_train.c */
            extern int bench_num_sets;
            if (bench_num_sets == BENCH_MAX_SETS || !strchr(argv[i + 1], '=')) {
                fprintf(stderr, "vqjepa bench: --set takes KEY=VALUE, at most %d times; got '%s'\n",
                        BENCH_MAX_SETS, argv[i + 1]);
                return CLI_BAD_INPUT;
            }
            bench_sets[bench_num_sets++] = argv[++i];
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            extern vqj_device_kind bench_device; /* tools/bench_train.c */
            if (run_parse_device("bench", argv[++i], &bench_device))
                return CLI_BAD_INPUT;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (count_option(argv[i], argv[i + 1], 0, 4096, &opt.threads) != CLI_OK)
                return CLI_BAD_INPUT;
            i++;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end;
            repeat = strtol(argv[++i], &end, 10);
            if (*end || repeat < 1 || repeat > 1000000) {
                fprintf(stderr, "vqjepa bench: --repeat needs a count of 1 or more, got '%s'\n",
                        argv[i]);
                return CLI_BAD_INPUT;
            }
        } else {
            fprintf(stderr, "vqjepa bench: unknown or incomplete option '%s'\n", argv[i]);
            help(stderr);
            return CLI_BAD_INPUT;
        }
    }

    int known = !only;
    for (size_t m = 0; m < sizeof measurements / sizeof measurements[0]; m++)
        known |= selected(measurements[m].what, only);
    if (!known) {
        fprintf(stderr, "vqjepa bench: --only: no measurement named '%s'\n", only);
        return CLI_BAD_INPUT;
    }
    bench_env env = opt;
    env.repeat = (int)repeat;
    env.json = json;
    env.data_dir = dir;
    if (!(env.ctx = cli_context("bench", 1)))
        return CLI_FAILED;
    int status;
    if (!dir_given && access(dir, F_OK) != 0) {
        fprintf(stderr, "vqjepa bench: no %s; using the built-in synthetic data\n", dir);
        env.data_dir = NULL;
        status = load_synthetic(&env);
    } else {
        status = load_tasks(&env, dir);
    }
    for (size_t m = 0; status == CLI_OK && m < sizeof measurements / sizeof measurements[0];
         m++) {
        if (!selected(measurements[m].what, only))
            continue;
        bench_result r = {0};
        status = measurements[m].run(&env, &r);
        if (status != CLI_OK || r.printed)
            continue;
        if (json)
            printf("{\"what\":\"%s\",\"%ss\":%zu,\"us_per_%s\":%.4f}\n", measurements[m].what,
                   r.item, r.items, r.item, r.us_per_item);
        else
            printf("%s: %zu %ss, %.2f us/%s\n", measurements[m].what, r.items, r.item,
                   r.us_per_item, r.item);
        fflush(stdout);
    }
    for (size_t i = 0; i < env.num_tasks; i++)
        vqj_arc_task_destroy(env.tasks[i]);
    free(env.tasks);
    free(env.grids);
    vqj_dataset_destroy(env.synthetic);
    vqj_context_destroy(env.ctx);
    return status;
}
