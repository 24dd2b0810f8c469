/* JSONL manifests (DESIGN.md section 1): one record a line in the context,
 * input/output or frames form. A record is parsed completely before it
 * counts: a bad one is rolled back, then either fails the whole load with
 * "FILE:LINE: reason" or, with skip_bad, is counted and skipped. */
#include "data/data.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bad-record reasons are built in a buffer, not through vqji_fail, so that
 * a skipped record leaves no error behind. */
static vqj_status bad(char *why, size_t size, const char *fmt, ...) VQJI_PRINTF(3, 4);
static vqj_status bad(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return VQJ_ERR_PARSE;
}

/* Check that `v` is a grid; its sides go to *h, *w. */
static vqj_status check_grid(const json_t *v, const char *what, int *h, int *w, char *why,
                             size_t size)
{
    if (!json_is_array(v))
        return bad(why, size, "%s: not an array of rows", what);
    const size_t rows = json_array_size(v);
    if (rows == 0)
        return bad(why, size, "%s: the grid has no rows", what);
    if (rows > VQJ_MAX_GRID_SIDE)
        return bad(why, size, "%s: %zu rows; at most %d are accepted", what, rows,
                   VQJ_MAX_GRID_SIDE);
    size_t cols = 0;
    for (size_t y = 0; y < rows; y++) {
        const json_t *row = json_array_get(v, y);
        if (!json_is_array(row))
            return bad(why, size, "%s: row %zu is not an array", what, y);
        const size_t n = json_array_size(row);
        if (y == 0) {
            cols = n;
            if (cols == 0)
                return bad(why, size, "%s: row 0 has no cells", what);
            if (cols > VQJ_MAX_GRID_SIDE)
                return bad(why, size, "%s: row 0 has %zu cells; at most %d are accepted", what,
                           cols, VQJ_MAX_GRID_SIDE);
        } else if (n != cols) {
            return bad(why, size, "%s: row %zu has %zu cells, expected %zu", what, y, n, cols);
        }
        for (size_t x = 0; x < n; x++) {
            const json_t *c = json_array_get(row, x);
            if (!json_is_integer(c))
                return bad(why, size, "%s: row %zu, column %zu is not an integer", what, y, x);
            const json_int_t k = json_integer_value(c);
            if (k < 0 || k >= VQJ_NUM_COLORS)
                return bad(why, size, "%s: row %zu, column %zu is %lld; colors are 0..%d", what,
                           y, x, (long long)k, VQJ_NUM_COLORS - 1);
        }
    }
    *h = (int)rows;
    *w = (int)cols;
    return VQJ_OK;
}

vqj_status vqji_dataset_add_json_grid(vqj_dataset *ds, const json_t *value, const char *what,
                                      uint32_t *index, char *why, size_t why_size)
{
    int h, w;
    vqj_status st = check_grid(value, what, &h, &w, why, why_size);
    if (st)
        return st;
    st = vqji_dataset_add_grid(ds, h, w, NULL, index);
    if (st)
        return st;
    uint8_t *cells = ds->cells + ds->pool[*index].offset;
    for (int y = 0; y < h; y++) {
        const json_t *row = json_array_get(value, (size_t)y);
        for (int x = 0; x < w; x++)
            cells[y * w + x] = (uint8_t)json_integer_value(json_array_get(row, (size_t)x));
    }
    return VQJ_OK;
}

typedef struct jsonl_state {
    vqj_dataset *ds;
    const char *path;
    int warned_input_output;
    size_t short_sequences;
    uint32_t group;
} jsonl_state;

static vqj_status context_record(jsonl_state *s, const json_t *rec, char *why, size_t size)
{
    vqj_dataset *ds = s->ds;
    const int T = ds->params.context_window;
    const json_t *ctxj = json_object_get(rec, "context"), *tgt = json_object_get(rec, "target");
    if (!ctxj)
        return bad(why, size, "\"target\" without \"context\"");
    if (!tgt)
        return bad(why, size, "\"context\" without \"target\"");
    if (!json_is_array(ctxj))
        return bad(why, size, "\"context\" is not an array of grids");
    const size_t n = json_array_size(ctxj);
    if (n < (size_t)T)
        return bad(why, size, "\"context\" has %zu grids; context_window is %d", n, T);
    uint32_t idx[VQJI_MAX_CONTEXT_WINDOW + 1];
    char what[48];
    vqj_status st;
    /* Every grid is checked, but only the last T are kept. */
    for (size_t i = 0; i < n; i++) {
        snprintf(what, sizeof what, "context[%zu]", i);
        const json_t *g = json_array_get(ctxj, i);
        if (i + (size_t)T < n) {
            int h, w;
            st = check_grid(g, what, &h, &w, why, size);
        } else {
            st = vqji_dataset_add_json_grid(ds, g, what, &idx[i + (size_t)T - n], why, size);
        }
        if (st)
            return st;
    }
    st = vqji_dataset_add_json_grid(ds, tgt, "target", &idx[T], why, size);
    if (!st)
        st = vqji_dataset_add_example(ds, idx, s->group);
    return st;
}

