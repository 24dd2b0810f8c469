/* The dataset container (DESIGN.md section 1): a pool of distinct grids plus
 * examples that index it; the validation split by groups; the epoch order;
 * and the ARC source, which pairs demonstrations with queries of one task. */
#include "data/data.h"
#include "core/params.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CONTEXT_WINDOW VQJI_MAX_CONTEXT_WINDOW
#define MAX_TARGET_OFFSET VQJI_HI_TARGET_OFFSET

/* Streams of the RNG: the split uses an even one, epoch e the odd 2e+1, so
 * the two never share a sequence for one seed. */
#define SPLIT_STREAM 0x53504c4954ull

/* strerror() may share one buffer between threads. */
static const char *error_text(int err, char *buf, size_t size)
{
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
    return buf;
}

void vqj_dataset_params_default(vqj_dataset_params *params)
{
    if (!params)
        return;
    *params = (vqj_dataset_params){
        .size = sizeof *params,
        .context_window = 3,
        .target_offset = 1,
        .validation_split = 0.02f,
        .validation_seed = 13,
        .skip_bad = 0,
        .max_examples_per_task = 32,
    };
}

vqj_status vqji_dataset_params_resolve(const vqj_context *ctx, const vqj_dataset_params *in,
                                       vqj_dataset_params *out)
{
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, in, VQJI_V1_DATASET_PARAMS,
                                     "vqj_dataset_params");
    if (st)
        return st;
    if (p.context_window < 1 || p.context_window > MAX_CONTEXT_WINDOW)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_params.context_window is %d; must be 1..%d",
                         p.context_window, MAX_CONTEXT_WINDOW);
    if (p.target_offset < 1 || p.target_offset > MAX_TARGET_OFFSET)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_params.target_offset is %d; must be 1..%d", p.target_offset,
                         MAX_TARGET_OFFSET);
    if (!(p.validation_split >= 0.0f && p.validation_split < 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_params.validation_split is %g; must be in [0, 1)",
                         (double)p.validation_split);
    if (p.max_examples_per_task < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_params.max_examples_per_task is %d; must be >= 0 (0: no "
                         "cap)",
                         p.max_examples_per_task);
    p.skip_bad = p.skip_bad != 0;
    *out = p;
    return VQJ_OK;
}

vqj_status vqji_dataset_new(vqj_context *ctx, const vqj_dataset_params *params,
                            vqj_dataset **out)
{
    vqj_dataset *ds;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *ds, "a dataset", (void **)&ds);
    if (st)
        return st;
    ds->ctx = ctx;
    ds->params = *params;
    ds->slots = params->context_window + 1;
    *out = ds;
    return VQJ_OK;
}

void vqj_dataset_destroy(vqj_dataset *ds)
{
    if (!ds)
        return;
    free(ds->cells);
    free(ds->pool);
    free(ds->slot);
    free(ds->group);
    free(ds->grids);
    for (size_t i = 0; i < ds->num_messages; i++)
        free(ds->messages[i]);
    free(ds);
}

vqj_status vqji_dataset_add_grid(vqj_dataset *ds, int height, int width, const uint8_t *cells,
                                 uint32_t *index)
{
    if (ds->num_pool >= UINT32_MAX)
        return vqji_fail(ds->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "a dataset holds at most %u distinct grids", (unsigned)UINT32_MAX);
    const size_t n = (size_t)height * (size_t)width;
    vqj_status st = vqji_reserve(ds->ctx, (void **)&ds->cells, &ds->cells_cap, ds->cells_len + n,
                                 "dataset grid cells");
    if (!st)
        st = vqji_reserve(ds->ctx, (void **)&ds->pool, &ds->pool_cap,
                          (ds->num_pool + 1) * sizeof *ds->pool, "the dataset's grid list");
    if (st)
        return st;
    if (cells)
        memcpy(ds->cells + ds->cells_len, cells, n);
    ds->pool[ds->num_pool] = (vqji_pool_grid){height, width, ds->cells_len};
    ds->cells_len += n;
    *index = (uint32_t)ds->num_pool++;
    return VQJ_OK;
}

