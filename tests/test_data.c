/* Data sources (DESIGN.md section 1) and views (section 4): JSONL manifests
 * in their three forms and their errors, the synthetic generator and its
 * primitives, ARC examples, the split, the epoch order, augmentations and
 * the invariance views. */
#include "testutil.h"

#include "data/data.h"

#include <dirent.h>
#include <zlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[40];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vqj_test_data_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

/* A file in the temporary directory made with mkstemp, holding `text`.
 * The path is written to `path` (64 bytes); unlink it when done. */
static void write_temp(char *path, const char *text)
{
    snprintf(path, 64, "%s/XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

static void write_named(char *path, const char *name, const char *text)
{
    snprintf(path, 128, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Log capture for the warnings the loaders give. */
static int warnings;
static char last_warning[512];
static void capture(void *user, vqj_log_level level, const char *message)
{
    (void)user;
    if (level == VQJ_LOG_WARNING) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s", message);
    }
}

static vqj_context *logging_context(void)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = 1;
    p.log_fn = capture;
    p.log_level = VQJ_LOG_WARNING;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK)
        fail_msg("vqj_context_create: %s", vqj_last_error());
    warnings = 0;
    last_warning[0] = '\0';
    return ctx;
}

static int grid_equal(const vqj_grid *a, const vqj_grid *b)
{
    return a->height == b->height && a->width == b->width &&
           memcmp(a->cells, b->cells, (size_t)a->height * (size_t)a->width) == 0;
}

/* A 1 x 1 grid's color, for examples built from one-cell grids. */
static int color1(const vqj_grid *g)
{
    assert_int_equal(g->height, 1);
    assert_int_equal(g->width, 1);
    return g->cells[0];
}

static vqj_dataset *load_jsonl(vqj_context *ctx, const vqj_dataset_params *p, const char *text,
                               char *path)
{
    write_temp(path, text);
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_from_jsonl(ctx, p, path, &ds));
    return ds;
}

/* Expect a failure whose message holds `needle` (after the path). */
static void expect_jsonl_error(vqj_context *ctx, const vqj_dataset_params *p, const char *text,
                               vqj_status status, const char *needle)
{
    char path[64], expected[160];
    write_temp(path, text);
    vqj_dataset *ds = (vqj_dataset *)&ds, *const sentinel = ds;
    assert_status(ctx, vqj_dataset_from_jsonl(ctx, p, path, &ds), status);
    assert_ptr_equal(ds, sentinel);
    snprintf(expected, sizeof expected, "%s%s", path, needle);
    const char *m = vqj_last_error();
    if (!strstr(m, expected))
        fail_msg("message '%s' lacks '%s'", m, expected);
    unlink(path);
}

/* ------------------------------------------------------------- params */

static void test_defaults(void **state)
{
    (void)state;
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    assert_int_equal(dp.size, sizeof dp);
    assert_int_equal(dp.context_window, 3);
    assert_int_equal(dp.target_offset, 1);
    assert_true(dp.validation_split == 0.02f);
    assert_int_equal(dp.validation_seed, 13);
    assert_int_equal(dp.skip_bad, 0);
    assert_int_equal(dp.max_examples_per_task, 32);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    assert_int_equal(sp.num_examples, 20000);
    assert_int_equal(sp.min_side, 6);
    assert_int_equal(sp.max_side, 14);
    assert_int_equal(sp.min_colors, 4);
    assert_int_equal(sp.max_colors, 6);
    assert_int_equal(sp.max_primitives, 3);
    vqj_augment_params ap;
    vqj_augment_params_default(&ap);
    assert_true(ap.mask_ratio == 0.1f);
    assert_int_equal(ap.random_crop_radius, 1);
    assert_int_equal(ap.min_grid_size_for_crop, 8);
    assert_int_equal(ap.palette_permutation, 1);
    assert_true(ap.gaussian_noise_std == 0.05f);
    assert_int_equal(ap.background, 0);
    vqj_dataset_params_default(NULL);
    vqj_synthetic_params_default(NULL);
    vqj_augment_params_default(NULL);
}

static void test_bad_params(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_dataset_params dp;
    vqj_synthetic_params sp;
    vqj_dataset *ds = NULL;
    vqj_synthetic_params_default(&sp);
    sp.num_examples = 4;

    vqj_dataset_params_default(&dp);
    dp.context_window = 0;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "context_window"));
    vqj_dataset_params_default(&dp);
    dp.validation_split = 1.0f;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);
    vqj_dataset_params_default(&dp);
    dp.target_offset = 0;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);
    vqj_dataset_params_default(&dp);
    dp.size = 3;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);

    vqj_dataset_params_default(&dp);
    sp.min_side = 3;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "min_side"));
    vqj_synthetic_params_default(&sp);
    sp.max_colors = 11;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);
    vqj_synthetic_params_default(&sp);
    sp.max_primitives = 0;
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, &sp, &ds), VQJ_ERR_INVALID_ARGUMENT);
    vqj_synthetic_params_default(&sp);
    assert_status(ctx, vqj_dataset_synthetic(ctx, &dp, NULL, &ds), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(ds);
    assert_status(ctx, vqj_dataset_from_jsonl(ctx, &dp, NULL, &ds), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_dataset_from_arc(ctx, &dp, "/nonexistent/arc", &ds), VQJ_ERR_IO);
    assert_non_null(strstr(vqj_last_error(), "/nonexistent/arc"));
    assert_status(ctx, vqj_dataset_from_jsonl(ctx, &dp, "/nonexistent/x.jsonl", &ds),
                  VQJ_ERR_IO);
    assert_non_null(strstr(vqj_last_error(), "/nonexistent/x.jsonl"));
    assert_null(ds);
    vqj_context_destroy(ctx);
}

/* -------------------------------------------------------------- JSONL */

