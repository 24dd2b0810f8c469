/* `vqjepa encode --checkpoint C FILE.json ...`: the object codes and the
 * embedding of every grid of ARC tasks, as JSON lines, from a trained
 * checkpoint (whose own configuration says how to build the model). */
#include "cli.h"
#include "run.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vqjepa encode --checkpoint C [--threads T] [--device cpu|cuda]\n"
            "                     [TOKENIZER OPTIONS] TASK.json ...\n\n"
            "For each grid of each task (train pairs input, output, then test pairs), one\n"
            "JSON line: {\"task\", \"index\", \"codes\": [one per object, tokenizer order],\n"
            "\"embedding\": [P floats]}. Exit status 2 for bad input, 1 on failure.\n\n"
            "Tokenizer options override the checkpoint's (--max-color-features must keep its\n"
            "feature count):\n%s",
            CLI_TOKENIZER_HELP);
}

static int encode_task(vqj_context *ctx, const vqj_model *model, const char *path)
{
    vqj_arc_task *task = NULL;
    if (vqj_arc_task_load(ctx, path, &task) != VQJ_OK) {
        fprintf(stderr, "vqjepa encode: %s\n", vqj_last_error());
        return CLI_BAD_INPUT;
    }
    int M = vqj_model_max_objects(model), P = vqj_model_embedding_dim(model);
    int32_t *codes = malloc((size_t)M * sizeof *codes);
    float *emb = malloc((size_t)P * sizeof *emb);
    int rc = CLI_OK, index = 0;
    for (int split = VQJ_ARC_TRAIN; split <= VQJ_ARC_TEST && rc == CLI_OK; split++) {
        size_t pairs = vqj_arc_task_num_pairs(task, (vqj_arc_split)split);
        for (size_t i = 0; i < pairs && rc == CLI_OK; i++) {
            const vqj_grid *grids[2] = {vqj_arc_task_input(task, (vqj_arc_split)split, i),
                                        vqj_arc_task_output(task, (vqj_arc_split)split, i)};
            for (int k = 0; k < 2 && rc == CLI_OK; k++) {
                if (!grids[k])
                    continue;
                size_t n = 0;
                if (vqj_model_encode_grid(model, grids[k], codes, &n, emb) != VQJ_OK) {
                    fprintf(stderr, "vqjepa encode: %s: %s\n", path, vqj_last_error());
                    rc = CLI_FAILED;
                    break;
                }
                json_t *r = json_object(), *c = json_array(), *e = json_array();
                json_object_set_new(r, "task", json_string(vqj_arc_task_name(task)));
                json_object_set_new(r, "index", json_integer(index++));
                for (size_t j = 0; j < n; j++)
                    json_array_append_new(c, json_integer(codes[j]));
                for (int j = 0; j < P; j++)
                    json_array_append_new(e, json_real(emb[j]));
                json_object_set_new(r, "codes", c);
                json_object_set_new(r, "embedding", e);
                char *text = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(9));
                if (text)
                    printf("%s\n", text);
                free(text);
                json_decref(r);
            }
        }
    }
    free(codes);
    free(emb);
    vqj_arc_task_destroy(task);
    return rc;
}

int cmd_encode(int argc, char **argv)
{
    const char *ckpt = NULL;
    int threads = 0, first = 0;
    vqj_device_kind device = VQJ_DEVICE_CPU;
    vqj_tokenizer_params over = {.size = sizeof over, .max_objects = -1,
                                 .max_color_features = -1, .background = 0xffff,
                                 .connectivity = -1, .normalize = -1, .respect_colors = -1};
    for (int i = 1; i < argc; i++) {
        const int r = cli_tokenizer_option(&over, argc, argv, &i);
        if (r < 0)
            return CLI_BAD_INPUT;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            if (run_parse_device("encode", argv[++i], &device))
                return CLI_BAD_INPUT;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "vqjepa encode: unknown option '%s'\n", argv[i]);
            return CLI_BAD_INPUT;
        } else {
            first = i;
            break;
        }
    }
    if (!ckpt || !first) {
        usage(stderr);
        return CLI_BAD_INPUT;
    }
    run_checkpoint c;
    if (run_checkpoint_open("encode", ckpt, threads, device, 1, &over, &c))
        return CLI_BAD_INPUT;
    int rc = CLI_OK;
    for (int i = first; i < argc; i++) {
        int r = encode_task(c.ctx, c.model, argv[i]);
        if (r > rc)
            rc = r;
    }
    run_checkpoint_close(&c);
    return rc;
}
