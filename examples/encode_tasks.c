/* Load a checkpoint and turn ARC tasks into discrete object codes.
 *
 *   bin/example_encode_tasks CHECKPOINT TASK.json|DIR [LIMIT]
 *
 * Prints, per task, its grids' object counts and codes, then how many of the
 * codebook's codes the tasks used. */
#include "common.h"

#include <dirent.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CHECKPOINT TASK.json|DIR [LIMIT]\n", argv[0]);
        return 2;
    }
    int limit = argc > 3 ? atoi(argv[3]) : 1 << 30;
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    vqj_context *ctx = NULL;
    CHECK(vqj_context_create(&cp, &ctx));
    vqj_model *model = NULL;
    CHECK(vqj_model_load(ctx, argv[1], &model));
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
        CHECK(vqj_arc_task_load(ctx, path, &task));
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
        CHECK(vqj_model_encode_grids(model, grids, (size_t)n, codes, objects, NULL));
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
    vqj_context_destroy(ctx);
    return tasks > 0 ? 0 : 1;
}