static void test_jsonl_context_form(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    char path[64];
    /* A longer context keeps its last T grids. */
    vqj_dataset *ds = load_jsonl(ctx, &p,
                                 "{\"context\": [[[1]], [[2]], [[3]], [[4]]], \"target\": [[5]]}\n"
                                 "\n"
                                 "{\"context\": [[[6, 7]], [[8], [9]], [[0]]], \"target\": "
                                 "[[1, 2], [3, 4]], \"id\": \"ignored\"}\n",
                                 path);
    assert_int_equal(vqj_dataset_num_examples(ds), 2);
    assert_int_equal(vqj_dataset_context_window(ds), 3);
    assert_int_equal(vqj_dataset_num_skipped(ds), 0);
    const vqj_grid *c, *t;
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    assert_int_equal(color1(&c[0]), 2);
    assert_int_equal(color1(&c[1]), 3);
    assert_int_equal(color1(&c[2]), 4);
    assert_int_equal(color1(t), 5);
    assert_ok(ctx, vqj_dataset_example(ds, 1, &c, &t));
    assert_int_equal(c[0].width, 2);
    assert_int_equal(c[1].height, 2);
    assert_int_equal(c[1].cells[1], 9);
    assert_int_equal(t->height, 2);
    assert_memory_equal(t->cells, ((uint8_t[]){1, 2, 3, 4}), 4);
    /* Out of range and NULL leave the outputs alone. */
    const vqj_grid *c2 = NULL;
    assert_status(ctx, vqj_dataset_example(ds, 2, &c2, &t), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(c2);
    assert_status(ctx, vqj_dataset_example(ds, 0, NULL, &t), VQJ_ERR_INVALID_ARGUMENT);
    vqj_dataset_params got;
    vqj_dataset_params_default(&got);
    got.context_window = 9;
    assert_ok(ctx, vqj_dataset_get_params(ds, &got));
    assert_int_equal(got.context_window, 3);
    vqj_dataset_destroy(ds);
    unlink(path);

    /* Too short a context for T = 3 is a bad record on its line. */
    expect_jsonl_error(ctx, &p,
                       "{\"context\": [[[1]], [[2]], [[3]]], \"target\": [[5]]}\n"
                       "{\"context\": [[[1]], [[2]]], \"target\": [[5]]}\n",
                       VQJ_ERR_PARSE, ":2: \"context\" has 2 grids; context_window is 3");
    expect_jsonl_error(ctx, &p, "{\"context\": [[[1]], [[2]], [[3]]]}\n", VQJ_ERR_PARSE,
                       ":1: \"context\" without \"target\"");
    vqj_context_destroy(ctx);
}

static void test_jsonl_input_output_form(void **state)
{
    (void)state;
    vqj_context *ctx = logging_context();
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    char path[64];
    vqj_dataset *ds = load_jsonl(ctx, &p,
                                 "{\"input\": [[1, 2]], \"output\": [[3]]}\n"
                                 "{\"input\": [[4]], \"output\": [[5]]}\n",
                                 path);
    assert_int_equal(vqj_dataset_num_examples(ds), 2);
    const vqj_grid *c, *t;
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    for (int i = 0; i < 3; i++) { /* the input repeated T times */
        assert_int_equal(c[i].width, 2);
        assert_memory_equal(c[i].cells, ((uint8_t[]){1, 2}), 2);
    }
    assert_int_equal(color1(t), 3);
    /* One warning per file, naming it. */
    assert_int_equal(warnings, 1);
    assert_non_null(strstr(last_warning, path));
    assert_non_null(strstr(last_warning, "aggregat"));
    vqj_dataset_destroy(ds);
    unlink(path);
    vqj_context_destroy(ctx);
}

/* A frames record of n one-cell frames colored 0, 1, 2, ... (mod 10). */
static void frames_line(char *buf, size_t size, int n)
{
    size_t k = (size_t)snprintf(buf, size, "{\"frames\": [");
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s[[%d]]", i ? ", " : "", i % 10);
    snprintf(buf + k, size - k, "]}\n");
}

static void test_jsonl_frames_form(void **state)
{
    (void)state;
    vqj_context *ctx = logging_context();
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    char text[4096], line[512], path[64];
    for (int offset = 1; offset <= 2; offset++) {
        p.target_offset = offset;
        frames_line(text, sizeof text, 7);
        vqj_dataset *ds = load_jsonl(ctx, &p, text, path);
        /* Windows s = 0.. with s + T - 1 + offset <= 6. */
        const size_t expected = (size_t)(7 - 3 - offset + 1);
        assert_int_equal(vqj_dataset_num_examples(ds), expected);
        for (size_t s = 0; s < expected; s++) {
            const vqj_grid *c, *t;
            assert_ok(ctx, vqj_dataset_example(ds, s, &c, &t));
            for (int i = 0; i < 3; i++)
                assert_int_equal(color1(&c[i]), (int)s + i);
            assert_int_equal(color1(t), (int)s + 2 + offset);
        }
        vqj_dataset_destroy(ds);
        unlink(path);
    }

    /* A sequence too short for one window gives nothing, and no error while
     * other records give examples; T = 1 and T = 4 windows. */
    p.target_offset = 1;
    frames_line(text, sizeof text, 3);
    frames_line(line, sizeof line, 5);
    strcat(text, line);
    warnings = 0;
    vqj_dataset *ds = load_jsonl(ctx, &p, text, path);
    assert_int_equal(vqj_dataset_num_examples(ds), 2); /* 5 frames: windows 0, 1 */
    assert_int_equal(vqj_dataset_num_skipped(ds), 0);
    assert_int_equal(warnings, 1); /* the short sequence is reported */
    vqj_dataset_destroy(ds);
    p.context_window = 1;
    assert_ok(ctx, vqj_dataset_from_jsonl(ctx, &p, path, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 2 + 4);
    vqj_dataset_destroy(ds);
    p.context_window = 4;
    assert_ok(ctx, vqj_dataset_from_jsonl(ctx, &p, path, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 1);
    const vqj_grid *c, *t;
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    assert_int_equal(color1(&c[3]), 3);
    assert_int_equal(color1(t), 4);
    vqj_dataset_destroy(ds);
    unlink(path);

    /* Nothing long enough at all: an error naming the file. */
    p.context_window = 3;
    frames_line(text, sizeof text, 3);
    expect_jsonl_error(ctx, &p, text, VQJ_ERR_PARSE, ": no examples");
    frames_line(text, sizeof text, 0);
    expect_jsonl_error(ctx, &p, text, VQJ_ERR_PARSE, ": no examples");
    vqj_context_destroy(ctx);
}

static const char bad_manifest[] =
    "{\"input\": [[1]], \"output\": [[2]]}\n"           /* 1: good */
    "{\"context\": [[[1]], [[2]], [[3]]], \"target\": [[1, 2], [3]]}\n" /* 2: ragged */
    "{\"frames\": [[[1]], [[2]], [[3]], [[4]]]}\n"      /* 3: good, 1 example */
    "{\"input\": [[1]], \"output\": [[12]]}\n"          /* 4: color 12 */
    "{\"input\": [[1]], \"output\": [[2]]\n"            /* 5: syntax */
    "[1, 2, 3]\n"                                       /* 6: not an object */
    "{\"input\": [[1]], \"frames\": []}\n"              /* 7: two forms */
    "{\"nothing\": 1}\n"                                /* 8: no form */
    "{\"frames\": [[[1]], [[2]], [[3]], [[2.5]]]}\n"    /* 9: not an integer */
    "{\"input\": [[3]], \"output\": [[4]]}\n";          /* 10: good */

static void test_jsonl_bad_records(void **state)
{
    (void)state;
    vqj_context *ctx = logging_context();
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    /* The first bad record fails the load, naming file and line. */
    expect_jsonl_error(ctx, &p, bad_manifest, VQJ_ERR_PARSE,
                       ":2: target: row 1 has 1 cells, expected 2");
    expect_jsonl_error(ctx, &p, "{\"input\": [[1]], \"output\": [[2]]}\n{\"input\": [[1]]\n",
                       VQJ_ERR_PARSE, ":2:");
    /* A syntax error also names the column. */
    char path[64];
    write_temp(path, "{\"input\": [[1]], \"output\": [[2]]}\n{\"input\": [[1]] x}\n");
    vqj_dataset *ds = NULL;
    assert_status(ctx, vqj_dataset_from_jsonl(ctx, &p, path, &ds), VQJ_ERR_PARSE);
    char expected[96];
    snprintf(expected, sizeof expected, "%s:2:17: JSON syntax error", path);
    if (!strstr(vqj_last_error(), expected))
        fail_msg("'%s' lacks '%s'", vqj_last_error(), expected);
    unlink(path);

    /* skip_bad: counted, the first messages kept, good records kept. */
    p.skip_bad = 1;
    warnings = 0;
    ds = load_jsonl(ctx, &p, bad_manifest, path);
    assert_int_equal(vqj_dataset_num_examples(ds), 3);
    assert_int_equal(vqj_dataset_num_skipped(ds), 7);
    const char *needles[7] = {":2: target: row 1",
                              ":4: output: row 0, column 0 is 12",
                              ":5:",
                              ":6: the record is not a JSON object",
                              ":7: the record mixes",
                              ":8: the record has none",
                              ":9: frames[3]: row 0, column 0 is not an integer"};
    for (size_t k = 0; k < 7; k++) {
        const char *m = vqj_dataset_skipped_message(ds, k);
        assert_non_null(m);
        snprintf(expected, sizeof expected, "%s%s", path, needles[k]);
        if (!strstr(m, expected))
            fail_msg("skipped message %zu '%s' lacks '%s'", k, m, expected);
    }
    assert_null(vqj_dataset_skipped_message(ds, 7));
    assert_true(warnings >= 7); /* each skip is logged, then a summary */
    /* The rolled-back records left no trace: line 9's frames are gone. */
    const vqj_grid *c, *t;
    assert_ok(ctx, vqj_dataset_example(ds, 1, &c, &t));
    assert_int_equal(color1(&c[0]), 1);
    assert_int_equal(color1(t), 4);
    assert_ok(ctx, vqj_dataset_example(ds, 2, &c, &t));
    assert_int_equal(color1(&c[0]), 3);
    assert_int_equal(color1(t), 4);
    vqj_dataset_destroy(ds);
    unlink(path);

    /* More bad records than kept messages: all counted. */
    char many[2048] = "";
    for (int i = 0; i < 12; i++)
        strcat(many, "{\"input\": 5, \"output\": [[1]]}\n");
    strcat(many, "{\"input\": [[1]], \"output\": [[1]]}\n");
    ds = load_jsonl(ctx, &p, many, path);
    assert_int_equal(vqj_dataset_num_skipped(ds), 12);
    assert_non_null(vqj_dataset_skipped_message(ds, VQJ_DATASET_MAX_SKIPPED_MESSAGES - 1));
    assert_null(vqj_dataset_skipped_message(ds, VQJ_DATASET_MAX_SKIPPED_MESSAGES));
    vqj_dataset_destroy(ds);
    unlink(path);
    /* Only bad records: no examples is still an error. */
    expect_jsonl_error(ctx, &p, "{\"input\": 5, \"output\": [[1]]}\n", VQJ_ERR_PARSE,
                       ": no examples");
    vqj_context_destroy(ctx);
}

/* ---------------------------------------------------------- synthetic */

static vqj_dataset *synthetic(vqj_context *ctx, int T, uint64_t seed, int n)
{
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    p.context_window = T;
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.seed = seed;
    sp.num_examples = n;
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, &p, &sp, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), (size_t)n);
    assert_int_equal(vqj_dataset_context_window(ds), T);
    return ds;
}

static int examples_equal(const vqj_dataset *a, size_t i, const vqj_dataset *b, size_t j)
{
    const vqj_grid *ca, *ta, *cb, *tb;
    if (vqj_dataset_example(a, i, &ca, &ta) || vqj_dataset_example(b, j, &cb, &tb))
        return 0;
    const int T = vqj_dataset_context_window(a);
    for (int k = 0; k < T; k++)
        if (!grid_equal(&ca[k], &cb[k]))
            return 0;
    return grid_equal(ta, tb);
}

static void test_synthetic_determinism(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_dataset *a = synthetic(ctx, 3, 7, 300), *b = synthetic(ctx, 3, 7, 300);
    vqj_dataset *c = synthetic(ctx, 3, 8, 300), *prefix = synthetic(ctx, 3, 7, 100);
    size_t same_as_other_seed = 0;
    for (size_t i = 0; i < 300; i++) {
        assert_true(examples_equal(a, i, b, i)); /* byte-identical */
        same_as_other_seed += examples_equal(a, i, c, i);
        if (i < 100)
            assert_true(examples_equal(a, i, prefix, i));
    }
    assert_true(same_as_other_seed < 3);
    vqj_dataset_destroy(a);
    vqj_dataset_destroy(b);
    vqj_dataset_destroy(c);
    vqj_dataset_destroy(prefix);
    vqj_context_destroy(ctx);
}

static int count_colors(const vqj_grid *g)
{
    int seen[VQJ_NUM_COLORS] = {0}, n = 0;
    for (int i = 0; i < g->height * g->width; i++)
        if (!seen[g->cells[i]]++)
            n++;
    return n;
}

/* Run a program through the internal primitives. */
static void run(const vqji_program *prog, const vqj_grid *in, int *h, int *w, uint8_t *out)
{
    uint8_t a[VQJ_MAX_GRID_SIDE * 16], b[VQJ_MAX_GRID_SIDE * 16];
    int32_t scratch[VQJ_MAX_GRID_SIDE * 16];
    *h = in->height;
    *w = in->width;
    memcpy(a, in->cells, (size_t)*h * (size_t)*w);
    for (int s = 0; s < prog->length; s++) {
        vqji_prim_apply(&prog->prims[s], *h, *w, a, h, w, b, scratch);
        memcpy(a, b, (size_t)*h * (size_t)*w);
    }
    memcpy(out, a, (size_t)*h * (size_t)*w);
}

static void test_synthetic_ranges_and_programs(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    sp.seed = 99;
    const int n = 2000;
    vqj_dataset *ds = synthetic(ctx, 3, 99, n);
    int kinds[VQJI_PRIM_COUNT] = {0}, changed = 0, fills_changed = 0;
    uint8_t out[VQJ_MAX_GRID_SIDE * 16];
    for (int e = 0; e < n; e++) {
        const vqj_grid *c, *t;
        assert_ok(ctx, vqj_dataset_example(ds, (size_t)e, &c, &t));
        const vqj_grid *all[4] = {&c[0], &c[1], &c[2], t};
        for (int g = 0; g < 4; g++) {
            assert_in_range(all[g]->height, 6, 14);
            assert_in_range(all[g]->width, 6, 14);
            assert_in_range(count_colors(all[g]), 1, 6);
        }
        /* Inputs show all k colors (background included); one palette. */
        const int k = count_colors(&c[0]);
        assert_in_range(k, 4, 6);
        assert_int_equal(count_colors(&c[2]), k);
        assert_true(count_colors(&c[1]) <= k && count_colors(t) <= k);

        /* [x, P(x), y] -> P(y) with the example's own program. */
        vqji_program prog;
        vqji_synthetic_example_program(&sp, (uint64_t)e, &prog);
        assert_in_range(prog.length, 1, 3);
        int h, w;
        run(&prog, &c[0], &h, &w, out);
        assert_true(grid_equal(&c[1], &(vqj_grid){h, w, out}));
        run(&prog, &c[2], &h, &w, out);
        assert_true(grid_equal(t, &(vqj_grid){h, w, out}));
        changed += !grid_equal(&c[0], &c[1]);
        for (int s = 0; s < prog.length; s++) {
            kinds[prog.prims[s].kind]++;
            if (s > 0)
                assert_int_not_equal(prog.prims[s].kind, prog.prims[s - 1].kind);
        }
        if (prog.length == 1 && prog.prims[0].kind == VQJI_PRIM_FILL)
            fills_changed += !grid_equal(&c[0], &c[1]);
    }
    for (int k = 0; k < VQJI_PRIM_COUNT; k++)
        assert_true(kinds[k] > 50); /* every primitive is used */
    assert_true(changed > n * 9 / 10); /* programs mostly do something */
    assert_true(fills_changed > 10);   /* closed shapes give the fill holes */
    vqj_dataset_destroy(ds);

    /* Other context windows: the last T of [.., x2, P(x2), x, P(x), y]. */
    for (int T = 1; T <= 5; T++) {
        ds = synthetic(ctx, T, 99, 40);
        for (int e = 0; e < 40; e++) {
            const vqj_grid *c, *t;
            assert_ok(ctx, vqj_dataset_example(ds, (size_t)e, &c, &t));
            vqji_program prog;
            vqji_synthetic_example_program(&sp, (uint64_t)e, &prog);
            int h, w;
            run(&prog, &c[T - 1], &h, &w, out); /* the query is last */
            assert_true(grid_equal(t, &(vqj_grid){h, w, out}));
            for (int i = T - 3; i >= 0; i -= 2) { /* inputs at T-3, T-5, ... */
                run(&prog, &c[i], &h, &w, out);
                assert_true(grid_equal(&c[i + 1], &(vqj_grid){h, w, out}));
            }
        }
        vqj_dataset_destroy(ds);
    }

    /* Custom ranges are honoured. */
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    sp.min_side = sp.max_side = 4;
    sp.min_colors = sp.max_colors = 10;
    sp.num_examples = 200;
    assert_ok(ctx, vqj_dataset_synthetic(ctx, &p, &sp, &ds));
    for (size_t e = 0; e < 200; e++) {
        const vqj_grid *c, *t;
        assert_ok(ctx, vqj_dataset_example(ds, e, &c, &t));
        assert_int_equal(c[0].height * c[0].width, 16);
        assert_int_equal(count_colors(&c[0]), 10);
    }
    vqj_dataset_destroy(ds);
    vqj_context_destroy(ctx);
}

static void apply(vqji_prim_kind kind, int a, int b, int h, int w, const uint8_t *in,
                  const uint8_t *expected, int eh, int ew)
{
    uint8_t out[64];
    int32_t scratch[64];
    int oh, ow;
    const vqji_prim p = {kind, a, b};
    vqji_prim_apply(&p, h, w, in, &oh, &ow, out, scratch);
    assert_int_equal(oh, eh);
    assert_int_equal(ow, ew);
    assert_memory_equal(out, expected, (size_t)(eh * ew));
}

static void test_primitives(void **state)
{
    (void)state;
    const uint8_t g[6] = {1, 2, 3, /**/ 4, 5, 6}; /* 2 x 3 */
    apply(VQJI_PRIM_MIRROR_H, 0, 0, 2, 3, g, (uint8_t[]){3, 2, 1, 6, 5, 4}, 2, 3);
    apply(VQJI_PRIM_MIRROR_V, 0, 0, 2, 3, g, (uint8_t[]){4, 5, 6, 1, 2, 3}, 2, 3);
    apply(VQJI_PRIM_ROTATE, 1, 0, 2, 3, g, (uint8_t[]){4, 1, 5, 2, 6, 3}, 3, 2); /* clockwise */
    apply(VQJI_PRIM_ROTATE, 2, 0, 2, 3, g, (uint8_t[]){6, 5, 4, 3, 2, 1}, 2, 3);
    apply(VQJI_PRIM_ROTATE, 3, 0, 2, 3, g, (uint8_t[]){3, 6, 2, 5, 1, 4}, 3, 2);
    apply(VQJI_PRIM_TRANSLATE, 1, -1, 2, 3, g, (uint8_t[]){0, 0, 0, 2, 3, 0}, 2, 3);
    apply(VQJI_PRIM_TRANSLATE, 0, 2, 2, 3, g, (uint8_t[]){0, 0, 1, 0, 0, 4}, 2, 3);
    apply(VQJI_PRIM_RECOLOR, 2, 7, 2, 3, g, (uint8_t[]){1, 7, 3, 4, 5, 6}, 2, 3);
    apply(VQJI_PRIM_SWAP, 1, 6, 2, 3, g, (uint8_t[]){6, 2, 3, 4, 5, 1}, 2, 3);

    /* A closed ring's hole is filled; the open shape's and the outside not. */
    const uint8_t ring[5 * 6] = {0, 0, 0, 0, 0, 0, /**/ 0, 3, 3, 3, 0, 0, /**/ 0, 3, 0, 3, 0, 2,
                                 /**/ 0, 3, 3, 3, 2, 0, /**/ 0, 0, 0, 0, 0, 2};
    const uint8_t filled[5 * 6] = {0, 0, 0, 0, 0, 0, /**/ 0, 3, 3, 3, 0, 0, /**/ 0, 3, 8, 3, 0, 2,
                                   /**/ 0, 3, 3, 3, 2, 0, /**/ 0, 0, 0, 0, 0, 2};
    apply(VQJI_PRIM_FILL, 8, 0, 5, 6, ring, filled, 5, 6);

    /* Gravity keeps each line's order. */
    const uint8_t col[3 * 2] = {1, 0, /**/ 0, 2, /**/ 3, 0};
    apply(VQJI_PRIM_GRAVITY, 0, 0, 3, 2, col, (uint8_t[]){0, 0, 1, 0, 3, 2}, 3, 2);
    apply(VQJI_PRIM_GRAVITY, 1, 0, 3, 2, col, (uint8_t[]){1, 2, 3, 0, 0, 0}, 3, 2);
    apply(VQJI_PRIM_GRAVITY, 2, 0, 3, 2, col, (uint8_t[]){1, 0, 2, 0, 3, 0}, 3, 2);
    apply(VQJI_PRIM_GRAVITY, 3, 0, 3, 2, col, (uint8_t[]){0, 1, 0, 2, 0, 3}, 3, 2);

    /* Rotating back undoes a rotation. */
    uint8_t once[6], twice[6];
    int h, w;
    vqji_prim_apply(&(vqji_prim){VQJI_PRIM_ROTATE, 1, 0}, 2, 3, g, &h, &w, once, NULL);
    vqji_prim_apply(&(vqji_prim){VQJI_PRIM_ROTATE, 3, 0}, h, w, once, &h, &w, twice, NULL);
    assert_memory_equal(twice, g, 6);
}

/* ---------------------------------------------------------------- ARC */

/* Train pair i: [[i+1]] -> [[i+5]] (i < 3); test 0: [[4]] -> [[8]]; test 1
 * has no output. */
static const char task_text[] =
    "{\"train\": [{\"input\": [[1]], \"output\": [[5]]},\n"
    "            {\"input\": [[2]], \"output\": [[6]]},\n"
    "            {\"input\": [[3]], \"output\": [[7]]}],\n"
    " \"test\": [{\"input\": [[4]], \"output\": [[8]]}, {\"input\": [[9]]}]}\n";

static void test_arc_examples(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    char path[128];
    write_named(path, "task.json", task_text);
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds));
    /* n(n-1) + n*m = 6 + 3, in rounds: query q takes demo q+r (train) or
     * r-1 (test). Queries 0..2 are train pairs, 3 the test pair. */
    const int order[9][2] = {{0, 1}, {1, 2}, {2, 0}, {3, 0}, {0, 2},
                             {1, 0}, {2, 1}, {3, 1}, {3, 2}};
    assert_int_equal(vqj_dataset_num_examples(ds), 9);
    for (size_t e = 0; e < 9; e++) {
        const vqj_grid *c, *t;
        assert_ok(ctx, vqj_dataset_example(ds, e, &c, &t));
        const int q = order[e][0], a = order[e][1];
        assert_int_equal(color1(&c[0]), a + 1);
        assert_int_equal(color1(&c[1]), a + 5);
        assert_int_equal(color1(&c[2]), q + 1);
        assert_int_equal(color1(t), q + 5);
    }
    vqj_dataset_destroy(ds);

    /* The cap keeps the first rounds. */
    p.max_examples_per_task = 5;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 5);
    const vqj_grid *c, *t;
    assert_ok(ctx, vqj_dataset_example(ds, 4, &c, &t));
    assert_int_equal(color1(&c[0]), 3);
    assert_int_equal(color1(&c[2]), 1);
    vqj_dataset_destroy(ds);

    /* T = 5 prepends the next demo (skipping the query); T = 1, 2 keep the
     * last grids. Example 0 is (query 0, demo 1), so demo 2 comes next. */
    p.max_examples_per_task = 0;
    const int expect5[5] = {3, 7, 2, 6, 1};
    p.context_window = 5;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds));
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    for (int i = 0; i < 5; i++)
        assert_int_equal(color1(&c[i]), expect5[i]);
    assert_int_equal(color1(t), 5);
    vqj_dataset_destroy(ds);
    p.context_window = 2;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 9);
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    assert_int_equal(color1(&c[0]), 6);
    assert_int_equal(color1(&c[1]), 1);
    vqj_dataset_destroy(ds);
    p.context_window = 1;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds));
    assert_ok(ctx, vqj_dataset_example(ds, 3, &c, &t));
    assert_int_equal(color1(&c[0]), 4);
    assert_int_equal(color1(t), 8);
    vqj_dataset_destroy(ds);
    unlink(path);

    /* T = 6 starts with an output; a two-pair task repeats its one demo. */
    char two[128];
    write_named(two, "two.json",
                "{\"train\": [{\"input\": [[1]], \"output\": [[5]]},"
                " {\"input\": [[2]], \"output\": [[6]]}], \"test\": [{\"input\": [[3]]}]}");
    p.context_window = 6;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, two, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 2);
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    const int expect6[6] = {6, 2, 6, 2, 6, 1};
    for (int i = 0; i < 6; i++)
        assert_int_equal(color1(&c[i]), expect6[i]);
    vqj_dataset_destroy(ds);
    unlink(two);
    vqj_context_destroy(ctx);
}

