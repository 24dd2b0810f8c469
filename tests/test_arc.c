/* The ARC task loader: files written to a temporary directory, good and
 * bad, and the exact place each error names. */
#include "testutil.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vqj_test_arc_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

/* Write `text` to DIR/name and return the path (static storage). */
static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Load a file expecting `status`, with `needle` in the message; cleans up. */
static void expect_load_error(vqj_context *ctx, const char *name, const char *text,
                              vqj_status status, const char *needle)
{
    const char *path = write_file(name, text);
    vqj_arc_task *task = (vqj_arc_task *)&task; /* must stay untouched */
    vqj_arc_task *const sentinel = task;
    assert_status(ctx, vqj_arc_task_load(ctx, path, &task), status);
    assert_ptr_equal(task, sentinel);
    const char *m = vqj_last_error();
    if (!strstr(m, needle) || !strstr(m, path))
        fail_msg("message '%s' lacks '%s' or the path %s", m, needle, path);
    unlink(path);
}

static const char good[] =
    "{\"train\": [\n"
    "  {\"input\": [[1, 2, 3], [4, 5, 6]], \"output\": [[7]]},\n"
    "  {\"input\": [[0]], \"output\": [[9, 8], [7, 6], [5, 4]]}\n"
    "],\n"
    " \"test\": [{\"input\": [[3, 3]], \"output\": [[1], [2]]}, {\"input\": [[0, 1, 0]]}],\n"
    " \"extra\": \"ignored\"}\n";

static void test_load_good(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const char *path = write_file("abc123.json", good);
    vqj_arc_task *task = NULL;
    assert_ok(ctx, vqj_arc_task_load(ctx, path, &task));
    unlink(path);
    assert_string_equal(vqj_arc_task_name(task), "abc123");
    assert_int_equal(vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN), 2);
    assert_int_equal(vqj_arc_task_num_pairs(task, VQJ_ARC_TEST), 2);

    const vqj_grid *g = vqj_arc_task_input(task, VQJ_ARC_TRAIN, 0);
    assert_non_null(g);
    assert_int_equal(g->height, 2);
    assert_int_equal(g->width, 3);
    const uint8_t in0[6] = {1, 2, 3, 4, 5, 6};
    assert_memory_equal(g->cells, in0, 6);
    g = vqj_arc_task_output(task, VQJ_ARC_TRAIN, 1);
    assert_int_equal(g->height, 3);
    assert_int_equal(g->width, 2);
    const uint8_t out1[6] = {9, 8, 7, 6, 5, 4};
    assert_memory_equal(g->cells, out1, 6);
    g = vqj_arc_task_output(task, VQJ_ARC_TEST, 0);
    assert_int_equal(g->height, 2);
    assert_int_equal(g->width, 1);
    /* A test pair without output, and indices out of range. */
    g = vqj_arc_task_input(task, VQJ_ARC_TEST, 1);
    assert_int_equal(g->width, 3);
    assert_int_equal(g->cells[1], 1);
    assert_null(vqj_arc_task_output(task, VQJ_ARC_TEST, 1));
    assert_null(vqj_arc_task_input(task, VQJ_ARC_TEST, 2));
    assert_null(vqj_arc_task_output(task, VQJ_ARC_TRAIN, 2));
    assert_null(vqj_arc_task_input(task, (vqj_arc_split)2, 0));
    assert_int_equal(vqj_arc_task_num_pairs(task, (vqj_arc_split)5), 0);
    assert_int_equal(vqj_arc_task_num_pairs(NULL, VQJ_ARC_TRAIN), 0);
    assert_null(vqj_arc_task_input(NULL, VQJ_ARC_TRAIN, 0));
    assert_string_equal(vqj_arc_task_name(NULL), "");

    /* The grids feed the tokenizer as they are. */
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    vqj_tokens *t = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &p, &t));
    assert_ok(ctx, vqj_tokenize(ctx, t, vqj_arc_task_input(task, VQJ_ARC_TRAIN, 0), 1));
    assert_int_equal(vqj_tokens_num_objects(t), 6);
    vqj_tokens_destroy(t);
    vqj_arc_task_destroy(task);
    vqj_arc_task_destroy(NULL);

    /* A name without the .json suffix is kept whole. */
    path = write_file("plain", good);
    assert_ok(ctx, vqj_arc_task_load(ctx, path, &task));
    assert_string_equal(vqj_arc_task_name(task), "plain");
    vqj_arc_task_destroy(task);
    unlink(path);
    vqj_context_destroy(ctx);
}

static void test_parse_text(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_arc_task *task = NULL;
    /* Not NUL-terminated: only `length` bytes are read. */
    const char text[] = "{\"train\": [{\"input\": [[5]], \"output\": [[6]]}]}GARBAGE";
    assert_ok(ctx, vqj_arc_task_parse(ctx, text, strlen(text) - 7, "mine", &task));
    assert_string_equal(vqj_arc_task_name(task), "mine");
    assert_int_equal(vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN), 1);
    assert_int_equal(vqj_arc_task_num_pairs(task, VQJ_ARC_TEST), 0); /* "test" may be absent */
    assert_int_equal(vqj_arc_task_output(task, VQJ_ARC_TRAIN, 0)->cells[0], 6);
    vqj_arc_task_destroy(task);

    const char empty[] = "{\"train\": [], \"test\": []}";
    assert_ok(ctx, vqj_arc_task_parse(ctx, empty, strlen(empty), NULL, &task));
    assert_string_equal(vqj_arc_task_name(task), "");
    assert_int_equal(vqj_arc_task_num_pairs(task, VQJ_ARC_TRAIN), 0);
    vqj_arc_task_destroy(task);

    assert_status(ctx, vqj_arc_task_parse(ctx, text, strlen(text), "mine", &task),
                  VQJ_ERR_PARSE);
    assert_non_null(strstr(vqj_last_error(), "mine:1:"));
    assert_status(ctx, vqj_arc_task_parse(NULL, text, 10, "x", &task), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_arc_task_parse(ctx, NULL, 10, "x", &task), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_arc_task_parse(ctx, text, 10, "x", NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_arc_task_load(ctx, NULL, &task), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_arc_task_load(ctx, "x.json", NULL), VQJ_ERR_INVALID_ARGUMENT);
    vqj_context_destroy(ctx);
}

