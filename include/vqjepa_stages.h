/*
 * libvqjepa, experimental tier: the stage-level calls.
 *
 * Everything declared here may change in any release, MINOR or PATCH, until
 * it moves to vqjepa.h: it is outside the SONAME promise. Its symbols are
 * exported under their own version node of the shared library (VQJEPA_STAGES_*
 * in src/vqjepa.map, docs/api-conventions.md "Two tiers"), so a program that
 * uses them and meets an incompatible library fails to load instead of
 * misbehaving. The one-shot entry points of vqjepa.h (included here) cover
 * inference and training; this header is for programs that drive the model
 * stage by stage:
 *  - tensors and named weights views;
 *  - the object tokenizer;
 *  - each module (codebook, optimizer, encoder, predictor, losses) with its
 *    create, forward and backward calls;
 *  - augmentations and invariance views;
 *  - the trainer over caller-made handles, its step from ready tokens, its
 *    target network, projections, codes, counters and modules;
 *  - run policy: embedding metrics, the metrics window, health checks, abort
 *    criteria, early stopping and the run-level settings of a configuration;
 *  - checkpoints of weights views, each module's params from a configuration,
 *    models over caller-made handles, the communicator's collectives.
 */
#ifndef VQJEPA_STAGES_H
#define VQJEPA_STAGES_H