static void test_arc_folder(void **state)
{
    (void)state;
    vqj_context *ctx = logging_context();
    char sub[96], a[128], b[128], bad[128], other[128];
    snprintf(sub, sizeof sub, "%s/tasks", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(a, sizeof a, "%s/b.json", sub); /* read after a.json: names are sorted */
    FILE *f = fopen(a, "wb");
    assert_non_null(f);
    fputs(task_text, f);
    fclose(f);
    snprintf(b, sizeof b, "%s/a.json", sub);
    f = fopen(b, "wb");
    assert_non_null(f);
    fputs("{\"train\": [{\"input\": [[1]], \"output\": [[2]]}, {\"input\": [[3]], \"output\": "
          "[[4]]}]}",
          f);
    fclose(f);
    snprintf(other, sizeof other, "%s/notes.txt", sub);
    f = fopen(other, "wb");
    assert_non_null(f);
    fputs("not a task", f);
    fclose(f);

    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, sub, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 2 + 9);
    const vqj_grid *c, *t;
    assert_ok(ctx, vqj_dataset_example(ds, 0, &c, &t));
    assert_int_equal(color1(&c[0]), 3); /* a.json first: query 0 with demo 1 */
    assert_int_equal(color1(t), 2);
    /* The examples of one task are one group. */
    assert_int_equal(vqji_dataset_example_group(ds, 1), vqji_dataset_example_group(ds, 0));
    assert_int_not_equal(vqji_dataset_example_group(ds, 2), vqji_dataset_example_group(ds, 0));
    vqj_dataset_destroy(ds);

    /* A bad task fails with the loader's message naming the file, or is
     * skipped and counted. */
    snprintf(bad, sizeof bad, "%s/c.json", sub);
    f = fopen(bad, "wb");
    assert_non_null(f);
    fputs("{\"train\": [{\"input\": [[1]], \"output\": [[2, 3], [4]]}]}", f);
    fclose(f);
    ds = NULL;
    assert_status(ctx, vqj_dataset_from_arc(ctx, &p, sub, &ds), VQJ_ERR_PARSE);
    assert_null(ds);
    assert_non_null(strstr(vqj_last_error(), bad));
    assert_non_null(strstr(vqj_last_error(), "train pair 0 output"));
    p.skip_bad = 1;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, sub, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 11);
    assert_int_equal(vqj_dataset_num_skipped(ds), 1);
    assert_non_null(strstr(vqj_dataset_skipped_message(ds, 0), bad));
    vqj_dataset_destroy(ds);

    /* A task with one pair gives no example: alone, that is an error. */
    p.skip_bad = 0;
    char lone[128];
    write_named(lone, "lone.json", "{\"train\": [{\"input\": [[1]], \"output\": [[2]]}]}");
    assert_status(ctx, vqj_dataset_from_arc(ctx, &p, lone, &ds), VQJ_ERR_PARSE);
    assert_non_null(strstr(vqj_last_error(), "no examples"));
    unlink(lone);

    unlink(a);
    unlink(b);
    unlink(bad);
    unlink(other);
    rmdir(sub);
    vqj_context_destroy(ctx);
}

