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

/* A CPU context with `threads` threads (0: all cores), or NULL after
 * printing why to stderr. */
vqj_context *cli_context(const char *command, int threads);

#endif
