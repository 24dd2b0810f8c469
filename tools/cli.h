/* The `vqjepa` command-line program: one function per subcommand. To add a
 * subcommand, declare its function here and add a row to the table in
 * main.c. */
#ifndef VQJ_CLI_H
#define VQJ_CLI_H

#include "vqjepa_stages.h"

#include <jansson.h>
#include <stdio.h>

/* Exit statuses shared by every subcommand. */
enum {
    CLI_OK = 0,
    CLI_FAILED = 1, /* the library or the system reported an error */
    CLI_BAD_INPUT = 2 /* bad usage or a bad input file */
};

/* A subcommand: argv[0] is its name; returns an exit status. */
typedef int (*cli_command_fn)(int argc, char **argv);

int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* Most `vqjepa bench --set KEY=VALUE` options in one call. */
#define BENCH_MAX_SETS 16
int cmd_config(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_ablate(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* The evaluation of `model` on `set` (tools/cmd_eval.c) as a JSON object
 * with the fields of docs/evaluation.md; with `baselines`, the untrained
 * `init` model (may be NULL) and the feature baselines too. NULL after
 * printing why. */
json_t *eval_measure(vqj_context *ctx, const vqj_model *model, const vqj_model *init,
                     const vqj_eval_set *set, int baselines);
/* That object as a short table. */
void eval_print_table(FILE *f, const json_t *o);

/* eval_measure() of the checkpoint `ckpt` on `data` (a --data value), with
 * "checkpoint", "data" and "seconds" added; NULL after printing why, with
 * *rc the exit status. */
json_t *eval_checkpoint(const char *ckpt, const char *data, int threads, vqj_device_kind device,
                        int baselines, int *rc);

/* Write RUN_DIR's report page to out_path; an exit status. */
int report_write(const char *run_dir, const char *out_path);

/* The health input of a run folder's JSONL files; *val_loss (freed by the
 * caller) backs in->val_loss. 0 on success. */
int monitor_input(const char *run_dir, vqj_health_input *in, float **val_loss);

/* The tokenizer options of `tokenize` and `encode` (tools/cmd_tokenize.c):
 * 1 when argv[*i] (and its value, advancing *i) was one and went into `p`,
 * 0 when it is not one, -1 after printing why a value is bad. */
int cli_tokenizer_option(vqj_tokenizer_params *p, int argc, char **argv, int *i);
#define CLI_TOKENIZER_HELP                                                                   \
    "  --max-objects N          objects kept per grid, largest first (1..4096)\n"          \
    "  --max-color-features N   color-count slots per object (0..10)\n"                    \
    "  --background C[,C...]    background colors (default 0)\n"                           \
    "  --connectivity 4|8       cell neighbourhood of an object\n"                         \
    "  --no-normalize           raw features, not divided by grid sizes\n"                 \
    "  --no-respect-colors      an object may hold several colors\n"

/* A CPU context with `threads` threads (0: all cores), or NULL after
 * printing why to stderr. */
vqj_context *cli_context(const char *command, int threads);

#endif
