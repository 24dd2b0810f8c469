/* Each parameter range is stated once, in src/core/limits.h: the modules'
 * checks and the configuration's key table use its constants. This test
 * holds the other two users to it: docs/failures.md's "Limits" table has
 * exactly one row per range, as written here, and every configuration key
 * a range names accepts both ends and refuses one past each. */
#include "testutil.h"
#include "core/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct limit {
    const char *name;
    long long lo, hi;
    const char *keys, *bounds;
} limit;

#define ROW(name, lo, hi, keys, bounds) {#name, (lo), (hi), keys, bounds},
static const limit limits[] = {VQJI_LIMITS(ROW)};
#undef ROW
#define NUM_LIMITS (sizeof limits / sizeof *limits)

/* The next key of a comma-separated list into key[cap]; 0 at the end. */
static int next_key(const char **list, char *key, size_t cap)
{
    const char *k = *list;
    if (!*k)
        return 0;
    size_t len = strcspn(k, ",");
    snprintf(key, cap, "%.*s", (int)len, k);
    k += len;
    while (*k == ',' || *k == ' ')
        k++;
    *list = k;
    return 1;
}

/* The row docs/failures.md must hold for `l`:
 * | `name` | lo..hi | `key`, `key` | bounds | ("-" for an empty cell). */
static void doc_row(const limit *l, char *buf, size_t size)
{
    char name[64], keys[256] = "";
    size_t n = 0;
    for (; l->name[n] && n + 1 < sizeof name; n++)
        name[n] = (char)(l->name[n] >= 'A' && l->name[n] <= 'Z' ? l->name[n] - 'A' + 'a'
                                                                : l->name[n]);
    name[n] = '\0';
    if (!*l->keys) {
        snprintf(keys, sizeof keys, "-");
    } else {
        size_t at = 0;
        char key[128];
        for (const char *k = l->keys; next_key(&k, key, sizeof key);)
            at += (size_t)snprintf(keys + at, sizeof keys - at, "%s`%s`", at ? ", " : "", key);
    }
    snprintf(buf, size, "| `%s` | %lld..%lld | %s | %s |", name, l->lo, l->hi, keys,
             *l->bounds ? l->bounds : "-");
}

/* A page of docs/ as one string (static); skips the test without it. */
static const char *read_doc(const char *path)
{
    static char text[1 << 18];
    FILE *f = fopen(path, "r");
    if (!f) {
        print_message("%s not found (run from the repository root)\n", path);
        skip();
        return "";
    }
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    return text;
}

static void test_docs_table(void **state)
{
    (void)state;
    const char *text = read_doc("docs/failures.md");
    const char *section = strstr(text, "\n## Limits\n");
    assert_non_null(section);
    const char *end = strstr(section + 1, "\n## ");
    size_t section_len = end ? (size_t)(end - section) : strlen(section);
    int missing = 0;
    for (size_t i = 0; i < NUM_LIMITS; i++) {
        char row[1024];
        doc_row(&limits[i], row, sizeof row);
        const char *hit = strstr(section, row);
        if (!hit || (size_t)(hit - section) > section_len) {
            print_message("docs/failures.md lacks the row\n%s\n", row);
            missing++;
        }
    }
    /* No row that the table does not have. */
    size_t rows = 0;
    for (const char *p = section; p && (size_t)(p - section) < section_len; p = strchr(p + 1, '\n'))
        if (!strncmp(p, "\n| `", 4))
            rows++;
    assert_int_equal(missing, 0);
    assert_int_equal(rows, NUM_LIMITS);
}

/* docs/config.md's key tables: a row of each key a range names gives that
 * range as "[lo, hi]". */
static void test_config_doc(void **state)
{
    (void)state;
    const char *text = read_doc("docs/config.md");
    int wrong = 0;
    for (size_t i = 0; i < NUM_LIMITS; i++) {
        char key[128];
        for (const char *k = limits[i].keys; next_key(&k, key, sizeof key);) {
            char row[160], range[64];
            snprintf(row, sizeof row, "\n| `%s` ", key);
            snprintf(range, sizeof range, "[%lld, %lld]", limits[i].lo, limits[i].hi);
            /* The key's row in the key tables (other tables may name it too). */
            int found = 0;
            for (const char *at = strstr(text, row); at && !found; at = strstr(at + 1, row)) {
                const char *eol = strchr(at + 1, '\n'), *hit = strstr(at + 1, range);
                found = hit && (!eol || hit < eol);
            }
            if (!found) {
                print_message("docs/config.md: no row of `%s` says %s\n", key, range);
                wrong++;
            }
        }
    }
    assert_int_equal(wrong, 0);
}

/* Set `key` to `value` on a fresh configuration, after what the rules
 * between keys need so that only the range decides. */
static vqj_status set_alone(vqj_context *ctx, const char *key, long long value)
{
    vqj_config *cfg;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    char text[64], partner[128];
    if (!strcmp(key, "object_encoder.fsq_levels"))
        snprintf(text, sizeof text, "[%lld]", value);
    else
        snprintf(text, sizeof text, "%lld", value);
    /* relational_heads must divide hidden_dim; min_* <= max_*. */
    if (!strcmp(key, "object_encoder.relational_heads"))
        assert_ok(ctx, vqj_config_set(cfg, "object_encoder.hidden_dim", "16384"));
    if (!strcmp(key, "object_encoder.hidden_dim"))
        assert_ok(ctx, vqj_config_set(cfg, "object_encoder.relational_heads", "1"));
    const char *mm = strstr(key, ".min_") ? strstr(key, ".min_") : strstr(key, ".max_");
    if (mm && !strncmp(key, "synthetic.", 10)) {
        snprintf(partner, sizeof partner, "%.*s.%s_%s", (int)(mm - key), key,
                 mm[2] == 'i' ? "max" : "min", mm + 5);
        const limit *l = NULL;
        for (size_t i = 0; i < NUM_LIMITS; i++)
            if (strstr(limits[i].keys, partner))
                l = &limits[i];
        if (l) { /* synthetic.max_primitives has no partner */
            char v[32];
            snprintf(v, sizeof v, "%lld", mm[2] == 'i' ? l->hi : l->lo);
            assert_ok(ctx, vqj_config_set(cfg, partner, v));
        }
    }
    vqj_status st = vqj_config_set(cfg, key, text);
    vqj_config_destroy(cfg);
    return st;
}

static void test_config_keys(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    int checked = 0;
    for (size_t i = 0; i < NUM_LIMITS; i++) {
        const limit *l = &limits[i];
        char key[128];
        for (const char *k = l->keys; next_key(&k, key, sizeof key);) {
            if (set_alone(ctx, key, l->lo) != VQJ_OK || set_alone(ctx, key, l->hi) != VQJ_OK)
                fail_msg("%s refuses an end of %s's range %lld..%lld: %s", key, l->name, l->lo,
                         l->hi, vqj_last_error());
            if (set_alone(ctx, key, l->lo - 1) != VQJ_ERR_INVALID_ARGUMENT ||
                set_alone(ctx, key, l->hi + 1) != VQJ_ERR_INVALID_ARGUMENT)
                fail_msg("%s accepts a value outside %s's range %lld..%lld", key, l->name, l->lo,
                         l->hi);
            checked++;
        }
    }
    print_message("%d configuration keys checked at both ends of their ranges\n", checked);
    assert_true(checked >= 30);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docs_table),
        cmocka_unit_test(test_config_doc),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
