/* The object tokenizer (DESIGN.md section 2): hand-made grids with answers
 * worked out by hand, the error paths, and a cross-check against a naive
 * flood-fill implementation on random grids. */
#include "testutil.h"

#include "model/tokens.h"

#define EPS 1e-6f

/* cmocka's assert_float_equal casts its unparenthesised arguments. */
#define assert_feq(a, b, eps) assert_float_equal((a), (b), (eps))

/* Tokenize `n` grids with `p`; the caller destroys the tokens. */
static vqj_tokens *tokenize(vqj_context *ctx, const vqj_tokenizer_params *p, const vqj_grid *g,
                            size_t n)
{
    vqj_tokens *t = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, p, &t));
    assert_ok(ctx, vqj_tokenize(ctx, t, g, n));
    return t;
}

static const float *row(const vqj_tokens *t, size_t grid, int i)
{
    const int32_t *off = vqj_tokens_offsets(t);
    return vqj_tokens_features(t) + ((size_t)off[grid] + (size_t)i) * (size_t)vqj_tokens_feature_dim(t);
}

static int num_objects(const vqj_tokens *t, size_t grid)
{
    const int32_t *off = vqj_tokens_offsets(t);
    return off[grid + 1] - off[grid];
}

/* Compare a feature row with the expected 13 base values and color slots. */
static void check_row(const float *f, const double *base, const double *slots, int nslots)
{
    for (int k = 0; k < VQJ_BASE_FEATURES; k++)
        if (fabsf(f[k] - (float)base[k]) > EPS)
            fail_msg("feature %d is %.9g, expected %.9g", k, (double)f[k], base[k]);
    for (int s = 0; s < nslots; s++)
        if (fabsf(f[VQJ_BASE_FEATURES + s] - (float)slots[s]) > EPS)
            fail_msg("color slot %d is %.9g, expected %.9g", s, (double)f[VQJ_BASE_FEATURES + s],
                     slots[s]);
}

/* Five objects in a 5x5 grid:
 *   1 1 0 2 0      A = color 1, area 3, first cell 0
 *   1 0 0 2 0      B = color 2, area 2, first cell 3
 *   0 0 3 0 0      C = color 3, area 1, first cell 12
 *   4 0 0 0 5      D = color 4, area 3, first cell 15
 *   4 4 0 5 5      E = color 5, area 3, first cell 19
 * Token order: A, D, E (area 3, by first appearance), B, C. */
static const uint8_t five[25] = {1, 1, 0, 2, 0, 1, 0, 0, 2, 0, 0, 0, 3,
                                 0, 0, 4, 0, 0, 0, 5, 4, 4, 0, 5, 5};

static void test_defaults(void **state)
{
    (void)state;
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    assert_int_equal(p.size, sizeof p);
    assert_int_equal(p.max_objects, 16);
    assert_int_equal(p.max_color_features, 10);
    assert_int_equal(p.background, 1);
    assert_int_equal(p.connectivity, 4);
    assert_int_equal(p.normalize, 1);
    assert_int_equal(p.respect_colors, 1);
    assert_int_equal(vqj_tokenizer_feature_dim(&p), 23);
    p.max_color_features = 3;
    assert_int_equal(vqj_tokenizer_feature_dim(&p), 16);
    assert_int_equal(vqj_tokenizer_feature_dim(NULL), 0);
    vqj_tokenizer_params_default(NULL);
}

