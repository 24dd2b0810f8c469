/* Load a checkpoint and turn ARC tasks into discrete object codes.
 *
 *   bin/example_encode_tasks CHECKPOINT TASK.json|DIR [LIMIT]
 *
 * Prints, per task, its grids' object counts and codes, then how many of the
 * codebook's codes the tasks used. */
#include "common.h"

#include <dirent.h>
#include <string.h>

/* The model of a checkpoint: its own configuration and seed. */
static vqj_model *load_model(const char *path, vqj_context **ctx_out, vqj_config **cfg_out,
                             example_model *m)
{
    vqj_context *probe = NULL;
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    CHECK(NULL, vqj_context_create(&cp, &probe));
    uint64_t seed = 0;
    char *yaml = example_checkpoint_config(probe, path, &seed);
    vqj_context_destroy(probe);
    cp.seed = seed;
    CHECK(NULL, vqj_context_create(&cp, ctx_out));
    CHECK(*ctx_out, vqj_config_parse(*ctx_out, yaml, strlen(yaml), path, cfg_out));
    free(yaml);
    example_model_create(*ctx_out, *cfg_out, m);
    CHECK(*ctx_out, vqj_trainer_load(m->trainer, path));
    vqj_model *model = NULL;
    CHECK(*ctx_out, vqj_model_create(*ctx_out, &m->tokenizer, m->encoder, m->codebook,
                                     m->predictor, vqj_trainer_target_encoder(m->trainer),
                                     vqj_trainer_target_predictor(m->trainer), &model));
    return model;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CHECKPOINT TASK.json|DIR [LIMIT]\n", argv[0]);
        return 2;
    }
    int limit = argc > 3 ? atoi(argv[3]) : 1 << 30;
    vqj_context *ctx = NULL;
    vqj_config *cfg = NULL;
    example_model m;
    vqj_model *model = load_model(argv[1], &ctx, &cfg, &m);
    const int M = vqj_model_max_objects(model), K = vqj_model_num_codes(model);
    int *used = calloc((size_t)K, sizeof *used);

    /* One file, or the .json files of a folder in name order. */
    struct dirent **names = NULL;
    int count = 1;
    DIR *probe = opendir(argv[2]);
    if (probe) {
        closedir(probe);
        count = scandir(argv[2], &names, NULL, alphasort);
    }
    int tasks = 0, grids_total = 0, objects_total = 0;
    for (int f = 0; f < count && tasks < limit; f++) {
        char path[4096];
        if (names) {
            size_t len = strlen(names[f]->d_name);
            if (len < 6 || strcmp(names[f]->d_name + len - 5, ".json"))
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[2], names[f]->d_name);
        } else {
            snprintf(path, sizeof path, "%s", argv[2]);
        }
        vqj_arc_task *task = NULL;
        CHECK(ctx, vqj_arc_task_load(ctx, path, &task));
        vqj_grid grids[64];
        int n = 0;
        for (int split = VQJ_ARC_TRAIN; split <= VQJ_ARC_TEST; split++)
            for (size_t i = 0; i < vqj_arc_task_num_pairs(task, (vqj_arc_split)split); i++) {
                const vqj_grid *in = vqj_arc_task_input(task, (vqj_arc_split)split, i);
                const vqj_grid *out = vqj_arc_task_output(task, (vqj_arc_split)split, i);
                if (in && n < 64)
                    grids[n++] = *in;
                if (out && n < 64)
                    grids[n++] = *out;
            }
        int32_t *codes = malloc((size_t)n * M * sizeof *codes);
        size_t *objects = malloc((size_t)n * sizeof *objects);
        CHECK(ctx, vqj_model_encode_grids(model, grids, (size_t)n, codes, objects, NULL));
        printf("%s:", vqj_arc_task_name(task));
        for (int g = 0; g < n; g++) {
            printf(" [");
            for (size_t j = 0; j < objects[g]; j++) {
                printf("%s%d", j ? " " : "", codes[(size_t)g * M + j]);
                used[codes[(size_t)g * M + j]]++;
            }
            printf("]");
            objects_total += (int)objects[g];
        }
        printf("\n");
        grids_total += n;
        tasks++;
        free(codes);
        free(objects);
        vqj_arc_task_destroy(task);
    }
    int distinct = 0;
    for (int k = 0; k < K; k++)
        distinct += used[k] > 0;
    printf("%d tasks, %d grids, %d objects, %d of %d codes used\n", tasks, grids_total,
           objects_total, distinct, K);
    for (int f = 0; names && f < count; f++)
        free(names[f]);
    free(names);
    free(used);
    vqj_model_destroy(model);
    example_model_destroy(&m);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
    return tasks > 0 ? 0 : 1;
}
