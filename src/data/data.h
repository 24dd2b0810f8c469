/* Internal side of the data sources (DESIGN.md section 1): the storage
 * behind vqj_dataset, the builder the sources fill it with, the JSON grid
 * reader and the synthetic generator's primitives (exposed for the tests). */
#ifndef VQJ_DATA_H
#define VQJ_DATA_H

#include "core/core.h"

#include <jansson.h>
#include <stdio.h>

/* Largest context_window (examples are assembled in stack arrays). */
#define VQJI_MAX_CONTEXT_WINDOW VQJI_HI_CONTEXT_WINDOW

/* Bad-record messages a dataset keeps (the rest are only counted). */
#define VQJI_SKIP_MESSAGES VQJ_DATASET_MAX_SKIPPED_MESSAGES

/* A grid of the pool: its cells are dataset->cells[offset ..]. Offsets, not
 * pointers, while building, because the cell buffer moves as it grows. */
typedef struct vqji_pool_grid {
    int32_t height, width;
    size_t offset;
} vqji_pool_grid;

struct vqj_dataset {
    vqj_context *ctx;
    vqj_dataset_params params;
    int slots; /* grids per example: context_window + 1 */

    /* Each distinct grid is stored once: overlapping frame windows and the
     * examples of one ARC task share their grids. */
    uint8_t *cells;
    size_t cells_len, cells_cap;
    vqji_pool_grid *pool;
    size_t num_pool, pool_cap;

    /* Example e uses pool grids slot[e*slots .. e*slots+slots-1] (context,
     * then target) and belongs to group[e]: examples of one ARC task, one
     * JSONL record or one synthetic program share a group, and the
     * validation split never separates a group. */
    uint32_t *slot;
    size_t slot_cap;
    uint32_t *group;
    size_t group_cap;
    size_t num_examples;
    uint32_t num_groups;

    /* Filled by vqji_dataset_finish(): the vqj_grid views handed out. */
    vqj_grid *grids;

    size_t num_skipped;
    size_t num_messages;
    char *messages[VQJI_SKIP_MESSAGES];
};

/* Where a builder stood, to drop a half-added record. */
typedef struct vqji_dataset_mark {
    size_t cells_len, num_pool, num_examples;
} vqji_dataset_mark;

/* Check and complete size-prefixed params (defaults for missing fields). */
vqj_status vqji_dataset_params_resolve(const vqj_context *ctx, const vqj_dataset_params *in,
                                       vqj_dataset_params *out);
/* An empty dataset to fill; params already resolved. */
vqj_status vqji_dataset_new(vqj_context *ctx, const vqj_dataset_params *params,
                            vqj_dataset **out);
/* Append an h x w grid (validated by the caller) to the pool. With cells
 * NULL the cells are left for the caller to write at
 * ds->cells + ds->pool[*index].offset. */
vqj_status vqji_dataset_add_grid(vqj_dataset *ds, int height, int width, const uint8_t *cells,
                                 uint32_t *index);
/* Append an example of ds->slots pool indices (context..., target). */
vqj_status vqji_dataset_add_example(vqj_dataset *ds, const uint32_t *grids, uint32_t group);
vqji_dataset_mark vqji_dataset_get_mark(const vqj_dataset *ds);
void vqji_dataset_rewind(vqj_dataset *ds, vqji_dataset_mark mark);
/* Count a bad record; keep (and log) its message while there is room. */
vqj_status vqji_dataset_skip(vqj_dataset *ds, const char *message);
/* Build the vqj_grid views; call once, after the last example. */
vqj_status vqji_dataset_finish(vqj_dataset *ds);
/* The group of example i (for the tests of the split). */
uint32_t vqji_dataset_example_group(const vqj_dataset *ds, size_t i);

/* Check that `value` is a grid (a non-empty array of equally long, non-empty
 * rows of integers 0..9, at most VQJ_MAX_GRID_SIDE a side) and add it to the
 * pool. A malformed grid gives VQJ_ERR_PARSE with the reason, prefixed by
 * `what`, written to `why` (and not recorded as the context's error), and
 * adds nothing. */
vqj_status vqji_dataset_add_json_grid(vqj_dataset *ds, const json_t *value, const char *what,
                                      uint32_t *index, char *why, size_t why_size);

/* The synthetic generator's primitives. Each maps an h x w grid to a grid of
 * the same number of cells (rotations swap the sides). */