#include "vqjepa.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @name Context and communicator, stage-level
 *  The context's seed (the modules of vqjepa_stages.h draw from it; a trainer
 *  made from a configuration draws from the configuration's) and the
 *  communicator's collectives.
 *  @{ */

/** The seed this context was created with. */
VQJ_API uint64_t vqj_context_seed(const vqj_context *ctx);

/** Element type of a collective's buffers. */
typedef enum vqj_comm_type {
    VQJ_COMM_FLOAT32 = 0, /**< float */
    VQJ_COMM_INT32 = 1,   /**< int32_t */
    VQJ_COMM_INT64 = 2    /**< int64_t */
} vqj_comm_type;

/** Reduction of vqj_comm_allreduce(). */
typedef enum vqj_comm_op {
    VQJ_COMM_SUM = 0, /**< element-wise sum over the ranks */
    VQJ_COMM_AVG = 1, /**< the sum divided by the size (VQJ_COMM_FLOAT32 only) */
    VQJ_COMM_MAX = 2  /**< element-wise maximum */
} vqj_comm_op;

/** The backend's name: "single", "mpi" or "nccl" (static string). */
VQJ_API const char *vqj_comm_backend(const vqj_comm *comm);

/** In-place all-reduce of `count` elements of host memory `buf`; every rank
 *  ends with bit-identical results (the MPI backend reduces on rank 0 and
 *  broadcasts, so the order of the sum is the same for all). Collective.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, VQJ_COMM_AVG on integers),
 *  VQJ_ERR_DEVICE (the transport failed, e.g. a rank died). */
VQJ_API vqj_status vqj_comm_allreduce(vqj_comm *comm, void *buf, size_t count,
                                      vqj_comm_type type, vqj_comm_op op);

/** All-gather: every rank sends `count` elements of host memory `send`;
 *  `recv` (count * size elements) receives them in rank order. Collective.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_comm_allgather(vqj_comm *comm, const void *send, size_t count,
                                      void *recv, vqj_comm_type type);

/** Broadcast `count` elements of host memory `buf` from rank `root` to all.
 *  Collective. Errors: VQJ_ERR_INVALID_ARGUMENT (root out of range),
 *  VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_comm_broadcast(vqj_comm *comm, void *buf, size_t count,
                                      vqj_comm_type type, int root);

/** Check that every rank passed the same `bytes` (a hash of them is
 *  compared): VQJ_ERR_INVALID_ARGUMENT on every rank, with a message naming
 *  `what` and the first rank that differs, when one does. Use it on the
 *  configuration at start. Collective. Errors: VQJ_ERR_INVALID_ARGUMENT,
 *  VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_comm_check_same(vqj_comm *comm, const void *bytes, size_t n,
                                       const char *what);

/** The communicator attached to `ctx` (borrowed), or NULL. */
VQJ_API vqj_comm *vqj_context_comm(const vqj_context *ctx);
/** @} */

/** @name Tensors
 *  A tensor is a rows x cols float32 matrix in the context's device memory
 *  (host memory on the CPU). Stage-by-stage training passes tensors between
 *  the encoder, codebook, predictor and loss without copies to the host.
 *  @{ */
typedef struct vqj_tensor vqj_tensor;

/** Create a rows x cols tensor, zero-filled. rows may be 0. On success *out
 *  holds a tensor the caller destroys with vqj_tensor_destroy() before the
 *  context; on failure *out is unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, negative sizes), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_tensor_create(vqj_context *ctx, int rows, int cols, vqj_tensor **out);
/** Destroy a tensor. NULL is ignored. */
VQJ_API void vqj_tensor_destroy(vqj_tensor *tensor);
/** Change the shape; the storage grows when needed and the contents are then
 *  unspecified. Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_OUT_OF_MEMORY (the
 *  tensor is unchanged). */
VQJ_API vqj_status vqj_tensor_reshape(vqj_tensor *tensor, int rows, int cols);
/** The number of rows of `tensor` (0 for NULL). Never fails. */
VQJ_API int vqj_tensor_rows(const vqj_tensor *tensor);
/** The number of columns of `tensor` (0 for NULL). Never fails. */
VQJ_API int vqj_tensor_cols(const vqj_tensor *tensor);
/** Copy the rows*cols values to or from host memory; `count` must equal
 *  rows*cols. Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_tensor_read(const vqj_tensor *tensor, float *dst, size_t count);
/** Copy `count` floats from host memory `src` (only read during the call)
 *  into the tensor; `count` must equal rows*cols.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_tensor_write(vqj_tensor *tensor, const float *src, size_t count);
/** @} */

/** @name Named weights
 *  Every model handle (encoder, codebook, predictor) exposes its tensors -
 *  trainable weights and state such as the codebook's EMA statistics - as a
 *  borrowed vqj_weights view: valid while the handle lives, never destroyed
 *  by the caller. Names follow docs/model.md ("feature_mlp.fc1.weight", ...).
 *  @{ */
typedef struct vqj_weights vqj_weights;

/** What one named tensor is. `name` is owned by the view. */
typedef struct vqj_weight_info {
    const char *name;
    int ndim;          /**< 1 or 2 */
    int64_t shape[2];  /**< unused dimensions are 1 */
    size_t count;      /**< number of floats */
    int trainable;     /**< 1 for weights an optimizer updates, 0 for state */
} vqj_weight_info;

/** Number of named tensors. */
VQJ_API size_t vqj_weights_num_tensors(const vqj_weights *weights);
/** Number of trainable floats (the "parameter count"). */
VQJ_API size_t vqj_weights_num_params(const vqj_weights *weights);
/** Describe tensor `index` (0 .. num_tensors-1). Errors: VQJ_ERR_INVALID_ARGUMENT. */
VQJ_API vqj_status vqj_weights_info(const vqj_weights *weights, size_t index,
                                    vqj_weight_info *out);
/** Copy the named tensor to host memory; `count` must equal its count.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (unknown name, wrong count), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_weights_read(const vqj_weights *weights, const char *name, float *dst,
                                    size_t count);
/** Overwrite the named tensor from host memory. Non-finite values are
 *  rejected (VQJ_ERR_NUMERIC) and leave the tensor unchanged. */
VQJ_API vqj_status vqj_weights_write(vqj_weights *weights, const char *name, const float *src,
                                     size_t count);
/** Copy the gradient accumulated for the named trainable tensor by the last
 *  backward passes. Errors: VQJ_ERR_INVALID_ARGUMENT (unknown name, wrong
 *  count, a state tensor, which has no gradient), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_weights_read_grad(const vqj_weights *weights, const char *name,
                                         float *dst, size_t count);
/** Set every gradient of the view to zero. NULL is ignored. */
VQJ_API void vqj_weights_zero_grad(vqj_weights *weights);
/** @} */

/** @name The object tokenizer (docs/tokenizer.md)
 *  @{ */
/** Number of base features per object before the color-count slots. */
#define VQJ_BASE_FEATURES 13

/** Tokenizer options. Fill with vqj_tokenizer_params_default(). */
typedef struct vqj_tokenizer_params {
    size_t size;             /**< sizeof(vqj_tokenizer_params) */
    int max_objects;         /**< objects kept per grid, largest first; default 16; 1..4096 */
    int max_color_features;  /**< color-count slots per object; default 10; 0..10 */
    uint16_t background;     /**< bit c set: color c is background; default 1 (color 0) */
    int connectivity;        /**< 4 or 8; default 4 */
    int normalize;           /**< divide features by grid sizes as documented; default 1 */
    int respect_colors;      /**< a component holds one color only; default 1 */
} vqj_tokenizer_params;

/** Fill `params` with the defaults. NULL is ignored. */
VQJ_API void vqj_tokenizer_params_default(vqj_tokenizer_params *params);

/** Features per object for these params: VQJ_BASE_FEATURES + max_color_features. */
VQJ_API int vqj_tokenizer_feature_dim(const vqj_tokenizer_params *params);

/** A batch of tokenized grids in packed form: the objects of grid g are rows
 *  offsets[g] .. offsets[g+1]-1 of the feature matrix; no padding. */
typedef struct vqj_tokens vqj_tokens;

/** Create an empty token batch for these tokenizer params (copied). Reuse it
 *  across calls to vqj_tokenize(): buffers grow as needed and are kept. On
 *  success *out holds a batch the caller destroys with vqj_tokens_destroy()
 *  before the context; on failure *out is unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, bad params), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_tokens_create(vqj_context *ctx, const vqj_tokenizer_params *params,
                                     vqj_tokens **out);

/** Destroy a token batch. NULL is ignored. */
VQJ_API void vqj_tokens_destroy(vqj_tokens *tokens);

/** Tokenize `num_grids` grids into `tokens`, replacing its contents. Every grid
 *  is validated before anything is written: on failure `tokens` keeps its
 *  previous contents. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a side
 *  of 0 or above VQJ_MAX_GRID_SIDE, a color outside 0..9; the message names
 *  the grid index and the cell), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_tokenize(vqj_context *ctx, vqj_tokens *tokens, const vqj_grid *grids,
                                size_t num_grids);

/** Number of grids in the batch. */
VQJ_API size_t vqj_tokens_num_grids(const vqj_tokens *tokens);
/** Total number of objects (rows of the feature matrix). */
VQJ_API size_t vqj_tokens_num_objects(const vqj_tokens *tokens);
/** Features per object (vqj_tokenizer_feature_dim of the params). */
VQJ_API int vqj_tokens_feature_dim(const vqj_tokens *tokens);
/** num_grids + 1 offsets into the object rows; owned by `tokens`, valid until
 *  the next vqj_tokenize() or vqj_tokens_destroy(). */
VQJ_API const int32_t *vqj_tokens_offsets(const vqj_tokens *tokens);
/** The num_objects x feature_dim feature matrix, row-major; same lifetime. */
VQJ_API const float *vqj_tokens_features(const vqj_tokens *tokens);
/** One 64-bit content id per grid (num_grids values): FNV-1a of the grid's
 *  height, width and cells, so identical grids have equal ids; never 0.
 *  vqj_loss_infonce_ids() masks duplicate negatives with them. NULL for a
 *  NULL `tokens`; same lifetime as the offsets. */
VQJ_API const uint64_t *vqj_tokens_grid_ids(const vqj_tokens *tokens);
/** The adjacency of grid `grid`: n x n bytes (n its object count), row-major,
 *  1 where two distinct objects are adjacent, 0 on the diagonal. NULL when
 *  `grid` is out of range; same lifetime. */
VQJ_API const uint8_t *vqj_tokens_adjacency(const vqj_tokens *tokens, size_t grid);

/** Write grid `grid` of the batch in the padded layout of the reference
 *  system: `features` max_objects x feature_dim, `mask` max_objects and
 *  `adjacency` max_objects x max_objects, zeros past the real objects. Any of
 *  the three may be NULL to skip it. Errors: VQJ_ERR_INVALID_ARGUMENT. */
VQJ_API vqj_status vqj_tokens_padded(vqj_context *ctx, const vqj_tokens *tokens, size_t grid,
                                     float *features, float *mask, float *adjacency);
/** @} */

/** @name Codebook (vector quantization; docs/model.md, "Codebook")
 *  Maps each token to its nearest code (squared L2, ties to the lowest
 *  index) with a straight-through estimator and a commitment loss. Codes are
 *  trained by EMA of assignment counts and sums with Laplace smoothing (or by
 *  gradient when ema_decay is 0); codes whose EMA share falls to the usage
 *  threshold are re-seeded from the worst-quantized tokens; an optional
 *  k-means++ pass seeds the codes from the first large training batch.
 *  Tokens are packed real tokens only (no padding), so padding never enters
 *  the statistics. A codebook is not safe to use from two threads at once;
 *  to quantize from many threads, share it through a vqj_model.
 *  @{ */

/** How the codebook picks a code (docs/model.md, "Quantizers"). */
typedef enum vqj_quantizer {
    VQJ_QUANTIZER_EUCLIDEAN = 0, /**< nearest code by squared L2 distance */
    VQJ_QUANTIZER_COSINE = 1,    /**< tokens and codes l2-normalized: nearest by cosine;
                                      needs ema_decay > 0 */
    VQJ_QUANTIZER_FSQ = 2,       /**< finite scalar quantization over fsq_levels: no codes
                                      to learn; K = the product of the levels */
    VQJ_QUANTIZER_SIMVQ = 3,     /**< SimVQ: codes C W^T, C a fixed random basis, W learned
                                      by gradient (no EMA) */
    VQJ_QUANTIZER_RESIDUAL = 4   /**< residual codes (ResidualVQ): num_quantizers Euclidean
                                      codebooks of K codes each, level l quantizing what the
                                      levels before it left: q = q_1 + ... + q_L */
} vqj_quantizer;

/** How the gradient passes the quantizer (docs/model.md, "Quantizers"). */
typedef enum vqj_gradient_estimator {
    VQJ_GRADIENT_STRAIGHT_THROUGH = 0, /**< dz = dq (in the code space) */
    VQJ_GRADIENT_ROTATION = 1          /**< the rotation trick (Fifty et al. 2024): dz =
                                            sg(||q|| / ||z|| R)^T dq with R the rotation
                                            taking z's direction to q's */
} vqj_gradient_estimator;

/** Most dimensions of an FSQ code (vqj_codebook_params.fsq_levels). */
#define VQJ_FSQ_MAX_LEVELS 8

/** Most levels of residual codes (vqj_codebook_params.num_quantizers). */
#define VQJ_MAX_QUANTIZERS 16

/** Most groups of grouped codes (vqj_codebook_params.num_groups). */
#define VQJ_MAX_GROUPS 64

/** Parameters of vqj_codebook_create(). Fill with vqj_codebook_params_default(). */
typedef struct vqj_codebook_params {
    size_t size;                   /**< sizeof(vqj_codebook_params); set by the default function */
    int num_embeddings;            /**< K, number of codes; default 768; 1..65536 (FSQ: K is
                                        the product of fsq_levels instead) */
    int dim;                       /**< D, token and code width; default 384; 1..65536 */
    int enabled;                   /**< default 1; 0: q = z, no loss, no codes, no updates */
    float commitment_cost;         /**< beta; default 0.15; finite, >= 0 */
    float ema_decay;               /**< gamma; default 0.95; [0, 1); 0 = codes trained by
                                        gradient (then no EMA updates and no refresh) */
    int refresh_enabled;           /**< dead-code refresh; default 1 (needs ema_decay > 0) */
    int refresh_interval;          /**< refresh every this many EMA updates; default 3000; >= 1 */
    float refresh_usage_threshold; /**< codes with EMA share <= this are dead; default 0.01; [0, 1] */
    int kmeans_init;               /**< k-means++ on the first training batch with >= K
                                        tokens; default 1 */
    float dead_code_threshold;     /**< dead-code replacement: after every EMA update, a code
                                        whose ema_count is below this is re-seeded from a
                                        random token of the batch; default 0 (off); finite,
                                        >= 0; needs ema_decay > 0 */
    vqj_quantizer quantizer;       /**< default VQJ_QUANTIZER_EUCLIDEAN */
    int code_dim;                  /**< c: 0 (default) searches the D-dim tokens; 1..65536
                                        adds learned projections D -> c before the search
                                        and c -> D after it, and codes of width c */
    int fsq_levels[VQJ_FSQ_MAX_LEVELS]; /**< FSQ: the levels L_j of each code dimension,
                                        each 2..256, ended by 0 or the array's end; their
                                        product (<= 65536) replaces num_embeddings; default
                                        {8, 5, 5, 5} */
    vqj_gradient_estimator gradient_estimator; /**< default straight-through; the rotation
                                        trick is not for FSQ */
    int dead_code_max_per_step;    /**< dead-code replacement re-seeds at most this many codes
                                        an update (per level), those with the lowest
                                        ema_count first; the rest wait for the next update;
                                        default 0 (no cap); 0..65536 */
    int num_quantizers;            /**< residual codes: the number of levels L, each with K
                                        codes; default 2; 1..16; only VQJ_QUANTIZER_RESIDUAL
                                        reads it */
    int num_groups;                /**< grouped (product) codes, as GroupedResidualVQ: G
                                        slices of the code vector (width D or code_dim, which
                                        G must divide), each quantized by its own K codes (its
                                        own num_quantizers levels with
                                        VQJ_QUANTIZER_RESIDUAL); q is their concatenation;
                                        default 1 (no groups); 1..64; G > 1 needs Euclidean or
                                        residual codes */
} vqj_codebook_params;

/** Fill `params` with the defaults documented on each field. NULL is ignored. */
VQJ_API void vqj_codebook_params_default(vqj_codebook_params *params);

/** An opaque codebook handle. */
typedef struct vqj_codebook vqj_codebook;

/** Create a codebook. Tensors (see vqj_codebook_weights()):
 *  "codebook.embedding" [K x c] (trainable only when ema_decay is 0), state
 *  "codebook.ema_count" [K] and "codebook.ema_sum" [K x c], with c = code_dim
 *  or D; with a code_dim (and VQ enabled) also the trainable
 *  "codebook.project_in.weight" [c x D], "codebook.project_in.bias" [c],
 *  "codebook.project_out.weight" [D x c] and "codebook.project_out.bias" [D]
 *  (PyTorch Linear layout and initialization). The codes start uniform in
 *  (-1/K, 1/K) (cosine: then l2-normalized), drawn from the context seed;
 *  ema_count starts at 1 and ema_sum at the codes. On success *out holds a codebook the caller
 *  destroys with vqj_codebook_destroy() before the context; on failure *out
 *  is NULL. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a field out of
 *  range: the message names it and its range, a size smaller than the first
 *  published struct), VQJ_ERR_UNSUPPORTED (fields from a newer version),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_codebook_create(vqj_context *ctx, const vqj_codebook_params *params,
                                       vqj_codebook **out);

/** Destroy a codebook. NULL is ignored. */
VQJ_API void vqj_codebook_destroy(vqj_codebook *cb);

/** The codebook's named tensors, a borrowed view valid while `cb` lives.
 *  Writing "codebook.embedding" does not update ema_sum: write both to load
 *  a checkpoint. NULL for a NULL codebook. */
VQJ_API vqj_weights *vqj_codebook_weights(vqj_codebook *cb);

/** What one forward call saw. Set `size` to sizeof(vqj_codebook_stats)
 *  before the call; the library fills the fields that size covers. */
typedef struct vqj_codebook_stats {
    size_t size;           /**< set by the caller */
    float commitment_loss; /**< beta * mean over tokens and dims of (z - sg(q))^2 (weighted) */
    float codebook_loss;   /**< the code term mean (sg(z) - e)^2, weight 1, when ema_decay is
                                0 (add it to the objective); 0 with EMA codes */
    float perplexity;      /**< exp(entropy of the batch's code histogram); 0 when N = 0
                                or VQ is disabled */
    int active_codes;      /**< codes used by at least one token of the batch */
    int refreshed;         /**< codes re-seeded by this call */
    float usage_ratio;     /**< active_codes / K */
    int64_t updates;       /**< EMA updates made so far, this call included */
    int dead_replaced;     /**< codes re-seeded by dead-code replacement in this call */
} vqj_codebook_stats;

/** Quantize z [N x D] (N real tokens, N may be 0) with the current codes:
 *  q [N x D] (reshaped by the call) = the nearest code of each row (with a
 *  code_dim or FSQ: the code mapped back to D by the output projection); the
 *  commitment loss is reported in `stats`. `codes`, when not NULL, receives
 *  the N code indices in 0..K-1 (FSQ: the mixed-radix index; -1 each when
 *  VQ is disabled). `stats` may be NULL.
 *
 *  With `training` set, in this order: k-means++ seeds the codes when
 *  kmeans_init is set and this is the first training batch with N >= K
 *  (before the assignment, so q uses the seeded codes); the tokens are
 *  assigned; an EMA update folds the batch into the codes (ema_decay > 0 and
 *  N > 0); every refresh_interval-th update re-seeds the dead codes from the
 *  tokens with the largest quantization error (measured against the codes
 *  the batch was assigned with); with dead_code_threshold > 0, every update
 *  then re-seeds each code whose ema_count is below the threshold from a
 *  token of the batch drawn at random (distinct tokens while the batch has
 *  enough; the draw depends only on the context seed and the update number),
 *  setting e_k = z_i, ema_count_k = threshold, ema_sum_k = threshold z_i.
 *  The residual z - q and the assignment are
 *  kept for vqj_codebook_backward(). A training forward refuses non-finite z
 *  (VQJ_ERR_NUMERIC) before changing anything, so one bad batch cannot
 *  poison the EMA state.
 *
 *  With `training` 0 nothing in the codebook changes and the state kept for
 *  the backward pass is left alone: this is how the target network and
 *  evaluation quantize, between the online forward and its backward.
 *
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL cb, z or q; q == z; a tensor of
 *  another context; z not D columns; stats->size too small),
 *  VQJ_ERR_NUMERIC, VQJ_ERR_OUT_OF_MEMORY (nothing changed), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_codebook_forward(vqj_codebook *cb, const vqj_tensor *z, int training,
                                        vqj_tensor *q, int32_t *codes, vqj_codebook_stats *stats);

/** Backward of the last training forward. Accumulates into dz [N x D]:
 *  dz += dq (straight-through) + 2 beta (z - q) / (N D) (commitment); when
 *  ema_decay is 0 also accumulates the code term's gradient
 *  2 sum_{i->k} (e_k - z_i) / (N D) into the gradient of
 *  "codebook.embedding" (read it with vqj_weights_read_grad()). With cosine
 *  codes or a code_dim the same terms are taken in the code space (u = the
 *  projected, normalized token; N c instead of N D) and carried back through
 *  the normalization and the projections, whose gradients accumulate into
 *  "codebook.project_*" (docs/model.md, "Quantizers"). May be
 *  repeated; each call accumulates again.
 *  Errors: VQJ_ERR_STATE (no training forward yet), VQJ_ERR_INVALID_ARGUMENT
 *  (NULL pointers, a tensor of another context, dq or dz not N x D). */
VQJ_API vqj_status vqj_codebook_backward(vqj_codebook *cb, const vqj_tensor *dq, vqj_tensor *dz);

/** Per-code EMA usage ema_count_k / sum of ema_count into dst[count];
 *  count must be K. Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_codebook_ema_usage(const vqj_codebook *cb, float *dst, size_t count);

/** The counters a checkpoint must carry besides the tensors: the number of
 *  EMA updates (which schedules the refresh) and whether k-means++ has run
 *  (or is no longer wanted). Errors: VQJ_ERR_INVALID_ARGUMENT (NULL). */
VQJ_API vqj_status vqj_codebook_get_progress(const vqj_codebook *cb, int64_t *updates,
                                             int *initialized);
/** Restore the counters of vqj_codebook_get_progress(): call it after loading
 *  the tensors, or a resumed run re-seeds trained codes with k-means++.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, updates < 0). */
VQJ_API vqj_status vqj_codebook_set_progress(vqj_codebook *cb, int64_t updates, int initialized);
/** @} */

/** @name Optimizer (math in docs/optimizer.md)
 *  Adam or AdamW over the trainable tensors of several weights views (the
 *  encoder, codebook, predictor, loss...), with global-norm gradient
 *  clipping and a warmup + cosine/linear learning-rate schedule. The
 *  arithmetic is PyTorch's (torch.optim.Adam / AdamW with a LambdaLR and
 *  torch.nn.utils.clip_grad_norm_ over all groups together).
 *  @{ */

/** Which update rule. */
typedef enum vqj_optimizer_kind {
    VQJ_OPT_ADAM = 0,  /**< Adam, weight_decay added to the gradient (L2), as torch.optim.Adam */
    VQJ_OPT_ADAMW = 1  /**< AdamW, decoupled decay p *= 1 - lr * weight_decay, as torch.optim.AdamW */
} vqj_optimizer_kind;

/** Learning-rate schedule; every one starts with the linear warmup. */
typedef enum vqj_lr_schedule {
    VQJ_LR_CONSTANT = 0, /**< warmup, then lr */
    VQJ_LR_COSINE = 1,   /**< warmup, then cosine from lr down to min_lr_scale * lr */
    VQJ_LR_LINEAR = 2    /**< warmup, then linear from lr down to min_lr_scale * lr */
} vqj_lr_schedule;

/** Parameters of vqj_optimizer_create(). Fill with vqj_optimizer_params_default(). */
typedef struct vqj_optimizer_params {
    size_t size;              /**< sizeof(vqj_optimizer_params); set by the default function */
    vqj_optimizer_kind kind;  /**< default VQJ_OPT_ADAM */
    float lr;                 /**< peak learning rate; default 5e-5; finite, >= 0 */
    float beta1;              /**< default 0.9; in [0, 1) */
    float beta2;              /**< default 0.999; in [0, 1) */
    float eps;                /**< added after the square root; default 1e-8; finite, > 0 */
    float weight_decay;       /**< default 1e-6; finite, >= 0 */
    float max_grad_norm;      /**< global-norm clipping threshold; 0 = no clipping;
                                   default 0.5; finite, >= 0 */
    vqj_lr_schedule schedule; /**< default VQJ_LR_COSINE */
    int64_t warmup_steps;     /**< default 1000; >= 0 (0 = no warmup) */
    int64_t total_steps;      /**< end of the decay; the floor holds after it; default 1500; >= 0 */
    float min_lr_scale;       /**< floor of the decay as a fraction of lr; default 0.1; in [0, 1] */
} vqj_optimizer_params;

/** An opaque optimizer handle. */
typedef struct vqj_optimizer vqj_optimizer;

/** What one call of vqj_optimizer_step() did. */
typedef struct vqj_step_info {
    size_t size;     /**< set to sizeof(vqj_step_info) before the call */
    int applied;     /**< 1 when the update was applied, 0 when the step was skipped */
    float grad_norm; /**< global L2 norm of the (scaled) gradient, before clipping;
                          not finite when the step was skipped */
    float lr;        /**< learning rate of this step (the one it would have used if skipped) */
    int64_t step;    /**< optimizer steps applied so far, this one included */
} vqj_step_info;

/** Fill `params` with the defaults documented on each field. NULL is ignored. */
VQJ_API void vqj_optimizer_params_default(vqj_optimizer_params *params);

/** Create an optimizer over the trainable tensors of `num_groups` weights
 *  views (borrowed: each must outlive the optimizer). A view with no
 *  trainable tensor is accepted and ignored. The first and second moments
 *  start at zero, on the device; the step counter at 0.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, num_groups 0, a view
 *  given twice or made from another context, a field out of range: the
 *  message names the field and its range), VQJ_ERR_UNSUPPORTED (a params
 *  struct from a newer library with fields set), VQJ_ERR_OUT_OF_MEMORY.
 *  On success *out holds an optimizer the caller destroys with
 *  vqj_optimizer_destroy() before the views and the context; on failure
 *  *out is unchanged. */
VQJ_API vqj_status vqj_optimizer_create(vqj_context *ctx, const vqj_optimizer_params *params,
                                        vqj_weights *const *groups, size_t num_groups,
                                        vqj_optimizer **out);

/** Destroy an optimizer (not the views it updates). NULL is ignored. */
VQJ_API void vqj_optimizer_destroy(vqj_optimizer *opt);

/** Apply one optimizer step to every group from the gradients accumulated in
 *  the views, in this order:
 *   1. g = grad_scale * grad (gradient accumulation: pass 1 / number of
 *      micro-batches to average their summed gradients; 1 otherwise);
 *   2. the global norm ||g|| over all groups (reported as grad_norm);
 *      when it is not finite (a NaN or infinite gradient anywhere) the step
 *      is skipped: VQJ_OK with applied = 0, and nothing changes - not the
 *      parameters, the moments, the step counter nor the schedule;
 *   3. clipping: g *= min(1, max_grad_norm / (||g|| + 1e-6)) when
 *      max_grad_norm > 0;
 *   4. the Adam/AdamW update with the scheduled lr (vqj_optimizer_lr());
 *   5. the step counter, and with it the schedule, advances by one.
 *  The gradient buffers are only read (scale and clipping are folded into
 *  the update), so zero them before the next accumulation
 *  (vqj_optimizer_zero_grad()). `info` may be NULL.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL opt, grad_scale not finite or
 *  <= 0, info->size smaller than the first vqj_step_info), VQJ_ERR_DEVICE
 *  (the device failed; the parameters may then be partly updated). */
VQJ_API vqj_status vqj_optimizer_step(vqj_optimizer *opt, float grad_scale, vqj_step_info *info);

/** Zero the gradients of every group. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL). */
VQJ_API vqj_status vqj_optimizer_zero_grad(vqj_optimizer *opt);

/** The learning rate the next step will use: lr * schedule(steps). 0 for NULL. */
VQJ_API float vqj_optimizer_lr(const vqj_optimizer *opt);

/** Optimizer steps applied so far (skipped steps do not count). 0 for NULL. */
VQJ_API int64_t vqj_optimizer_steps(const vqj_optimizer *opt);

/** Set the step counter, e.g. when resuming from a checkpoint: it drives the
 *  bias corrections and the schedule. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL,
 *  steps < 0). */
VQJ_API vqj_status vqj_optimizer_set_steps(vqj_optimizer *opt, int64_t steps);

/** The optimizer's state as a borrowed weights view (valid while the
 *  optimizer lives; never destroy it), for checkpoints: for each group g
 *  with trainable tensors, the state tensors "adam.m.<g>" and "adam.v.<g>"
 *  [num_params of group g], the first and second moments over that group's
 *  trainable floats in their storage order. Read and write them with
 *  vqj_weights_read() / vqj_weights_write(). The step counter is not in the
 *  view: use vqj_optimizer_steps() / vqj_optimizer_set_steps(). NULL for a
 *  NULL optimizer. */
VQJ_API vqj_weights *vqj_optimizer_state(vqj_optimizer *opt);

/** Exponential moving average of the trainable tensors of a view, for a
 *  target network: target = decay * target + (1 - decay) * online. State
 *  tensors are not touched. Both views must hold the same trainable tensors
 *  (names and shapes, in the same order) and come from the same context.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, decay not in [0, 1],
 *  different contexts, mismatched tensors: the message names the first
 *  difference); on failure target is unchanged. */
VQJ_API vqj_status vqj_weights_ema(vqj_weights *target, const vqj_weights *online, float decay);
/** @} */

/** @name Encoder (math in docs/model.md)
 *  The feature MLP (F -> D -> GELU -> D) followed by `relational_layers`
 *  pre-LayerNorm transformer blocks whose attention is restricted to each
 *  grid's adjacency plus self. Works on packed tokens (vqj_tokens): grids
 *  with no objects, and batches with no objects at all, are valid.
 *
 *  Threads: a handle keeps the activations of its last forward pass for the
 *  backward pass, so one forward/backward pair is in flight per handle and
 *  calls on one handle must not overlap. Different handles (an online and a
 *  target encoder, say) may run on different threads at the same time. For
 *  inference from many threads on one trained encoder, use a vqj_model.
 *  @{ */

/** Parameters of vqj_encoder_create(). Fill with vqj_encoder_params_default(). */
typedef struct vqj_encoder_params {
    size_t size;              /**< sizeof(vqj_encoder_params); set by the default function */
    int feature_dim;          /**< F, features per token; must equal the tokenizer's
                                   vqj_tokenizer_feature_dim(); default 23; 1..4096 */
    int hidden_dim;           /**< D; default 384; 1..16384, divisible by relational_heads */
    int relational_layers;    /**< default 3; 0..64 (0: the feature MLP alone) */
    int relational_heads;     /**< default 8; 1..hidden_dim */
    float relational_dropout; /**< on both residual branches in training; default 0.1; [0, 1) */
} vqj_encoder_params;

/** Fill `params` with the defaults documented on each field. NULL is ignored. */
VQJ_API void vqj_encoder_params_default(vqj_encoder_params *params);

/** An opaque encoder handle. */
typedef struct vqj_encoder vqj_encoder;

/** Create an encoder. Its tensors (vqj_encoder_weights()) are
 *  "feature_mlp.fc{1,2}.{weight,bias}" and, per block l,
 *  "relational.<l>.{ln1,attn.qkv,attn.out,ln2,ffn.fc1,ffn.fc2}.{weight,bias}",
 *  all trainable, initialised as docs/model.md says from the context seed
 *  (two encoders made from one seed start identical).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a field out of range: the
 *  message names it and its range, a size smaller than the first published
 *  struct), VQJ_ERR_UNSUPPORTED (fields from a newer version),
 *  VQJ_ERR_OUT_OF_MEMORY. On success *out holds an encoder the caller
 *  destroys with vqj_encoder_destroy() before the context; on failure *out
 *  is unchanged. */
VQJ_API vqj_status vqj_encoder_create(vqj_context *ctx, const vqj_encoder_params *params,
                                      vqj_encoder **out);

/** Destroy an encoder. NULL is ignored. */
VQJ_API void vqj_encoder_destroy(vqj_encoder *encoder);

/** The encoder's named tensors, a borrowed view valid while it lives. NULL
 *  for a NULL encoder. */
VQJ_API vqj_weights *vqj_encoder_weights(vqj_encoder *encoder);

/** Encode every token of `tokens` (made with the same context): `out` is
 *  reshaped to N x D (N = vqj_tokens_num_objects(), possibly 0) and receives
 *  z. With `training` set, dropout is applied with masks drawn from the
 *  context seed, a per-handle step counter (advanced by each training
 *  forward) and the site, so a run is reproducible; without it dropout is
 *  off. The activations are kept for vqj_encoder_backward(); buffers grow to
 *  the largest batch seen and are reused.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, objects of another
 *  context, tokens whose feature dimension differs from feature_dim),
 *  VQJ_ERR_NUMERIC (a NaN or infinite input feature: the message names the
 *  token, its grid and the feature; nothing is computed),
 *  VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. A call rejected by these checks
 *  changes nothing; one that fails later (memory, device) discards the
 *  previous forward's activations (a backward then gives VQJ_ERR_STATE). */
VQJ_API vqj_status vqj_encoder_forward(vqj_encoder *encoder, const vqj_tokens *tokens,
                                       int training, vqj_tensor *out);

/** Backward of the last forward: given dout = dL/dz [N x D], ACCUMULATE
 *  (docs/model.md, "Gradient convention") into the gradients of every
 *  tensor of vqj_encoder_weights() (zero them with vqj_weights_zero_grad())
 *  and, when `dfeatures` is not NULL, into dfeatures [N x F] (the gradient
 *  with respect to the input features; create it zeroed). May be repeated:
 *  each call accumulates again.
 *  Errors: VQJ_ERR_STATE (no successful forward yet), VQJ_ERR_INVALID_ARGUMENT
 *  (NULL encoder or dout, tensors of another context, dout not N x D,
 *  dfeatures not N x F), VQJ_ERR_OUT_OF_MEMORY (first backward: scratch
 *  buffers), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_encoder_backward(vqj_encoder *encoder, const vqj_tensor *dout,
                                        vqj_tensor *dfeatures);
/** @} */

/** @name Predictor (math in docs/model.md)
 *  Grid pooling (mean of a grid's token vectors; 0 objects -> the zero
 *  vector), context aggregation over the T grids of an example, and the
 *  projection head (Linear layers, each followed by the activation, then L2
 *  normalization).
 *
 *  Threads: as for the encoder, a handle keeps the activations of its last
 *  forward (context or grids path) for the matching backward; calls on one
 *  handle must not overlap, different handles may run concurrently (and a
 *  vqj_model runs one predictor from many threads).
 *  @{ */

/** Activation after each projection layer. */
typedef enum vqj_activation {
    VQJ_ACT_NONE = 0,
    VQJ_ACT_RELU = 1,
    VQJ_ACT_GELU = 2, /**< exact (erf) form */
    VQJ_ACT_TANH = 3
} vqj_activation;

/** How the T grid vectors of an example become one context vector. */
typedef enum vqj_aggregator {
    VQJ_AGG_MEAN = 0,      /**< (1/T) sum_t r_t */
    VQJ_AGG_LAST = 1,      /**< r_T */
    VQJ_AGG_ATTENTION = 2, /**< softmax_t(r_t . q / sqrt(D)) weights, learned query q */
    VQJ_AGG_GRU = 3        /**< PyTorch's GRU over t = 1..T from h = 0; the last state */
} vqj_aggregator;

/** Which token vectors the trainer and vqj_model feed the predictor and the
 *  relational loss (docs/model.md, "Codes beside the forward path"). */
typedef enum vqj_vq_path {
    VQJ_VQ_STRAIGHT_THROUGH = 0, /**< the quantized vectors q = z + stopgrad(e_k - z) */
    VQJ_VQ_BESIDE = 1            /**< the continuous z; the codebook still assigns one code per
                                      token, follows z (EMA) and adds its commitment term */
} vqj_vq_path;

/** Parameters of vqj_predictor_create(). Fill with vqj_predictor_params_default(). */
typedef struct vqj_predictor_params {
    size_t size;                         /**< sizeof(vqj_predictor_params) */
    int hidden_dim;                      /**< D, width of the token vectors; default 384; 1..16384 */
    int projection_dim;                  /**< P; default 256; 1..16384 */
    int projection_layers;               /**< default 2; 1..16 (the first D -> P, the rest P -> P) */
    vqj_activation projection_activation; /**< default VQJ_ACT_RELU */
    vqj_aggregator aggregator;           /**< default VQJ_AGG_MEAN */
    int context_window;                  /**< T, grids per example; default 3; 1..1024 */
    int final_activation;                /**< 1: projection_activation after the last head
                                              layer too, as the original (default 1); 0: the
                                              last layer is linear */
    int slot_embedding;                  /**< 1: a learned vector per context slot t added to
                                              grid vector t before aggregation (tensor
                                              "aggregator.slot_embedding" [T x D]); default 0 */
    int grid_features;                   /**< 1: r_g = mean of the tokens + W f_g + b with f_g
                                              the grid's height, width, color shares and object
                                              count (tensors "grid_features.weight" [D x 13],
                                              "grid_features.bias" [D]); default 0 */
    vqj_vq_path vq_path;                 /**< default VQJ_VQ_STRAIGHT_THROUGH; read by the
                                              trainer and vqj_model, not by the predictor */
    int analogy_residual;                /**< 1: the aggregate gets r_{T-1} + r_{T-2} - r_{T-3}
                                              added (query input + demo output - demo input),
                                              so the head starts from the analogy; needs
                                              context_window >= 3; default 0 */
} vqj_predictor_params;

/** Fill `params` with the defaults documented on each field. NULL is ignored. */
VQJ_API void vqj_predictor_params_default(vqj_predictor_params *params);

/** An opaque predictor handle. */
typedef struct vqj_predictor vqj_predictor;

/** Create a predictor. Tensors: "head.<i>.weight" / "head.<i>.bias" for
 *  each projection layer, plus "aggregator.query" [D] (attention) or
 *  "aggregator.gru.weight_ih", "aggregator.gru.weight_hh" [3D x D],
 *  "aggregator.gru.bias_ih", "aggregator.gru.bias_hh" [3D] (GRU), plus
 *  "aggregator.slot_embedding" [T x D] with slot_embedding and
 *  "grid_features.weight" [D x 13], "grid_features.bias" [D] with
 *  grid_features (the grid features come with the tokens); all
 *  trainable, initialised from the context seed as docs/model.md says.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a field out of range,
 *  an unknown enum value), VQJ_ERR_UNSUPPORTED, VQJ_ERR_OUT_OF_MEMORY. On
 *  success *out holds a predictor the caller destroys with
 *  vqj_predictor_destroy() before the context; on failure *out is
 *  unchanged. */
VQJ_API vqj_status vqj_predictor_create(vqj_context *ctx, const vqj_predictor_params *params,
                                        vqj_predictor **out);

/** Destroy a predictor. NULL is ignored. */
VQJ_API void vqj_predictor_destroy(vqj_predictor *predictor);

/** The predictor's named tensors, a borrowed view valid while it lives. */
VQJ_API vqj_weights *vqj_predictor_weights(vqj_predictor *predictor);

/** The context path: `tokens` holds B * T grids (T = context_window),
 *  example b's context being grids b*T .. b*T+T-1 in order; token_vectors
 *  [N x D] holds one vector per token of `tokens` (e.g. the quantized
 *  encoder output). out is reshaped to B x P and receives
 *  normalize(head(aggregate(grid means))). B may be 0.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, objects of another
 *  context, the grid count not a multiple of T, token_vectors not N x D,
 *  out the same tensor as token_vectors), VQJ_ERR_OUT_OF_MEMORY,
 *  VQJ_ERR_DEVICE. A call rejected by these checks changes nothing; one
 *  that fails later discards the previous forward. */
VQJ_API vqj_status vqj_predictor_forward_context(vqj_predictor *predictor,
                                                 const vqj_tokens *tokens,
                                                 const vqj_tensor *token_vectors,
                                                 vqj_tensor *out);

/** The target path: every grid of `tokens` on its own, no aggregator. out is
 *  reshaped to G x P (G = vqj_tokens_num_grids()) and receives
 *  normalize(head(grid mean)). Errors as vqj_predictor_forward_context()
 *  (without the multiple-of-T rule). */
VQJ_API vqj_status vqj_predictor_forward_grids(vqj_predictor *predictor,
                                               const vqj_tokens *tokens,
                                               const vqj_tensor *token_vectors,
                                               vqj_tensor *out);

/** Backward of the last forward, which must have been the context path:
 *  given d_out [B x P], ACCUMULATE into d_token_vectors [N x D] and into the
 *  gradients of vqj_predictor_weights(). May be repeated.
 *  Errors: VQJ_ERR_STATE (there was no successful forward, or the last one
 *  was the grids path), VQJ_ERR_INVALID_ARGUMENT (NULL pointers, shapes that
 *  do not match the forward, tensors of another context), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_predictor_backward_context(vqj_predictor *predictor,
                                                  const vqj_tensor *d_out,
                                                  vqj_tensor *d_token_vectors);

/** Backward of the last forward, which must have been the grids path: given
 *  d_out [G x P], accumulate into d_token_vectors [N x D] and the weights'
 *  gradients. Errors as vqj_predictor_backward_context(). */
VQJ_API vqj_status vqj_predictor_backward_grids(vqj_predictor *predictor,
                                                const vqj_tensor *d_out,
                                                vqj_tensor *d_token_vectors);
/** @} */

/** @name Datasets, stage-level @{ */

/** The params the dataset was built with (with the defaults filled in).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, or out->size not set by
 *  vqj_dataset_params_default()). */
VQJ_API vqj_status vqj_dataset_get_params(const vqj_dataset *dataset, vqj_dataset_params *out);
/** @} */

/** @name Augmentations and invariance views (docs/losses.md, "Invariance")
 *  Augmentations perturb training examples; views are the transformed
 *  copies the invariance loss compares with the original. All are seeded:
 *  the same seed and input give the same output. Output buffers hold
 *  in->height * in->width cells, row-major, and must not overlap the input.
 *  @{ */

/** Augmentation options. Fill with vqj_augment_params_default(). */
typedef struct vqj_augment_params {
    size_t size;                /**< sizeof(vqj_augment_params); set by the default function */
    float mask_ratio;           /**< probability that a non-background cell becomes
                                     background; default 0.1; [0, 1] */
    int random_crop_radius;     /**< translate by up to this many cells on each axis;
                                     default 1; 0..VQJ_MAX_GRID_SIDE */
    int min_grid_size_for_crop; /**< translate only grids with min(H, W) >= this; default 8 */
    int palette_permutation;    /**< 1: permute the non-background colors; default 1 */
    float gaussian_noise_std;   /**< std of the color jitter; default 0.05; finite, >= 0 */
    int background;             /**< the background color; default 0; 0..9 */
} vqj_augment_params;

/** Fill `params` with the defaults. NULL is ignored. */
VQJ_API void vqj_augment_params_default(vqj_augment_params *params);

/** Augment one grid into `out_cells`, in this order:
 *  1. translation: when min(H, W) >= min_grid_size_for_crop, shift by (dy,
 *     dx) drawn uniformly in [-random_crop_radius, random_crop_radius];
 *     cells shifted out are lost, vacated cells become background;
 *  2. palette: one random bijection of the 9 non-background colors, applied
 *     to every cell;
 *  3. masking: each non-background cell becomes background with
 *     probability mask_ratio;
 *  4. jitter: each remaining non-background cell c becomes
 *     clamp(c + round(gaussian_noise_std * N(0, 1)), lo, hi), where [lo, hi]
 *     is the range of the non-background colors present after step 3; a
 *     result equal to the background keeps c, so jitter never erases a cell.
 *     With the default std 0.05 a change needs a 10-sigma draw: the jitter
 *     is kept for fidelity to the reference system, not for effect.
 *  With mask_ratio 0, no translation (radius 0 or a small grid), no palette
 *  permutation and std 0 the output equals the input. vqj_augment_grid(seed,
 *  g) equals vqj_augment_example(seed) with g as the only grid.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a parameter out of range,
 *  a bad grid). */
VQJ_API vqj_status vqj_augment_grid(vqj_context *ctx, const vqj_augment_params *params,
                                    uint64_t seed, const vqj_grid *in, uint8_t *out_cells);

/** Augment the T context grids and the target of one example consistently:
 *  the palette permutation and the translation (dy, dx) are drawn once and
 *  applied to every grid (translation only to the grids large enough), so
 *  the relation between the grids survives; masking and jitter are drawn
 *  per grid. out_cells[0 .. T-1] receive the context grids and out_cells[T]
 *  the target. `target` may be NULL (then out_cells has T entries).
 *  Errors: as vqj_augment_grid(); context_window must be 1..64. */
VQJ_API vqj_status vqj_augment_example(vqj_context *ctx, const vqj_augment_params *params,
                                       uint64_t seed, const vqj_grid *context,
                                       int context_window, const vqj_grid *target,
                                       uint8_t *const *out_cells);

/** A batch of a dataset's examples in the layout vqj_trainer_step() reads:
 *  B * T context grids (example-major, oldest first) and B targets. The
 *  batch loader of `vqjepa train` (docs/config.md, "augmentations"). */
typedef struct vqj_batch vqj_batch;

/** The seed vqj_batch_fill() gives vqj_augment_example() for example
 *  `index` of `epoch` in a run seeded by `seed`: any batch of a run can be
 *  redrawn from (seed, epoch, indices). */
VQJ_API uint64_t vqj_augment_seed(uint64_t seed, int64_t epoch, size_t index);

/** Create an empty batch, for the caller to destroy with
 *  vqj_batch_destroy(); its buffers grow on the first fills and are reused
 *  after. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_batch_create(vqj_context *ctx, vqj_batch **out);

/** Destroy a batch (NULL is a no-op). */
VQJ_API void vqj_batch_destroy(vqj_batch *batch);

/** Fill `batch` with examples indices[0 .. n-1] of `dataset`, in that
 *  order. With augment == NULL the grids are the dataset's own (valid while
 *  the dataset lives); otherwise each example is augmented by
 *  vqj_augment_example() with the seed vqj_augment_seed(seed, epoch,
 *  indices[e]), into cells the batch owns (valid until its next fill). A
 *  batch is read with the vqj_batch_* accessors. On failure the batch is
 *  empty. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, an index out of
 *  range, bad augment params), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_batch_fill(vqj_batch *batch, const vqj_dataset *dataset,
                                  const vqj_augment_params *augment, uint64_t seed,
                                  int64_t epoch, const size_t *indices, size_t n);

/** B, the examples in the batch (0 for NULL or an empty batch). */
VQJ_API size_t vqj_batch_num_examples(const vqj_batch *batch);

/** T, the context grids per example (0 for NULL or an empty batch). */
VQJ_API int vqj_batch_context_window(const vqj_batch *batch);

/** The B * T context grids, example-major (NULL when empty), owned by the
 *  batch: valid until its next fill or its destruction. */
VQJ_API const vqj_grid *vqj_batch_context(const vqj_batch *batch);

/** The B target grids (NULL when empty), owned by the batch: valid until
 *  its next fill or its destruction. */
VQJ_API const vqj_grid *vqj_batch_targets(const vqj_batch *batch);

/** The color view: one random bijection of the colors that are not in the
 *  `background` bit mask (the tokenizer's vqj_tokenizer_params.background),
 *  applied to every cell. Tokenizing the view gives the same objects, areas,
 *  shapes and positions with consistently renamed colors, so the dominant
 *  color and the color-count slots change together (the original permuted
 *  them with two unrelated permutations). `ctx` may be NULL (errors then
 *  read through vqj_last_error()). Errors: VQJ_ERR_INVALID_ARGUMENT. */
VQJ_API vqj_status vqj_view_palette(vqj_context *ctx, uint64_t seed, uint16_t background,
                                    const vqj_grid *in, uint8_t *out_cells);

/** The symmetry view: `horizontal` != 0 mirrors left-right (columns
 *  reversed), 0 mirrors up-down (rows reversed). Applied twice it is the
 *  identity. `ctx` may be NULL. Errors: VQJ_ERR_INVALID_ARGUMENT. */
VQJ_API vqj_status vqj_view_flip(vqj_context *ctx, const vqj_grid *in, int horizontal,
                                 uint8_t *out_cells);

/** The translation view, on token features rather than grids: translating a
 *  grid's contents changes nothing once the tokenizer normalizes positions
 *  unless objects move relative to the frame, so the view shifts the
 *  position features of `n` packed feature rows (`feature_dim` floats each,
 *  as vqj_tokens_features()) in place: centroid y (7) and bbox min y, max y
 *  (9, 11) by dy, centroid x (8) and bbox min x, max x (10, 12) by dx, in
 *  the features' own units (fractions of the grid side with the default
 *  normalization). Areas, perimeters, sizes, aspect ratios and colors are
 *  unchanged. The trainer draws dy, dx in [-translation_max_delta,
 *  translation_max_delta]. `ctx` may be NULL. Errors:
 *  VQJ_ERR_INVALID_ARGUMENT (NULL features with n > 0, feature_dim <
 *  VQJ_BASE_FEATURES), VQJ_ERR_NUMERIC (non-finite dy or dx). */
VQJ_API vqj_status vqj_view_translate_features(vqj_context *ctx, float *features, size_t n,
                                               int feature_dim, float dy, float dx);
/** @} */

/** @name Losses (math and gradients in docs/losses.md)
 *  One handle computes every term of the objective except the codebook's
 *  commitment (which the codebook computes; the handle only adds and
 *  reports it): InfoNCE with in-batch and queue negatives and a learnable,
 *  clamped temperature; relational consistency; SIGReg; invariance.
 *
 *  Each term is one call that computes its value and ACCUMULATES its
 *  gradient (docs/model.md, "Gradient convention") in the same pass: a fused
 *  forward + backward, cheaper than two calls because the softmax, the
 *  characteristic functions and the distance matrices are computed once.
 *  Values are weighted: what a call returns (and adds to the running report)
 *  is the term's contribution to the total. A term whose weight is 0 does no
 *  work at all: its value is exactly 0 and no gradient is touched.
 *
 *  A call whose inputs (or result) are not finite fails with VQJ_ERR_NUMERIC
 *  and changes nothing: no gradient, no report, no queue, no temperature.
 *  A handle is not safe to use from two threads at once.
 *  @{ */

/** The prediction term of the objective (docs/losses.md). */
typedef enum vqj_objective {
    VQJ_OBJECTIVE_INFONCE = 0, /**< InfoNCE against the batch and the queue (the seed's) */
    VQJ_OBJECTIVE_SIGREG = 1   /**< LeJEPA-style: infonce_weight * mean_i ||c_i - t_i||^2, the L2
                                    prediction of the target projection; SIGReg (sigreg_weight)
                                    keeps the projections from collapsing */
} vqj_objective;

/** Parameters of vqj_loss_create(). Fill with vqj_loss_params_default(). */
typedef struct vqj_loss_params {
    size_t size;                 /**< sizeof(vqj_loss_params); set by the default function */
    int projection_dim;          /**< P, width of the projections; default 256; 1..16384 */
    int queue_size;              /**< negatives queue rows; default 8192; 0..1048576 (0: none) */
    float temperature;           /**< initial tau; default 0.07; in [temperature_min, _max] */
    float temperature_min;       /**< default 0.05; finite, > 0 */
    float temperature_max;       /**< default 0.20; finite, >= temperature_min */
    int learnable_temperature;   /**< log tau is trained (a trainable tensor); default 1 */
    float relational_weight;     /**< w_r, context-target alignment; default 0.025; finite, >= 0 */
    float context_self_weight;   /**< w_s of the context variance; default 0.01; finite, >= 0 */
    int max_objects;             /**< M, slots of a relation matrix; default 16; 1..4096 */
    float sigreg_weight;         /**< default 0.1; finite, >= 0 */
    int sigreg_num_slices;       /**< random directions per step; default 1024; 1..65536 */
    int sigreg_num_points;       /**< quadrature points on [0, 3]; default 17; 2..256 */
    float color_weight;          /**< invariance to palette permutations; default 0.1; >= 0 */
    float translation_weight;    /**< invariance to translation; default 0.05; >= 0 */
    float symmetry_weight;       /**< invariance to flips; default 0.05; >= 0 */
    float infonce_weight;        /**< default 1; finite, >= 0 */
    int mask_duplicate_negatives; /**< 1: a negative (in the batch or the queue) whose target
                                       grid is identical to the row's own target grid is left
                                       out of the softmax, when the caller gives grid ids (the
                                       trainer does); default 1 */
    vqj_objective objective;     /**< the prediction term; default VQJ_OBJECTIVE_INFONCE */
} vqj_loss_params;

/** Fill `params` with the defaults documented on each field (the seed's
 *  "gentle" configuration). NULL is ignored. */
VQJ_API void vqj_loss_params_default(vqj_loss_params *params);

/** An opaque loss handle. */
typedef struct vqj_loss vqj_loss;

/** Which invariance a vqj_loss_invariance() call measures (picks its weight
 *  and its field of vqj_loss_values). */
typedef enum vqj_invariance_kind {
    VQJ_INVARIANCE_COLOR = 0,       /**< color_weight */
    VQJ_INVARIANCE_TRANSLATION = 1, /**< translation_weight */
    VQJ_INVARIANCE_SYMMETRY = 2     /**< symmetry_weight */
} vqj_invariance_kind;

/** The running report: every term's weighted contribution summed over the
 *  calls since the last vqj_loss_reset() (or creation). Set `size` to
 *  sizeof(vqj_loss_values) before vqj_loss_get_values(). */
typedef struct vqj_loss_values {
    size_t size;                  /**< set by the caller */
    float total;                  /**< the sum of the eight terms below */
    float infonce;
    float relational;
    float commitment;             /**< as given to vqj_loss_add_commitment() */
    float sigreg;
    float invariance_color;
    float invariance_translation;
    float invariance_symmetry;
    float temperature;            /**< the current tau, clamped (not summed) */
} vqj_loss_values;

/** Create a loss handle. Its tensors (vqj_loss_weights()):
 *  "loss.log_temperature" [1] = log(temperature), trainable when
 *  learnable_temperature is set (state otherwise); and, when queue_size > 0,
 *  the state "loss.queue" [queue_size x P] (zeros), "loss.queue_fill" [1]
 *  (rows filled, 0) and "loss.queue_head" [1] (the next row written, 0),
 *  the two counters stored as exact float integers so that a checkpoint of
 *  the view restores the whole queue. On success *out holds a handle the
 *  caller destroys with vqj_loss_destroy() before the context; on failure
 *  *out is unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a field out of range:
 *  the message names it and its range, a size smaller than the first
 *  published struct), VQJ_ERR_UNSUPPORTED (fields from a newer version),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_loss_create(vqj_context *ctx, const vqj_loss_params *params,
                                   vqj_loss **out);

/** Destroy a loss handle. NULL is ignored. */
VQJ_API void vqj_loss_destroy(vqj_loss *loss);

/** The handle's named tensors, a borrowed view valid while it lives (give it
 *  to the optimizer for the temperature, to checkpoints for the queue).
 *  NULL for NULL. */
VQJ_API vqj_weights *vqj_loss_weights(vqj_loss *loss);

/** Zero the running report (call at the start of a step). NULL is ignored. */
VQJ_API void vqj_loss_reset(vqj_loss *loss);

/** Copy the running report into `out` (the fields its size covers) with
 *  `total` summed and `temperature` read from the device.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, out->size smaller than the first
 *  published vqj_loss_values), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_get_values(const vqj_loss *loss, vqj_loss_values *out);

/** The current temperature tau = clamp(exp(log tau), min, max) into *tau.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL), VQJ_ERR_NUMERIC (a non-finite
 *  log tau was written into the weights), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_temperature(const vqj_loss *loss, float *tau);

/** The number of filled queue rows (0..queue_size) into *fill.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL), VQJ_ERR_STATE (the counters
 *  written into the weights are not a valid ring position), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_queue_fill(const vqj_loss *loss, int *fill);

/** InfoNCE of context projections c [B x P] against target projections
 *  t [B x P] (unit rows; t is a constant: no gradient): logits of row i are
 *  c_i . t_i (the positive), c_i . t_j for j != i and c_i . q_m for every
 *  filled queue row, divided by tau; the value is infonce_weight times the
 *  mean over rows of the cross-entropy. Accumulates the gradient into dc
 *  [B x P] (NULL to skip) and, when learnable_temperature is set and the
 *  clamp is not active, into the gradient of "loss.log_temperature". The
 *  value goes to *value (may be NULL) and is added to the report. Does not
 *  push t: call vqj_loss_queue_push() after the optimizer step. B = 0 gives 0.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL loss, c or t, tensors of another
 *  context, shapes that are not B x P or differ), VQJ_ERR_NUMERIC,
 *  VQJ_ERR_STATE (bad queue counters), VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_infonce(vqj_loss *loss, const vqj_tensor *c, const vqj_tensor *t,
                                    vqj_tensor *dc, float *value);

/** Append the rows of t [n x P] to the negatives queue (FIFO ring: once
 *  full, each row replaces the oldest; pushing more than queue_size rows
 *  keeps the last queue_size). Without a queue this does nothing.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, another context, not P columns),
 *  VQJ_ERR_NUMERIC (a non-finite value; the queue is unchanged),
 *  VQJ_ERR_STATE (bad queue counters), VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_queue_push(vqj_loss *loss, const vqj_tensor *t);

/** vqj_loss_infonce() with one grid id per row (target_ids [B], host
 *  memory, e.g. vqj_tokens_grid_ids() of the target tokens; 0 = unknown).
 *  With mask_duplicate_negatives, a negative of row i (another row of the
 *  batch or a queue row) whose id equals target_ids[i] is left out of row
 *  i's softmax (docs/losses.md, "Duplicate negatives"). NULL target_ids
 *  masks nothing. Errors as vqj_loss_infonce(). */
VQJ_API vqj_status vqj_loss_infonce_ids(vqj_loss *loss, const vqj_tensor *c, const vqj_tensor *t,
                                        const uint64_t *target_ids, vqj_tensor *dc, float *value);

/** vqj_loss_queue_push() keeping one grid id per pushed row (ids [n], host
 *  memory; NULL: unknown) beside the row, in the state tensor
 *  "loss.queue_ids" [queue_size x 4] (the id in four 16-bit pieces).
 *  Errors as vqj_loss_queue_push(). */
VQJ_API vqj_status vqj_loss_queue_push_ids(vqj_loss *loss, const vqj_tensor *t,
                                           const uint64_t *ids);

/** SIGReg of context projections c [B x P]: sigreg_num_slices random unit
 *  directions, drawn fresh from the context seed and `step` (the same step
 *  gives the same directions), and the Epps-Pulley statistic of each
 *  projected sample, averaged over slices and times sigreg_weight.
 *  Accumulates dL/dc into dc (NULL to skip). B = 0 gives 0.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL loss or c, another context, not P
 *  columns), VQJ_ERR_NUMERIC, VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_sigreg(vqj_loss *loss, const vqj_tensor *c, uint64_t step,
                                   vqj_tensor *dc, float *value);

/** Relational consistency. `context` holds B * T grids (example b's context
 *  is grids b*T .. b*T+T-1, as for vqj_predictor_forward_context()) and
 *  `target` B grids; h_context [N_c x D] and h_target [N_t x D] hold one
 *  (quantized) vector per token. Accumulates into dh_context and dh_target
 *  (same shapes; either may be NULL to skip it). T is the ratio of the grid
 *  counts; every grid must have at most max_objects objects.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL loss, tokens or h, another
 *  context, grid counts that are not B*T and B, row counts that differ from
 *  the token counts, widths that differ, a grid with more than max_objects
 *  objects), VQJ_ERR_NUMERIC, VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_relational(vqj_loss *loss, const vqj_tokens *context,
                                       const vqj_tensor *h_context, vqj_tensor *dh_context,
                                       const vqj_tokens *target, const vqj_tensor *h_target,
                                       vqj_tensor *dh_target, float *value);

/** Invariance of one kind: weight * mean over elements of (view - original)²
 *  for two tensors of one shape; original is a constant (the untransformed
 *  view). Accumulates into d_view (NULL to skip). Calls for one kind add up
 *  in the report (e.g. one for the context and one for the target).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL loss, view or original, another
 *  context, different shapes, an unknown kind), VQJ_ERR_NUMERIC,
 *  VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_invariance(vqj_loss *loss, vqj_invariance_kind kind,
                                       const vqj_tensor *view, const vqj_tensor *original,
                                       vqj_tensor *d_view, float *value);

/** Invariance of one kind on representations (docs/losses.md): each grid's
 *  representation is the mean of its token vectors (0 objects: the zero
 *  vector), r_g = (1/n_g) Σ_{i in g} h_i, for the view (rv) and for the
 *  original (ro), and L = weight * Σ_g ‖rv_g - ro_g‖² / (G D) over the G
 *  grids and D columns. Gradient into both sides (either NULL to skip):
 *  dh_view_i += 2 weight (rv_g - ro_g) / (G D n_g) for the tokens of view
 *  grid g and dh_original_j -= 2 weight (rv_g - ro_g) / (G D n'_g) for those
 *  of original grid g. The two token sets must have the same grid count; the
 *  objects per grid may differ. Calls for one kind add up in the report
 *  (e.g. one for the context grids and one for the target grids).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL loss, tokens or h, another
 *  context, different grid counts or widths, row counts that differ from
 *  the token counts, an unknown kind), VQJ_ERR_NUMERIC,
 *  VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_loss_invariance_tokens(vqj_loss *loss, vqj_invariance_kind kind,
                                              const vqj_tokens *view, const vqj_tensor *h_view,
                                              vqj_tensor *dh_view, const vqj_tokens *original,
                                              const vqj_tensor *h_original,
                                              vqj_tensor *dh_original, float *value);

/** Add the codebook's (already weighted) commitment loss to the report.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL), VQJ_ERR_NUMERIC (not finite). */
VQJ_API vqj_status vqj_loss_add_commitment(vqj_loss *loss, float value);
/** @} */

/** @name Trainer, stage-level
 *  A trainer over handles the caller made and owns (vqj_trainer_create()),
 *  a step from ready tokens, the target network, the last step's
 *  projections and codes, the counters, and the modules of a trainer (the
 *  step itself: vqjepa.h, "Trainer").
 *  @{ */

/** Which passes of the online encoder update the codebook's EMA
 *  (vqj_trainer_params.ema_update_passes; docs/model.md, "Codebook"). */
typedef enum vqj_ema_passes {
    VQJ_EMA_PASSES_MAIN = 0,      /**< the main context pass only */
    VQJ_EMA_PASSES_ALL_ONLINE = 1 /**< every training-mode pass of the online encoder: the main
                                       context pass and each invariance view's context and
                                       target passes (the original's behaviour) */
} vqj_ema_passes;

/** Parameters of vqj_trainer_create(). Fill with vqj_trainer_params_default(). */
typedef struct vqj_trainer_params {
    size_t size;                 /**< sizeof(vqj_trainer_params) */
    int grad_accum_steps;        /**< micro-batches per optimizer step; default 2; 1..1024 */
    float target_ema_decay;      /**< target = d target + (1-d) online; default 0.99; [0, 1] */
    int use_target_encoder;      /**< 1 (default): EMA target network; 0: the online network,
                                      without dropout or gradient, encodes the targets */
    float translation_max_delta; /**< translation view: shift in [-d, d] of the normalized
                                      coordinates; default 0.1; [0, 1] */
    int symmetry_modes;          /**< flips of the symmetry view: bit 0 horizontal, bit 1
                                      vertical; default 3 (both, one drawn per step) */
    uint16_t background;         /**< colors the palette view keeps; default 1 (color 0) */
    vqj_ema_passes ema_update_passes; /**< passes that update the codebook's EMA; default
                                           VQJ_EMA_PASSES_ALL_ONLINE (1 + 2 per invariance
                                           view kind a micro-batch) */
    float object_dropout;        /**< each context object (token) is dropped from a training
                                      step with this probability, seeded; default 0; [0, 1) */
} vqj_trainer_params;

/** Fill `params` with the defaults. NULL is ignored. */
VQJ_API void vqj_trainer_params_default(vqj_trainer_params *params);

/** Create a trainer over borrowed handles, all made from `ctx`; they must
 *  outlive the trainer. The optimizer must have been created over the
 *  weights of the encoder, codebook, predictor and loss (any order). The
 *  target network starts as a copy of the online encoder and predictor.
 *  `tokenizer` (copied; NULL for the defaults) is used by vqj_trainer_step().
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL handles, handles of another
 *  context, sizes that do not fit together: feature_dim, hidden_dim,
 *  projection_dim, max_objects), VQJ_ERR_UNSUPPORTED, VQJ_ERR_OUT_OF_MEMORY.
 *  On success *out holds a trainer the caller destroys with
 *  vqj_trainer_destroy() before the handles it borrows; on failure *out is
 *  unchanged. */
VQJ_API vqj_status vqj_trainer_create(vqj_context *ctx, const vqj_trainer_params *params,
                                      const vqj_tokenizer_params *tokenizer,
                                      vqj_encoder *encoder, vqj_codebook *codebook,
                                      vqj_predictor *predictor, vqj_loss *loss,
                                      vqj_optimizer *optimizer, vqj_trainer **out);

/** One micro-batch from ready tokens (B*T context grids, B target grids).
 *  The palette and flip views need grids, so only the translation view runs.
 *  Errors as vqj_trainer_step(), and VQJ_ERR_UNSUPPORTED with a
 *  communicator of size > 1 (not data-parallel: pass grids). */
VQJ_API vqj_status vqj_trainer_step_tokens(vqj_trainer *trainer, const vqj_tokens *context,
                                           const vqj_tokens *targets,
                                           vqj_train_metrics *metrics);

/** The target encoder's weights (borrowed from the trainer: valid while it
 *  lives, never destroyed by the caller; for checkpoints). NULL for NULL or
 *  when use_target_encoder is 0 (there is no target network). */
VQJ_API vqj_weights *vqj_trainer_target_encoder_weights(vqj_trainer *trainer);
/** The target predictor's weights, borrowed from the trainer as
 *  vqj_trainer_target_encoder_weights() (NULL without a target network). */
VQJ_API vqj_weights *vqj_trainer_target_predictor_weights(vqj_trainer *trainer);

/** The target network's encoder and predictor as borrowed handles (NULL
 *  without a target network): give them to vqj_model_create() so that grid
 *  embeddings live in the space predictions are trained to match. Owned by
 *  the trainer; valid while it lives. Training changes them (EMA) after
 *  every optimizer step, so no vqj_model call may run during a step. No
 *  errors: NULL for a NULL trainer. */
VQJ_API vqj_encoder *vqj_trainer_target_encoder(vqj_trainer *trainer);
/** The target network's predictor, as vqj_trainer_target_encoder() gives
 *  its encoder: borrowed, owned by the trainer, NULL without a target
 *  network; no errors. */
VQJ_API vqj_predictor *vqj_trainer_target_predictor(vqj_trainer *trainer);

/** The context (c) and target (t) projections of the last step or
 *  evaluation, [B x P] tensors owned by the trainer (for diagnostics). */
VQJ_API const vqj_tensor *vqj_trainer_context_projections(const vqj_trainer *trainer);
/** The target projections t [B x P] of the last step or evaluation; as
 *  vqj_trainer_context_projections(): owned by the trainer, overwritten by
 *  its next step, NULL for NULL. */
VQJ_API const vqj_tensor *vqj_trainer_target_projections(const vqj_trainer *trainer);

/** The code of every context token of the last training step or
 *  evaluation, in token order (for the diagnostics' VQ usage); *count
 *  receives their number. NULL (and 0) before the first step, after a
 *  skipped one, and after the step that seeded the codebook by k-means++
 *  (its tokens are quantized against codes made from themselves, so their
 *  usage would read near 100%). Owned by the trainer, valid until its next
 *  call. */
VQJ_API const int32_t *vqj_trainer_codes(const vqj_trainer *trainer, size_t *count);

/** The code of every target token of the last training step or evaluation
 *  (the target path quantizes with the online codebook too), as
 *  vqj_trainer_codes() gives the context tokens': NULL (and 0) in the same
 *  cases. Owned by the trainer, valid until its next call. */
VQJ_API const int32_t *vqj_trainer_target_codes(const vqj_trainer *trainer, size_t *count);
/** Restore the counters of vqj_trainer_get_counters() when resuming from a
 *  checkpoint; a new accumulation cycle starts here.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, micro_step < 0). */
VQJ_API vqj_status vqj_trainer_set_counters(vqj_trainer *trainer, int64_t micro_step,
                                            uint64_t dropout_step);

/** The online encoder a trainer borrows (or owns, when made by
 *  vqj_trainer_create_from_config()): valid while the trainer lives; never
 *  destroy it. NULL for NULL. */
VQJ_API vqj_encoder *vqj_trainer_encoder(vqj_trainer *trainer);
/** The trainer's codebook, lent as vqj_trainer_encoder(). Borrowed: owned by the trainer, valid
 *  while it lives; NULL for NULL. */
VQJ_API vqj_codebook *vqj_trainer_codebook(vqj_trainer *trainer);
/** The trainer's online predictor, lent as vqj_trainer_encoder(). Borrowed: owned by the trainer, valid
 *  while it lives; NULL for NULL. */
VQJ_API vqj_predictor *vqj_trainer_predictor(vqj_trainer *trainer);
/** The trainer's loss, lent as vqj_trainer_encoder(). Borrowed: owned by the trainer, valid
 *  while it lives; NULL for NULL. */
VQJ_API vqj_loss *vqj_trainer_loss(vqj_trainer *trainer);
/** The trainer's optimizer, lent as vqj_trainer_encoder(). Borrowed: owned by the trainer, valid
 *  while it lives; NULL for NULL. */
VQJ_API vqj_optimizer *vqj_trainer_optimizer(vqj_trainer *trainer);
/** @} */

/** @name Diagnostics, health and early stopping (run policy; docs/diagnostics.md)
 *  Metrics of the embedding space and of codebook usage, the seed's health
 *  checks and abort criteria, and early stopping on the validation loss. The
 *  trainer calls none of these: the program driving training feeds them
 *  (the projections of vqj_trainer_context_projections() and
 *  vqj_trainer_target_projections(), the codes of vqj_codebook_forward()).
 *  @{ */

/** Metrics of one sample of projections (docs/diagnostics.md has the
 *  formulas). Set `size` to sizeof(vqj_embedding_metrics) before the call. */
typedef struct vqj_embedding_metrics {
    size_t size;          /**< set by the caller */
    int samples;          /**< n, the rows measured; below 2 there is no estimate and every
                               metric below is 0 */
    float variance;       /**< mean over dimensions of the unbiased (n - 1) variance */
    float isotropy;       /**< smallest / largest covariance eigenvalue (negatives read as
                               0), in [0, 1]; 0 when the covariance is 0 */
    float effective_rank; /**< exp(entropy of the covariance eigenvalues normalized to sum
                               1), in [1, d]; 0 when the covariance is 0 */
    float gaussian_score; /**< 1 / (1 + mean |skewness| + mean |excess kurtosis|) over the
                               dimensions of nonzero variance, in (0, 1]; 0 when none has */
} vqj_embedding_metrics;

/** Largest dimension vqj_embedding_metrics_compute() accepts (its covariance
 *  is d x d doubles and its eigensolver O(d³)). */
#define VQJ_METRICS_MAX_DIM 8192

/** Metrics of x [n x d] (host memory, row-major, one projection a row): the
 *  covariance and its eigenvalues are computed in double on the context's
 *  device (on the host for a device without these ops). n of 0 or 1 is not an error: out->samples is n and every metric
 *  is 0. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL ctx or out, NULL x with
 *  n > 0, n < 0, d outside 1..VQJ_METRICS_MAX_DIM, out->size smaller than
 *  the first published struct), VQJ_ERR_NUMERIC (a non-finite value; the
 *  message names its row and column), VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE
 *  (the eigensolver failed). */
VQJ_API vqj_status vqj_embedding_metrics_compute(vqj_context *ctx, const float *x, int n, int d,
                                                 vqj_embedding_metrics *out);

/** The sample window of one diagnostics interval: the last max_samples
 *  context and target projections (a ring, in step), and the set of codes
 *  used by real tokens since the last reset. Opaque; one thread at a time. */
typedef struct vqj_metrics_window vqj_metrics_window;

/** What a window holds, measured. Set `size` before the call; the nested
 *  structs are filled whole by the library. */
typedef struct vqj_window_metrics {
    size_t size;                   /**< set by the caller */
    vqj_embedding_metrics context; /**< of the context projections in the window */
    vqj_embedding_metrics target;  /**< of the target projections in the window */
    int active_codes;              /**< distinct codes added since the last reset, context
                                        and target codes together */
    int num_codes;                 /**< K, as given at creation */
    float usage_ratio;             /**< active_codes / K; 0 when K is 0 */
    /* Later fields: written only when `size` has room for them. */
    int active_context;            /**< distinct codes of vqj_metrics_window_add_codes() */
    int active_target;             /**< distinct codes of vqj_metrics_window_add_target_codes() */
    float usage_context;           /**< active_context / K; 0 when K is 0 */
    float usage_target;            /**< active_target / K; 0 when K is 0 */
    float perplexity;              /**< exp(entropy of the code histogram of every assignment
                                        added, context and target); 0 with none */
    int dead_codes;                /**< K - active_codes: codes with no assignment */
    int64_t assignments;           /**< codes added (context and target, -1s not counted) */
} vqj_window_metrics;

/** Create an empty window for projections of width `dim`
 *  (1..VQJ_METRICS_MAX_DIM) keeping the last `max_samples` (>= 2) rows of
 *  each, over a codebook of `num_codes` codes (0..65536; 0 for a run without
 *  VQ). On success *out holds a window to destroy with
 *  vqj_metrics_window_destroy() before the context; on failure it is
 *  unchanged. Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_metrics_window_create(vqj_context *ctx, int dim, int max_samples,
                                             int num_codes, vqj_metrics_window **out);

/** Destroy a window. NULL is ignored. */
VQJ_API void vqj_metrics_window_destroy(vqj_metrics_window *window);

/** Append `rows` context projections and the `rows` target projections of
 *  the same examples (host memory, rows x dim each, row-major); once full,
 *  each row replaces the oldest, and more than max_samples rows keep their
 *  last max_samples. rows may be 0. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL
 *  window, NULL arrays with rows > 0, rows < 0), VQJ_ERR_NUMERIC (a
 *  non-finite value: nothing is added). */
VQJ_API vqj_status vqj_metrics_window_add_projections(vqj_metrics_window *window,
                                                      const float *context,
                                                      const float *target, int rows);

/** Count `n` codes of context tokens as assignments of the window (the
 *  `codes` output of vqj_codebook_forward() for real tokens, or
 *  vqj_trainer_codes()). Negative codes (-1: VQ disabled) are skipped.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL window, NULL codes with n > 0, a
 *  code >= K: nothing is counted). */
VQJ_API vqj_status vqj_metrics_window_add_codes(vqj_metrics_window *window,
                                                const int32_t *codes, size_t n);

/** Count `n` codes of target tokens (vqj_trainer_target_codes()), as
 *  vqj_metrics_window_add_codes() counts context ones; usage_ratio,
 *  perplexity and dead_codes cover both. Errors as
 *  vqj_metrics_window_add_codes(). */
VQJ_API vqj_status vqj_metrics_window_add_target_codes(vqj_metrics_window *window,
                                                       const int32_t *codes, size_t n);

/** Measure the window (it is not changed: call vqj_metrics_window_reset()
 *  to start the next interval). Errors as vqj_embedding_metrics_compute(),
 *  and VQJ_ERR_INVALID_ARGUMENT for out->size too small. */
VQJ_API vqj_status vqj_metrics_window_compute(vqj_metrics_window *window,
                                              vqj_window_metrics *out);

/** Rows of projections the window holds now (0..max_samples); 0 for NULL. */
VQJ_API int vqj_metrics_window_rows(const vqj_metrics_window *window);

/** Empty the window: projections and codes. NULL is ignored. */
VQJ_API void vqj_metrics_window_reset(vqj_metrics_window *window);

/** Health thresholds of the seed's runs (docs/diagnostics.md), and the warning
 *  level of VQ usage from the seed's monitoring script. */
#define VQJ_HEALTH_VQ_USAGE_ALERT 0.08f     /**< alert: usage below */
#define VQJ_HEALTH_VQ_USAGE_WARN 0.12f      /**< warn: usage below */
#define VQJ_HEALTH_CONTEXT_RANK_ALERT 3.0f  /**< alert: context effective rank below */
#define VQJ_HEALTH_CONTEXT_RANK_WARN 5.0f   /**< warn: context effective rank below */
#define VQJ_HEALTH_TARGET_RANK_ALERT 5.0f   /**< alert: target effective rank below */
#define VQJ_HEALTH_TARGET_RANK_WARN 10.0f   /**< warn: target effective rank below */
#define VQJ_HEALTH_VAL_RISING_EPOCHS 3      /**< alert: validation loss rose this many
                                                 epochs in a row */
/** Abort criteria of the seed's runs (docs/diagnostics.md). */
#define VQJ_ABORT_VQ_USAGE 0.08f            /**< usage below this ... */
#define VQJ_ABORT_VQ_AFTER_EPOCH 15         /**< ... in an epoch after this one */
#define VQJ_ABORT_CONTEXT_RANK 2.0f         /**< context effective rank below */
#define VQJ_ABORT_TARGET_RANK 4.0f          /**< target effective rank below */
#define VQJ_ABORT_VAL_JUMP 2.0f             /**< validation loss up by more than this in
                                                 one epoch */
#define VQJ_ABORT_PLATEAU_EPOCHS 20         /**< epochs without improvement */

/** What the health checks look at. Fill with vqj_health_input_default(),
 *  then set the fields you have. The library only reads it. */
typedef struct vqj_health_input {
    size_t size;            /**< sizeof(vqj_health_input) */
    const float *val_loss;  /**< validation loss per epoch, oldest first; default NULL */
    int epochs;             /**< entries of val_loss; default 0 */
    int epoch;              /**< the current epoch, counted from 1 as the seed's logs do;
                                 0 (default): unknown, the VQ-collapse abort is not applied */
    int have_vq;            /**< vq_usage is measured; default 0 (e.g. a run without VQ) */
    float vq_usage;         /**< distinct codes / K of the latest diagnostics interval */
    int have_embedding;     /**< the two ranks are measured; default 0 */
    float context_rank;     /**< latest context effective rank */
    float target_rank;      /**< latest target effective rank */
    float min_delta;        /**< the plateau criterion counts a loss as an improvement when
                                 below the best so far minus this; default 0; finite, >= 0 */
} vqj_health_input;

/** Fill `in` with the defaults (no data). NULL is ignored. */
VQJ_API void vqj_health_input_default(vqj_health_input *in);

/** How a check came out; the values are the `vqjepa monitor` exit statuses. */
typedef enum vqj_health_level {
    VQJ_HEALTH_OK = 0,
    VQJ_HEALTH_WARN = 1,
    VQJ_HEALTH_ALERT = 2
} vqj_health_level;

/** One check. `name` is static ("vq_usage", "context_rank", "target_rank",
 *  "val_loss_trend", "abort_vq_collapse", "abort_embedding_collapse",
 *  "abort_val_loss_jump", "abort_val_loss_plateau"); `message` is one line
 *  giving the value and the threshold it was compared with. */
typedef struct vqj_health_check {
    const char *name;
    vqj_health_level level;
    char message[160];
} vqj_health_check;

/** Most checks vqj_health_evaluate() writes. */
#define VQJ_HEALTH_MAX_CHECKS 8

/** Run the health checks and, as checks of their own, the abort criteria,
 *  in the order listed on vqj_health_check, skipping those without data
 *  (the VQ ones without have_vq, the rank ones without have_embedding, the
 *  validation ones without epochs). A metric that is NaN fails its check.
 *  Writes *count checks to checks[0..]. Errors: VQJ_ERR_INVALID_ARGUMENT
 *  (NULL in, count, or checks with cap > 0; in->size smaller than the first
 *  published struct; epochs < 0; NULL val_loss with epochs > 0; epoch < 0;
 *  min_delta negative or not finite; cap below the number of checks, when
 *  *count is set to that number and nothing else is written), reported
 *  through vqj_last_error(). */
VQJ_API vqj_status vqj_health_evaluate(const vqj_health_input *in, vqj_health_check *checks,
                                       size_t cap, size_t *count);

/** The abort criteria, in the order tried by vqj_health_abort(). */
typedef enum vqj_abort_criterion {
    VQJ_ABORT_NONE = 0,
    VQJ_ABORT_VQ_COLLAPSE = 1,        /**< usage < 8% in an epoch after 15 */
    VQJ_ABORT_EMBEDDING_COLLAPSE = 2, /**< context rank < 2 or target rank < 4 */
    VQJ_ABORT_VAL_LOSS_JUMP = 3,      /**< validation loss up by > 2.0 in one epoch */
    VQJ_ABORT_VAL_LOSS_PLATEAU = 4    /**< no improvement for 20 epochs */
} vqj_abort_criterion;

/** Which abort criterion fires for `in`: the first in vqj_abort_criterion
 *  order, or VQJ_ABORT_NONE (0). `reason` (may be NULL; cap bytes,
 *  NUL-terminated, truncated to fit) receives a one-line explanation, ""
 *  when none fires. Returns -1 for input vqj_health_evaluate() would refuse
 *  (the message is in vqj_last_error() and in `reason`). */
VQJ_API int vqj_health_abort(const vqj_health_input *in, char *reason, size_t cap);

/** Whether early stopping watches a loss (lower is better) or a score. */
typedef enum vqj_early_stopping_mode {
    VQJ_EARLY_STOPPING_MIN = 0,
    VQJ_EARLY_STOPPING_MAX = 1
} vqj_early_stopping_mode;

/** Early stopping state: a plain struct so that checkpoints can save it.
 *  Set it up with vqj_early_stopping_init(); the state fields are then the
 *  library's to change. */
typedef struct vqj_early_stopping {
    size_t size;                  /**< sizeof(vqj_early_stopping); set by init */
    int patience;                 /**< updates without improvement that stop; >= 0 */
    float min_delta;              /**< an improvement beats the best by more than this */
    vqj_early_stopping_mode mode; /**< MIN: lower is better; MAX: higher is better */
    int has_best;                 /**< whether best holds a value yet */
    float best;                   /**< the best value so far */
    int best_epoch;               /**< the epoch given with it */
    int bad_epochs;               /**< updates since the last improvement */
    int updates;                  /**< updates so far */
} vqj_early_stopping;

/** Start early stopping afresh. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL,
 *  patience < 0, min_delta negative or not finite, an unknown mode; es is
 *  unchanged), reported through vqj_last_error(). */
VQJ_API vqj_status vqj_early_stopping_init(vqj_early_stopping *es, int patience,
                                           float min_delta, vqj_early_stopping_mode mode);

/** Record the value of epoch `epoch` (any label; stored as best_epoch when it
 *  improves). It improves when it is the first finite value, or below best -
 *  min_delta (MIN) / above best + min_delta (MAX), strictly; a non-finite
 *  value never improves. *improved (may be NULL) is 1 when it did;
 *  *should_stop (may be NULL) is 1 when, after this update, bad_epochs >= patience
 *  and bad_epochs > 0 (so patience 0 stops at the first update that does not
 *  improve).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL es, a struct init did not fill or
 *  whose settings were made invalid; nothing changes). */
VQJ_API vqj_status vqj_early_stopping_update(vqj_early_stopping *es, int epoch, float value,
                                             int *improved, int *should_stop);
/** @} */

/** @name Checkpoints of weights views (docs/checkpoints.md)
 *  Any weights views to and from one file, in the format and with the
 *  guarantees of vqjepa.h's "Checkpoints" (atomic saves, whole-file checks
 *  before a load writes anything).
 *  @{ */

/** One weights view in a checkpoint: its tensors are stored as
 *  `<prefix><name>` ("encoder." + "feature_mlp.fc1.weight"). `prefix` may
 *  be NULL or "" (the codebook's and the loss's names are already
 *  qualified). Both pointers are borrowed for the call. */
typedef struct vqj_checkpoint_entry {
    const char *prefix;
    vqj_weights *weights;
} vqj_checkpoint_entry;

/** vqj_checkpoint_load() flag: ignore tensors of the file that no entry
 *  asks for (e.g. load only the encoder of a trainer checkpoint). Without
 *  it such a tensor is an error, since it usually means another model
 *  configuration. */
#define VQJ_CHECKPOINT_ALLOW_EXTRA 1u

/** Write every tensor of `num_entries` views to `path` (atomically, see
 *  above), in entry order. `metadata` (may be NULL) is a NULL-terminated
 *  list of key, value string pairs ({"epoch", "3", NULL}) stored in
 *  "__metadata__"; the keys "format", "vqjepa_version" and "checksum" are
 *  the library's. An existing file at `path` is replaced only on success.
 *  The file gets mode 0644.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL ctx or path, a NULL view, views of
 *  another context or given twice, two tensors with one full name, a key
 *  without a value, a reserved or repeated key, text that is not UTF-8),
 *  VQJ_ERR_NUMERIC (a non-finite value: the message names the tensor and
 *  the index; no file is written), VQJ_ERR_IO (the temporary file cannot be
 *  created, written, synced or renamed: the message names the path and the
 *  system's reason; if only the final folder sync fails the new file is
 *  already in place), VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_checkpoint_save(vqj_context *ctx, const char *path,
                                       const vqj_checkpoint_entry *entries, size_t num_entries,
                                       const char *const *metadata);

/** Read `path` into the views: every tensor of every entry must be in the
 *  file as `<prefix><name>` with the view's shape. Everything is checked
 *  before any view is written: on failure every view is unchanged (short of
 *  a read or device error during the final copy, after all checks passed).
 *  The checksum is checked when the file says it was written by this
 *  library ("format" present); other safetensors files of F32 tensors (from
 *  PyTorch, say) load without one. `flags`: 0 or VQJ_CHECKPOINT_ALLOW_EXTRA.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL ctx or path, bad entries or
 *  flags, a tensor missing from the file (except state that later versions
 *  added, such as "loss.queue_ids", which then keeps its value), a shape
 *  that differs from the
 *  view's, a file tensor no entry wants without ALLOW_EXTRA), VQJ_ERR_IO
 *  (cannot open or read), VQJ_ERR_PARSE (too short or truncated, bad header
 *  JSON, bad or overlapping offsets, data left over, a checksum mismatch),
 *  VQJ_ERR_UNSUPPORTED (a dtype other than F32, a newer format),
 *  VQJ_ERR_NUMERIC (a non-finite value in the data), VQJ_ERR_OUT_OF_MEMORY,
 *  VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_checkpoint_load(vqj_context *ctx, const char *path,
                                       const vqj_checkpoint_entry *entries, size_t num_entries,
                                       unsigned flags);
/** @} */

/** @name Configuration, stage-level (docs/config.md)
 *  Each module's params from a configuration, and the run-level settings
 *  of a program driving training.
 *  @{ */

/** Fill a module's params struct from the configuration: fill it with its
 *  *_default() function first (that sets `size`); the fields that size
 *  covers are overwritten. Values shared between modules are made to agree:
 *  object_encoder.hidden_dim is the encoder's, codebook's (dim) and
 *  predictor's hidden size; the encoder's feature_dim follows
 *  tokenizer.max_color_features; object_encoder.relational: false gives 0
 *  relational layers; data.context_window is the predictor's too;
 *  tokenizer.max_objects the loss's; tokenizer.background the trainer's
 *  and (its lowest color) the augmentations'. The results pass the
 *  modules' create-time checks.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, out->size smaller than the first
 *  published struct). */
VQJ_API vqj_status vqj_config_tokenizer_params(const vqj_config *cfg, vqj_tokenizer_params *out);
/** The encoder's params (feature_dim and relational_layers derived as above).
 *  Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_encoder_params(const vqj_config *cfg, vqj_encoder_params *out);
/** The codebook's params (dim = hidden_dim; with the FSQ quantizer
 *  num_embeddings = the product of fsq_levels, FSQ's number of codes).
 *  Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_codebook_params(const vqj_config *cfg, vqj_codebook_params *out);
/** The predictor's params (hidden_dim, context_window, the loss section's
 *  projection). Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_predictor_params(const vqj_config *cfg, vqj_predictor_params *out);
/** The loss's params (projection_dim, max_objects shared). Errors as
 *  vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_loss_params(const vqj_config *cfg, vqj_loss_params *out);
/** The optimizer's params (with the training section's clipping and
 *  schedule). Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_optimizer_params(const vqj_config *cfg, vqj_optimizer_params *out);
/** The trainer's params (background from the tokenizer). Errors as
 *  vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_trainer_params(const vqj_config *cfg, vqj_trainer_params *out);
/** The dataset's params. Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_dataset_params(const vqj_config *cfg, vqj_dataset_params *out);
/** The augmentations' params (background: the tokenizer's lowest
 *  background color). Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_augment_params(const vqj_config *cfg, vqj_augment_params *out);
/** The synthetic generator's params. Errors as vqj_config_tokenizer_params(). */
VQJ_API vqj_status vqj_config_synthetic_params(const vqj_config *cfg, vqj_synthetic_params *out);

/** The run-level settings: what a program driving training needs besides
 *  the module params. Set `size` to sizeof(vqj_run_params) before
 *  vqj_config_run(). Fields are flat (no nested structs) so the struct can
 *  grow by appending. Strings are owned by the config: valid until
 *  vqj_config_destroy(), NULL when unset. */
typedef struct vqj_run_params {
    size_t size;                   /**< set by the caller */
    uint64_t seed;                 /**< seed: for the context; default 123 */
    int epochs;                    /**< training.epochs; default 30 */
    int batch_size;                /**< training.batch_size, examples per micro-batch; default 512 */
    int grad_accum_steps;          /**< training.grad_accum_steps (the trainer's too); default 2 */
    int shuffle;                   /**< data.shuffle: a new order each epoch; default 1 */
    const char *dataset_manifest;  /**< dataset_manifest, a JSONL manifest; default NULL */
    const char *arc_path;          /**< data.arc_path, an ARC task file or folder; default
                                        NULL. Neither set: the synthetic generator */
    float validation_split;        /**< data.validation.split; default 0.02 */
    uint64_t validation_seed;      /**< data.validation.seed; default 13 */
    const char *checkpoint_dir;    /**< training.checkpoint_dir; default "checkpoints" */
    int checkpoint_interval;       /**< training.checkpoint_interval, epochs; default 5 */
    int early_stopping_enabled;    /**< training.early_stopping.enabled; default 1 */
    int early_stopping_patience;   /**< training.early_stopping.patience; default 20 */
    float early_stopping_min_delta; /**< training.early_stopping.min_delta; default 0.01 */
    vqj_early_stopping_mode early_stopping_mode; /**< training.early_stopping.mode; default MIN */
    int diagnostics_enabled;       /**< diagnostics.embedding_metrics.enabled; default 1 */
    int diagnostics_interval;      /**< diagnostics.embedding_metrics.interval, steps; default 200 */
    int diagnostics_max_samples;   /**< diagnostics.embedding_metrics.max_samples; default 4096 */
    vqj_device_kind device;        /**< training.device; default VQJ_DEVICE_CPU */
    int vq_enabled;                /**< object_encoder.vq_enabled (the codebook's too); default 1 */
    int use_target_encoder;        /**< loss.use_target_encoder (the trainer's too); default 1 */
    int logging_enabled;           /**< logging.enabled; default 1 */
    const char *log_dir;           /**< logging.log_dir; default "logs" */
    const char *run_name;          /**< logging.run_name; default "vqjepa" */
    int checkpoint_steps;          /**< training.checkpoint_steps: last.safetensors every this
                                        many optimizer steps, atomically; 0: only at the end and
                                        on Ctrl-C; default 100 */
} vqj_run_params;

/** Fill the run-level settings (set out->size first). Strings point into
 *  the config. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, size too small). */
VQJ_API vqj_status vqj_config_run(const vqj_config *cfg, vqj_run_params *out);
/** @} */

/** @name Inference over caller-made handles
 *  Models over handles the caller made (vqjepa.h's "Inference" says what a
 *  model computes and how it may be shared between threads).
 *  @{ */

/** Create an inference model over trained handles, all made from `ctx`;
 *  they are borrowed, only read, and must outlive the model.
 *   - `tokenizer` (copied; NULL for the defaults) turns grids into objects;
 *     its feature dimension must equal the encoder's feature_dim.
 *   - `encoder` and `codebook` give the codes; `encoder`, `codebook` and
 *     `predictor` (context path) give predictions.
 *   - Grid embeddings come from the target path, as the trainer computes
 *     its targets: `target_encoder` (NULL: `encoder`), the online codebook
 *     (never updated), the grids path of `target_predictor` (NULL:
 *     `predictor`). For a model trained with a target network, pass its EMA
 *     copies (e.g. encoders and predictors loaded from the trainer's
 *     target weights) so that embeddings compare with predictions the way
 *     the loss compared them.
 *  On success *out holds a model the caller destroys with
 *  vqj_model_destroy() before the handles and the context; on failure *out
 *  is unchanged. Errors: VQJ_ERR_INVALID_ARGUMENT (a NULL ctx, encoder,
 *  codebook, predictor or out; a handle of another context; tokenizer
 *  params out of range; sizes that do not fit together: feature_dim,
 *  hidden_dim, the codebook's dim, projection_dim; the message names
 *  them), VQJ_ERR_UNSUPPORTED (tokenizer params from a newer version),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_model_create(vqj_context *ctx, const vqj_tokenizer_params *tokenizer,
                                    vqj_encoder *encoder, vqj_codebook *codebook,
                                    vqj_predictor *predictor, vqj_encoder *target_encoder,
                                    vqj_predictor *target_predictor, vqj_model **out);

/** Another model over the same handles as `model`, tokenizing with
 *  `tokenizer` (which must give the encoder's feature_dim); it borrows
 *  `model`'s handles, so destroy it before `model`. Errors as
 *  vqj_model_create(). */
VQJ_API vqj_status vqj_model_with_tokenizer(const vqj_model *model,
                                            const vqj_tokenizer_params *tokenizer,
                                            vqj_model **out);

/** The tokenizer params of `model` (set out->size first, e.g. with
 *  vqj_tokenizer_params_default()). Errors: VQJ_ERR_INVALID_ARGUMENT (NULL,
 *  out->size not set). */
VQJ_API vqj_status vqj_model_tokenizer_params(const vqj_model *model, vqj_tokenizer_params *out);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* VQJEPA_STAGES_H */