/* The documented example count of a real ARC folder, recomputed here from
 * the raw JSON with the formula min(n(n-1) + n*m, cap) per task. */
static void test_arc_real_data(void **state)
{
    (void)state;
    const char *folder = getenv("VQJ_ARC_DATA");
    if (!folder || !*folder)
        folder = "../shared/data/arc-agi-1/data/training";
    struct stat sb;
    if (stat(folder, &sb) != 0 || !S_ISDIR(sb.st_mode))
        skip();
    vqj_context *ctx = test_context();
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, folder, &ds));

    size_t expected = 0, tasks = 0;
    DIR *d = opendir(folder);
    assert_non_null(d);
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        json_error_t err;
        json_t *root = json_load_file(path, 0, &err);
        assert_non_null(root);
        const size_t n = json_array_size(json_object_get(root, "train"));
        const json_t *test = json_object_get(root, "test");
        size_t m = 0;
        for (size_t i = 0; i < json_array_size(test); i++)
            m += json_object_get(json_array_get(test, i), "output") != NULL;
        const size_t all = n * (n - 1) + n * m;
        expected += all < 32 ? all : 32;
        tasks++;
        json_decref(root);
    }
    closedir(d);
    assert_int_equal(vqj_dataset_num_examples(ds), expected);
    if (tasks == 400 && strstr(folder, "arc-agi-1/data/training"))
        assert_int_equal(expected, 4431); /* the number documented in vqjepa.h */
    assert_int_equal(vqj_dataset_num_skipped(ds), 0);

    /* Every example is [in(a), out(a), in(b)] -> out(b) with 1..30 sides. */
    for (size_t i = 0; i < vqj_dataset_num_examples(ds); i++) {
        const vqj_grid *c, *t;
        assert_ok(ctx, vqj_dataset_example(ds, i, &c, &t));
        for (int k = 0; k < 3; k++)
            assert_in_range(c[k].height, 1, 30);
        assert_in_range(t->width, 1, 30);
    }
    vqj_dataset_destroy(ds);
    vqj_context_destroy(ctx);
}