typedef enum vqji_prim_kind {
    VQJI_PRIM_MIRROR_H = 0, /* left-right: out[y][x] = in[y][w-1-x] */
    VQJI_PRIM_MIRROR_V,     /* up-down: out[y][x] = in[h-1-y][x] */
    VQJI_PRIM_ROTATE,       /* a quarter turns clockwise (1..3) */
    VQJI_PRIM_TRANSLATE,    /* by a rows and b columns; cells moved out are lost, vacated
                               cells become background */
    VQJI_PRIM_RECOLOR,      /* color a becomes color b */
    VQJI_PRIM_SWAP,         /* colors a and b trade places */
    VQJI_PRIM_FILL,         /* background cells not 4-connected to the border (the holes
                               of closed shapes) become color a */
    VQJI_PRIM_GRAVITY,      /* non-background cells fall as far as they can, keeping their
                               order: a = 0 down, 1 up, 2 left, 3 right */
    VQJI_PRIM_COUNT
} vqji_prim_kind;

typedef struct vqji_prim {
    vqji_prim_kind kind;
    int a, b;
} vqji_prim;

#define VQJI_MAX_PRIMITIVES VQJI_HI_SYNTHETIC_PRIMITIVES

typedef struct vqji_program {
    int length;
    vqji_prim prims[VQJI_MAX_PRIMITIVES];
} vqji_program;

/* Apply `p` to the h x w grid `in` (background 0), writing `out` (h*w cells,
 * distinct from `in`) and its sides. `scratch` holds h*w int32 for the
 * fill's queue; other primitives ignore it (NULL is fine). */
void vqji_prim_apply(const vqji_prim *p, int h, int w, const uint8_t *in, int *out_h, int *out_w,
                     uint8_t *out, int32_t *scratch);

/* The program that synthetic example `index` applies, drawn exactly as the
 * generator draws it (params resolved by the caller). */
void vqji_synthetic_example_program(const vqj_synthetic_params *params, uint64_t index,
                                    vqji_program *out);

/* Internal augmentation stage shared by vqj_augment_grid/example: a random
 * bijection of the colors other than `background` (perm[background] =
 * background). */
void vqji_palette_permutation(vqji_rng *rng, uint16_t background_mask, uint8_t perm[VQJ_NUM_COLORS]);

/* The ARC tasks of `path` (one task file, or a folder's *.json files in
 * byte order of their names), for evaluation; free with
 * vqji_arc_tasks_destroy(). Errors as vqj_dataset_from_arc() (no skipping). */
vqj_status vqji_arc_tasks_load(vqj_context *ctx, const char *path, vqj_arc_task ***tasks,
                               size_t *count);
void vqji_arc_tasks_destroy(vqj_arc_task **tasks, size_t count);

/* ---- built-in data and gzip (src/data/builtin.c) ---- */
/* 1 and the gzip bytes of built-in data when `path` names it
 * (VQJ_ARC_BUILTIN_TRAINING, VQJ_ARC_BUILTIN_EVALUATION), else 0. */
int vqji_builtin_arc(const char *path, const uint8_t **gz, size_t *size);
/* Inflate gzip bytes into *out (malloc'd, *out_len bytes, not NUL-ended);
 * `name` starts error messages. Errors: VQJ_ERR_PARSE (corrupt or
 * truncated data), VQJ_ERR_OUT_OF_MEMORY. */
vqj_status vqji_gunzip(const vqj_context *ctx, const char *name, const uint8_t *gz, size_t size,
                       char **out, size_t *out_len);
/* A text stream for `path`: built-in data or a *.gz file inflated into
 * memory, any other file as it is. The caller fclose()s it. Errors:
 * VQJ_ERR_IO, those of vqji_gunzip(). */
vqj_status vqji_open_text(vqj_context *ctx, const char *path, FILE **out);
/* 1 when `path` is read as JSONL: built-in data, *.jsonl or *.jsonl.gz. */
int vqji_is_jsonl(const char *path);
/* 0 when the first record of the JSONL at `path` is not an ARC task (it
 * has no "train"); 1 otherwise, also when it cannot be read. */
int vqji_jsonl_holds_tasks(vqj_context *ctx, const char *path);
/* Add the examples of an ARC task (as vqj_dataset_from_arc()) in `group`. */
vqj_status vqji_dataset_add_arc_task(vqj_dataset *ds, const vqj_arc_task *task, uint32_t group);

#endif