static void test_io_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_arc_task *task = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/missing.json", dir);
    assert_status(ctx, vqj_arc_task_load(ctx, path, &task), VQJ_ERR_IO);
    const char *m = vqj_last_error();
    if (!strstr(m, path) || !strstr(m, "No such file"))
        fail_msg("message '%s' lacks the path or the reason", m);
    assert_null(task);
    /* A directory opens but cannot be read. */
    assert_status(ctx, vqj_arc_task_load(ctx, dir, &task), VQJ_ERR_IO);
    assert_non_null(strstr(vqj_last_error(), dir));
    vqj_context_destroy(ctx);
}

static void test_malformed_json(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    /* A missing comma on line 3: jansson reports line 3. */
    expect_load_error(ctx, "bad.json",
                      "{\"train\": [\n"
                      "  {\"input\": [[1]], \"output\": [[2]]},\n"
                      "  {\"input\": [[1]] \"output\": [[2]]}\n"
                      "]}\n",
                      VQJ_ERR_PARSE, "bad.json:3:");
    expect_load_error(ctx, "empty.json", "", VQJ_ERR_PARSE, "empty.json:");
    expect_load_error(ctx, "trunc.json", "{\"train\": [{\"input\": [[1, 2]", VQJ_ERR_PARSE,
                      "trunc.json:1:");
    vqj_context_destroy(ctx);
}

static void test_bad_structure(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const struct {
        const char *text, *needle;
    } cases[] = {
        {"[1, 2]", "top level is not an object"},
        {"{\"test\": []}", "no \"train\""},
        {"{\"train\": 3}", "\"train\" is not an array"},
        {"{\"train\": [], \"test\": {}}", "\"test\" is not an array"},
        {"{\"train\": [7]}", "train pair 0 is not an object"},
        {"{\"train\": [{\"output\": [[1]]}]}", "train pair 0 has no \"input\""},
        {"{\"train\": [{\"input\": [[1]]}]}", "train pair 0 has no \"output\""},
        /* ragged rows: row 2 of the second train pair's output */
        {"{\"train\": [{\"input\": [[1]], \"output\": [[1]]},"
         " {\"input\": [[1]], \"output\": [[1, 2, 3], [4, 5, 6], [7, 8]]}]}",
         "train pair 1 output: row 2 has 2 cells, expected 3"},
        {"{\"train\": [{\"input\": [[1, 12]], \"output\": [[1]]}]}",
         "train pair 0 input: row 0, column 1 is 12; colors are 0..9"},
        {"{\"train\": [], \"test\": [{\"input\": [[0], [-1]]}]}",
         "test pair 0 input: row 1, column 0 is -1"},
        {"{\"train\": [{\"input\": [[1, 1.5]], \"output\": [[1]]}]}",
         "row 0, column 1 is not an integer"},
        {"{\"train\": [{\"input\": [[1, \"2\"]], \"output\": [[1]]}]}",
         "row 0, column 1 is not an integer"},
        {"{\"train\": [{\"input\": [], \"output\": [[1]]}]}", "train pair 0 input: the grid has no rows"},
        {"{\"train\": [{\"input\": [[]], \"output\": [[1]]}]}", "row 0 has no cells"},
        {"{\"train\": [{\"input\": [[1], 2], \"output\": [[1]]}]}", "row 1 is not an array"},
        {"{\"train\": [{\"input\": 5, \"output\": [[1]]}]}", "not an array of rows"},
        {"{\"train\": [{\"input\": [[1]], \"output\": [[1]]}], \"test\": [{\"input\": [[1]], "
         "\"output\": [[1], [1, 1]]}]}",
         "test pair 0 output: row 1 has 2 cells, expected 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_load_error(ctx, "task.json", cases[i].text, VQJ_ERR_PARSE, cases[i].needle);

    /* More than 256 rows or columns. */
    size_t n = 257 * 4 + 64;
    char *big = malloc(n);
    assert_non_null(big);
    char *w = big + sprintf(big, "{\"train\": [{\"output\": [[1]], \"input\": [");
    for (int i = 0; i < 257; i++)
        w += sprintf(w, "%s[0]", i ? "," : "");
    sprintf(w, "]}]}");
    expect_load_error(ctx, "tall.json", big, VQJ_ERR_PARSE, "257 rows");
    w = big + sprintf(big, "{\"train\": [{\"output\": [[1]], \"input\": [[");
    for (int i = 0; i < 257; i++)
        w += sprintf(w, "%s0", i ? "," : "");
    sprintf(w, "]]}]}");
    expect_load_error(ctx, "wide.json", big, VQJ_ERR_PARSE, "257 cells");
    free(big);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_good),      cmocka_unit_test(test_parse_text),
        cmocka_unit_test(test_io_errors),      cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_bad_structure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