static vqj_status input_output_record(jsonl_state *s, const json_t *rec, size_t line, char *why,
                                      size_t size)
{
    vqj_dataset *ds = s->ds;
    const int T = ds->params.context_window;
    const json_t *in = json_object_get(rec, "input"), *outj = json_object_get(rec, "output");
    if (!in)
        return bad(why, size, "\"output\" without \"input\"");
    if (!outj)
        return bad(why, size, "\"input\" without \"output\"");
    uint32_t idx[VQJI_MAX_CONTEXT_WINDOW + 1];
    vqj_status st = vqji_dataset_add_json_grid(ds, in, "input", &idx[0], why, size);
    if (!st)
        st = vqji_dataset_add_json_grid(ds, outj, "output", &idx[T], why, size);
    if (st)
        return st;
    for (int t = 1; t < T; t++)
        idx[t] = idx[0];
    st = vqji_dataset_add_example(ds, idx, s->group);
    if (!st && !s->warned_input_output && T > 1) {
        s->warned_input_output = 1;
        vqji_log(ds->ctx, VQJ_LOG_WARNING,
                 "%s:%zu: input/output records repeat the input %d times as the context, which "
                 "gives context aggregation nothing to aggregate; prefer the context or frames "
                 "form",
                 s->path, line, T);
    }
    return st;
}

static vqj_status frames_record(jsonl_state *s, const json_t *rec, char *why, size_t size)
{
    vqj_dataset *ds = s->ds;
    const int T = ds->params.context_window, offset = ds->params.target_offset;
    const json_t *frames = json_object_get(rec, "frames");
    if (!json_is_array(frames))
        return bad(why, size, "\"frames\" is not an array of grids");
    const size_t n = json_array_size(frames);
    uint32_t *idx;
    vqj_status st = vqji_malloc(ds->ctx, (n ? n : 1) * sizeof *idx, "frame indices",
                                (void **)&idx);
    if (st)
        return st;
    char what[48];
    for (size_t i = 0; i < n && !st; i++) {
        snprintf(what, sizeof what, "frames[%zu]", i);
        st = vqji_dataset_add_json_grid(ds, json_array_get(frames, i), what, &idx[i], why, size);
    }
    /* Window s: frames s..s+T-1, target s+T-1+offset. */
    const size_t span = (size_t)T + (size_t)offset;
    if (!st && n < span)
        s->short_sequences++;
    uint32_t ex[VQJI_MAX_CONTEXT_WINDOW + 1];
    for (size_t w = 0; !st && w + span <= n; w++) {
        memcpy(ex, idx + w, (size_t)T * sizeof *ex);
        ex[T] = idx[w + span - 1];
        st = vqji_dataset_add_example(ds, ex, s->group);
    }
    free(idx);
    return st;
}

/* An ARC task: its examples as vqj_dataset_from_arc() forms them. */
static vqj_status task_record(jsonl_state *s, const char *line, size_t len, const json_t *rec,
                              char *why, size_t size)
{
    const char *id = json_string_value(json_object_get(rec, "id"));
    vqj_arc_task *task = NULL;
    vqj_status st = vqj_arc_task_parse(s->ds->ctx, line, len, id ? id : "task", &task);
    if (st == VQJ_ERR_PARSE) {
        st = bad(why, size, "%s", vqj_last_error());
        vqji_clear_error(s->ds->ctx);
        return st;
    }
    if (!st)
        st = vqji_dataset_add_arc_task(s->ds, task, s->group);
    vqj_arc_task_destroy(task);
    return st;
}

static int blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n')
            return 0;
    return 1;
}

/* One line: VQJ_ERR_PARSE with `why` for a bad record, and *column > 0 for
 * a JSON syntax error. */