static void test_components_and_features(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    vqj_grid g = {5, 5, five};
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(vqj_tokens_num_grids(t), 1);
    assert_int_equal(vqj_tokens_num_objects(t), 5);
    assert_int_equal(vqj_tokens_feature_dim(t), 23);
    assert_int_equal(vqj_tokens_offsets(t)[0], 0);
    assert_int_equal(vqj_tokens_offsets(t)[1], 5);

    /* A: cells (0,0) (0,1) (1,0); exposed sides 2 + 3 + 3 = 8. */
    const double a[13] = {3 / 25.0, 8 / 25.0, 2 / 5.0, 2 / 5.0, 1, 1, 1, (1 / 3.0) / 5,
                          (1 / 3.0) / 5, 0, 0, 1 / 5.0, 1 / 5.0};
    const double a_slots[10] = {3 / 25.0};
    check_row(row(t, 0, 0), a, a_slots, 10);
    /* D: cells (3,0) (4,0) (4,1), the same L shape. */
    const double d[13] = {3 / 25.0, 8 / 25.0, 2 / 5.0, 2 / 5.0, 1, 1, 4, (11 / 3.0) / 5,
                          (1 / 3.0) / 5, 3 / 5.0, 0, 4 / 5.0, 1 / 5.0};
    const double d_slots[10] = {3 / 25.0};
    check_row(row(t, 0, 1), d, d_slots, 10);
    /* E: cells (3,4) (4,3) (4,4). */
    const double e[13] = {3 / 25.0, 8 / 25.0, 2 / 5.0, 2 / 5.0, 1, 1, 5, (11 / 3.0) / 5,
                          (11 / 3.0) / 5, 3 / 5.0, 3 / 5.0, 4 / 5.0, 4 / 5.0};
    check_row(row(t, 0, 2), e, d_slots, 10);
    /* B: a vertical domino, aspect 1/2, perimeter 6. */
    const double b[13] = {2 / 25.0, 6 / 25.0, 2 / 5.0, 1 / 5.0, 0.5, 1, 2, 0.5 / 5,
                          3 / 5.0, 0, 3 / 5.0, 1 / 5.0, 3 / 5.0};
    const double b_slots[10] = {2 / 25.0};
    check_row(row(t, 0, 3), b, b_slots, 10);
    /* C: a single cell. */
    const double c[13] = {1 / 25.0, 4 / 25.0, 1 / 5.0, 1 / 5.0, 1, 1, 3, 2 / 5.0,
                          2 / 5.0, 2 / 5.0, 2 / 5.0, 2 / 5.0, 2 / 5.0};
    const double c_slots[10] = {1 / 25.0};
    check_row(row(t, 0, 4), c, c_slots, 10);

    /* Boxes: A r0-1 c0-1, D r3-4 c0-1, E r3-4 c3-4, B r0-1 c3, C r2 c2. C
     * touches every other box at a corner or side; A-D have the empty row 2
     * between them, A-B the empty column 2, D-E columns 2, B-E row 2. */
    const uint8_t want[25] = {0, 0, 0, 0, 1, /* A */
                              0, 0, 0, 0, 1, /* D */
                              0, 0, 0, 0, 1, /* E */
                              0, 0, 0, 0, 1, /* B */
                              1, 1, 1, 1, 0};
    assert_memory_equal(vqj_tokens_adjacency(t, 0), want, 25);
    assert_null(vqj_tokens_adjacency(t, 1));
    assert_null(vqj_tokens_adjacency(NULL, 0));
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_normalize_off(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.normalize = 0;
    p.max_color_features = 2;
    vqj_grid g = {5, 5, five};
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(vqj_tokens_feature_dim(t), 15);
    const double a[13] = {3, 8, 2, 2, 1, 1, 1, 1 / 3.0, 1 / 3.0, 0, 0, 1, 1};
    const double a_slots[2] = {3, 0};
    check_row(row(t, 0, 0), a, a_slots, 2);
    const double b[13] = {2, 6, 2, 1, 0.5, 1, 2, 0.5, 3, 0, 3, 1, 3};
    const double b_slots[2] = {2, 0};
    check_row(row(t, 0, 3), b, b_slots, 2);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_max_objects_drops_smallest(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.normalize = 0;
    vqj_grid g = {5, 5, five};

    p.max_objects = 4; /* C, the only area-1 object, goes */
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(vqj_tokens_num_objects(t), 4);
    const float dominant[4] = {1, 4, 5, 2};
    for (int i = 0; i < 4; i++)
        assert_feq(row(t, 0, i)[6], dominant[i], 0);
    vqj_tokens_destroy(t);

    p.max_objects = 2; /* of the three area-3 objects the first two seen stay */
    t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(vqj_tokens_num_objects(t), 2);
    assert_feq(row(t, 0, 0)[6], 1, 0);
    assert_feq(row(t, 0, 1)[6], 4, 0);
    vqj_tokens_destroy(t);

    /* Areas 1, 3, 2 in scan order, keep 2: the 3 then the 2. */
    const uint8_t cells[12] = {7, 0, 8, 8, /**/ 0, 0, 0, 8, /**/ 9, 9, 0, 0};
    vqj_grid h = {3, 4, cells};
    t = tokenize(ctx, &p, &h, 1);
    assert_int_equal(vqj_tokens_num_objects(t), 2);
    assert_feq(row(t, 0, 0)[0], 3, 0);
    assert_feq(row(t, 0, 0)[6], 8, 0);
    assert_feq(row(t, 0, 1)[0], 2, 0);
    assert_feq(row(t, 0, 1)[6], 9, 0);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

/*   1 0 0
 *   0 1 0
 *   0 0 2   */
/* A grid of 40 single-cell objects (every other cell of every other row of
 * a 10 x 16 grid): a cap of 64 (the configuration's default) keeps all 40,
 * the struct default of 16 keeps 16. */
static void test_cap_64_keeps_40(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    uint8_t cells[10 * 16] = {0};
    for (int y = 0; y < 10; y += 2)
        for (int x = 0; x < 16; x += 2)
            cells[y * 16 + x] = (uint8_t)(1 + (y + x) % 9);
    vqj_grid g = {10, 16, cells};
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.max_objects = 64;
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(vqj_tokens_num_objects(t), 40);
    vqj_tokens_destroy(t);
    p.max_objects = 16;
    t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(vqj_tokens_num_objects(t), 16);
    vqj_tokens_destroy(t);
    vqj_config *cfg = NULL;
    assert_int_equal(vqj_config_default(ctx, &cfg), VQJ_OK);
    assert_int_equal(vqj_config_tokenizer_params(cfg, &p), VQJ_OK);
    assert_int_equal(p.max_objects, 64);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

static void test_connectivity(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const uint8_t cells[9] = {1, 0, 0, 0, 1, 0, 0, 0, 2};
    vqj_grid g = {3, 3, cells};
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.normalize = 0;

    vqj_tokens *t = tokenize(ctx, &p, &g, 1); /* 4: three single cells, in scan order */
    assert_int_equal(num_objects(t, 0), 3);
    for (int i = 0; i < 3; i++) {
        assert_feq(row(t, 0, i)[0], 1, 0);
        assert_feq(row(t, 0, i)[9], i, 0);
        assert_feq(row(t, 0, i)[10], i, 0);
    }
    /* Diagonal neighbours' boxes meet at a corner: adjacent; 0 and 2 are not. */
    const uint8_t want4[9] = {0, 1, 0, 1, 0, 1, 0, 1, 0};
    assert_memory_equal(vqj_tokens_adjacency(t, 0), want4, 9);
    vqj_tokens_destroy(t);

    p.connectivity = 8; /* the two 1s join diagonally; the 2 is another color */
    t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 2);
    const double one[13] = {2, 8, 2, 2, 1, 1, 1, 0.5, 0.5, 0, 0, 1, 1};
    const double one_slots[10] = {2};
    check_row(row(t, 0, 0), one, one_slots, 10);
    assert_feq(row(t, 0, 1)[6], 2, 0);
    vqj_tokens_destroy(t);

    p.respect_colors = 0; /* and now everything is one object */
    t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 1);
    const double all[13] = {3, 12, 3, 3, 1, 2, 1, 1, 1, 0, 0, 2, 2};
    const double all_slots[10] = {2, 1};
    check_row(row(t, 0, 0), all, all_slots, 10);
    const uint8_t zero = 0;
    assert_memory_equal(vqj_tokens_adjacency(t, 0), &zero, 1);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

/* Two arms that only meet at the bottom row: the labeling merges them. */
static void test_u_shape(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const uint8_t cells[12] = {6, 0, 6, 4, /**/ 6, 0, 6, 0, /**/ 6, 6, 6, 0};
    vqj_grid g = {3, 4, cells};
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.normalize = 0;
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 2);
    /* 7 cells, 6 inner shared sides: 28 - 12. Centroid (8/7, 1). */
    const double u[13] = {7, 16, 3, 3, 1, 1, 6, 8 / 7.0, 1, 0, 0, 2, 2};
    const double u_slots[10] = {7};
    check_row(row(t, 0, 0), u, u_slots, 10);
    assert_feq(row(t, 0, 1)[6], 4, 0);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_mixed_colors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.respect_colors = 0;
    p.normalize = 0;
    p.max_color_features = 10;
    /*   3 3 5      5 cells, colors 3 (x2) and 5 (x3): dominant 5
     *   5 5 0      inner shared sides 5: perimeter 20 - 10 */
    const uint8_t a[6] = {3, 3, 5, 5, 5, 0};
    /* 1 x 4, 5 3 3 5: a tie 2-2, 5 is seen first */
    const uint8_t b[4] = {5, 3, 3, 5};
    /* 0 3 5 5 3 0: a tie, 3 first */
    const uint8_t c[6] = {0, 3, 5, 5, 3, 0};
    /* Every color at once: the slots list them by ascending id. */
    const uint8_t d[9] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
    vqj_grid g[4] = {{2, 3, a}, {1, 4, b}, {1, 6, c}, {1, 9, d}};
    vqj_tokens *t = tokenize(ctx, &p, g, 4);
    assert_int_equal(vqj_tokens_num_objects(t), 4);
    const double fa[13] = {5, 10, 2, 3, 1.5, 2, 5, 0.4, 0.8, 0, 0, 1, 2};
    const double fa_slots[10] = {2, 3};
    check_row(row(t, 0, 0), fa, fa_slots, 10);
    assert_feq(row(t, 1, 0)[5], 2, 0);
    assert_feq(row(t, 1, 0)[6], 5, 0);
    assert_feq(row(t, 2, 0)[6], 3, 0);
    const double fd_slots[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    assert_feq(row(t, 3, 0)[5], 9, 0);
    assert_feq(row(t, 3, 0)[6], 9, 0); /* all tie: 9 comes first */
    const double fd[13] = {9, 20, 1, 9, 9, 9, 9, 0, 4, 0, 0, 0, 8};
    check_row(row(t, 3, 0), fd, fd_slots, 10);
    vqj_tokens_destroy(t);

    /* Only the first max_color_features colors get a slot. */
    p.max_color_features = 2;
    t = tokenize(ctx, &p, &g[3], 1);
    const double two[2] = {1, 1};
    check_row(row(t, 0, 0), fd, two, 2);
    p.max_color_features = 0;
    vqj_tokens_destroy(t);
    t = tokenize(ctx, &p, &g[3], 1);
    assert_int_equal(vqj_tokens_feature_dim(t), 13);
    check_row(row(t, 0, 0), fd, NULL, 0);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_background_set(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.background = (1u << 0) | (1u << 5);
    p.normalize = 0;
    /*   5 1 5
     *   5 5 5
     *   0 2 2   only the 1 and the two 2s are objects */
    const uint8_t cells[9] = {5, 1, 5, 5, 5, 5, 0, 2, 2};
    vqj_grid g = {3, 3, cells};
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 2);
    const double two[13] = {2, 6, 1, 2, 2, 1, 2, 2, 1.5, 2, 1, 2, 2};
    const double two_slots[10] = {2};
    check_row(row(t, 0, 0), two, two_slots, 10);
    const double one[13] = {1, 4, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1};
    const double one_slots[10] = {1};
    check_row(row(t, 0, 1), one, one_slots, 10);
    const uint8_t want[4] = {0, 0, 0, 0}; /* rows 0 and 2: an empty row between */
    assert_memory_equal(vqj_tokens_adjacency(t, 0), want, 4);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_empty_grid_and_padding(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.max_objects = 8;
    const uint8_t empty[12] = {0};
    vqj_grid g[3] = {{3, 4, empty}, {5, 5, five}, {3, 4, empty}};
    vqj_tokens *t = tokenize(ctx, &p, g, 3);
    assert_int_equal(vqj_tokens_num_grids(t), 3);
    assert_int_equal(vqj_tokens_num_objects(t), 5);
    const int32_t *off = vqj_tokens_offsets(t);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[1], 0);
    assert_int_equal(off[2], 5);
    assert_int_equal(off[3], 5);
    const int64_t *aoff = vqji_tokens_adjacency_offsets(t);
    assert_int_equal(aoff[0], 0);
    assert_int_equal(aoff[1], 0);
    assert_int_equal(aoff[2], 25);
    assert_int_equal(aoff[3], 25);
    assert_ptr_equal(vqj_tokens_adjacency(t, 1), vqji_tokens_adjacency_all(t));
    assert_non_null(vqj_tokens_adjacency(t, 0));

    const int M = 8, F = 23;
    float feat[8 * 23], mask[8], adj[64];
    /* The empty grid pads to all zeros, whatever was in the buffers. */
    for (int i = 0; i < M * F; i++)
        feat[i] = 7;
    for (int i = 0; i < M; i++)
        mask[i] = 7;
    for (int i = 0; i < M * M; i++)
        adj[i] = 7;
    assert_ok(ctx, vqj_tokens_padded(ctx, t, 0, feat, mask, adj));
    for (int i = 0; i < M * F; i++)
        assert_feq(feat[i], 0, 0);
    for (int i = 0; i < M; i++)
        assert_feq(mask[i], 0, 0);
    for (int i = 0; i < M * M; i++)
        assert_feq(adj[i], 0, 0);

    assert_ok(ctx, vqj_tokens_padded(ctx, t, 1, feat, mask, adj));
    assert_memory_equal(feat, row(t, 1, 0), 5 * F * sizeof(float));
    for (int i = 5 * F; i < M * F; i++)
        assert_feq(feat[i], 0, 0);
    for (int i = 0; i < M; i++)
        assert_feq(mask[i], i < 5 ? 1 : 0, 0);
    const uint8_t *a = vqj_tokens_adjacency(t, 1);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++)
            assert_feq(adj[i * M + j], i < 5 && j < 5 ? a[i * 5 + j] : 0, 0);
    assert_feq(adj[0 * M + 4], 1, 0);
    /* Any output may be skipped. */
    assert_ok(ctx, vqj_tokens_padded(ctx, t, 1, NULL, mask, NULL));
    assert_ok(ctx, vqj_tokens_padded(ctx, t, 2, NULL, NULL, NULL));
    assert_status(ctx, vqj_tokens_padded(ctx, t, 3, feat, mask, adj), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "out of range"));
    assert_status(ctx, vqj_tokens_padded(ctx, NULL, 0, feat, mask, adj),
                  VQJ_ERR_INVALID_ARGUMENT);

    /* Zero grids is a valid, empty batch. */
    assert_ok(ctx, vqj_tokenize(ctx, t, NULL, 0));
    assert_int_equal(vqj_tokens_num_grids(t), 0);
    assert_int_equal(vqj_tokens_num_objects(t), 0);
    assert_int_equal(vqj_tokens_offsets(t)[0], 0);
    vqj_tokens_destroy(t);

    /* A new batch reports one zero offset before any call. */
    assert_ok(ctx, vqj_tokens_create(ctx, &p, &t));
    assert_int_equal(vqj_tokens_num_grids(t), 0);
    assert_int_equal(vqj_tokens_offsets(t)[0], 0);
    assert_int_equal(vqji_tokens_adjacency_offsets(t)[0], 0);
    vqj_tokens_destroy(t);
    vqj_tokens_destroy(NULL);
    vqj_context_destroy(ctx);
}

static void test_overlapping_boxes(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    /* A ring around a dot (boxes nest), and a far dot: ring-dot adjacent,
     * far dot adjacent to nothing (an empty column between). */
    const uint8_t cells[15] = {1, 1, 1, 0, 0, /**/ 1, 2, 1, 0, 3, /**/ 1, 1, 1, 0, 0};
    vqj_grid g = {3, 5, cells};
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 3);
    const uint8_t want[9] = {0, 1, 0, 1, 0, 0, 0, 0, 0};
    assert_memory_equal(vqj_tokens_adjacency(t, 0), want, 9);
    /* The ring: 8 cells, outer 12 sides + inner 4. */
    assert_feq(row(t, 0, 0)[1], 16 / 15.0, EPS);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_checkerboard_30(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    uint8_t cells[900];
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 30; x++)
            cells[y * 30 + x] = (uint8_t)((y + x) % 2 ? 2 : 1);
    vqj_grid g = {30, 30, cells};
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.max_objects = 4096;
    p.normalize = 0;
    /* 4-connectivity: 900 single cells, in scan order. */
    vqj_tokens *t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 900);
    for (int i = 0; i < 900; i += 31) {
        assert_feq(row(t, 0, i)[9], i / 30, 0);
        assert_feq(row(t, 0, i)[10], i % 30, 0);
        assert_feq(row(t, 0, i)[6], cells[i], 0);
    }
    vqj_tokens_destroy(t);
    /* 8-connectivity: one object per color; no side shared, perimeter 4 x 450. */
    p.connectivity = 8;
    t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 2);
    const double one[13] = {450, 1800, 30, 30, 1, 1, 1, 14.5, 14.5, 0, 0, 29, 29};
    const double one_slots[10] = {450};
    check_row(row(t, 0, 0), one, one_slots, 10);
    assert_feq(row(t, 0, 1)[6], 2, 0);
    assert_feq(row(t, 0, 1)[10], 0, 0);
    assert_feq(row(t, 0, 1)[9], 0, 0);
    vqj_tokens_destroy(t);
    /* Without colors, 4-connectivity: the whole grid. */
    p.connectivity = 4;
    p.respect_colors = 0;
    t = tokenize(ctx, &p, &g, 1);
    assert_int_equal(num_objects(t, 0), 1);
    const double all[13] = {900, 120, 30, 30, 1, 2, 1, 14.5, 14.5, 0, 0, 29, 29};
    const double all_slots[10] = {450, 450};
    check_row(row(t, 0, 0), all, all_slots, 10);
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

