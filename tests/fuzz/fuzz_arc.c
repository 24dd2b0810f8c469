/* ARC task JSON (vqj_arc_task_parse): any bytes give a task whose grids
 * are within the documented limits, or a clean error. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vqj_context *ctx = fuzz_context();
    vqj_arc_task *task = NULL;
    vqj_status st = vqj_arc_task_parse(ctx, (const char *)data, size, "fuzz", &task);
    fuzz_check_status(st);
    if (st != VQJ_OK)
        return 0;
    for (int s = 0; s < 2; s++) {
        vqj_arc_split split = s ? VQJ_ARC_TEST : VQJ_ARC_TRAIN;
        size_t n = vqj_arc_task_num_pairs(task, split);
        for (size_t i = 0; i < n; i++) {
            const vqj_grid *g[2] = {vqj_arc_task_input(task, split, i),
                                    vqj_arc_task_output(task, split, i)};
            for (int k = 0; k < 2; k++) {
                if (!g[k]) /* a test pair may lack its output */
                    continue;
                if (g[k]->height < 1 || g[k]->height > VQJ_MAX_GRID_SIDE || g[k]->width < 1 ||
                    g[k]->width > VQJ_MAX_GRID_SIDE)
                    abort();
                for (int c = 0; c < g[k]->height * g[k]->width; c++)
                    if (g[k]->cells[c] > 9)
                        abort();
            }
        }
    }
    vqj_arc_task_destroy(task);
    return 0;
}