/* ------------------------------------------------------ split, shuffle */

static uint64_t example_hash(const vqj_dataset *ds, size_t i)
{
    const vqj_grid *c, *t;
    if (vqj_dataset_example(ds, i, &c, &t))
        return 0;
    uint64_t h = 1469598103934665603ull;
    const int T = vqj_dataset_context_window(ds);
    for (int k = 0; k <= T; k++) {
        const vqj_grid *g = k < T ? &c[k] : t;
        h = (h ^ (uint64_t)g->height) * 1099511628211ull;
        h = (h ^ (uint64_t)g->width) * 1099511628211ull;
        for (int j = 0; j < g->height * g->width; j++)
            h = (h ^ g->cells[j]) * 1099511628211ull;
    }
    return h;
}

static int compare_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_split(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const size_t n = 500;
    vqj_dataset *all = synthetic(ctx, 3, 5, (int)n);
    uint64_t hashes[500], parts[500];
    for (size_t i = 0; i < n; i++)
        hashes[i] = example_hash(all, i);
    qsort(hashes, n, sizeof *hashes, compare_u64);
    for (size_t i = 1; i < n; i++)
        assert_true(hashes[i] != hashes[i - 1]); /* the examples are distinct */

    vqj_dataset *tr, *va, *tr2, *va2, *tr3, *va3;
    assert_ok(ctx, vqj_dataset_split(all, 0.1f, 13, &tr, &va));
    assert_ok(ctx, vqj_dataset_split(all, 0.1f, 13, &tr2, &va2));
    assert_ok(ctx, vqj_dataset_split(all, 0.1f, 14, &tr3, &va3));
    assert_int_equal(vqj_dataset_num_examples(va), 50); /* one example a group */
    assert_int_equal(vqj_dataset_num_examples(tr) + vqj_dataset_num_examples(va), n);
    /* Together the parts are exactly all: no example in both, none lost. */
    size_t k = 0;
    for (size_t i = 0; i < vqj_dataset_num_examples(tr); i++)
        parts[k++] = example_hash(tr, i);
    for (size_t i = 0; i < vqj_dataset_num_examples(va); i++)
        parts[k++] = example_hash(va, i);
    qsort(parts, n, sizeof *parts, compare_u64);
    assert_memory_equal(parts, hashes, sizeof hashes);
    /* Deterministic by seed; another seed picks others. */
    int same = 1, other = 1;
    for (size_t i = 0; i < 50; i++) {
        same &= examples_equal(va, i, va2, i);
        other &= examples_equal(va, i, va3, i);
    }
    assert_true(same);
    assert_false(other);
    vqj_dataset_destroy(tr);
    vqj_dataset_destroy(va);
    vqj_dataset_destroy(tr2);
    vqj_dataset_destroy(va2);
    vqj_dataset_destroy(tr3);
    vqj_dataset_destroy(va3);

    /* The source may go first; 0 gives an empty validation set. */
    assert_ok(ctx, vqj_dataset_split(all, 0.0f, 13, &tr, &va));
    vqj_dataset_destroy(all);
    assert_int_equal(vqj_dataset_num_examples(tr), n);
    assert_int_equal(vqj_dataset_num_examples(va), 0);
    const vqj_grid *c, *t;
    assert_status(ctx, vqj_dataset_example(va, 0, &c, &t), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_dataset_split(tr, 1.0f, 13, &tr2, &va2), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_dataset_split(tr, 0.1f, 13, NULL, &va2), VQJ_ERR_INVALID_ARGUMENT);
    vqj_dataset_destroy(tr);
    vqj_dataset_destroy(va);
    vqj_context_destroy(ctx);
}

/* Frames of record r are colored r: windows of one record stay together. */
static void test_split_keeps_groups(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    char text[4096] = "", path[64];
    for (int r = 0; r < 10; r++) {
        strcat(text, "{\"frames\": [");
        for (int f = 0; f < 4 + r % 3; f++) {
            char g[32];
            snprintf(g, sizeof g, "%s[[%d, %d]]", f ? ", " : "", r, f);
            strcat(text, g);
        }
        strcat(text, "]}\n");
    }
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    vqj_dataset *all = load_jsonl(ctx, &p, text, path);
    unlink(path);
    const size_t n = vqj_dataset_num_examples(all);
    assert_int_equal(n, 4 * 1 + 3 * 2 + 3 * 3); /* 1, 2, 3 windows by r % 3 */
    for (uint64_t seed = 0; seed < 20; seed++) {
        vqj_dataset *tr, *va;
        assert_ok(ctx, vqj_dataset_split(all, 0.3f, seed, &tr, &va));
        int side[10] = {0};
        const vqj_dataset *parts[2] = {tr, va};
        for (int s = 0; s < 2; s++)
            for (size_t i = 0; i < vqj_dataset_num_examples(parts[s]); i++) {
                const vqj_grid *c, *t;
                assert_ok(ctx, vqj_dataset_example(parts[s], i, &c, &t));
                side[c[0].cells[0]] |= 1 << s;
            }
        for (int r = 0; r < 10; r++)
            assert_true(side[r] == 1 || side[r] == 2); /* never both */
        /* At least round(0.3 n) = 6, and groups hold at most 3. */
        assert_in_range(vqj_dataset_num_examples(va), 6, 8);
        vqj_dataset_destroy(tr);
        vqj_dataset_destroy(va);
    }
    vqj_dataset_destroy(all);
    vqj_context_destroy(ctx);
}

static void test_shuffle(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_dataset *ds = synthetic(ctx, 3, 1, 200);
    size_t a[200], b[200], c[200], d[200];
    assert_ok(ctx, vqj_dataset_shuffle(ds, 13, 0, a));
    assert_ok(ctx, vqj_dataset_shuffle(ds, 13, 0, b));
    assert_ok(ctx, vqj_dataset_shuffle(ds, 13, 1, c));
    assert_ok(ctx, vqj_dataset_shuffle(ds, 14, 0, d));
    int seen[200] = {0};
    for (size_t i = 0; i < 200; i++) {
        assert_true(a[i] < 200);
        seen[a[i]]++;
    }
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(seen[i], 1); /* a permutation */
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a); /* depends on the epoch */
    assert_memory_not_equal(a, d, sizeof a); /* and on the seed */
    size_t fixed = 0;
    for (size_t i = 0; i < 200; i++)
        fixed += a[i] == i;
    assert_true(fixed < 10);
    assert_status(ctx, vqj_dataset_shuffle(ds, 13, 0, NULL), VQJ_ERR_INVALID_ARGUMENT);
    vqj_dataset_destroy(ds);
    vqj_context_destroy(ctx);
}