static void test_large_256(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { S = 256 };
    uint8_t *rows = malloc(S * S), *cols = malloc(S * S), *check = malloc(S * S);
    assert_non_null(rows);
    assert_non_null(cols);
    assert_non_null(check);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            rows[y * S + x] = (uint8_t)(y % 2 ? 0 : 1 + (y / 2) % 9);
            cols[y * S + x] = (uint8_t)(x % 2 ? 0 : 3);
            check[y * S + x] = (uint8_t)((x + y) % 2 ? 4 : 7);
        }
    vqj_grid g[3] = {{S, S, rows}, {S, S, cols}, {S, S, check}};
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.max_objects = 4096;
    p.normalize = 0;
    vqj_tokens *t = tokenize(ctx, &p, g, 3);
    /* Horizontal stripes: 128 rows of 256, perimeter 2 x 256 + 2, top first. */
    assert_int_equal(num_objects(t, 0), 128);
    for (int k = 0; k < 128; k++) {
        const float *f = row(t, 0, k);
        assert_feq(f[0], 256, 0);
        assert_feq(f[1], 514, 0);
        assert_feq(f[9], 2 * k, 0);
        assert_feq(f[6], 1 + k % 9, 0);
    }
    /* Vertical stripes: the labels of each column are merged down 256 rows. */
    assert_int_equal(num_objects(t, 1), 128);
    for (int k = 0; k < 128; k++) {
        const float *f = row(t, 1, k);
        assert_feq(f[0], 256, 0);
        assert_feq(f[2], 256, 0);
        assert_feq(f[3], 1, 0);
        assert_feq(f[10], 2 * k, 0);
    }
    const uint8_t *adj = vqj_tokens_adjacency(t, 1);
    assert_int_equal(adj[0 * 128 + 1], 0); /* columns 0 and 2: column 1 between */
    /* Checkerboard: 65536 cells of area 1, the first 4096 in scan order kept. */
    assert_int_equal(num_objects(t, 2), 4096);
    for (int i = 0; i < 4096; i += 97) {
        assert_feq(row(t, 2, i)[9], i / S, 0);
        assert_feq(row(t, 2, i)[10], i % S, 0);
    }
    adj = vqj_tokens_adjacency(t, 2);
    assert_int_equal(adj[0 * 4096 + 1], 1);
    assert_int_equal(adj[0 * 4096 + 2], 0);
    assert_int_equal(adj[0 * 4096 + 257], 1); /* (1,1): a corner */
    vqj_tokens_destroy(t);

    /* A full grid of one color: a single object of 65536 cells. */
    memset(rows, 2, S * S);
    vqj_grid full = {S, S, rows};
    t = tokenize(ctx, &p, &full, 1);
    assert_int_equal(num_objects(t, 0), 1);
    assert_feq(row(t, 0, 0)[0], 65536, 0);
    assert_feq(row(t, 0, 0)[1], 1024, 0);
    vqj_tokens_destroy(t);
    free(rows);
    free(cols);
    free(check);
    vqj_context_destroy(ctx);
}