vqj_status vqji_dataset_add_example(vqj_dataset *ds, const uint32_t *grids, uint32_t group)
{
    const size_t k = (size_t)ds->slots;
    vqj_status st = vqji_reserve(ds->ctx, (void **)&ds->slot, &ds->slot_cap,
                                 (ds->num_examples + 1) * k * sizeof *ds->slot, "dataset examples");
    if (!st)
        st = vqji_reserve(ds->ctx, (void **)&ds->group, &ds->group_cap,
                          (ds->num_examples + 1) * sizeof *ds->group, "dataset example groups");
    if (st)
        return st;
    memcpy(ds->slot + ds->num_examples * k, grids, k * sizeof *grids);
    ds->group[ds->num_examples++] = group;
    if (group >= ds->num_groups)
        ds->num_groups = group + 1;
    return VQJ_OK;
}

vqji_dataset_mark vqji_dataset_get_mark(const vqj_dataset *ds)
{
    return (vqji_dataset_mark){ds->cells_len, ds->num_pool, ds->num_examples};
}

void vqji_dataset_rewind(vqj_dataset *ds, vqji_dataset_mark mark)
{
    ds->cells_len = mark.cells_len;
    ds->num_pool = mark.num_pool;
    ds->num_examples = mark.num_examples;
}

vqj_status vqji_dataset_skip(vqj_dataset *ds, const char *message)
{
    ds->num_skipped++;
    /* Only the kept ones are logged, so a file of bad records cannot flood
     * the log; the loaders log the total at the end. */
    if (ds->num_messages < VQJI_SKIP_MESSAGES) {
        vqji_log(ds->ctx, VQJ_LOG_WARNING, "skipped: %s", message);
        size_t n = strlen(message);
        char *copy;
        vqj_status st = vqji_malloc(ds->ctx, n + 1, "a skipped-record message", (void **)&copy);
        if (st)
            return st;
        memcpy(copy, message, n + 1);
        ds->messages[ds->num_messages++] = copy;
    }
    return VQJ_OK;
}

vqj_status vqji_dataset_finish(vqj_dataset *ds)
{
    size_t count;
    if (!vqji_mul_size(ds->num_examples, (size_t)ds->slots, &count))
        return vqji_fail(ds->ctx, VQJ_ERR_OUT_OF_MEMORY, "too many dataset examples");
    vqj_status st = vqji_malloc(ds->ctx, count * sizeof *ds->grids, "dataset grid views",
                                (void **)&ds->grids);
    if (st)
        return st;
    for (size_t i = 0; i < count; i++) {
        const vqji_pool_grid *g = &ds->pool[ds->slot[i]];
        ds->grids[i] = (vqj_grid){g->height, g->width, ds->cells + g->offset};
    }
    return VQJ_OK;
}

uint32_t vqji_dataset_example_group(const vqj_dataset *ds, size_t i)
{
    return ds && i < ds->num_examples ? ds->group[i] : UINT32_MAX;
}

size_t vqj_dataset_num_examples(const vqj_dataset *ds) { return ds ? ds->num_examples : 0; }

int vqj_dataset_context_window(const vqj_dataset *ds)
{
    return ds ? ds->params.context_window : 0;
}

size_t vqj_dataset_num_skipped(const vqj_dataset *ds) { return ds ? ds->num_skipped : 0; }

const char *vqj_dataset_skipped_message(const vqj_dataset *ds, size_t k)
{
    return ds && k < ds->num_messages ? ds->messages[k] : NULL;
}

