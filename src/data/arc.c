/* ARC-AGI task files (DESIGN.md section 1) through jansson. Every failure
 * names where it happened (file, split, pair, input/output, row, column) so a
 * bad file among hundreds is found at once. */
#include "core/core.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct arc_pair {
    vqj_grid input, output;
    int has_output;
} arc_pair;

struct vqj_arc_task {
    char *name;
    arc_pair *pairs[2];
    size_t count[2];
};

static const char *const split_names[2] = {"train", "test"};

void vqj_arc_task_destroy(vqj_arc_task *task)
{
    if (!task)
        return;
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; task->pairs[s] && i < task->count[s]; i++) {
            free((void *)task->pairs[s][i].input.cells);
            free((void *)task->pairs[s][i].output.cells);
        }
        free(task->pairs[s]);
    }
    free(task->name);
    free(task);
}

/* Parse one grid into `out` (cells allocated here). `src` and `where` ("train
 * pair 2 output") prefix the messages. */
static vqj_status parse_grid(const vqj_context *ctx, const json_t *j, const char *src,
                             const char *where, vqj_grid *out)
{
    if (!json_is_array(j))
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: not an array of rows", src, where);
    const size_t rows = json_array_size(j);
    if (rows == 0)
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: the grid has no rows", src, where);
    if (rows > VQJ_MAX_GRID_SIDE)
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: %zu rows; at most %d are accepted", src,
                         where, rows, VQJ_MAX_GRID_SIDE);
    size_t cols = 0;
    for (size_t y = 0; y < rows; y++) {
        const json_t *row = json_array_get(j, y);
        if (!json_is_array(row))
            return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: row %zu is not an array", src, where,
                             y);
        const size_t n = json_array_size(row);
        if (y == 0) {
            cols = n;
            if (cols == 0)
                return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: row 0 has no cells", src, where);
            if (cols > VQJ_MAX_GRID_SIDE)
                return vqji_fail(ctx, VQJ_ERR_PARSE,
                                 "%s: %s: row 0 has %zu cells; at most %d are accepted", src,
                                 where, cols, VQJ_MAX_GRID_SIDE);
        } else if (n != cols) {
            return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: row %zu has %zu cells, expected %zu",
                             src, where, y, n, cols);
        }
    }
    uint8_t *cells;
    vqj_status st = vqji_malloc(ctx, rows * cols, "an ARC grid", (void **)&cells);
    if (st)
        return st;
    for (size_t y = 0; y < rows; y++) {
        const json_t *row = json_array_get(j, y);
        for (size_t x = 0; x < cols; x++) {
            const json_t *v = json_array_get(row, x);
            if (!json_is_integer(v)) {
                free(cells);
                return vqji_fail(ctx, VQJ_ERR_PARSE,
                                 "%s: %s: row %zu, column %zu is not an integer", src, where, y,
                                 x);
            }
            const json_int_t c = json_integer_value(v);
            if (c < 0 || c >= VQJ_NUM_COLORS) {
                free(cells);
                return vqji_fail(ctx, VQJ_ERR_PARSE,
                                 "%s: %s: row %zu, column %zu is %lld; colors are 0..%d", src,
                                 where, y, x, (long long)c, VQJ_NUM_COLORS - 1);
            }
            cells[y * cols + x] = (uint8_t)c;
        }
    }
    out->height = (int)rows;
    out->width = (int)cols;
    out->cells = cells;
    return VQJ_OK;
}

static vqj_status parse_split(const vqj_context *ctx, vqj_arc_task *task, const json_t *root,
                              int s, const char *src)
{
    const char *key = split_names[s];
    const json_t *arr = json_object_get(root, key);
    if (!arr) {
        /* Some collections ship tasks without their queries. */
        if (s == VQJ_ARC_TEST)
            return VQJ_OK;
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: no \"%s\" list of pairs", src, key);
    }
    if (!json_is_array(arr))
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: \"%s\" is not an array of pairs", src, key);
    const size_t n = json_array_size(arr);
    vqj_status st = vqji_calloc(ctx, n, sizeof(arc_pair), "ARC pairs", (void **)&task->pairs[s]);
    if (st)
        return st;
    task->count[s] = n; /* the pairs are zeroed, so destroy can free a partial list */
    for (size_t i = 0; i < n; i++) {
        const json_t *pair = json_array_get(arr, i);
        if (!json_is_object(pair))
            return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s pair %zu is not an object", src, key, i);
        const json_t *in = json_object_get(pair, "input");
        const json_t *outj = json_object_get(pair, "output");
        if (!in)
            return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s pair %zu has no \"input\"", src, key,
                             i);
        if (!outj && s == VQJ_ARC_TRAIN)
            return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s pair %zu has no \"output\"", src, key,
                             i);
        char where[64];
        snprintf(where, sizeof where, "%s pair %zu input", key, i);
        st = parse_grid(ctx, in, src, where, &task->pairs[s][i].input);
        if (st)
            return st;
        if (outj) {
            snprintf(where, sizeof where, "%s pair %zu output", key, i);
            st = parse_grid(ctx, outj, src, where, &task->pairs[s][i].output);
            if (st)
                return st;
            task->pairs[s][i].has_output = 1;
        }
    }
    return VQJ_OK;
}