/* Snapshot of a batch, to prove a failed call left it alone. */
typedef struct snapshot {
    size_t grids, objects;
    int32_t offsets[4];
    float features[5 * 23];
    uint8_t adjacency[25];
} snapshot;

static void take(const vqj_tokens *t, snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->grids = vqj_tokens_num_grids(t);
    s->objects = vqj_tokens_num_objects(t);
    memcpy(s->offsets, vqj_tokens_offsets(t), (s->grids + 1) * sizeof(int32_t));
    memcpy(s->features, vqj_tokens_features(t), s->objects * 23 * sizeof(float));
    memcpy(s->adjacency, vqj_tokens_adjacency(t, 0), 25);
}

static void test_errors(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    vqj_tokens *t = NULL;

    assert_status(ctx, vqj_tokens_create(NULL, &p, &t), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_tokens_create(ctx, NULL, &t), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_tokens_create(ctx, &p, NULL), VQJ_ERR_INVALID_ARGUMENT);
    struct {
        int field, value;
        const char *needle;
    } bad[] = {
        {0, 0, "max_objects"},        {0, 4097, "max_objects"},
        {0, -3, "max_objects"},       {1, -1, "max_color_features"},
        {1, 11, "max_color_features"}, {2, 6, "connectivity"},
        {2, 0, "connectivity"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vqj_tokenizer_params q = p;
        int *field = bad[i].field == 0 ? &q.max_objects
                     : bad[i].field == 1 ? &q.max_color_features
                                         : &q.connectivity;
        *field = bad[i].value;
        t = NULL;
        assert_status(ctx, vqj_tokens_create(ctx, &q, &t), VQJ_ERR_INVALID_ARGUMENT);
        assert_null(t);
        if (!strstr(vqj_last_error(), bad[i].needle))
            fail_msg("message '%s' does not name %s", vqj_last_error(),
                     bad[i].needle);
    }
    vqj_tokenizer_params q = p;
    q.size = 4; /* older than any published struct */
    assert_status(ctx, vqj_tokens_create(ctx, &q, &t), VQJ_ERR_INVALID_ARGUMENT);
    q = p;
    q.max_objects = 4096;
    q.max_color_features = 0;
    q.connectivity = 8;
    assert_ok(ctx, vqj_tokens_create(ctx, &q, &t)); /* the limits themselves are fine */
    vqj_tokens_destroy(t);

    /* A good batch, then every invalid call must leave it as it was. */
    assert_ok(ctx, vqj_tokens_create(ctx, &p, &t));
    vqj_grid good = {5, 5, five};
    assert_ok(ctx, vqj_tokenize(ctx, t, &good, 1));
    snapshot before, after;
    take(t, &before);

    uint8_t cells[12] = {0};
    cells[1 * 4 + 2] = 10; /* row 1, column 2 of a 3 x 4 grid */
    vqj_grid grids[2] = {good, {3, 4, cells}};
    assert_status(ctx, vqj_tokenize(ctx, t, grids, 2), VQJ_ERR_INVALID_ARGUMENT);
    const char *m = vqj_last_error();
    if (!strstr(m, "grid 1") || !strstr(m, "row 1") || !strstr(m, "column 2") ||
        !strstr(m, "10"))
        fail_msg("message '%s' does not name grid 1, row 1, column 2 and color 10", m);
    cells[1 * 4 + 2] = 255;
    assert_status(ctx, vqj_tokenize(ctx, t, grids, 2), VQJ_ERR_INVALID_ARGUMENT);
    cells[1 * 4 + 2] = 0;

    const int sides[][2] = {{0, 4}, {3, 0}, {257, 4}, {3, 257}, {-1, 4}};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        grids[1] = (vqj_grid){sides[i][0], sides[i][1], cells};
        assert_status(ctx, vqj_tokenize(ctx, t, grids, 2), VQJ_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(vqj_last_error(), "grid 1"));
    }
    grids[1] = (vqj_grid){3, 4, NULL};
    assert_status(ctx, vqj_tokenize(ctx, t, grids, 2), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "NULL"));
    assert_status(ctx, vqj_tokenize(ctx, t, NULL, 1), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_tokenize(ctx, NULL, &good, 1), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_tokenize(NULL, t, &good, 1), VQJ_ERR_INVALID_ARGUMENT);

    take(t, &after);
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(after.grids, 1);
    assert_int_equal(after.objects, 5);

    /* A success clears the message. */
    assert_ok(ctx, vqj_tokenize(ctx, t, &good, 1));
    assert_string_equal(vqj_last_error(), "");
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

