/* The `vqjepa` command-line program: one function per subcommand. To add a
 * subcommand, declare its function here and add a row to the table in
 * main.c. */
#ifndef VQJ_CLI_H
#define VQJ_CLI_H

#include "vqjepa.h"

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
int cmd_config(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_ablate(int argc, char **argv);
int cmd_monitor(int argc, char **argv);

/* Write RUN_DIR's report page to out_path; an exit status. */
int report_write(const char *run_dir, const char *out_path);

/* The health input of a run folder's JSONL files; *val_loss (freed by the
 * caller) backs in->val_loss. 0 on success. */
int monitor_input(const char *run_dir, vqj_health_input *in, float **val_loss);

/* A CPU context with `threads` threads (0: all cores), or NULL after
 * printing why to stderr. */
vqj_context *cli_context(const char *command, int threads);

#endif
