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
    fprintf(f, "usage: vqjepa encode --checkpoint C [--threads T] TASK.json [TASK.json ...]\n\n"
               "For each grid of each task (train pairs input, output, then test pairs), one\n"
               "JSON line: {\"task\", \"index\", \"codes\": [one per object, tokenizer order],\n"
               "\"embedding\": [P floats]}. Exit status 2 for bad input, 1 on failure.\n");
}

static int encode_task(vqj_context *ctx, const vqj_model *model, const char *path)
{
    vqj_arc_task *task = NULL;
    if (vqj_arc_task_load(ctx, path, &task) != VQJ_OK) {
        fprintf(stderr, "vqjepa encode: %s\n", vqj_context_last_error(ctx));
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
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
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
    vqj_context *ctx = run_context("encode", threads, 123);
    if (!ctx)
        return CLI_FAILED;
    /* The checkpoint carries its configuration and its context seed. */
    size_t len = 0;
    char *yaml = NULL, seedbuf[32];
    int rc = CLI_BAD_INPUT;
    vqj_config *cfg = NULL;
    vqj_context *mctx = NULL;
    run_model m = {0};
    vqj_model *model = NULL;
    if (vqj_checkpoint_read_metadata(ctx, ckpt, "config", NULL, 0, &len) != VQJ_OK ||
        !(yaml = malloc(len + 1)) ||
        vqj_checkpoint_read_metadata(ctx, ckpt, "config", yaml, len + 1, &len) != VQJ_OK ||
        vqj_checkpoint_read_metadata(ctx, ckpt, "seed", seedbuf, sizeof seedbuf, &len) !=
            VQJ_OK) {
        fprintf(stderr, "vqjepa encode: %s\n", vqj_context_last_error(ctx));
        goto done;
    }
    mctx = run_context("encode", threads, strtoull(seedbuf, NULL, 10));
    if (!mctx)
        goto done;
    if (vqj_config_parse(mctx, yaml, strlen(yaml), ckpt, &cfg) != VQJ_OK) {
        fprintf(stderr, "vqjepa encode: %s\n", vqj_context_last_error(mctx));
        goto done;
    }
    run_model_params mp;
    if (run_model_params_from_config(mctx, cfg, &mp) || run_model_create(mctx, &mp, &m))
        goto done;
    /* Grid embeddings come from the target network, the space predictions
     * are trained to match. */
    if (vqj_trainer_load(m.trainer, ckpt) != VQJ_OK ||
        vqj_model_create(mctx, &m.tokenizer, m.encoder, m.codebook, m.predictor,
                         vqj_trainer_target_encoder(m.trainer),
                         vqj_trainer_target_predictor(m.trainer), &model) != VQJ_OK) {
        fprintf(stderr, "vqjepa encode: %s\n", vqj_context_last_error(mctx));
        goto done;
    }
    rc = CLI_OK;
    for (int i = first; i < argc; i++) {
        int r = encode_task(mctx, model, argv[i]);
        if (r > rc)
            rc = r;
    }
done:
    vqj_model_destroy(model);
    run_model_destroy(&m);
    vqj_config_destroy(cfg);
    free(yaml);
    vqj_context_destroy(mctx);
    vqj_context_destroy(ctx);
    return rc;
}