/* Buffers grow and shrink back across calls without losing correctness. */
static void test_reuse(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    vqj_tokens *t = NULL;
    assert_ok(ctx, vqj_tokens_create(ctx, &p, &t));
    vqj_grid small = {5, 5, five};
    uint8_t big[40 * 40];
    for (int i = 0; i < 1600; i++)
        big[i] = (uint8_t)((i * 7 + i / 40) % 10);
    vqj_grid many[20];
    for (int i = 0; i < 20; i++)
        many[i] = i % 2 ? small : (vqj_grid){40, 40, big};
    for (int round = 0; round < 3; round++) {
        assert_ok(ctx, vqj_tokenize(ctx, t, many, 20));
        assert_int_equal(vqj_tokens_num_grids(t), 20);
        assert_int_equal(num_objects(t, 1), 5);
        assert_int_equal(num_objects(t, 0), 16);
        assert_ok(ctx, vqj_tokenize(ctx, t, &small, 1));
        assert_int_equal(vqj_tokens_num_objects(t), 5);
        assert_feq(row(t, 0, 4)[6], 3, 0);
    }
    vqj_tokens_destroy(t);
    vqj_context_destroy(ctx);
}

/* ---- a naive reference: breadth-first flood fill, features cell by cell -- */

typedef struct naive_obj {
    int area, per, y0, y1, x0, x1, first;
    long sy, sx;
    int counts[10], first_of[10];
} naive_obj;