/* ------------------------------------------------------- augmentations */

static void random_grid(uint8_t *cells, int h, int w, uint32_t seed, int colors)
{
    uint32_t s = seed * 2654435761u + 1u;
    for (int i = 0; i < h * w; i++) {
        s = s * 1664525u + 1013904223u;
        const uint32_t r = s >> 16;
        cells[i] = (uint8_t)(r % 3 == 0 ? 0 : 1 + (r / 3) % (uint32_t)colors);
    }
}

static vqj_augment_params no_augment(void)
{
    vqj_augment_params p;
    vqj_augment_params_default(&p);
    p.mask_ratio = 0.0f;
    p.random_crop_radius = 0;
    p.palette_permutation = 0;
    p.gaussian_noise_std = 0.0f;
    return p;
}

static void test_augment_identity(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    uint8_t in[12 * 10], out[12 * 10];
    random_grid(in, 12, 10, 3, 9);
    const vqj_grid g = {12, 10, in};
    vqj_augment_params p = no_augment();
    for (uint64_t seed = 0; seed < 10; seed++) {
        assert_ok(ctx, vqj_augment_grid(ctx, &p, seed, &g, out));
        assert_memory_equal(out, in, sizeof in);
    }
    /* mask 1 clears every cell; mask 0.5 only clears, and about half. */
    p.mask_ratio = 1.0f;
    assert_ok(ctx, vqj_augment_grid(ctx, &p, 1, &g, out));
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0);
    p.mask_ratio = 0.5f;
    assert_ok(ctx, vqj_augment_grid(ctx, &p, 1, &g, out));
    int kept = 0, nonbg = 0;
    for (size_t i = 0; i < sizeof out; i++) {
        assert_true(out[i] == in[i] || out[i] == 0);
        nonbg += in[i] != 0;
        kept += out[i] != 0;
    }
    assert_in_range(kept, nonbg / 4, nonbg * 3 / 4);

    /* Errors. */
    p.mask_ratio = 1.5f;
    assert_status(ctx, vqj_augment_grid(ctx, &p, 1, &g, out), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "mask_ratio"));
    p = no_augment();
    p.gaussian_noise_std = NAN;
    assert_status(ctx, vqj_augment_grid(ctx, &p, 1, &g, out), VQJ_ERR_INVALID_ARGUMENT);
    p = no_augment();
    in[5] = 10;
    assert_status(ctx, vqj_augment_grid(ctx, &p, 1, &g, out), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "cell (0, 5) is 10"));
    assert_status(ctx, vqj_augment_grid(ctx, &p, 1, NULL, out), VQJ_ERR_INVALID_ARGUMENT);
    vqj_context_destroy(ctx);
}

static void test_augment_palette_consistent(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_augment_params p = no_augment();
    p.palette_permutation = 1;
    uint8_t cells[4][9 * 9], out[4][9 * 9];
    vqj_grid grids[4];
    for (int g = 0; g < 4; g++) {
        random_grid(cells[g], 9, 9, (uint32_t)g + 10, 9);
        grids[g] = (vqj_grid){9, 9, cells[g]};
    }
    uint8_t *outs[4] = {out[0], out[1], out[2], out[3]};
    int moved = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        assert_ok(ctx, vqj_augment_example(ctx, &p, seed, grids, 3, &grids[3], outs));
        int map[VQJ_NUM_COLORS];
        for (int c = 0; c < VQJ_NUM_COLORS; c++)
            map[c] = -1;
        for (int g = 0; g < 4; g++)
            for (int i = 0; i < 81; i++) {
                const int from = cells[g][i], to = out[g][i];
                if (map[from] < 0)
                    map[from] = to;
                assert_int_equal(map[from], to); /* one mapping for every grid */
            }
        assert_int_equal(map[0], 0); /* background stays */
        int used[VQJ_NUM_COLORS] = {0};
        for (int c = 0; c < VQJ_NUM_COLORS; c++)
            if (map[c] >= 0) {
                assert_int_equal(used[map[c]], 0); /* a bijection */
                used[map[c]] = 1;
                moved += map[c] != c;
            }
    }
    assert_true(moved > 100);
    /* The grid version draws the same permutation for the same seed. */
    assert_ok(ctx, vqj_augment_grid(ctx, &p, 7, &grids[0], out[3]));
    assert_ok(ctx, vqj_augment_example(ctx, &p, 7, grids, 1, NULL, outs));
    assert_memory_equal(out[0], out[3], 81);
    assert_status(ctx, vqj_augment_example(ctx, &p, 7, grids, 0, NULL, outs),
                  VQJ_ERR_INVALID_ARGUMENT);
    vqj_context_destroy(ctx);
}

/* Find the shift (|dy|, |dx| <= r) that maps in to out, or return 0. */
static int find_shift(const uint8_t *in, const uint8_t *out, int h, int w, int r, int *dy,
                      int *dx)
{
    for (*dy = -r; *dy <= r; (*dy)++)
        for (*dx = -r; *dx <= r; (*dx)++) {
            int ok = 1;
            for (int y = 0; y < h && ok; y++)
                for (int x = 0; x < w && ok; x++) {
                    const int sy = y - *dy, sx = x - *dx;
                    const int v = sy >= 0 && sy < h && sx >= 0 && sx < w ? in[sy * w + sx] : 0;
                    ok = out[y * w + x] == v;
                }
            if (ok)
                return 1;
        }
    return 0;
}

static void test_augment_crop(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_augment_params p = no_augment();
    p.random_crop_radius = 1;
    uint8_t small[7 * 12], big[8 * 8], out[8 * 12];
    random_grid(small, 7, 12, 1, 5);
    random_grid(big, 8, 8, 2, 5);
    int shifts[3][3] = {{0}};
    for (uint64_t seed = 0; seed < 60; seed++) {
        /* min side 7 < 8: never moved. */
        assert_ok(ctx, vqj_augment_grid(ctx, &p, seed, &(vqj_grid){7, 12, small}, out));
        assert_memory_equal(out, small, sizeof small);
        assert_ok(ctx, vqj_augment_grid(ctx, &p, seed, &(vqj_grid){8, 8, big}, out));
        int dy, dx;
        assert_true(find_shift(big, out, 8, 8, 1, &dy, &dx));
        shifts[dy + 1][dx + 1]++;
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            assert_true(shifts[i][j] > 0); /* every shift in the radius occurs */
    /* One example shares its shift across grids that are large enough. */
    uint8_t big2[10 * 9], out2[10 * 9];
    random_grid(big2, 10, 9, 4, 5);
    const vqj_grid ctxg[2] = {{8, 8, big}, {10, 9, big2}};
    for (uint64_t seed = 0; seed < 20; seed++) {
        uint8_t *outs[2] = {out, out2};
        assert_ok(ctx, vqj_augment_example(ctx, &p, seed, ctxg, 2, NULL, outs));
        int dy1, dx1, dy2, dx2;
        assert_true(find_shift(big, out, 8, 8, 1, &dy1, &dx1));
        assert_true(find_shift(big2, out2, 10, 9, 1, &dy2, &dx2));
        /* A shift is ambiguous only when the moved cells are background; the
         * random grids have no such rows or columns. */
        assert_int_equal(dy1, dy2);
        assert_int_equal(dx1, dx2);
    }
    vqj_context_destroy(ctx);
}

static void test_augment_jitter(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_augment_params p = no_augment();
    p.gaussian_noise_std = 2.0f;
    uint8_t in[10 * 10], out[10 * 10];
    /* Colors 3..6 on background 0. */
    for (int i = 0; i < 100; i++)
        in[i] = (uint8_t)(i % 5 == 0 ? 0 : 3 + i % 4);
    int changed = 0, low = 0, high = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        assert_ok(ctx, vqj_augment_grid(ctx, &p, seed, &(vqj_grid){10, 10, in}, out));
        for (int i = 0; i < 100; i++) {
            if (in[i] == 0) {
                assert_int_equal(out[i], 0); /* background is not jittered */
                continue;
            }
            assert_in_range(out[i], 3, 6); /* within the grid's color range */
            changed += out[i] != in[i];
            low += out[i] == 3;
            high += out[i] == 6;
        }
    }
    assert_true(changed > 400);
    assert_true(low > 0 && high > 0);
    /* A background inside the range: jitter never turns a cell into it. */
    p.background = 4;
    for (uint64_t seed = 0; seed < 10; seed++) {
        assert_ok(ctx, vqj_augment_grid(ctx, &p, seed, &(vqj_grid){10, 10, in}, out));
        for (int i = 0; i < 100; i++)
            if (in[i] != 4)
                assert_int_not_equal(out[i], 4);
    }
    /* The default std 0.05 practically never changes a color. */
    vqj_augment_params_default(&p);
    p.mask_ratio = 0.0f;
    p.random_crop_radius = 0;
    p.palette_permutation = 0;
    assert_ok(ctx, vqj_augment_grid(ctx, &p, 3, &(vqj_grid){10, 10, in}, out));
    assert_memory_equal(out, in, sizeof in);
    vqj_context_destroy(ctx);
}

