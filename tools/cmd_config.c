/* `vqjepa config [--config FILE]`: print the resolved configuration as YAML
 * (the built-in defaults, or FILE over them), so a run's settings can be
 * read, diffed and fed back with --config. */
#include "cli.h"
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f)
{
    fprintf(f,
            "usage: vqjepa config [--config FILE]\n\n"
            "Print the resolved configuration as YAML on stdout: the built-in default\n"
            "(builtin:default, docs/defaults.md), builtin:gentle (the library's defaults,\n"
            "the seed's gentle run), or FILE read over the library's defaults. Keys that\n"
            "are not implemented are\n"
            "named in warnings on stderr. An invalid or unreadable FILE is reported as\n"
            "FILE:LINE: ... on stderr with exit status 2. docs/config.md lists the keys.\n");
}

/* Warnings of the config loader, one line each. */
static void log_to_stderr(void *user, vqj_log_level level, const char *message)
{
    (void)user;
    fprintf(stderr, "vqjepa config: %s%s\n", level >= VQJ_LOG_WARNING ? "warning: " : "",
            message);
}

int cmd_config(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
        } else {
            fprintf(stderr, "vqjepa config: unexpected argument '%s'\n\n", argv[i]);
            help(stderr);
            return CLI_BAD_INPUT;
        }
    }

    vqj_context_params cp;
    vqj_context_params_default(&cp);
    cp.num_threads = 1;
    cp.log_fn = log_to_stderr;
    cp.log_level = VQJ_LOG_WARNING;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&cp, &ctx) != VQJ_OK) {
        fprintf(stderr, "vqjepa config: %s\n", vqj_last_error());
        return CLI_FAILED;
    }
    vqj_config *cfg = NULL;
    vqj_status st = run_config_open(ctx, path, &cfg);
    char *text = NULL;
    if (st == VQJ_OK)
        st = vqj_config_write_yaml(cfg, &text);
    int rc = CLI_OK;
    if (st != VQJ_OK) {
        if (*vqj_last_error()) /* else run_config_open() said why */
            fprintf(stderr, "vqjepa config: %s\n", vqj_last_error());
        rc = (st == VQJ_ERR_INVALID_ARGUMENT || st == VQJ_ERR_PARSE || st == VQJ_ERR_IO)
                 ? CLI_BAD_INPUT
                 : CLI_FAILED;
    } else if (fputs(text, stdout) == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "vqjepa config: cannot write to stdout\n");
        rc = CLI_FAILED;
    }
    free(text);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
    return rc;
}
