/* `vqjepa tokenize TASK.json ...`: one JSON line per grid, in the padded
 * layout of the reference system, so the output can be diffed against it. */
#include "cli.h"
#include "core/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_tokenizer_option(vqj_tokenizer_params *p, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const int has_value = *i + 1 < argc;
    if (!strcmp(a, "--no-normalize")) {
        p->normalize = 0;
        return 1;
    }
    if (!strcmp(a, "--no-respect-colors")) {
        p->respect_colors = 0;
        return 1;
    }
    if (strcmp(a, "--max-objects") && strcmp(a, "--max-color-features") &&
        strcmp(a, "--connectivity") && strcmp(a, "--background"))
        return 0;
    if (!has_value) {
        fprintf(stderr, "vqjepa: %s needs a value\n", a);
        return -1;
    }
    const char *v = argv[++*i];
    if (!strcmp(a, "--background")) { /* colors, comma-separated */
        unsigned mask = 0;
        for (const char *c = v; *c; c++) {
            if (*c >= '0' && *c <= '9' && (c[1] == ',' || !c[1]) && (c == v || c[-1] == ','))
                mask |= 1u << (*c - '0');
            else if (*c != ',') {
                fprintf(stderr, "vqjepa: --background %s: expected colors 0..9 like 0,5\n", v);
                return -1;
            }
        }
        p->background = (uint16_t)mask;
        return 1;
    }
    char *end = NULL;
    long n = strtol(v, &end, 10);
    const long lo = !strcmp(a, "--max-color-features") ? 0 : 1;
    const long hi = !strcmp(a, "--max-objects")    ? VQJI_HI_MAX_OBJECTS
                    : !strcmp(a, "--connectivity") ? 8
                                                   : VQJI_HI_MAX_COLOR_FEATURES;
    if (!*v || *end || n < lo || n > hi ||
        (!strcmp(a, "--connectivity") && n != 4 && n != 8)) {
        if (!strcmp(a, "--connectivity"))
            fprintf(stderr, "vqjepa: %s %s: expected 4 or 8\n", a, v);
        else
            fprintf(stderr, "vqjepa: %s %s: expected an integer in [%ld, %ld]\n", a, v, lo, hi);
        return -1;
    }
    if (!strcmp(a, "--max-objects"))
        p->max_objects = (int)n;
    else if (!strcmp(a, "--max-color-features"))
        p->max_color_features = (int)n;
    else
        p->connectivity = (int)n;
    return 1;
}

static void help(FILE *f)
{
    fprintf(f,
            "usage: vqjepa tokenize [OPTIONS] TASK.json [TASK.json ...]\n\n"
            "Tokenize every grid of each ARC task file and print one JSON line per grid, train pairs (input, output) then test pairs\n"
            "(input, then output where present):\n"
            "  {\"task\": NAME, \"index\": I, \"features\": [M rows of F numbers],\n"
            "   \"mask\": [M ints], \"adjacency\": [M rows of M ints]}\n"
            "padded with zeros past the real objects. A file that cannot be read or parsed\n"
            "is reported on stderr and skipped; the exit status is then 2.\n\n"
            "Tokenizer options (docs/tokenizer.md; defaults of vqj_tokenizer_params_default):\n"
            "%s",
            CLI_TOKENIZER_HELP);
}

/* %.9g keeps every float32 exactly and prints whole numbers without a point. */
static void print_row(const float *v, size_t n, int as_int)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", stdout);
        if (as_int)
            printf("%d", (int)v[i]);
        else
            printf("%.9g", (double)v[i]);
    }
    putchar(']');
}

/* JSON string with the characters JSON requires escaped. */
static void print_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

typedef struct scratch {
    vqj_grid *grids;
    size_t grids_cap;
    float *features, *mask, *adjacency;
} scratch;