static int naive_tokenize(const vqj_grid *g, const vqj_tokenizer_params *p, float *feat,
                          uint8_t *adj, int *label, int *queue, naive_obj *objs)
{
    const int H = g->height, W = g->width, F = VQJ_BASE_FEATURES + p->max_color_features;
    int n = 0;
    for (int i = 0; i < H * W; i++)
        label[i] = -1;
    for (int s = 0; s < H * W; s++) {
        int c = g->cells[s];
        if ((p->background >> c) & 1 || label[s] >= 0)
            continue;
        naive_obj *o = &objs[n];
        memset(o, 0, sizeof *o);
        o->y0 = H;
        o->x0 = W;
        o->first = s;
        int head = 0, tail = 0;
        queue[tail++] = s;
        label[s] = n;
        while (head < tail) {
            int q = queue[head++], y = q / W, x = q % W;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    if ((!dy && !dx) || (p->connectivity == 4 && dy && dx))
                        continue;
                    int ny = y + dy, nx = x + dx;
                    if (ny < 0 || ny >= H || nx < 0 || nx >= W || label[ny * W + nx] >= 0)
                        continue;
                    int nc = g->cells[ny * W + nx];
                    if ((p->background >> nc) & 1 || (p->respect_colors && nc != c))
                        continue;
                    label[ny * W + nx] = n;
                    queue[tail++] = ny * W + nx;
                }
        }
        n++;
    }
    for (int i = 0; i < H * W; i++) {
        if (label[i] < 0)
            continue;
        naive_obj *o = &objs[label[i]];
        int y = i / W, x = i % W, c = g->cells[i];
        o->area++;
        o->sy += y;
        o->sx += x;
        o->y0 = y < o->y0 ? y : o->y0;
        o->y1 = y > o->y1 ? y : o->y1;
        o->x0 = x < o->x0 ? x : o->x0;
        o->x1 = x > o->x1 ? x : o->x1;
        if (!o->counts[c]++)
            o->first_of[c] = i;
        const int ny[4] = {y - 1, y + 1, y, y}, nx[4] = {x, x, x - 1, x + 1};
        for (int k = 0; k < 4; k++)
            if (ny[k] < 0 || ny[k] >= H || nx[k] < 0 || nx[k] >= W ||
                label[ny[k] * W + nx[k]] != label[i])
                o->per++;
    }
    /* Selection sort on (area desc, first asc): slow and obviously right. */
    int order[4096], kept = 0;
    char used[65536] = {0};
    while (kept < p->max_objects && kept < n) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (best < 0 || objs[i].area > objs[best].area))
                best = i;
        used[best] = 1;
        order[kept++] = best;
    }
    const double Hd = H, Wd = W, HW = Hd * Wd;
    for (int k = 0; k < kept; k++) {
        const naive_obj *o = &objs[order[k]];
        float *f = feat + (size_t)k * F;
        double v[13] = {o->area, o->per, o->y1 - o->y0 + 1, o->x1 - o->x0 + 1, 0, 0, 0,
                        (double)o->sy / o->area, (double)o->sx / o->area, o->y0, o->x0, o->y1,
                        o->x1};
        const double div[13] = {HW, HW, Hd, Wd, 1, 1, 1, Hd, Wd, Hd, Wd, Hd, Wd};
        for (int j = 0; j < 13; j++)
            f[j] = (float)(p->normalize ? v[j] / div[j] : v[j]);
        f[4] = (float)(v[3] / v[2]);
        int distinct = 0, dom = -1;
        for (int c = 0; c < 10; c++) {
            if (!o->counts[c])
                continue;
            if (distinct < p->max_color_features)
                f[13 + distinct] = (float)(p->normalize ? o->counts[c] / HW : o->counts[c]);
            distinct++;
            if (dom < 0 || o->counts[c] > o->counts[dom] ||
                (o->counts[c] == o->counts[dom] && o->first_of[c] < o->first_of[dom]))
                dom = c;
        }
        for (int s = distinct; s < p->max_color_features; s++)
            f[13 + s] = 0;
        f[5] = (float)distinct;
        f[6] = (float)dom;
    }
    for (int i = 0; i < kept; i++)
        for (int j = 0; j < kept; j++) {
            const naive_obj *a = &objs[order[i]], *b = &objs[order[j]];
            adj[i * kept + j] = i != j && a->y0 <= b->y1 + 1 && b->y0 <= a->y1 + 1 &&
                                a->x0 <= b->x1 + 1 && b->x0 <= a->x1 + 1;
        }
    return kept;
}

