/* An agent loop in the HRL / DSL-search style: for each ARC task, choose
 * among a handful of grid transformations the one whose results look most
 * like the demonstrated outputs to the model (latent distance of embeddings
 * plus overlap of object codes), apply it to the test input, and count how
 * often the choice solves the task.
 *
 *   bin/example_agent CHECKPOINT DIR [LIMIT]
 *
 * It prints the agent's solve rate next to two references: always "identity"
 * and an oracle that knows which candidate (if any) solves each task. */
#include "common.h"

#include <dirent.h>
#include <string.h>

enum { CANDIDATES = 8, MAX_SIDE = 30 };
static const char *const names[CANDIDATES] = {"identity",  "flip_h",    "flip_v",
                                              "rotate90",  "rotate180", "rotate270",
                                              "transpose", "gravity_down"};

/* out = transform k of in; returns 0 when it does not apply (too large). */
static int transform(int k, const vqj_grid *in, vqj_grid *out, uint8_t *cells)
{
    int h = in->height, w = in->width;
    if (h > MAX_SIDE || w > MAX_SIDE)
        return 0;
    int swap = k == 3 || k == 5 || k == 6;
    out->height = swap ? w : h;
    out->width = swap ? h : w;
    out->cells = cells;
    for (int y = 0; y < out->height; y++)
        for (int x = 0; x < out->width; x++) {
            int sy = y, sx = x;
            switch (k) {
            case 1: sx = w - 1 - x; break;
            case 2: sy = h - 1 - y; break;
            case 3: sy = h - 1 - x, sx = y; break; /* clockwise */
            case 4: sy = h - 1 - y, sx = w - 1 - x; break;
            case 5: sy = x, sx = w - 1 - y; break;
            case 6: sy = x, sx = y; break;
            default: break;
            }
            cells[y * out->width + x] = in->cells[sy * w + sx];
        }
    if (k == 7) /* gravity: non-zero cells fall to the bottom of each column */
        for (int x = 0; x < w; x++) {
            int dst = h - 1;
            for (int y = h - 1; y >= 0; y--)
                if (in->cells[y * w + x])
                    cells[(dst--) * w + x] = in->cells[y * w + x];
            while (dst >= 0)
                cells[(dst--) * w + x] = 0;
        }
    return 1;
}

static int same_grid(const vqj_grid *a, const vqj_grid *b)
{
    return a->height == b->height && a->width == b->width &&
           memcmp(a->cells, b->cells, (size_t)a->height * (size_t)a->width) == 0;
}

/* Jaccard overlap of two code multisets, as sets. */
static double code_overlap(const int32_t *a, size_t na, const int32_t *b, size_t nb, int K)
{
    unsigned char seen[4096] = {0};
    if (K > 4096)
        return 0;
    int uni = 0, inter = 0;
    for (size_t i = 0; i < na; i++)
        seen[a[i]] |= 1;
    for (size_t i = 0; i < nb; i++)
        seen[b[i]] |= 2;
    for (int k = 0; k < K; k++) {
        uni += seen[k] != 0;
        inter += seen[k] == 3;
    }
    return uni ? (double)inter / uni : 1.0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CHECKPOINT DIR [LIMIT]\n", argv[0]);
        return 2;
    }
    int limit = argc > 3 ? atoi(argv[3]) : 1 << 30;
    /* The checkpoint holds its configuration: one call builds the model. */
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    vqj_context *ctx = NULL;
    CHECK(vqj_context_create(&cp, &ctx));
    vqj_model *model = NULL;
    CHECK(vqj_model_load(ctx, argv[1], &model));
    const int M = vqj_model_max_objects(model), P = vqj_model_embedding_dim(model);
    const int K = vqj_model_num_codes(model);

    struct dirent **files = NULL;
    int count = scandir(argv[2], &files, NULL, alphasort);
    if (count < 0) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 2;
    }
    int tasks = 0, solved = 0, identity = 0, oracle = 0, chosen_count[CANDIDATES] = {0};
    static uint8_t cand_cells[CANDIDATES][MAX_SIDE * MAX_SIDE];
    enum { MAX_DEMOS = 16 };
    int32_t *codes_a = malloc((size_t)M * sizeof *codes_a);
    int32_t *codes_b = malloc((size_t)MAX_DEMOS * M * sizeof *codes_b);
    float *emb_a = malloc((size_t)P * sizeof *emb_a);
    float *emb_b = malloc((size_t)MAX_DEMOS * P * sizeof *emb_b);
    size_t nb[MAX_DEMOS];
    for (int f = 0; f < count && tasks < limit; f++) {
        size_t len = strlen(files[f]->d_name);
        if (len < 6 || strcmp(files[f]->d_name + len - 5, ".json"))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[2], files[f]->d_name);
        vqj_arc_task *task = NULL;
        CHECK(vqj_arc_task_load(ctx, path, &task));
        const vqj_grid *test_in = vqj_arc_task_input(task, VQJ_ARC_TEST, 0);
        const vqj_grid *test_out = vqj_arc_task_output(task, VQJ_ARC_TEST, 0);
        if (!test_in || !test_out) {
            vqj_arc_task_destroy(task);
            continue;
        }
        /* Score each candidate on the demonstrations: lower is better. */
        double best = 1e30;
        int choice = 0, any = 0;
        size_t demos = vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN);
        if (demos > MAX_DEMOS)
            demos = MAX_DEMOS;
        /* The demonstrated outputs, encoded once. */
        for (size_t d = 0; d < demos; d++)
            CHECK(vqj_model_encode_grid(model, vqj_arc_task_output(task, VQJ_ARC_TRAIN, d),
                                             codes_b + d * M, &nb[d], emb_b + d * P));
        for (int k = 0; k < CANDIDATES; k++) {
            double score = 0;
            int ok = 1;
            for (size_t d = 0; d < demos && ok; d++) {
                const vqj_grid *in = vqj_arc_task_input(task, VQJ_ARC_TRAIN, d);
                vqj_grid g;
                if (!transform(k, in, &g, cand_cells[k])) {
                    ok = 0;
                    break;
                }
                size_t na = 0;
                float dist = 0;
                CHECK(vqj_model_encode_grid(model, &g, codes_a, &na, emb_a));
                CHECK(vqj_latent_distance(emb_a, emb_b + d * P, P, &dist));
                score += dist - code_overlap(codes_a, na, codes_b + d * M, nb[d], K);
            }
            if (ok && score < best) {
                best = score;
                choice = k;
            }
            vqj_grid g;
            if (transform(k, test_in, &g, cand_cells[k]) && same_grid(&g, test_out)) {
                any = 1;
                if (k == 0)
                    identity++;
            }
        }
        vqj_grid g;
        if (transform(choice, test_in, &g, cand_cells[choice]) && same_grid(&g, test_out))
            solved++;
        oracle += any;
        chosen_count[choice]++;
        tasks++;
        vqj_arc_task_destroy(task);
    }
    printf("tasks %d: agent solved %d (%.1f%%), identity %d, oracle over the %d candidates %d\n",
           tasks, solved, tasks ? 100.0 * solved / tasks : 0.0, identity, CANDIDATES, oracle);
    printf("choices:");
    for (int k = 0; k < CANDIDATES; k++)
        printf(" %s %d", names[k], chosen_count[k]);
    printf("\n");
    for (int f = 0; f < count; f++)
        free(files[f]);
    free(files);
    free(codes_a);
    free(codes_b);
    free(emb_a);
    free(emb_b);
    vqj_model_destroy(model);
    vqj_context_destroy(ctx);
    return tasks > 0 ? 0 : 1;
}