static char *dup_string(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* `src` names the text in messages, `name` becomes the task's name. */
static vqj_status parse_task(const vqj_context *ctx, const char *text, size_t length,
                             const char *src, const char *name, size_t name_len,
                             vqj_arc_task **out)
{
    json_error_t err;
    json_t *root = json_loadb(text, length, 0, &err);
    if (!root)
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s:%d:%d: %s", src, err.line, err.column,
                         err.text);
    vqj_status st;
    vqj_arc_task *task = NULL;
    if (!json_is_object(root)) {
        st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s: the top level is not an object", src);
        goto done;
    }
    st = vqji_calloc(ctx, 1, sizeof *task, "an ARC task", (void **)&task);
    if (st)
        goto done;
    task->name = dup_string(name, name_len);
    if (!task->name) {
        st = vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "out of memory copying a task name");
        goto done;
    }
    st = parse_split(ctx, task, root, VQJ_ARC_TRAIN, src);
    if (!st)
        st = parse_split(ctx, task, root, VQJ_ARC_TEST, src);
done:
    json_decref(root);
    if (st) {
        vqj_arc_task_destroy(task);
        return st;
    }
    *out = task;
    return VQJ_OK;
}

vqj_status vqj_arc_task_parse(vqj_context *ctx, const char *json_text, size_t length,
                              const char *name, vqj_arc_task **out)
{
    if (!ctx || !json_text || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_arc_task_parse: NULL argument");
    vqji_clear_error(ctx);
    if (!name)
        name = "";
    return parse_task(ctx, json_text, length, name[0] ? name : "<json>", name, strlen(name),
                      out);
}

static vqj_status io_fail(const vqj_context *ctx, const char *what, const char *path, int err)
{
    char reason[128];
    if (strerror_r(err, reason, sizeof reason) != 0)
        snprintf(reason, sizeof reason, "error %d", err);
    return vqji_fail(ctx, VQJ_ERR_IO, "cannot %s %s: %s", what, path, reason);
}

vqj_status vqj_arc_task_load(vqj_context *ctx, const char *path, vqj_arc_task **out)
{
    if (!ctx || !path || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_arc_task_load: NULL argument");
    vqji_clear_error(ctx);
    FILE *f = fopen(path, "rb");
    if (!f)
        return io_fail(ctx, "open", path, errno);
    char *buf = NULL;
    size_t cap = 0, len = 0;
    vqj_status st = VQJ_OK;
    for (;;) {
        st = vqji_reserve(ctx, (void **)&buf, &cap, len + 65536, "an ARC file");
        if (st)
            break;
        const size_t want = cap - len, got = fread(buf + len, 1, want, f);
        len += got;
        if (got < want) { /* end of file or an error */
            if (ferror(f))
                st = io_fail(ctx, "read", path, errno);
            break;
        }
    }
    fclose(f);
    if (!st) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t n = strlen(base);
        if (n > 5 && strcmp(base + n - 5, ".json") == 0)
            n -= 5;
        st = parse_task(ctx, buf, len, path, base, n, out);
    }
    free(buf);
    return st;
}

const char *vqj_arc_task_name(const vqj_arc_task *task) { return task ? task->name : ""; }

size_t vqj_arc_task_num_pairs(const vqj_arc_task *task, vqj_arc_split split)
{
    if (!task || (split != VQJ_ARC_TRAIN && split != VQJ_ARC_TEST))
        return 0;
    return task->count[split];
}

static const arc_pair *get_pair(const vqj_arc_task *task, vqj_arc_split split, size_t i)
{
    if (!task || (split != VQJ_ARC_TRAIN && split != VQJ_ARC_TEST) || i >= task->count[split])
        return NULL;
    return &task->pairs[split][i];
}

const vqj_grid *vqj_arc_task_input(const vqj_arc_task *task, vqj_arc_split split, size_t i)
{
    const arc_pair *p = get_pair(task, split, i);
    return p ? &p->input : NULL;
}

const vqj_grid *vqj_arc_task_output(const vqj_arc_task *task, vqj_arc_split split, size_t i)
{
    const arc_pair *p = get_pair(task, split, i);
    return p && p->has_output ? &p->output : NULL;
}