static void test_random_against_naive(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    enum { G = 40, MAXS = 70 };
    uint8_t *cells = malloc((size_t)G * MAXS * MAXS);
    int *label = malloc(MAXS * MAXS * sizeof *label), *queue = malloc(MAXS * MAXS * sizeof *queue);
    naive_obj *objs = malloc(MAXS * MAXS * sizeof *objs);
    float *feat = malloc((size_t)MAXS * MAXS * 23 * sizeof *feat);
    uint8_t *adj = malloc(200 * 200);
    assert_true(cells && label && queue && objs && feat && adj);
    vqj_grid grids[G];
    uint32_t s = 12345;
#define RAND() (s = s * 1664525u + 1013904223u, s >> 8)
    for (int i = 0; i < G; i++) {
        int H = 1 + (int)(RAND() % MAXS), W = 1 + (int)(RAND() % MAXS);
        int ncolors = 1 + (int)(RAND() % 4), density = (int)(RAND() % 100);
        uint8_t *c = cells + (size_t)i * MAXS * MAXS;
        for (int j = 0; j < H * W; j++)
            c[j] = (int)(RAND() % 100) < density ? (uint8_t)(RAND() % (unsigned)ncolors * 3) : 0;
        grids[i] = (vqj_grid){H, W, c};
    }
    const int configs[][6] = {
        /* connectivity, respect, background, normalize, max_objects, color slots */
        {4, 1, 1, 1, 16, 10}, {8, 1, 1, 1, 16, 10}, {4, 0, 1, 1, 16, 10},
        {8, 0, 1, 0, 200, 10}, {4, 1, 9, 0, 100, 3}, {8, 0, 0, 1, 1, 10},
    };
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        vqj_tokenizer_params p;
        vqj_tokenizer_params_default(&p);
        p.connectivity = configs[k][0];
        p.respect_colors = configs[k][1];
        p.background = (uint16_t)configs[k][2];
        p.normalize = configs[k][3];
        p.max_objects = configs[k][4];
        p.max_color_features = configs[k][5];
        const int F = vqj_tokenizer_feature_dim(&p);
        vqj_tokens *t = tokenize(ctx, &p, grids, G);
        for (int i = 0; i < G; i++) {
            int n = naive_tokenize(&grids[i], &p, feat, adj, label, queue, objs);
            if (n != num_objects(t, (size_t)i))
                fail_msg("config %zu grid %d: %d objects, naive %d", k, i, num_objects(t, (size_t)i), n);
            for (int j = 0; j < n * F; j++)
                if (row(t, (size_t)i, 0)[j] != feat[j])
                    fail_msg("config %zu grid %d object %d feature %d: %.9g, naive %.9g", k, i,
                             j / F, j % F, (double)row(t, (size_t)i, 0)[j], (double)feat[j]);
            assert_memory_equal(vqj_tokens_adjacency(t, (size_t)i), adj, (size_t)n * n);
        }
        vqj_tokens_destroy(t);
    }
#undef RAND
    free(cells);
    free(label);
    free(queue);
    free(objs);
    free(feat);
    free(adj);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_components_and_features),
        cmocka_unit_test(test_normalize_off),
        cmocka_unit_test(test_max_objects_drops_smallest),
        cmocka_unit_test(test_cap_64_keeps_40),
        cmocka_unit_test(test_connectivity),
        cmocka_unit_test(test_u_shape),
        cmocka_unit_test(test_mixed_colors),
        cmocka_unit_test(test_background_set),
        cmocka_unit_test(test_empty_grid_and_padding),
        cmocka_unit_test(test_overlapping_boxes),
        cmocka_unit_test(test_checkerboard_30),
        cmocka_unit_test(test_large_256),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_random_against_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
