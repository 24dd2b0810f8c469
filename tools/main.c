/* `vqjepa`: dispatch to a subcommand from the table below. */
#include "cli.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const struct {
    const char *name;
    cli_command_fn fn;
    const char *summary;
} commands[] = {
    {"tokenize", cmd_tokenize, "print the object tokens of ARC task files as JSON lines"},
    {"bench", cmd_bench, "time the library on the ARC training set"},
    {"config", cmd_config, "print the resolved configuration (defaults or --config FILE) as YAML"},
    {"train", cmd_train, "train a configuration (default: built-in, on synthetic data)"},
    {"eval", cmd_eval, "retrieval, code usage and baselines of a checkpoint on ARC tasks"},
    {"encode", cmd_encode, "object codes and embeddings of ARC tasks from a checkpoint"},
    {"ablate", cmd_ablate, "the seed's four-way VQ comparison, as a markdown table"},
    {"monitor", cmd_monitor, "health checks of a training run (exit 0 ok, 1 warn, 2 alert)"},
    {"report", cmd_report, "an HTML page with plots of a training run"},
};
#define NUM_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: vqjepa COMMAND [OPTIONS] [ARGS]\n"
               "       vqjepa --help | --version\n\n"
               "commands:\n");
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`vqjepa COMMAND --help` describes a command.\n");
}

vqj_context *cli_context(const char *command, int threads)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = threads;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK) {
        fprintf(stderr, "vqjepa %s: %s\n", command, vqj_last_error());
        return NULL;
    }
    return ctx;
}

/* OpenBLAS picks its kernels when it loads. A release older than the CPU
 * (Debian 12's 0.3.21 on Intel's Emerald Rapids) does not know the model
 * and falls back to its SSE3 "Prescott" kernels, several times slower than
 * the AVX-512 or AVX2 ones the CPU runs (docs/benchmarks.md). Then run again
 * with OPENBLAS_CORETYPE naming the kernels the CPU supports; a caller's own
 * OPENBLAS_CORETYPE is left alone, and if the exec fails nothing changes. */
static void openblas_kernels(char **argv)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (getenv("OPENBLAS_CORETYPE"))
        return;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "prescott") != 0)
        return;
    __builtin_cpu_init();
    const char *want = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2") ? "Haswell"
                                                        : NULL;
    if (!want || setenv("OPENBLAS_CORETYPE", want, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    openblas_kernels(argv);
    if (argc < 2) {
        usage(stderr);
        return CLI_BAD_INPUT;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        /* The version is the last word: scripts read it with awk '{print $NF}'. */
        printf("vqjepa %s\n", vqj_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vqjepa: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_BAD_INPUT;
}