/* --------------------------------------------------------------- views */

/* ---------------------------------------------------------- the batch loader */

static void test_batch(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int T = 3;
    vqj_dataset *ds = synthetic(ctx, T, 7, 40);
    vqj_batch *b = NULL;
    assert_ok(ctx, vqj_batch_create(ctx, &b));
    assert_int_equal(vqj_batch_num_examples(b), 0);
    assert_null(vqj_batch_context(b));

    /* Without augmentation: the dataset's own grids, in the given order. */
    const size_t idx[5] = {9, 0, 39, 9, 21};
    assert_ok(ctx, vqj_batch_fill(b, ds, NULL, 0, 0, idx, 5));
    assert_int_equal(vqj_batch_num_examples(b), 5);
    assert_int_equal(vqj_batch_context_window(b), T);
    for (int e = 0; e < 5; e++) {
        const vqj_grid *cg, *tg;
        assert_ok(ctx, vqj_dataset_example(ds, idx[e], &cg, &tg));
        for (int k = 0; k < T; k++)
            assert_ptr_equal(vqj_batch_context(b)[e * T + k].cells, cg[k].cells);
        assert_ptr_equal(vqj_batch_targets(b)[e].cells, tg->cells);
    }

    /* Augmented: example e is vqj_augment_example() with vqj_augment_seed(). */
    vqj_augment_params aug;
    vqj_augment_params_default(&aug);
    aug.mask_ratio = 0.3f;
    assert_ok(ctx, vqj_batch_fill(b, ds, &aug, 123, 4, idx, 5));
    int changed = 0;
    for (int e = 0; e < 5; e++) {
        const vqj_grid *cg, *tg;
        assert_ok(ctx, vqj_dataset_example(ds, idx[e], &cg, &tg));
        uint8_t cells[4][VQJ_MAX_GRID_SIDE * 8];
        uint8_t *outs[4] = {cells[0], cells[1], cells[2], cells[3]};
        for (int k = 0; k <= T; k++)
            assert_true((size_t)(k < T ? cg[k] : *tg).height * (size_t)(k < T ? cg[k] : *tg).width <=
                        sizeof cells[0]);
        assert_ok(ctx, vqj_augment_example(ctx, &aug, vqj_augment_seed(123, 4, idx[e]), cg, T,
                                           tg, outs));
        for (int k = 0; k <= T; k++) {
            const vqj_grid *want = k < T ? &cg[k] : tg;
            const vqj_grid *got = k < T ? &vqj_batch_context(b)[e * T + k] : &vqj_batch_targets(b)[e];
            assert_int_equal(got->height, want->height);
            assert_int_equal(got->width, want->width);
            size_t n = (size_t)want->height * (size_t)want->width;
            assert_memory_equal(got->cells, outs[k], n);
            changed += memcmp(got->cells, want->cells, n) != 0;
        }
    }
    assert_true(changed > 0); /* the augmentation did something */
    /* The two examples with the same index are augmented alike. */
    assert_memory_equal(vqj_batch_targets(b)[0].cells, vqj_batch_targets(b)[3].cells,
                        (size_t)vqj_batch_targets(b)[0].height * (size_t)vqj_batch_targets(b)[0].width);

    /* The per-example seed is pinned: changing it would change every run. */
    assert_true(vqj_augment_seed(123, 0, 0) == 8518901915975844544ull);
    assert_true(vqj_augment_seed(123, 4, 17) == 8992494149802871048ull);
    assert_true(vqj_augment_seed(123, 4, 18) != vqj_augment_seed(123, 4, 17));
    assert_true(vqj_augment_seed(123, 5, 17) != vqj_augment_seed(123, 4, 17));

    /* Bad input: a clear error and an empty batch. */
    const size_t bad[2] = {1, 40};
    assert_status(ctx, vqj_batch_fill(b, ds, NULL, 0, 0, bad, 2), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "indices[1] is 40"));
    assert_int_equal(vqj_batch_num_examples(b), 0);
    assert_null(vqj_batch_targets(b));
    assert_status(ctx, vqj_batch_fill(b, ds, NULL, 0, 0, NULL, 2), VQJ_ERR_INVALID_ARGUMENT);
    aug.mask_ratio = 2.0f;
    assert_status(ctx, vqj_batch_fill(b, ds, &aug, 0, 0, idx, 5), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_batch_num_examples(b), 0);
    assert_status(ctx, vqj_batch_create(ctx, NULL), VQJ_ERR_INVALID_ARGUMENT);
    /* An empty fill is valid. */
    assert_ok(ctx, vqj_batch_fill(b, ds, NULL, 0, 0, NULL, 0));
    assert_int_equal(vqj_batch_num_examples(b), 0);
    vqj_batch_destroy(b);
    vqj_batch_destroy(NULL);
    vqj_dataset_destroy(ds);
    vqj_context_destroy(ctx);
}

static void test_view_flip(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    uint8_t in[5 * 7], once[5 * 7], twice[5 * 7];
    random_grid(in, 5, 7, 9, 9);
    for (int horizontal = 0; horizontal <= 1; horizontal++) {
        assert_ok(ctx, vqj_view_flip(ctx, &(vqj_grid){5, 7, in}, horizontal, once));
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 7; x++)
                assert_int_equal(once[y * 7 + x],
                                 horizontal ? in[y * 7 + 6 - x] : in[(4 - y) * 7 + x]);
        assert_ok(ctx, vqj_view_flip(ctx, &(vqj_grid){5, 7, once}, horizontal, twice));
        assert_memory_equal(twice, in, sizeof in);
    }
    assert_status(ctx, vqj_view_flip(ctx, &(vqj_grid){0, 7, in}, 1, once),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_view_flip(NULL, NULL, 1, once), VQJ_ERR_INVALID_ARGUMENT);
    vqj_context_destroy(ctx);
}

static void test_view_palette(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_tokens *tok = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &tp, &tok));
    /* Synthetic inputs: separate objects of a few colors. */
    vqj_dataset *ds = synthetic(ctx, 3, 21, 30);
    const int F = vqj_tokens_feature_dim(tok);
    for (size_t e = 0; e < 30; e++) {
        const vqj_grid *c, *t;
        assert_ok(ctx, vqj_dataset_example(ds, e, &c, &t));
        uint8_t view[14 * 14];
        assert_ok(ctx, vqj_view_palette(ctx, e, tp.background, &c[0], view));
        int perm[VQJ_NUM_COLORS];
        for (int k = 0; k < VQJ_NUM_COLORS; k++)
            perm[k] = -1;
        for (int i = 0; i < c[0].height * c[0].width; i++) {
            if (perm[c[0].cells[i]] < 0)
                perm[c[0].cells[i]] = view[i];
            assert_int_equal(perm[c[0].cells[i]], view[i]);
        }
        assert_int_equal(perm[0], 0);
        const vqj_grid pair[2] = {c[0], {c[0].height, c[0].width, view}};
        assert_ok(ctx, vqj_tokenize(ctx, tok, pair, 2));
        const int32_t *off = vqj_tokens_offsets(tok);
        const float *f = vqj_tokens_features(tok);
        const int n = off[1] - off[0];
        assert_true(n > 0);
        assert_int_equal(off[2] - off[1], n); /* same objects */
        for (int o = 0; o < n; o++) {
            const float *a = f + (size_t)(off[0] + o) * (size_t)F;
            const float *b = f + (size_t)(off[1] + o) * (size_t)F;
            /* Area, perimeter, sizes, color count and positions agree... */
            for (int k = 0; k < VQJ_BASE_FEATURES; k++)
                if (k != 6)
                    assert_true(a[k] == b[k]);
            /* ...and the dominant color is renamed by the same permutation. */
            assert_int_equal((int)b[6], perm[(int)a[6]]);
            /* The color-count slots hold the same counts. */
            float sa = 0, sb = 0;
            for (int k = VQJ_BASE_FEATURES; k < F; k++) {
                sa += a[k];
                sb += b[k];
            }
            assert_float_equal(sa, sb, 1e-6);
        }
    }
    /* Background bits stay fixed; everything else moves somewhere. */
    uint8_t all[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, out[10];
    assert_ok(ctx, vqj_view_palette(ctx, 5, (1u << 0) | (1u << 7), &(vqj_grid){1, 10, all}, out));
    assert_int_equal(out[0], 0);
    assert_int_equal(out[7], 7);
    int used[10] = {0};
    for (int i = 0; i < 10; i++)
        used[out[i]]++;
    for (int i = 0; i < 10; i++)
        assert_int_equal(used[i], 1);
    uint8_t out2[10];
    assert_ok(ctx, vqj_view_palette(NULL, 5, 1u | (1u << 7), &(vqj_grid){1, 10, all}, out2));
    assert_memory_equal(out, out2, 10); /* seeded */
    vqj_dataset_destroy(ds);
    vqj_tokens_destroy(tok);
    vqj_context_destroy(ctx);
}