/* Tokenize and print one task; CLI_FAILED after printing why. */
static int emit_task(vqj_context *ctx, vqj_tokens *tokens, const vqj_arc_task *task,
                     scratch *s, const vqj_tokenizer_params *p)
{
    size_t n = 0;
    const size_t ntrain = vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN);
    const size_t ntest = vqj_arc_task_num_pairs(task, VQJ_ARC_TEST);
    const size_t need = 2 * (ntrain + ntest);
    if (need > s->grids_cap) {
        vqj_grid *g = realloc(s->grids, need * sizeof *g);
        if (!g) {
            fprintf(stderr, "vqjepa tokenize: out of memory\n");
            return CLI_FAILED;
        }
        s->grids = g;
        s->grids_cap = need;
    }
    for (int split = VQJ_ARC_TRAIN; split <= VQJ_ARC_TEST; split++) {
        const size_t pairs = split == VQJ_ARC_TRAIN ? ntrain : ntest;
        for (size_t i = 0; i < pairs; i++) {
            s->grids[n++] = *vqj_arc_task_input(task, (vqj_arc_split)split, i);
            const vqj_grid *out = vqj_arc_task_output(task, (vqj_arc_split)split, i);
            if (out)
                s->grids[n++] = *out;
        }
    }
    if (vqj_tokenize(ctx, tokens, s->grids, n) != VQJ_OK) {
        fprintf(stderr, "vqjepa tokenize: %s: %s\n", vqj_arc_task_name(task),
                vqj_last_error());
        return CLI_BAD_INPUT;
    }
    const size_t M = (size_t)p->max_objects, F = (size_t)vqj_tokenizer_feature_dim(p);
    for (size_t g = 0; g < n; g++) {
        if (vqj_tokens_padded(ctx, tokens, g, s->features, s->mask, s->adjacency) != VQJ_OK) {
            fprintf(stderr, "vqjepa tokenize: %s\n", vqj_last_error());
            return CLI_FAILED;
        }
        fputs("{\"task\": ", stdout);
        print_string(vqj_arc_task_name(task));
        printf(", \"index\": %zu, \"features\": [", g);
        for (size_t i = 0; i < M; i++) {
            if (i)
                fputs(", ", stdout);
            print_row(s->features + i * F, F, 0);
        }
        fputs("], \"mask\": ", stdout);
        print_row(s->mask, M, 1);
        fputs(", \"adjacency\": [", stdout);
        for (size_t i = 0; i < M; i++) {
            if (i)
                fputs(", ", stdout);
            print_row(s->adjacency + i * M, M, 1);
        }
        fputs("]}\n", stdout);
    }
    return CLI_OK;
}

int cmd_tokenize(int argc, char **argv)
{
    int first = 1;
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    for (; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
        if (strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "-h") == 0) {
            help(stdout);
            return CLI_OK;
        }
        if (strcmp(argv[first], "--") == 0) {
            first++;
            break;
        }
        const int r = cli_tokenizer_option(&p, argc, argv, &first);
        if (r < 0)
            return CLI_BAD_INPUT;
        if (r == 0) {
            fprintf(stderr, "vqjepa tokenize: unknown option '%s'\n", argv[first]);
            help(stderr);
            return CLI_BAD_INPUT;
        }
    }
    if (first >= argc) {
        help(stderr);
        return CLI_BAD_INPUT;
    }

    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    vqj_context *ctx = cli_context("tokenize", 1);
    if (!ctx)
        return CLI_FAILED;
    vqj_tokens *tokens = NULL;
    scratch s = {0};
    const size_t M = (size_t)p.max_objects, F = (size_t)vqj_tokenizer_feature_dim(&p);
    int status = CLI_OK;
    if (vqj_tokens_create(ctx, &p, &tokens) != VQJ_OK) {
        fprintf(stderr, "vqjepa tokenize: %s\n", vqj_last_error());
        status = CLI_FAILED;
        goto done;
    }
    s.features = malloc(M * F * sizeof(float));
    s.mask = malloc(M * sizeof(float));
    s.adjacency = malloc(M * M * sizeof(float));
    if (!s.features || !s.mask || !s.adjacency) {
        fprintf(stderr, "vqjepa tokenize: out of memory\n");
        status = CLI_FAILED;
        goto done;
    }
    for (int i = first; i < argc; i++) {
        vqj_arc_task *task = NULL;
        if (vqj_arc_task_load(ctx, argv[i], &task) != VQJ_OK) {
            /* The message names the file and where in it. */
            fflush(stdout);
            fprintf(stderr, "vqjepa tokenize: %s\n", vqj_last_error());
            status = CLI_BAD_INPUT;
            continue;
        }
        int st = emit_task(ctx, tokens, task, &s, &p);
        vqj_arc_task_destroy(task);
        if (st == CLI_FAILED) {
            status = CLI_FAILED;
            break;
        }
        if (st != CLI_OK)
            status = st;
    }
done:
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vqjepa tokenize: writing the output failed\n");
        status = CLI_FAILED;
    }
    free(s.grids);
    free(s.features);
    free(s.mask);
    free(s.adjacency);
    vqj_tokens_destroy(tokens);
    vqj_context_destroy(ctx);
    return status;
}