vqj_status vqj_dataset_get_params(const vqj_dataset *ds, vqj_dataset_params *out)
{
    if (!ds || !out)
        return vqji_fail(ds ? ds->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_get_params: NULL argument");
    vqji_clear_error(ds->ctx);
    if (out->size < sizeof ds->params)
        return vqji_fail(ds->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_get_params: out->size is %zu, smaller than any published "
                         "version (%zu); fill the struct with vqj_dataset_params_default() first",
                         out->size, sizeof ds->params);
    /* A newer caller keeps its defaults for the fields this version lacks. */
    const size_t keep = out->size;
    memcpy(out, &ds->params, sizeof ds->params);
    out->size = keep;
    return VQJ_OK;
}

vqj_status vqj_dataset_example(const vqj_dataset *ds, size_t i, const vqj_grid **context,
                               const vqj_grid **target)
{
    if (!ds || !context || !target)
        return vqji_fail(ds ? ds->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_example: NULL argument");
    if (i >= ds->num_examples)
        return vqji_fail(ds->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_example: index %zu is out of range (%zu examples)", i,
                         ds->num_examples);
    const vqj_grid *g = ds->grids + i * (size_t)ds->slots;
    *context = g;
    *target = g + ds->params.context_window;
    return VQJ_OK;
}

/* Fisher-Yates over 0..n-1. */
static void permute(vqji_rng *rng, size_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)vqji_rng_below(rng, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

vqj_status vqj_dataset_shuffle(const vqj_dataset *ds, uint64_t seed, int64_t epoch,
                               size_t *order)
{
    if (!ds || (!order && ds->num_examples))
        return vqji_fail(ds ? ds->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_shuffle: NULL argument");
    vqji_clear_error(ds->ctx);
    vqji_rng rng;
    vqji_rng_seed(&rng, seed, ((uint64_t)epoch << 1) | 1u);
    permute(&rng, order, ds->num_examples);
    return VQJ_OK;
}

/* Copy the examples with side[e] == which into a new dataset, each pool grid
 * once (map: parent pool index -> child index, UINT32_MAX when not yet
 * copied). Group ids are renumbered densely in order of appearance. */
static vqj_status extract(const vqj_dataset *all, const uint8_t *side, uint8_t which,
                          uint32_t *map, uint32_t *group_map, vqj_dataset **out)
{
    vqj_dataset *ds;
    vqj_status st = vqji_dataset_new(all->ctx, &all->params, &ds);
    if (st)
        return st;
    for (size_t i = 0; i < all->num_pool; i++)
        map[i] = UINT32_MAX;
    for (uint32_t g = 0; g < all->num_groups; g++)
        group_map[g] = UINT32_MAX;
    uint32_t next_group = 0, idx[MAX_CONTEXT_WINDOW + 1];
    for (size_t e = 0; e < all->num_examples && !st; e++) {
        if (side[e] != which)
            continue;
        const uint32_t *slots = all->slot + e * (size_t)all->slots;
        for (int s = 0; s < all->slots && !st; s++) {
            if (map[slots[s]] == UINT32_MAX) {
                const vqji_pool_grid *g = &all->pool[slots[s]];
                st = vqji_dataset_add_grid(ds, g->height, g->width, all->cells + g->offset,
                                           &map[slots[s]]);
            }
            idx[s] = map[slots[s]];
        }
        if (st)
            break;
        uint32_t g = all->group[e];
        if (group_map[g] == UINT32_MAX)
            group_map[g] = next_group++;
        st = vqji_dataset_add_example(ds, idx, group_map[g]);
    }
    if (!st)
        st = vqji_dataset_finish(ds);
    if (st) {
        vqj_dataset_destroy(ds);
        return st;
    }
    *out = ds;
    return VQJ_OK;
}

vqj_status vqj_dataset_split(const vqj_dataset *all, float validation_split, uint64_t seed,
                             vqj_dataset **train, vqj_dataset **validation)
{
    if (!all || !train || !validation)
        return vqji_fail(all ? all->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_split: NULL argument");
    vqji_clear_error(all->ctx);
    if (!(validation_split >= 0.0f && validation_split < 1.0f))
        return vqji_fail(all->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_dataset_split: validation_split is %g; must be in [0, 1)",
                         (double)validation_split);
    const size_t n = all->num_examples, groups = all->num_groups;
    const size_t want = (size_t)floor((double)validation_split * (double)n + 0.5);

    size_t *order = NULL, *group_size = NULL;
    uint8_t *group_side = NULL, *side = NULL;
    uint32_t *map = NULL, *group_map = NULL;
    vqj_dataset *tr = NULL, *va = NULL;
    vqj_status st = vqji_malloc(all->ctx, groups * sizeof *order, "split scratch", (void **)&order);
    if (!st)
        st = vqji_calloc(all->ctx, groups, sizeof *group_size, "split scratch",
                         (void **)&group_size);
    if (!st)
        st = vqji_calloc(all->ctx, groups, 1, "split scratch", (void **)&group_side);
    if (!st)
        st = vqji_malloc(all->ctx, n, "split scratch", (void **)&side);
    if (!st)
        st = vqji_malloc(all->ctx, all->num_pool * sizeof *map, "split scratch", (void **)&map);
    if (!st)
        st = vqji_malloc(all->ctx, groups * sizeof *group_map, "split scratch",
                         (void **)&group_map);
    if (st)
        goto done;

    for (size_t e = 0; e < n; e++)
        group_size[all->group[e]]++;
    vqji_rng rng;
    vqji_rng_seed(&rng, seed, SPLIT_STREAM);
    permute(&rng, order, groups);
    /* Whole groups in seeded order until validation has enough; the last
     * group in the order is never taken, so training is never empty. */
    size_t taken = 0;
    for (size_t k = 0; k + 1 < groups && taken < want; k++) {
        group_side[order[k]] = 1;
        taken += group_size[order[k]];
    }
    for (size_t e = 0; e < n; e++)
        side[e] = group_side[all->group[e]];
    st = extract(all, side, 0, map, group_map, &tr);
    if (!st)
        st = extract(all, side, 1, map, group_map, &va);
done:
    free(order);
    free(group_size);
    free(group_side);
    free(side);
    free(map);
    free(group_map);
    if (st) {
        vqj_dataset_destroy(tr);
        vqj_dataset_destroy(va);
        return st;
    }
    *train = tr;
    *validation = va;
    return VQJ_OK;
}

/* ------------------------------------------------------------------ ARC */

/* The train pair `k` steps after `a` in cyclic order, skipping `b` (b < 0:
 * skip nothing); with no other pair than b the answer is a itself. */
static size_t demo_after(size_t a, long b, size_t n, size_t k)
{
    size_t usable = n - (b >= 0 ? 1 : 0);
    size_t pos = a;
    k %= usable;
    while (k > 0) {
        pos = (pos + 1) % n;
        if ((long)pos != b)
            k--;
    }
    return pos;
}

/* Add the examples of one task, all in group `group`. */
vqj_status vqji_dataset_add_arc_task(vqj_dataset *ds, const vqj_arc_task *task, uint32_t group)
{
    const size_t n = vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN);
    const size_t ntest = vqj_arc_task_num_pairs(task, VQJ_ARC_TEST);
    const int T = ds->params.context_window;
    const size_t cap = ds->params.max_examples_per_task > 0
                           ? (size_t)ds->params.max_examples_per_task
                           : SIZE_MAX;
    if (n == 0)
        return VQJ_OK;

    /* Pool indices: train pair i -> in[i], out[i]; test queries after them. */
    size_t nq = n;
    for (size_t j = 0; j < ntest; j++)
        nq += vqj_arc_task_output(task, VQJ_ARC_TEST, j) != NULL;
    uint32_t *in_idx, *out_idx;
    vqj_status st = vqji_malloc(ds->ctx, 2 * nq * sizeof *in_idx, "ARC grid indices",
                                (void **)&in_idx);
    if (st)
        return st;
    out_idx = in_idx + nq;
    for (size_t q = 0, j = 0; q < nq && !st; j++) {
        const int is_test = j >= n;
        const vqj_arc_split sp = is_test ? VQJ_ARC_TEST : VQJ_ARC_TRAIN;
        const size_t pi = is_test ? j - n : j;
        const vqj_grid *gi = vqj_arc_task_input(task, sp, pi);
        const vqj_grid *go = vqj_arc_task_output(task, sp, pi);
        if (!go)
            continue;
        st = vqji_dataset_add_grid(ds, gi->height, gi->width, gi->cells, &in_idx[q]);
        if (!st)
            st = vqji_dataset_add_grid(ds, go->height, go->width, go->cells, &out_idx[q]);
        q++;
    }

    /* Rounds: query q (< n a train pair, else a test pair) in round r takes
     * the train pair r steps after it (train) or pair r-1 (test). */
    uint32_t idx[MAX_CONTEXT_WINDOW + 1];
    size_t made = 0;
    for (size_t r = 1; r <= n && made < cap && !st; r++) {
        for (size_t q = 0; q < nq && made < cap && !st; q++) {
            const int is_train = q < n;
            if (is_train && r >= n)
                continue; /* a train query has only n-1 demos */
            const long skip = is_train ? (long)q : -1;
            const size_t a = is_train ? (q + r) % n : r - 1;
            /* The full sequence, newest last: in(b) after out(a), in(a), then
             * the pairs following a. Fill the last T slots backwards. */
            int s = T - 1;
            idx[s--] = in_idx[q];
            for (size_t k = 0; s >= 0; k++) {
                const size_t d = demo_after(a, skip, n, k);
                idx[s--] = out_idx[d];
                if (s >= 0)
                    idx[s--] = in_idx[d];
            }
            idx[T] = out_idx[q];
            st = vqji_dataset_add_example(ds, idx, group);
            made++;
        }
    }
    free(in_idx);
    return st;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The *.json file names of a folder, sorted. */
static vqj_status list_folder(vqj_context *ctx, const char *path, char ***names_out,
                              size_t *count_out)
{
    DIR *dir = opendir(path);
    char reason[128];
    if (!dir)
        return vqji_fail(ctx, VQJ_ERR_IO, "cannot open folder %s: %s", path,
                         error_text(errno, reason, sizeof reason));
    char **names = NULL;
    size_t n = 0, cap = 0;
    vqj_status st = VQJ_OK;
    struct dirent *e;
    while (!st && (e = readdir(dir)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        st = vqji_reserve(ctx, (void **)&names, &cap, (n + 1) * sizeof *names, "file names");
        if (st)
            break;
        st = vqji_malloc(ctx, len + 1, "a file name", (void **)&names[n]);
        if (st)
            break;
        memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(dir);
    if (st) {
        free_names(names, n);
        return st;
    }
    if (n)
        qsort(names, n, sizeof *names, compare_names);
    *names_out = names;
    *count_out = n;
    return VQJ_OK;
}

/* Load one task file and add its examples; a bad file is skipped (skip_bad)
 * or fails with the loader's message. */
static vqj_status load_task_file(vqj_dataset *ds, const char *file, uint32_t *group)
{
    vqj_arc_task *task = NULL;
    vqj_status st = vqj_arc_task_load(ds->ctx, file, &task);
    if (st == VQJ_ERR_PARSE || st == VQJ_ERR_IO) {
        if (!ds->params.skip_bad)
            return st;
        char message[VQJI_ERROR_MAX];
        snprintf(message, sizeof message, "%s", vqj_last_error());
        vqji_clear_error(ds->ctx);
        return vqji_dataset_skip(ds, message);
    }
    if (st)
        return st;
    st = vqji_dataset_add_arc_task(ds, task, *group);
    (*group)++;
    vqj_arc_task_destroy(task);
    return st;
}

vqj_status vqj_dataset_from_arc(vqj_context *ctx, const vqj_dataset_params *params,
                                const char *path, vqj_dataset **out)
{
    if (!ctx || !params || !path || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_dataset_from_arc: NULL argument");
    vqji_clear_error(ctx);
    vqj_dataset_params p;
    vqj_status st = vqji_dataset_params_resolve(ctx, params, &p);
    if (st)
        return st;
    if (vqji_is_jsonl(path))
        return vqj_dataset_from_jsonl(ctx, params, path, out);
    struct stat sb;
    char reason[128];
    if (stat(path, &sb) != 0)
        return vqji_fail(ctx, VQJ_ERR_IO, "cannot open %s: %s", path,
                         error_text(errno, reason, sizeof reason));

    vqj_dataset *ds;
    st = vqji_dataset_new(ctx, &p, &ds);
    if (st)
        return st;
    uint32_t group = 0;
    if (S_ISDIR(sb.st_mode)) {
        char **names = NULL;
        size_t count = 0;
        st = list_folder(ctx, path, &names, &count);
        char *file = NULL;
        size_t file_cap = 0;
        for (size_t i = 0; i < count && !st; i++) {
            const size_t len = strlen(path) + 1 + strlen(names[i]) + 1;
            st = vqji_reserve(ctx, (void **)&file, &file_cap, len, "a file path");
            if (st)
                break;
            snprintf(file, len, "%s/%s", path, names[i]);
            st = load_task_file(ds, file, &group);
        }
        free(file);
        free_names(names, count);
        if (!st && count == 0)
            st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s: no .json task files in the folder", path);
    } else {
        st = load_task_file(ds, path, &group);
    }
    if (!st && ds->num_examples == 0)
        st = vqji_fail(ctx, VQJ_ERR_PARSE,
                       "%s: no examples (a task needs a train pair and another pair with an "
                       "output%s)",
                       path, ds->num_skipped ? "; bad task files were skipped" : "");
    if (!st)
        st = vqji_dataset_finish(ds);
    if (st) {
        vqj_dataset_destroy(ds);
        return st;
    }
    if (ds->num_skipped)
        vqji_log(ctx, VQJ_LOG_WARNING, "%s: skipped %zu bad task files", path, ds->num_skipped);
    *out = ds;
    return VQJ_OK;
}

void vqji_arc_tasks_destroy(vqj_arc_task **tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vqj_arc_task_destroy(tasks[i]);
    free(tasks);
}

int vqji_is_jsonl(const char *path)
{
    const uint8_t *gz;
    size_t n, len = strlen(path);
    return vqji_builtin_arc(path, &gz, &n) || (len > 6 && !strcmp(path + len - 6, ".jsonl")) ||
           (len > 9 && !strcmp(path + len - 9, ".jsonl.gz"));
}

int vqji_jsonl_holds_tasks(vqj_context *ctx, const char *path)
{
    FILE *f = NULL;
    if (vqji_open_text(ctx, path, &f))
        return 1; /* the task reader says why */
    char *line = NULL;
    size_t cap = 0;
    int tasks = 1;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        json_t *rec = json_loadb(line, (size_t)len, 0, NULL);
        if (!rec)
            continue; /* blank or bad: look further */
        tasks = json_object_get(rec, "train") != NULL;
        json_decref(rec);
        break;
    }
    free(line);
    fclose(f);
    vqji_clear_error(ctx);
    return tasks;
}

/* The tasks of a JSONL file, one a line, named by their "id" (or
 * "PATH:LINE"). */
static vqj_status tasks_from_jsonl(vqj_context *ctx, const char *path, vqj_arc_task ***tasks_out,
                                   size_t *count_out)
{
    FILE *f = NULL;
    vqj_status st = vqji_open_text(ctx, path, &f);
    if (st)
        return st;
    vqj_arc_task **tasks = NULL;
    size_t n = 0, cap = 0, line_cap = 0, lineno = 0;
    char *line = NULL, name[300];
    ssize_t len;
    while (!st && (len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        size_t k = 0;
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' ||
                                   line[k] == '\n'))
            k++;
        if (k == (size_t)len)
            continue;
        snprintf(name, sizeof name, "%s:%zu", path, lineno);
        json_t *rec = json_loadb(line, (size_t)len, 0, NULL);
        const char *id = json_string_value(json_object_get(rec, "id"));
        if (id)
            snprintf(name, sizeof name, "%s", id);
        json_decref(rec);
        if ((st = vqji_reserve(ctx, (void **)&tasks, &cap, (n + 1) * sizeof *tasks, "tasks")))
            break;
        if (!(st = vqj_arc_task_parse(ctx, line, (size_t)len, name, &tasks[n])))
            n++;
        else if (id) { /* say where the bad task is */
            char message[VQJI_ERROR_MAX];
            snprintf(message, sizeof message, "%s", vqj_last_error());
            st = vqji_fail(ctx, st, "%s:%zu: %s", path, lineno, message);
        }
    }
    free(line);
    fclose(f);
    if (!st && n == 0)
        st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s: no tasks", path);
    if (st) {
        vqji_arc_tasks_destroy(tasks, n);
        return st;
    }
    *tasks_out = tasks;
    *count_out = n;
    return VQJ_OK;
}

vqj_status vqji_arc_tasks_load(vqj_context *ctx, const char *path, vqj_arc_task ***tasks_out,
                               size_t *count_out)
{
    if (vqji_is_jsonl(path))
        return tasks_from_jsonl(ctx, path, tasks_out, count_out);
    struct stat sb;
    char reason[128];
    if (stat(path, &sb) != 0)
        return vqji_fail(ctx, VQJ_ERR_IO, "cannot open %s: %s", path,
                         error_text(errno, reason, sizeof reason));
    char **names = NULL;
    size_t count = 1;
    vqj_status st = VQJ_OK;
    if (S_ISDIR(sb.st_mode)) {
        st = list_folder(ctx, path, &names, &count);
        if (!st && count == 0)
            st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s: no .json task files in the folder", path);
        if (st) {
            free_names(names, count);
            return st;
        }
    }
    vqj_arc_task **tasks = NULL;
    size_t n = 0;
    char *file = NULL;
    size_t file_cap = 0;
    st = vqji_calloc(ctx, count, sizeof *tasks, "the task list", (void **)&tasks);
    for (size_t i = 0; i < count && !st; i++) {
        if (names) {
            const size_t len = strlen(path) + 1 + strlen(names[i]) + 1;
            st = vqji_reserve(ctx, (void **)&file, &file_cap, len, "a file path");
            if (st)
                break;
            snprintf(file, len, "%s/%s", path, names[i]);
        }
        st = vqj_arc_task_load(ctx, names ? file : path, &tasks[n]);
        if (!st)
            n++;
    }
    free(file);
    free_names(names, names ? count : 0);
    if (st) {
        vqji_arc_tasks_destroy(tasks, n);
        return st;
    }
    *tasks_out = tasks;
    *count_out = n;
    return VQJ_OK;
}
