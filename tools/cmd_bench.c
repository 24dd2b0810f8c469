/* `vqjepa bench`: time parts of the library on the ARC training set. Each
 * measurement is a row of the table below that fills a bench_result; add new
 * ones there. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
} bench_env;

typedef struct bench_result {
    const char *item; /* what is counted, singular: "grid" */
    size_t items;
    double us_per_item;
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
    fprintf(stderr, "vqjepa bench: tokenizer: %s\n", vqj_context_last_error(env->ctx));
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

static const bench_measurement measurements[] = {
    {"tokenizer", bench_tokenizer},
    {"encoder fwd+bwd", bench_encoder_row},
};

static void help(FILE *f)
{
    fprintf(f,
            "usage: vqjepa bench [--data DIR] [--json] [--repeat N]\n\n"
            "Load every *.json ARC task in DIR (default: $VQJ_ARC_DATA, else\n"
            DEFAULT_DATA ")\n"
            "and time each measurement on one thread, reporting the best of N runs\n"
            "(default %d). --json prints one JSON object per measurement.\n",
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
            fprintf(stderr, "vqjepa bench: %s\n", vqj_context_last_error(env->ctx));
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

int cmd_bench(int argc, char **argv)
{
    const char *dir = getenv("VQJ_ARC_DATA");
    if (!dir || !*dir)
        dir = DEFAULT_DATA;
    int json = 0;
    long repeat = DEFAULT_REPEAT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            dir = argv[++i];
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

    bench_env env = {.repeat = (int)repeat};
    if (!(env.ctx = cli_context("bench", 1)))
        return CLI_FAILED;
    int status = load_tasks(&env, dir);
    for (size_t m = 0; status == CLI_OK && m < sizeof measurements / sizeof measurements[0];
         m++) {
        bench_result r = {0};
        status = measurements[m].run(&env, &r);
        if (status != CLI_OK)
            break;
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
    vqj_context_destroy(env.ctx);
    return status;
}
