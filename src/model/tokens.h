/* The storage behind vqj_tokens, for internal code that consumes the packed
 * layout (encoder, losses, data loaders). Read the `out` buffers only. */
#ifndef VQJ_TOKENS_H
#define VQJ_TOKENS_H

#include "core/core.h"

/* One complete set of packed outputs. Capacities are in bytes. */
typedef struct vqji_token_buffers {
    int32_t *offsets;           /* num_grids + 1 object-row offsets */
    float *features;            /* num_objects x feature_dim */
    uint8_t *adjacency;         /* grid g: n_g x n_g bytes at adjacency_offsets[g] */
    int64_t *adjacency_offsets; /* num_grids + 1; adjacency_offsets[g] = sum_{h<g} n_h^2 */
    size_t offsets_cap, features_cap, adjacency_cap, adjacency_offsets_cap;
    float *grid_features; /* num_grids x VQJI_GRID_FEATURES (grid_features() below) */
    uint64_t *grid_ids;   /* num_grids content hashes, never 0 */
    size_t grid_features_cap, grid_ids_cap;
} vqji_token_buffers;

/* Whole-grid features per grid (docs/model.md, "Grid features"): height / 30,
 * width / 30, the share of the grid's cells of each color 0..9, and the
 * number of objects kept / max_objects. */
#define VQJI_GRID_FEATURES (2 + VQJ_NUM_COLORS + 1)

/* Per-label statistics of the labeling pass (see tokenizer.c). */
typedef struct vqji_component {
    int32_t area, perimeter;
    int32_t sum_y, sum_x;
    int32_t min_y, max_y, min_x, max_x;
    int32_t color; /* the color of the first cell (the only one with respect_colors) */
    int32_t pad_;
} vqji_component;

struct vqj_tokens {
    vqj_context *ctx;
    vqj_tokenizer_params params;
    int feature_dim;
    size_t num_grids, num_objects;
    /* The current contents. vqj_tokenize() writes into `spare` and swaps the
     * two only on success, so a failure (even out of memory half-way) leaves
     * the previous contents intact. */
    vqji_token_buffers out, spare;

    /* Scratch reused across grids and calls: never allocated per grid. */
    int32_t *labels; /* two rows of provisional labels, padded by one cell each side */
    uint8_t *keys;   /* two rows of cell keys (0 background), same padding */
    int32_t *parent; /* union-find over provisional labels, then final ids */
    vqji_component *comps;
    int32_t *color_counts; /* without respect_colors: 10 per label */
    int32_t *color_first;  /* without respect_colors: first cell index per color, per label */
    uint64_t *order;       /* sort keys (area, id) of the candidates, in token order */
    size_t labels_cap, keys_cap, parent_cap, comps_cap, color_counts_cap, color_first_cap,
        order_cap;
};

/* num_grids + 1 offsets (in bytes, from vqj_tokens_adjacency(tokens, 0)) of
 * each grid's n x n adjacency block. Valid as long as the other arrays. */
const int64_t *vqji_tokens_adjacency_offsets(const vqj_tokens *tokens);

/* The grid features [num_grids x VQJI_GRID_FEATURES] (the grids' content
 * ids are public: vqj_tokens_grid_ids()). */
static inline const float *vqji_tokens_grid_features(const vqj_tokens *tokens)
{
    return tokens->out.grid_features;
}

/* Grow dst's buffers (same feature dimension as src, else an error naming
 * `what`) to hold a copy of src's contents. */
vqj_status vqji_tokens_reserve_like(vqj_tokens *dst, const vqj_tokens *src, const char *what);

/* Object dropout: make dst (same feature dimension) a copy of src without
 * the objects whose uniform draw (stream of `seed`, one per object in
 * order) is below p; each grid keeps its kept objects' rows in order, their
 * adjacency, its grid features (the object count updated) and its id. */
vqj_status vqji_tokens_drop_objects(vqj_tokens *dst, const vqj_tokens *src, float p,
                                    uint64_t seed);

/* Make dst (same tokenizer feature dimension) an exact copy of src's
 * contents; dst's buffers grow as needed. */
vqj_status vqji_tokens_copy(vqj_tokens *dst, const vqj_tokens *src);

/* The packed adjacency of every grid, blocks laid out back to back. */
static inline const uint8_t *vqji_tokens_adjacency_all(const vqj_tokens *tokens)
{
    return tokens->out.adjacency;
}

#endif