static vqj_status parse_line(jsonl_state *s, const char *line, size_t len, size_t lineno,
                             int *column, char *why, size_t size)
{
    json_error_t err;
    json_t *rec = json_loadb(line, len, 0, &err);
    if (!rec) {
        if (json_error_code(&err) == json_error_out_of_memory)
            return vqji_fail(s->ds->ctx, VQJ_ERR_OUT_OF_MEMORY, "%s:%zu: out of memory parsing "
                             "JSON", s->path, lineno);
        *column = err.column > 0 ? err.column : 1;
        return bad(why, size, "JSON syntax error: %s", err.text);
    }
    vqj_status st;
    if (!json_is_object(rec)) {
        st = bad(why, size, "the record is not a JSON object");
    } else {
        const int has_ctx = json_object_get(rec, "context") || json_object_get(rec, "target");
        const int has_io = json_object_get(rec, "input") || json_object_get(rec, "output");
        const int has_frames = json_object_get(rec, "frames") != NULL;
        const int has_task = json_object_get(rec, "train") != NULL;
        if (has_ctx + has_io + has_frames + has_task == 0)
            st = bad(why, size, "the record has none of \"context\"/\"target\", "
                                "\"input\"/\"output\", \"frames\" or \"train\"");
        else if (has_task && has_ctx + has_io + has_frames == 0)
            st = task_record(s, line, len, rec, why, size);
        else if (has_ctx + has_io + has_frames + has_task > 1)
            st = bad(why, size, "the record mixes the keys of two forms (\"context\"/\"target\", "
                                "\"input\"/\"output\", \"frames\")");
        else if (has_ctx)
            st = context_record(s, rec, why, size);
        else if (has_io)
            st = input_output_record(s, rec, lineno, why, size);
        else
            st = frames_record(s, rec, why, size);
    }
    json_decref(rec);
    return st;
}

vqj_status vqj_dataset_from_jsonl(vqj_context *ctx, const vqj_dataset_params *params,
                                  const char *path, vqj_dataset **out)
{
    if (!ctx || !params || !path || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_dataset_from_jsonl: NULL argument");
    vqji_clear_error(ctx);
    vqj_dataset_params p;
    vqj_status st = vqji_dataset_params_resolve(ctx, params, &p);
    if (st)
        return st;
    char reason[128];
    FILE *f = NULL;
    if ((st = vqji_open_text(ctx, path, &f)))
        return st;
    vqj_dataset *ds;
    st = vqji_dataset_new(ctx, &p, &ds);
    if (st) {
        fclose(f);
        return st;
    }
    jsonl_state s = {.ds = ds, .path = path};
    char *line = NULL;
    size_t line_cap = 0, lineno = 0;
    char why[384];
    for (;;) {
        errno = 0;
        const ssize_t len = getline(&line, &line_cap, f);
        if (len < 0) {
            if (ferror(f)) {
                if (strerror_r(errno, reason, sizeof reason) != 0)
                    snprintf(reason, sizeof reason, "error %d", errno);
                st = vqji_fail(ctx, errno == ENOMEM ? VQJ_ERR_OUT_OF_MEMORY : VQJ_ERR_IO,
                               "cannot read %s after line %zu: %s", path, lineno, reason);
            }
            break;
        }
        lineno++;
        if (blank(line, (size_t)len))
            continue;
        const vqji_dataset_mark mark = vqji_dataset_get_mark(ds);
        why[0] = '\0';
        int column = 0;
        st = parse_line(&s, line, (size_t)len, lineno, &column, why, sizeof why);
        if (st == VQJ_ERR_PARSE) {
            vqji_dataset_rewind(ds, mark);
            char message[VQJI_ERROR_MAX], where[32] = "";
            if (column > 0)
                snprintf(where, sizeof where, ":%d", column);
            snprintf(message, sizeof message, "%s:%zu%s: %s", path, lineno, where, why);
            if (!ds->params.skip_bad) {
                st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s", message);
                break;
            }
            st = vqji_dataset_skip(ds, message);
        } else if (!st) {
            s.group++;
        }
        if (st)
            break;
    }
    free(line);
    fclose(f);
    if (!st && s.short_sequences)
        vqji_log(ctx, VQJ_LOG_WARNING,
                 "%s: %zu frame sequences are shorter than context_window + target_offset = %d "
                 "and gave no example",
                 path, s.short_sequences, p.context_window + p.target_offset);
    if (!st && ds->num_skipped)
        vqji_log(ctx, VQJ_LOG_WARNING, "%s: skipped %zu bad records", path, ds->num_skipped);
    if (!st && ds->num_examples == 0)
        st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s: no examples (%zu lines%s%s)", path, lineno,
                       ds->num_skipped ? ", bad records skipped" : "",
                       s.short_sequences ? ", frame sequences too short" : "");
    if (!st)
        st = vqji_dataset_finish(ds);
    if (st) {
        vqj_dataset_destroy(ds);
        return st;
    }
    *out = ds;
    return VQJ_OK;
}