static void test_view_translate_features(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const int F = 23;
    float f[3 * 23], orig[3 * 23];
    test_fill(f, 3 * 23, 5, 1.0f);
    memcpy(orig, f, sizeof f);
    assert_ok(ctx, vqj_view_translate_features(ctx, f, 3, F, 0.1f, -0.05f));
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < F; k++) {
            const float a = orig[i * F + k], b = f[i * F + k];
            if (k == 7 || k == 9 || k == 11)
                assert_float_equal(b, a + 0.1f, 1e-6);
            else if (k == 8 || k == 10 || k == 12)
                assert_float_equal(b, a - 0.05f, 1e-6);
            else
                assert_true(a == b); /* areas, sizes, colors unchanged */
        }
    assert_ok(ctx, vqj_view_translate_features(ctx, NULL, 0, F, 0.1f, 0.1f));
    assert_status(ctx, vqj_view_translate_features(ctx, f, 3, 12, 0.1f, 0.1f),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_view_translate_features(ctx, f, 3, F, INFINITY, 0.1f),
                  VQJ_ERR_NUMERIC);
    vqj_context_destroy(ctx);
}

/* The built-in ARC-AGI-1 tasks: 400 + 400, the same examples as the
 * source folder when it is at hand; a corrupted or truncated copy of the
 * gzip data and a .jsonl.gz of manifest records. */
static void write_bytes(char *path, const char *name, const uint8_t *b, size_t n)
{
    snprintf(path, 128, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_builtin_arc(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_arc_task **tasks = NULL;
    size_t n = 0;
    assert_ok(ctx, vqji_arc_tasks_load(ctx, VQJ_ARC_BUILTIN_TRAINING, &tasks, &n));
    assert_int_equal(n, 400);
    assert_string_equal(vqj_arc_task_name(tasks[0]), "007bbfb7");
    vqji_arc_tasks_destroy(tasks, n);
    assert_ok(ctx, vqji_arc_tasks_load(ctx, VQJ_ARC_BUILTIN_EVALUATION, &tasks, &n));
    assert_int_equal(n, 400);
    vqji_arc_tasks_destroy(tasks, n);
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    vqj_dataset *ds = NULL;
    assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, VQJ_ARC_BUILTIN_TRAINING, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 4431); /* as the header says */
    vqj_dataset_destroy(ds);
    const char *folder = getenv("VQJ_ARC_DATA");
    struct stat sb;
    if (folder && *folder && stat(folder, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t files = 0;
        DIR *d = opendir(folder);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            files += strlen(e->d_name) > 5 && strstr(e->d_name, ".json") != NULL;
        closedir(d);
        assert_int_equal(files, 400);
        assert_ok(ctx, vqj_dataset_from_arc(ctx, &p, folder, &ds));
        assert_int_equal(vqj_dataset_num_examples(ds), 4431);
        vqj_dataset_destroy(ds);
    } else {
        printf("test_builtin_arc: no source folder (VQJ_ARC_DATA): its count not compared\n");
    }

    /* Corrupted and truncated copies. */
    const uint8_t *gz = NULL;
    size_t size = 0;
    assert_true(vqji_builtin_arc(VQJ_ARC_BUILTIN_TRAINING, &gz, &size));
    assert_true(size > 1000);
    uint8_t *copy = malloc(size);
    assert_non_null(copy);
    memcpy(copy, gz, size);
    for (size_t i = size / 2; i < size / 2 + 64; i++)
        copy[i] ^= 0x5a;
    char path[128];
    write_bytes(path, "bad.jsonl.gz", copy, size);
    assert_status(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds), VQJ_ERR_PARSE);
    assert_non_null(strstr(vqj_last_error(), "bad.jsonl.gz"));
    assert_non_null(strstr(vqj_last_error(), "gzip"));
    unlink(path);
    write_bytes(path, "short.jsonl.gz", gz, size / 3);
    assert_status(ctx, vqj_dataset_from_arc(ctx, &p, path, &ds), VQJ_ERR_PARSE);
    assert_non_null(strstr(vqj_last_error(), "ends early"));
    unlink(path);
    free(copy);

    /* A .jsonl.gz of manifest records. */
    snprintf(path, sizeof path, "%s/m.jsonl.gz", dir);
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    const char *rec = "{\"context\":[[[1]],[[2]],[[3]]],\"target\":[[4]]}\n";
    assert_int_equal(gzwrite(g, rec, (unsigned)strlen(rec)), (int)strlen(rec));
    assert_int_equal(gzclose(g), Z_OK);
    assert_ok(ctx, vqj_dataset_from_jsonl(ctx, &p, path, &ds));
    assert_int_equal(vqj_dataset_num_examples(ds), 1);
    vqj_dataset_destroy(ds);
    unlink(path);

    /* A gzip bomb stops at the memory limit with a clear error: 4 MB of
     * blanks inflated under a 1 MB limit. */
    g = gzopen(path, "wb");
    assert_non_null(g);
    static char blanks[1 << 16];
    memset(blanks, ' ', sizeof blanks);
    for (int i = 0; i < 64; i++)
        assert_int_equal(gzwrite(g, blanks, sizeof blanks), (int)sizeof blanks);
    assert_int_equal(gzwrite(g, rec, (unsigned)strlen(rec)), (int)strlen(rec));
    assert_int_equal(gzclose(g), Z_OK);
    const char *old_limit = getenv("VQJEPA_MEMORY_LIMIT");
    char *saved = old_limit ? strdup(old_limit) : NULL;
    assert_int_equal(setenv("VQJEPA_MEMORY_LIMIT", "1M", 1), 0);
    ds = NULL;
    assert_status(ctx, vqj_dataset_from_jsonl(ctx, &p, path, &ds), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(ds);
    assert_non_null(strstr(vqj_last_error(), "the memory limit (VQJEPA_MEMORY_LIMIT)"));
    assert_int_equal(setenv("VQJEPA_MEMORY_LIMIT", "64M", 1), 0);
    assert_ok(ctx, vqj_dataset_from_jsonl(ctx, &p, path, &ds)); /* the same file fits */
    assert_int_equal(vqj_dataset_num_examples(ds), 1);
    vqj_dataset_destroy(ds);
    if (saved)
        setenv("VQJEPA_MEMORY_LIMIT", saved, 1);
    else
        unsetenv("VQJEPA_MEMORY_LIMIT");
    free(saved);
    unlink(path);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_jsonl_context_form),
        cmocka_unit_test(test_jsonl_input_output_form),
        cmocka_unit_test(test_jsonl_frames_form),
        cmocka_unit_test(test_jsonl_bad_records),
        cmocka_unit_test(test_synthetic_determinism),
        cmocka_unit_test(test_synthetic_ranges_and_programs),
        cmocka_unit_test(test_primitives),
        cmocka_unit_test(test_arc_examples),
        cmocka_unit_test(test_arc_folder),
        cmocka_unit_test(test_arc_real_data),
        cmocka_unit_test(test_builtin_arc),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_keeps_groups),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_augment_identity),
        cmocka_unit_test(test_augment_palette_consistent),
        cmocka_unit_test(test_augment_crop),
        cmocka_unit_test(test_augment_jitter),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_view_flip),
        cmocka_unit_test(test_view_palette),
        cmocka_unit_test(test_view_translate_features),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
