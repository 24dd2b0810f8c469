/*
 * libvqjepa - an object-centric, vector-quantized JEPA for ARC grids.
 *
 * This is the stable header: what it declares keeps its meaning for the life
 * of the SONAME (docs/api-conventions.md, "Two tiers"). One-shot entry points
 * come first, in the order a program meets them:
 *  - the context and its error message;
 *  - inference: vqj_model_load() and vqj_model_encode_grid() (context, load,
 *    encode, free: four calls from a checkpoint to the codes of a grid);
 *  - training: a configuration (vqj_config_load()), a trainer made from it in
 *    one call (vqj_trainer_create_from_config()), its steps and checkpoints;
 *  - data: ARC tasks, datasets and evaluation;
 *  - data-parallel training: the communicator.
 * The stage-level calls (tensors, weights views, each module's forward and
 * backward, the optimizer's internals, the trainer's stage calls, run policy
 * such as health checks and early stopping) are in vqjepa_stages.h, which is
 * experimental: outside the SONAME promise, they may change in any release.
 *
 * Conventions (see docs/api-conventions.md):
 *  - every function that can fail returns a vqj_status; VQJ_OK is 0;
 *  - on failure the message is available from vqj_last_error() on the calling
 *    thread, outputs are left unchanged unless documented otherwise, and
 *    nothing is leaked;
 *  - parameter structs are filled by a *_default() function and carry their
 *    own size in their first field, so the library can tell older callers;
 *  - handles are opaque and owned by the caller once created: destroy them
 *    with the matching *_destroy() function (NULL is accepted and ignored).
 */
#ifndef VQJEPA_H
#define VQJEPA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define VQJ_API
#elif defined(__GNUC__) || defined(__clang__)
#define VQJ_API __attribute__((visibility("default")))
#else
#define VQJ_API
#endif

/** @name Version
 *  The library follows semantic versioning; the SONAME carries the major
 *  version. A change of MAJOR is an ABI break, MINOR adds symbols or fields,
 *  PATCH fixes behaviour without changing the interface. @{ */
#define VQJ_VERSION_MAJOR 0
#define VQJ_VERSION_MINOR 2
#define VQJ_VERSION_PATCH 0

/** Release memory the library allocated and handed to the caller (such as
 *  the text of vqj_config_write_yaml()), with the allocator that made it.
 *  NULL is ignored. */
VQJ_API void vqj_free(void *ptr);

/** The version of the library actually loaded, as "MAJOR.MINOR.PATCH".
 *  The string is static; never free it. */
VQJ_API const char *vqj_version(void);
/** @} */

/** Status codes returned by every fallible function. Values are stable. */
typedef enum vqj_status {
    VQJ_OK = 0,                   /**< success */
    VQJ_ERR_INVALID_ARGUMENT = 1, /**< a NULL pointer, a bad size or an out-of-range value */
    VQJ_ERR_OUT_OF_MEMORY = 2,    /**< an allocation failed */
    VQJ_ERR_UNSUPPORTED = 3,      /**< the build or device cannot do this */
    VQJ_ERR_IO = 4,               /**< reading or writing a file failed */
    VQJ_ERR_PARSE = 5,            /**< malformed input data (JSON, YAML, checkpoint) */
    VQJ_ERR_NUMERIC = 6,          /**< a non-finite value where a finite one is needed */
    VQJ_ERR_DEVICE = 7,           /**< the device (GPU runtime, BLAS) reported an error */
    VQJ_ERR_STATE = 8,            /**< the call is not valid in the object's current state */
    VQJ_ERR_INTERNAL = 9          /**< a bug in the library: please report it */
} vqj_status;

/** A short, static, English name for a status ("invalid argument", ...).
 *  Unknown values give "unknown status". Never NULL; never free it. */
VQJ_API const char *vqj_status_string(vqj_status status);

/** @name Context
 *  A context holds the device, the thread count and the seed (error
 *  messages are kept per thread: vqj_last_error()). Every other handle is
 *  created from a context and must be destroyed before it. @{ */

/** Where computation runs. */
typedef enum vqj_device_kind {
    VQJ_DEVICE_CPU = 0, /**< the host CPU, through OpenBLAS */
    VQJ_DEVICE_CUDA = 1 /**< an NVIDIA GPU; needs a build made with `make CUDA=1` */
} vqj_device_kind;

/** Severity passed to a log callback. */
typedef enum vqj_log_level {
    VQJ_LOG_DEBUG = 0,
    VQJ_LOG_INFO = 1,
    VQJ_LOG_WARNING = 2,
    VQJ_LOG_ERROR = 3
} vqj_log_level;

/** A log callback. The library never prints: messages it would print go here.
 *  `message` is valid only during the call. The callback may be called from
 *  any thread that calls into the library with this context. */
typedef void (*vqj_log_fn)(void *user_data, vqj_log_level level, const char *message);

/** Parameters of vqj_context_create(). Fill with vqj_context_params_default(). */
typedef struct vqj_context_params {
    size_t size;             /**< sizeof(vqj_context_params); set by the default function */
    vqj_device_kind device;  /**< default VQJ_DEVICE_CPU */
    int device_index;        /**< which GPU for VQJ_DEVICE_CUDA; default 0 */
    int num_threads;         /**< CPU threads; 0 (default) means all online cores */
    uint64_t seed;           /**< seed of every random choice made through this context; default 123 */
    vqj_log_fn log_fn;       /**< optional log callback; default NULL (silent) */
    void *log_user_data;     /**< passed to log_fn */
    vqj_log_level log_level; /**< messages below this level are not delivered; default VQJ_LOG_INFO */
} vqj_context_params;

/** An opaque context handle. */
typedef struct vqj_context vqj_context;

/** Fill `params` with the defaults documented on each field. NULL is ignored. */
VQJ_API void vqj_context_params_default(vqj_context_params *params);

/** Create a context. On success *out holds a new context the caller must
 *  destroy with vqj_context_destroy(). On failure *out is set to NULL and the
 *  reason is available from vqj_last_error().
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, a size smaller than the
 *  first published vqj_context_params, num_threads < 0, an unknown device),
 *  VQJ_ERR_UNSUPPORTED (CUDA in a build without it, or no GPU present),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_context_create(const vqj_context_params *params, vqj_context **out);

/** Destroy a context. NULL is ignored. */
VQJ_API void vqj_context_destroy(vqj_context *ctx);

/** The message of the last failed call on the calling thread, whatever its
 *  context: read it right after a call that returned a status other than
 *  VQJ_OK (it is also the only way to read why vqj_context_create() failed).
 *  Messages are kept per thread, so threads sharing a context never see each
 *  other's errors. "" when no call on this thread has failed. The string is
 *  owned by the library and valid until the next call into the library on
 *  this thread; never free it. Never fails. */
VQJ_API const char *vqj_last_error(void);

/** The device this context computes on. */
VQJ_API vqj_device_kind vqj_context_device(const vqj_context *ctx);

/** The number of CPU threads this context uses (after resolving 0). */
VQJ_API int vqj_context_num_threads(const vqj_context *ctx);

/** Whether this build of the library can run on `device` (compiled in). A
 *  CUDA build still needs a GPU at vqj_context_create(). */
VQJ_API int vqj_device_compiled(vqj_device_kind device);
/** @} */

/** @name Grids
 *  Every call that reads ARC data reads grids (docs/tokenizer.md says how a
 *  grid becomes objects).
 *  @{ */

/** Largest accepted height or width of a grid. */
#define VQJ_MAX_GRID_SIDE 256
/** Number of colors; cells hold 0..VQJ_NUM_COLORS-1. */
#define VQJ_NUM_COLORS 10

/** A grid: `height` x `width` cells in row-major order, each a color 0..9.
 *  The library only reads `cells`; the caller owns it. */
typedef struct vqj_grid {
    int height;
    int width;
    const uint8_t *cells;
} vqj_grid;
/** @} */

/** @name Inference for agents (thread-safe)
 *  A vqj_model bundles trained handles for agents: a grid becomes one
 *  discrete code per object plus an embedding, T context grids become a
 *  predicted target embedding, and vqj_latent_distance() compares two
 *  embeddings. Predictions and grid embeddings live in one space (the
 *  InfoNCE target space), so the distance between a prediction and the
 *  embedding of a candidate output grid scores the candidate.
 *
 *  Threads: every vqj_model_* call except create and destroy takes a const
 *  model and may be made from any number of threads at the same time on one
 *  model. Each call borrows a workspace (token batch, activation buffers,
 *  host staging) from a pool inside the model, guarded by a mutex held only
 *  to take or return one; the computation runs without a lock and writes
 *  nothing shared. The pool grows to the largest number of calls in flight
 *  at once (one workspace each, the first made by vqj_model_create()), each
 *  workspace to the largest batch it served; a call that finds no free one
 *  allocates a new one (VQJ_ERR_OUT_OF_MEMORY if that fails). Memory is
 *  released by vqj_model_destroy(). On a device other than the CPU (CUDA:
 *  one queue per context) calls are correct from many threads too, but run
 *  one at a time. On the CPU, give the context num_threads = 1 when many
 *  threads call at once: OpenBLAS's thread count is process-wide, and each
 *  calling thread then runs its own GEMMs. Results do not depend on which
 *  thread or workspace ran a call: they are bit-identical to the same call
 *  made alone. Errors are kept per thread: read them with
 *  vqj_last_error() on the thread that made the call.
 *
 *  A model made by vqj_model_from_trainer() (or over caller-made handles by
 *  vqj_model_create() of vqjepa_stages.h) borrows the handles and reads
 *  their current weights at every call. While any vqj_model_* call is in
 *  flight, nothing may change them:
 *  no training forward or backward, optimizer or trainer step, EMA,
 *  vqj_weights_write(), checkpoint load or destroy. Between calls they may
 *  change (e.g. training continues, then inference resumes). The handles'
 *  own calls with training = 0 use the handles' own buffers, not the
 *  model's, so they may run during model calls (one thread at a time per
 *  handle, as always). vqj_model_create() and vqj_model_destroy() must not
 *  overlap any other call on the same model.
 *  @{ */

/** An opaque inference model over borrowed handles. */
typedef struct vqj_model vqj_model;

/** Load a model from a trainer checkpoint (vqj_trainer_save() with its
 *  configuration, as `vqjepa train` writes them): the configuration stored
 *  in the file gives every size, the file the weights of the online
 *  encoder, codebook and predictor and of the target network (when the
 *  configuration has one). No optimizer, loss or trainer is built. The
 *  model owns its handles and computes on `ctx`'s device; destroy it with
 *  vqj_model_destroy(). An agent needs four calls:
 *      vqj_context_create(&cp, &ctx);
 *      vqj_model_load(ctx, "run/best.safetensors", &model);
 *      vqj_model_encode_grid(model, &grid, codes, &n, embedding);
 *      vqj_model_destroy(model);  (then vqj_context_destroy(ctx))
 *  On failure *out is unchanged. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL; a
 *  file without "config" metadata), those of vqj_checkpoint_load() (the
 *  file is checked whole, shapes included) and of vqj_config_parse(). */
VQJ_API vqj_status vqj_model_load(vqj_context *ctx, const char *path, vqj_model **out);

/** Destroy a model and its workspaces, and the handles it owns (those of
 *  vqj_model_load()), not those it borrows. No other call on the model may
 *  be in flight. NULL is ignored. */
VQJ_API void vqj_model_destroy(vqj_model *model);

/** P, the number of floats of an embedding (the predictor's
 *  projection_dim); 0 for NULL. */
VQJ_API int vqj_model_embedding_dim(const vqj_model *model);

/** The tokenizer's max_objects: the most codes a grid gives, and the
 *  capacity a codes buffer needs per grid; 0 for NULL. */
VQJ_API int vqj_model_max_objects(const vqj_model *model);

/** T, the number of context grids vqj_model_predict() takes (the
 *  predictor's context_window); 0 for NULL. */
VQJ_API int vqj_model_context_window(const vqj_model *model);

/** K, the codebook size: codes are in 0..K-1 (residual and grouped codes:
 *  K codes at each level of each group); 0 for NULL. */
VQJ_API int vqj_model_num_codes(const vqj_model *model);

/** Encode one grid. Thread-safe (see the group's notes).
 *   - `codes` (may be NULL; capacity vqj_model_max_objects()): the code of
 *     each object, in tokenizer order (largest area first, ties by first
 *     cell in row-major order; docs/tokenizer.md), from the online encoder
 *     and the codebook without dropout or codebook update; entries past the
 *     object count are set to -1, and every code is -1 when the codebook
 *     was created with enabled = 0. With residual or grouped codes this is
 *     the first group's first-level code (vqj_model_encode_grid_levels()
 *     gives them all).
 *   - `num_objects` (may be NULL): the object count, 0..max_objects.
 *   - `embedding` (may be NULL; P floats): the grid's unit-length
 *     projection by the target path (see vqj_model_create()), comparable
 *     with vqj_model_predict() through vqj_latent_distance(). A grid with no
 *     object (all background) gives 0 objects, no codes, and the embedding
 *     normalize(head(0)): the projection of the zero grid vector, one fixed
 *     vector for every empty grid (zero only if head(0) is exactly zero).
 *  The results equal, bit for bit, vqj_tokenize() of the grid alone,
 *  vqj_encoder_forward() and vqj_codebook_forward() with training = 0, and
 *  vqj_predictor_forward_grids() on the same handles. On failure no output
 *  is written. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL model or grid; a side
 *  of 0 or above VQJ_MAX_GRID_SIDE, or a color outside 0..9: the message
 *  names the cell), VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_model_encode_grid(const vqj_model *model, const vqj_grid *grid,
                                         int32_t *codes, size_t *num_objects, float *embedding);

/** The number of codes per object, G L: num_quantizers levels L for
 *  residual codes (VQJ_QUANTIZER_RESIDUAL, else 1) times num_groups G;
 *  1 for plain codes; 0 for NULL. */
VQJ_API int vqj_model_num_quantizers(const vqj_model *model);

/** Encode one grid's codes with every level and group (docs/model.md,
 *  "Residual codes", "Grouped codes"); L below is vqj_model_num_quantizers(),
 *  the G L codes of an object, group by group, each group's levels in order.
 *  Thread-safe.
 *   - `codes` (may be NULL; capacity vqj_model_max_objects()): each
 *     object's code as one mixed-radix index c_1 K^(L-1) + c_2 K^(L-2) + ...
 *     + c_L (the first code most significant), -1 where K^L does not fit
 *     in 63 bits; with one code this is the code of
 *     vqj_model_encode_grid().
 *   - `level_codes` (may be NULL; capacity max_objects * L): object i's
 *     l-th code (0..K-1) at level_codes[i * L + l].
 *   - `num_objects` (may be NULL): the object count.
 *  Entries past the object count are -1, and every code is -1 when the
 *  codebook was created with enabled = 0 (VQ disabled). vqj_model_encode_grid()
 *  gives the first code c_1 (the first group's first level). Errors as vqj_model_encode_grid(). */
VQJ_API vqj_status vqj_model_encode_grid_levels(const vqj_model *model, const vqj_grid *grid,
                                                int64_t *codes, int32_t *level_codes,
                                                size_t *num_objects);

/** Encode `num_grids` grids in one batch (cheaper per grid than single
 *  calls: one pass through each layer). Grid g's codes go to
 *  codes[g * max_objects ...] (capacity num_grids * max_objects), its count
 *  to num_objects[g] and its embedding to embeddings[g * P ...]; each may
 *  be NULL. Values are those of the stage calls on the same batch; a grid's
 *  codes and embedding may differ from a single vqj_model_encode_grid() of
 *  it in the last bits (BLAS blocks a batch differently), not otherwise.
 *  num_grids = 0 does nothing. Thread-safe. Errors as
 *  vqj_model_encode_grid() (the message names the bad grid's index), and
 *  VQJ_ERR_INVALID_ARGUMENT for more than 2^24 grids. */
VQJ_API vqj_status vqj_model_encode_grids(const vqj_model *model, const vqj_grid *grids,
                                          size_t num_grids, int32_t *codes,
                                          size_t *num_objects, float *embeddings);

/** Predict the target embedding of one example from its context grids,
 *  oldest first: `num_grids` must be vqj_model_context_window(). The online
 *  context path: encoder and codebook (training = 0), grid means, the
 *  predictor's aggregator and head, L2-normalized: P floats in `embedding`,
 *  bit-identical to vqj_predictor_forward_context() after the same stage
 *  calls. Thread-safe. On failure `embedding` is not written. Errors:
 *  VQJ_ERR_INVALID_ARGUMENT (NULL model, context or embedding; num_grids
 *  not T; a bad grid, named by its index), VQJ_ERR_OUT_OF_MEMORY,
 *  VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_model_predict(const vqj_model *model, const vqj_grid *context,
                                     size_t num_grids, float *embedding);

/** Predict `batch` examples at once: `context` holds batch * T grids
 *  (example b's are b*T .. b*T+T-1), `embeddings` receives batch * P
 *  floats. As for vqj_model_encode_grids(), results may differ from single
 *  calls in the last bits. batch = 0 does nothing. Thread-safe. Errors as
 *  vqj_model_predict(). */
VQJ_API vqj_status vqj_model_predict_batch(const vqj_model *model, const vqj_grid *context,
                                           size_t batch, float *embeddings);

/** The latent distance between two embeddings of `dim` floats: the squared
 *  Euclidean distance of the two L2-normalized vectors,
 *  || a/|a| - b/|b| ||^2 = 2 - 2 cos(a, b), in [0, 4]: 0 for vectors with
 *  the same direction (exactly 0 for equal inputs), 2 for orthogonal ones,
 *  4 for opposite ones; symmetric (exactly) and invariant to positive
 *  scaling of either vector. A zero vector stays zero when normalized (as
 *  in the predictor), so its distance to any unit vector is 1. Computed in
 *  double, rounded once to float. Needs no model and is thread-safe; errors
 *  are read with vqj_last_error(). Errors: VQJ_ERR_INVALID_ARGUMENT (a NULL
 *  pointer, dim < 1), VQJ_ERR_NUMERIC (a NaN or infinite element, named);
 *  *out is unchanged on failure. */
VQJ_API vqj_status vqj_latent_distance(const float *a, const float *b, int dim, float *out);
/** @} */

/** @name Configuration files (docs/config.md)
 *  Every setting of a run in one object, read from YAML in the layout of the
 *  reference system's files: sections seed, dataset_manifest, data,
 *  tokenizer, object_encoder, model, optimizer, training, augmentations,
 *  loss, sigreg, invariance, relational_loss, logging, diagnostics, plus
 *  this library's synthetic. The built-in defaults are the seed's "gentle"
 *  run (docs/defaults.md), which are also the defaults of every
 *  *_params_default() function; a file overrides the keys it sets.
 *
 *  Keys of the reference system this library does not implement
 *  (model.type, training.num_workers, pre_tokenized.*, ...) and unknown keys
 *  are accepted and each is named in one VQJ_LOG_WARNING message through
 *  the context's log callback ("FILE:LINE: key training.num_workers is not
 *  implemented and is ignored"). So is training.device: cuda in a build
 *  without CUDA, which then resolves to cpu. Only vqj_config_set()
 *  changes a config once made: any number of threads may call the getters
 *  at the same time, but not while it runs.
 *  @{ */

/** An opaque configuration, owned by the caller. */
typedef struct vqj_config vqj_config;

/** A configuration holding the built-in defaults. On success *out holds a
 *  config the caller destroys with vqj_config_destroy() (before the
 *  context); on failure *out is unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_config_default(vqj_context *ctx, vqj_config **out);

/** Read the YAML file at `path` over the defaults. Ownership as
 *  vqj_config_default(). Warnings (ignored keys) go to the log callback.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL; a value of the wrong type, out
 *  of range or not in its set: "PATH:LINE: training.epochs is 0; it must be
 *  in [1, 1000000]", "PATH:LINE: optimizer.name is sgd; it must be one of
 *  adam or adamw"; a key given twice; rules between keys such as
 *  relational_heads dividing hidden_dim), VQJ_ERR_IO ("cannot open PATH:
 *  reason"), VQJ_ERR_PARSE (malformed YAML: "PATH:LINE:COLUMN: problem";
 *  a top level that is not a mapping), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_config_load(vqj_context *ctx, const char *path, vqj_config **out);

/** vqj_config_load() from `length` bytes of YAML text (no NUL needed);
 *  `name` stands for the path in messages (NULL: "<config>"). Ownership as
 *  vqj_config_default(): the caller destroys the config. Errors as
 *  vqj_config_load() without VQJ_ERR_IO. */
VQJ_API vqj_status vqj_config_parse(vqj_context *ctx, const char *text, size_t length,
                                    const char *name, vqj_config **out);

/** Destroy a configuration. NULL is ignored. */
VQJ_API void vqj_config_destroy(vqj_config *cfg);

/** An upper bound (within about 2x) of the bytes a trainer made from the
 *  configuration by vqj_trainer_create_from_config() holds once it trains:
 *  the weights with their gradients, Adam moments and target copy, the
 *  codebook's EMA state and the negatives queue, and the activations of one
 *  micro-batch of training.batch_size examples (three encoder passes over
 *  batch x (context_window + 1) grids x tokenizer.max_objects tokens, the
 *  codebook distances, the loss's logits and relation matrices), as if
 *  every grid held tokenizer.max_objects objects. Nothing is allocated. docs/failures.md lists what it counts.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL). */
VQJ_API vqj_status vqj_config_estimate_bytes(const vqj_config *cfg, uint64_t *bytes);

/** The resolved configuration as YAML in the reference system's layout,
 *  every key the library reads with its value, so that parsing the text
 *  gives the same configuration (without warnings). Floats are written with
 *  a decimal point in any locale. On success *text_out holds a
 *  NUL-terminated string the caller releases with vqj_free() (or the C
 *  library's free(): it is allocated with malloc()); on failure it is
 *  unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_config_write_yaml(const vqj_config *cfg, char **text_out);

/** Set one key of the configuration as a file would: `key` is its dotted
 *  path ("seed", "training.device", "training.epochs"), `value` the YAML
 *  scalar text ("7", "cuda", "1.0e-3", "true", "null"), checked as the
 *  parser checks it, including the rules between keys. Command lines use it
 *  for their overrides (`--seed`, `--device`). Not thread-safe: no other
 *  call may use the configuration at the same time. On failure the
 *  configuration is unchanged. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, an
 *  unknown or ignored key, a value the key refuses: the message is the
 *  parser's, with "vqj_config_set" for the file name),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_config_set(vqj_config *cfg, const char *key, const char *value);
/** @} */

/** @name Trainer (docs/losses.md, docs/optimizer.md)
 *  vqj_trainer_create_from_config() makes a trainer with every module it
 *  needs, plus a target network (an EMA copy of the encoder and the
 *  predictor); vqj_trainer_step() runs a whole training step on a batch.
 *  (vqjepa_stages.h has vqj_trainer_create() over handles the caller made
 *  and owns, and the calls each step is built from; examples/train_stages.c
 *  drives a step stage by stage and gives bit-identical results,
 *  tests/test_trainer.c.)
 *
 *  One step, for a batch of B examples (B*T context grids, B target grids):
 *   1. tokenize the grids (vqj_trainer_step) or take ready tokens;
 *   2. target path, no gradient: the target encoder (no dropout), the codebook
 *      without updating it, the target predictor's grids path -> t [B x P];
 *   3. online path: encoder (training), codebook (training: EMA update and
 *      refresh), predictor context path -> c [B x P];
 *   4. losses with gradients: InfoNCE(c, t), SIGReg(c), relational(q of the
 *      context grids vs the target grids), the codebook's commitment;
 *   5. backward: predictor, codebook (straight-through + commitment);
 *   6. invariance views (weights > 0 and grids given): palette permutation,
 *      horizontal/vertical flip of the grids (re-tokenized) and translation of
 *      the coordinate features, each through the online encoder and the
 *      codebook (updated with VQJ_EMA_PASSES_ALL_ONLINE), forward and backward
 *      one view at a time: vqj_loss_invariance_tokens() of the view's context
 *      grids against the main pass's token vectors (gradient into both; the
 *      original side's goes straight through the codebook into dL/dz) and of
 *      its target grids against the target path's (a constant);
 *      then the encoder's backward of the main pass. (The trainer keeps the
 *      main pass's encoder activations aside while the views run, which the
 *      public calls cannot do: examples/train_stages.c runs without views.)
 *   7. every grad_accum_steps micro-batches: the optimizer step with the
 *      gradient averaged over them, then (only when the step was applied) the
 *      target EMA and the queue push of the cycle's target projections
 *      (every micro-batch's t, oldest first).
 *  A micro-batch whose input, loss or gradient is not finite is skipped:
 *  the parameters, Adam moments, codebook (restored from a copy taken at the
 *  start of the micro-batch), queue, temperature, target network and the
 *  dropout step are as before the call; the gradient accumulated in the
 *  cycle is discarded and the micro-step counter goes back to the cycle's
 *  start (with grad_accum_steps 1: as before the call). Codebook updates of
 *  earlier micro-batches of that cycle stand.
 *  @{ */

/** What one call did. Set `size` before the call. */
typedef struct vqj_train_metrics {
    size_t size;             /**< set by the caller */
    int skipped;             /**< 1: not finite, nothing changed */
    int optimizer_step;      /**< 1: this call ended an accumulation cycle */
    int applied;             /**< 1: and the optimizer updated the parameters */
    int64_t step;            /**< optimizer steps applied so far */
    int64_t micro_step;      /**< micro-batches accepted so far */
    int batch;               /**< B */
    int context_tokens;      /**< real tokens of the context grids */
    float loss;              /**< total of the terms below */
    float infonce, relational, commitment, sigreg;
    float invariance_color, invariance_translation, invariance_symmetry;
    float temperature;       /**< tau after the call */
    float grad_norm;         /**< before clipping, on optimizer steps (else 0) */
    float lr;                /**< the learning rate of the step (or of the next one) */
    float perplexity;        /**< codebook statistics of the online context tokens */
    int active_codes;
    int refreshed;
    float usage_ratio;
    int dead_replaced;       /**< codes re-seeded by dead-code replacement this call */
} vqj_train_metrics;

typedef struct vqj_trainer vqj_trainer;

/** A trainer with every module made from `cfg` in one call: the tokenizer,
 *  encoder, codebook, predictor, loss, optimizer (over the four modules'
 *  weights) and trainer params of the vqj_config_*_params() getters, so
 *  every shared size comes from one place. The modules draw their initial
 *  weights, and the trainer its dropout masks, views and SIGReg directions,
 *  from the configuration's `seed`, not the context's: two trainers made
 *  from one configuration are identical, and a run needs one context. The
 *  trainer owns its modules: vqj_trainer_destroy() destroys them; the
 *  vqj_trainer_encoder() (...) accessors lend them to stage-level callers.
 *  vqj_trainer_save() with a NULL config_yaml records this configuration,
 *  so vqj_model_load() can read the file. Errors are read from `ctx`.
 *  Before it allocates anything it compares vqj_config_estimate_bytes()
 *  with a limit: the environment variable VQJEPA_MEMORY_LIMIT (bytes, with
 *  an optional k, M, G or T suffix, powers of 1024; 0: no limit) or else
 *  8 x the machine's physical memory (the estimate assumes every grid
 *  holds tokenizer.max_objects objects; real grids hold far fewer).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL; the configuration's
 *  training.device is not the context's device; the estimate exceeds the
 *  limit: "the configuration needs about 27.0 GB, more than the limit of
 *  16.0 GB (...): encoder activations 25.1 GB (batch 4096 x 4 grids x 64
 *  objects x hidden 2048 x 3 layers), ..."; a malformed
 *  VQJEPA_MEMORY_LIMIT), and those of the modules' create functions. On
 *  failure *out is unchanged. */
VQJ_API vqj_status vqj_trainer_create_from_config(vqj_context *ctx, const vqj_config *cfg,
                                                  vqj_trainer **out);

/** Destroy a trainer (not the handles it borrows). NULL is ignored. */
VQJ_API void vqj_trainer_destroy(vqj_trainer *trainer);

/** One micro-batch from grids: `context` holds batch * T grids (example b's
 *  are b*T .. b*T+T-1), `targets` batch grids. `metrics` may be NULL.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, batch < 1, a bad grid: the message
 *  names it), VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. A non-finite step is not
 *  an error: it returns VQJ_OK with metrics->skipped = 1. With a
 *  communicator of size N > 1 on the context (vqj_context_set_comm()),
 *  every rank passes the same global batch and trains on its share; the
 *  metrics are the global batch's (docs/distributed.md). Then also
 *  VQJ_ERR_INVALID_ARGUMENT when the ranks' batch sizes differ or batch < N,
 *  and VQJ_ERR_DEVICE when the transport fails. */
VQJ_API vqj_status vqj_trainer_step(vqj_trainer *trainer, const vqj_grid *context,
                                    const vqj_grid *targets, int batch,
                                    vqj_train_metrics *metrics);

/** The losses of a batch without training: no dropout, no codebook update,
 *  no gradient, no queue push, no invariance views (their fields are 0).
 *  With a communicator attached, every rank evaluates the whole batch on
 *  its own (the same result on every rank, no traffic).
 *  Errors as vqj_trainer_step(). */
VQJ_API vqj_status vqj_trainer_evaluate(vqj_trainer *trainer, const vqj_grid *context,
                                        const vqj_grid *targets, int batch,
                                        vqj_train_metrics *metrics);

/** The trainer's counters, for checkpoints: micro-batches accepted and the
 *  encoder's dropout step. Errors: VQJ_ERR_INVALID_ARGUMENT. */
VQJ_API vqj_status vqj_trainer_get_counters(const vqj_trainer *trainer, int64_t *micro_step,
                                            uint64_t *dropout_step);

/** A model over a trainer's handles: its tokenizer, online encoder,
 *  codebook and predictor, and its target network for grid embeddings (the
 *  online handles without one), as the trainer computes its targets. The
 *  model borrows them: it reads the current weights at every call, must be
 *  destroyed before the trainer, and no call may run during a training
 *  step. Errors are those of vqj_model_create(), read from the context the
 *  trainer was made with. */
VQJ_API vqj_status vqj_model_from_trainer(vqj_trainer *trainer, vqj_model **out);
/** @} */

/** @name Checkpoints (docs/checkpoints.md)
 *  Checkpoints are safetensors files: an 8-byte little-endian header length,
 *  a JSON header (F32 tensors with shapes and data offsets, and string
 *  "__metadata__" holding "format" = "vqjepa-checkpoint-1", "vqjepa_version"
 *  and "checksum" = "crc32:xxxxxxxx", the CRC-32 of the data section) padded
 *  with spaces to a multiple of 8 bytes, then the raw little-endian floats.
 *  A save writes `<path>.tmp.XXXXXX` in the same folder, fsyncs it, renames
 *  it over `path` and fsyncs the folder: a crash leaves the old file or the
 *  new one, never a mix, and no temporary file survives a failed call.
 *  A load checks the whole file (header, layout, dtypes, shapes, checksum,
 *  finite values) before it writes any view, so a refused file changes
 *  nothing. Files are streamed through a small buffer, never held whole.
 *  Error messages name the path and, where one is at fault, the tensor.
 *  @{ */

/** Check a checkpoint written by this library without loading it: the
 *  header, the layout, the checksum and that every value is finite (e.g.
 *  to pick the newest intact file to resume from).
 *  Errors: as vqj_checkpoint_load() for the file itself; VQJ_ERR_PARSE also
 *  for a safetensors file without the library's "format" key. */
VQJ_API vqj_status vqj_checkpoint_verify(vqj_context *ctx, const char *path);

/** Copy the metadata value of `key` into buf (capacity bytes, NUL
 *  terminated) and its length, without the NUL, into *length (may be NULL).
 *  buf NULL with capacity 0 only asks for the length. Only the header is
 *  read and checked, not the data or its checksum.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL ctx, path or key; buf NULL with
 *  capacity > 0; no such key; a buffer too small, in which case *length
 *  still receives the length and buf is unchanged), VQJ_ERR_IO,
 *  VQJ_ERR_PARSE (a malformed header, a value holding a NUL byte),
 *  VQJ_ERR_UNSUPPORTED, VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_checkpoint_read_metadata(vqj_context *ctx, const char *path,
                                                const char *key, char *buf, size_t capacity,
                                                size_t *length);

/** Save everything a resumed run needs to continue bit-identically: the
 *  encoder ("encoder."), codebook ("codebook.embedding", EMA count and sum),
 *  predictor ("predictor."), loss ("loss.log_temperature", queue and its
 *  counters), optimizer moments ("optimizer.adam.m.<g>", ".v.<g>"), the
 *  target network ("target_encoder.", "target_predictor.", when there is
 *  one), and in "__metadata__" the counters "trainer.micro_step",
 *  "trainer.dropout_step", "optimizer.steps", "codebook.updates",
 *  "codebook.initialized", the context's "seed" and, when `config_yaml` is
 *  not NULL, "config". Save right after an optimizer step: the gradient of
 *  an unfinished accumulation cycle is not part of a checkpoint.
 *  Errors: VQJ_ERR_STATE (gradient accumulated since the last optimizer
 *  step is pending; nothing is written), otherwise as vqj_checkpoint_save(). */
VQJ_API vqj_status vqj_trainer_save(vqj_trainer *trainer, const char *path,
                                    const char *config_yaml);

/** vqj_trainer_save() with more "__metadata__": `metadata` (may be NULL) is
 *  a NULL-terminated list of key, value pairs, e.g. the epoch or the
 *  early-stopping state of the program driving training, kept in the same
 *  atomic file. Keys of the trainer's own ("trainer.*", "optimizer.*",
 *  "codebook.*", "seed", "config") and of the library are refused.
 *  Errors: as vqj_trainer_save(). */
VQJ_API vqj_status vqj_trainer_save_with_metadata(vqj_trainer *trainer, const char *path,
                                                  const char *config_yaml,
                                                  const char *const *metadata);

/** Restore a trainer and the handles it borrows from a vqj_trainer_save()
 *  file: every tensor listed there and the counters (vqj_codebook_set_progress,
 *  vqj_optimizer_set_steps, vqj_trainer_set_counters); pending gradients
 *  are zeroed. The handles must have the configuration the file was saved
 *  with (the shapes must match). A file saved with another context seed
 *  loads, with a warning to the log, but the run then draws different
 *  dropout masks, views and SIGReg directions. On failure nothing changes.
 *  Errors: as vqj_checkpoint_load() (without ALLOW_EXTRA), and
 *  VQJ_ERR_PARSE for a file without the format key or a missing or
 *  malformed counter. */
VQJ_API vqj_status vqj_trainer_load(vqj_trainer *trainer, const char *path);
/** @} */

/** @name ARC tasks
 *  An ARC-AGI task file: `{"train": [{"input": G, "output": G}, ...],
 *  "test": [{"input": G, "output": G}, ...]}` where G is a rectangle of
 *  integers 0..9 (1..VQJ_MAX_GRID_SIDE a side). "test" may be absent and a
 *  test pair may lack its "output"; other keys are ignored. Indices in error
 *  messages (pair, row, column) count from 0.
 *  @{ */

/** A parsed task; opaque, owned by the caller. */
typedef struct vqj_arc_task vqj_arc_task;

/** Which list of pairs of a task. */
typedef enum vqj_arc_split {
    VQJ_ARC_TRAIN = 0, /**< the demonstration pairs ("train") */
    VQJ_ARC_TEST = 1   /**< the query pairs ("test") */
} vqj_arc_split;

/** Read and parse the task file at `path`; the task's name is the file name
 *  without its directory and ".json". On success *out holds a new task to
 *  destroy with vqj_arc_task_destroy(); on failure *out is unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers), VQJ_ERR_IO (the file
 *  cannot be read; the message names the path and the system's reason),
 *  VQJ_ERR_PARSE (malformed JSON: "PATH:LINE:COLUMN: reason"; a missing or
 *  mistyped field or a bad grid: "PATH: train pair 2 output: row 3 has 5
 *  cells, expected 6" and the like), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_arc_task_load(vqj_context *ctx, const char *path, vqj_arc_task **out);

/** Parse a task from `length` bytes of JSON text (no terminating NUL
 *  needed). `name` becomes the task's name and prefixes error messages in
 *  place of the path; NULL means "". Ownership and errors as
 *  vqj_arc_task_load(), without VQJ_ERR_IO. */
VQJ_API vqj_status vqj_arc_task_parse(vqj_context *ctx, const char *json_text, size_t length,
                                      const char *name, vqj_arc_task **out);

/** Destroy a task and every grid it holds. NULL is ignored. */
VQJ_API void vqj_arc_task_destroy(vqj_arc_task *task);

/** The task's name, owned by the task ("" for NULL). */
VQJ_API const char *vqj_arc_task_name(const vqj_arc_task *task);

/** Number of pairs in a split (0 for NULL or an unknown split). */
VQJ_API size_t vqj_arc_task_num_pairs(const vqj_arc_task *task, vqj_arc_split split);

/** The input grid of pair `i` of a split, owned by the task and valid until
 *  it is destroyed. NULL when `i` or `split` is out of range. */
VQJ_API const vqj_grid *vqj_arc_task_input(const vqj_arc_task *task, vqj_arc_split split,
                                           size_t i);

/** The output grid of pair `i`, as vqj_arc_task_input() (owned by the task,
 *  valid until it is destroyed); also NULL for a test pair given without an
 *  output. */
VQJ_API const vqj_grid *vqj_arc_task_output(const vqj_arc_task *task, vqj_arc_split split,
                                            size_t i);
/** @} */

/** @name Datasets
 *  A dataset is a list of examples: T context grids (T = context_window)
 *  and one target grid. It owns its grids. Sources: ARC task files, JSONL
 *  manifests and the built-in synthetic generator (the default when no data
 *  is given). A dataset is read-only once built, so any number of threads
 *  may read one at the same time.
 *  @{ */

/** Bad-record messages a dataset keeps with skip_bad (the rest are counted). */
#define VQJ_DATASET_MAX_SKIPPED_MESSAGES 8

/** An opaque dataset. */
typedef struct vqj_dataset vqj_dataset;

/** How examples are formed. Fill with vqj_dataset_params_default(). */
typedef struct vqj_dataset_params {
    size_t size;               /**< sizeof(vqj_dataset_params); set by the default function */
    int context_window;        /**< T, context grids per example; default 3; 1..64 */
    int target_offset;         /**< JSONL frames: the target is this many frames after the
                                    window's last; default 1; 1..4096 */
    float validation_split;    /**< share of examples for validation, for callers that pass
                                    it to vqj_dataset_split(); default 0.02; [0, 1) */
    uint64_t validation_seed;  /**< seed for vqj_dataset_split(); default 13 */
    int skip_bad;              /**< 1: count and skip bad records instead of failing;
                                    default 0 */
    int max_examples_per_task; /**< ARC: at most this many examples per task; default 32;
                                    0 = no cap */
} vqj_dataset_params;

/** Fill `params` with the defaults. NULL is ignored. */
VQJ_API void vqj_dataset_params_default(vqj_dataset_params *params);

/** Build a dataset from ARC-AGI task files: `path` is one task file or a
 *  folder whose `*.json` files (not its subfolders) are read in byte order
 *  of their names; or VQJ_ARC_BUILTIN_TRAINING / VQJ_ARC_BUILTIN_EVALUATION;
 *  or a `.jsonl` / `.jsonl.gz` file, read by vqj_dataset_from_jsonl() (one
 *  task a line, or manifest records).
 *
 *  Examples pair a demonstration with a query of the same task, the way ARC
 *  is meant to be read: for T = 3 the context is [demo input, demo output,
 *  query input] and the target the query output. Demos are the task's
 *  "train" pairs; queries are the "train" pairs and the "test" pairs that
 *  have an output. For a task with n train pairs and m test outputs the
 *  candidates are every (demo a, query b) with a != b: n(n-1) + n*m. They are
 *  taken in rounds so that a cap keeps every query and spreads the demos: in
 *  round r = 1, 2, ... each query b (train pairs first, then test pairs, in
 *  file order) gets the r-th train pair after it in cyclic order, skipping
 *  itself (a test query's round r uses train pair r-1); rounds stop at
 *  `max_examples_per_task`. Other context windows use more or fewer grids of
 *  the same sequence: the full sequence is [..., in(a3), out(a3), in(a2),
 *  out(a2), in(a), out(a), in(b)] where a2, a3, ... are the train pairs
 *  following a in cyclic order (skipping b, repeating when the task has too
 *  few), and the context is its last T grids (T = 1: [in(b)], T = 2:
 *  [out(a), in(b)], T = 5: [in(a2), out(a2), in(a), out(a), in(b)]).
 *  Examples of one task form one group for vqj_dataset_split(). With the
 *  defaults the 400 tasks of ARC-AGI-1's training folder give 4431 examples.
 *
 *  On success *out holds a new dataset to destroy with vqj_dataset_destroy();
 *  on failure *out is unchanged. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL
 *  pointers, bad params), VQJ_ERR_IO (a path that cannot be read),
 *  VQJ_ERR_PARSE (a malformed task file, with the message of
 *  vqj_arc_task_load(): "PATH:LINE:COLUMN: ..." or "PATH: train pair 2
 *  output: ..."; or no example at all), VQJ_ERR_OUT_OF_MEMORY. With
 *  skip_bad, a task file that cannot be read or parsed is counted and
 *  skipped instead (vqj_dataset_num_skipped()). */
VQJ_API vqj_status vqj_dataset_from_arc(vqj_context *ctx, const vqj_dataset_params *params,
                                        const char *path, vqj_dataset **out);

/** The ARC-AGI-1 training tasks (400) built into the library, as a `path`
 *  for vqj_dataset_from_arc(), vqj_dataset_from_jsonl() and
 *  vqj_eval_set_load(): the public tasks of github.com/fchollet/ARC-AGI
 *  (Apache-2.0), stored gzip-compressed in the library itself, so they need
 *  no file at run time. The default training data of `vqjepa train`. */
#define VQJ_ARC_BUILTIN_TRAINING "builtin:arc-agi-1/training"
/** The ARC-AGI-1 evaluation tasks (400) built into the library; the default
 *  data of `vqjepa eval`. */
#define VQJ_ARC_BUILTIN_EVALUATION "builtin:arc-agi-1/evaluation"

/** Build a dataset from a JSONL manifest: one JSON object a line (blank
 *  lines are ignored; other keys than those below are ignored), in one of
 *  four forms, where G is a grid as in ARC files. A path ending in ".gz" is
 *  gzip data, inflated in memory (a corrupt or truncated file is
 *  VQJ_ERR_PARSE: "PATH: not valid gzip data at byte N: reason", "PATH:
 *  gzip data ends early ..."); VQJ_ARC_BUILTIN_TRAINING and
 *  VQJ_ARC_BUILTIN_EVALUATION name the built-in tasks.
 *  - `{"train": [...], "test": [...], ...}`: an ARC task (with an optional
 *    "id"), its examples formed as vqj_dataset_from_arc() forms them.
 *  - `{"context": [G, ...], "target": G}`: the context needs at least T
 *    grids; a longer one keeps its last T.
 *  - `{"input": G, "output": G}`: context = the input repeated T times,
 *    target = the output. Such a context gives the context aggregator
 *    nothing to aggregate (a defect of the reference system's
 *    data), so the first such record of a file logs a warning.
 *  - `{"frames": [G, ...]}`: for every s, the window frames[s .. s+T-1] with
 *    target frames[s+T-1+target_offset], as long as that frame exists; a
 *    sequence too short for one window gives no example (not an error).
 *  A record that has the keys of two forms is an error. Examples of one
 *  line form one group for vqj_dataset_split().
 *
 *  Ownership as vqj_dataset_from_arc(). Errors: VQJ_ERR_INVALID_ARGUMENT,
 *  VQJ_ERR_IO ("cannot open PATH: reason"), VQJ_ERR_PARSE ("PATH:LINE: ..."
 *  for a bad record, "PATH:LINE:COLUMN: ..." for a JSON syntax error, or
 *  "PATH: no examples ..." when nothing was formed), VQJ_ERR_OUT_OF_MEMORY.
 *  With skip_bad, bad records are counted and skipped; the messages of the
 *  first VQJ_DATASET_MAX_SKIPPED_MESSAGES are kept and logged as warnings,
 *  followed by one warning with the total. */
VQJ_API vqj_status vqj_dataset_from_jsonl(vqj_context *ctx, const vqj_dataset_params *params,
                                          const char *path, vqj_dataset **out);

/** The synthetic generator's options. Fill with vqj_synthetic_params_default(). */
typedef struct vqj_synthetic_params {
    size_t size;        /**< sizeof(vqj_synthetic_params); set by the default function */
    int num_examples;   /**< default 20000; 1..100000000 */
    uint64_t seed;      /**< default 0; the same seed gives the same examples, byte for byte */
    int min_side;       /**< smallest grid side; default 6; 4..max_side */
    int max_side;       /**< largest grid side; default 14; min_side..VQJ_MAX_GRID_SIDE */
    int min_colors;     /**< fewest colors of an input grid, background included; default 4;
                             2..max_colors */
    int max_colors;     /**< most colors, background included; default 6; min_colors..10 */
    int max_primitives; /**< longest program; default 3; 1..16 */
} vqj_synthetic_params;

/** Fill `params` with the defaults. NULL is ignored. */
VQJ_API void vqj_synthetic_params_default(vqj_synthetic_params *params);

/** Generate a synthetic dataset (the default source when no data is given).
 *
 *  Each example has its own program of 1..max_primitives primitives drawn
 *  from: mirror left-right, mirror up-down, rotate 90/180/270 degrees
 *  clockwise, translate by up to 2 cells (cells moved out are lost), recolor
 *  one color, swap two colors, fill the holes of closed shapes (background
 *  cells not connected to the border) with a color, and gravity in one of 4
 *  directions; no primitive follows itself. Input grids are H x W with H, W
 *  drawn in [min_side, max_side], on background 0, with k colors (k drawn in
 *  [min_colors, max_colors], background included, every one present) in a
 *  few separate objects: rectangles, hollow rectangles, lines, L-shapes and
 *  random blobs. Every grid of an example uses one palette, so no grid has
 *  more than k colors (programs only merge or rename colors).
 *
 *  Examples are formed like ARC examples, not as windows of one program's
 *  frames: a window of frames [x0, x1, x2] -> x3 asks for a step that the
 *  context does not determine, while with the demo/query form the target is
 *  a function of the context that only aggregating it reveals. For T = 3 the
 *  context is [x, P(x), y] and the target P(y), for two inputs x, y and the
 *  example's program P; other T take the last T grids of [..., x2, P(x2), x,
 *  P(x), y] with more inputs, as vqj_dataset_from_arc() does. Example i
 *  depends only on (seed, i) and the size/color/program parameters, so a
 *  larger num_examples extends a smaller one. Each example is its own group
 *  for vqj_dataset_split(). Only `context_window` of `params` is used.
 *
 *  Ownership as vqj_dataset_from_arc(). Errors: VQJ_ERR_INVALID_ARGUMENT
 *  (NULL pointers, a parameter out of its range), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_dataset_synthetic(vqj_context *ctx, const vqj_dataset_params *params,
                                         const vqj_synthetic_params *synthetic,
                                         vqj_dataset **out);

/** Destroy a dataset and its grids. NULL is ignored. */
VQJ_API void vqj_dataset_destroy(vqj_dataset *dataset);

/** Number of examples (0 for NULL). */
VQJ_API size_t vqj_dataset_num_examples(const vqj_dataset *dataset);

/** T, the context grids per example (0 for NULL). */
VQJ_API int vqj_dataset_context_window(const vqj_dataset *dataset);

/** Example `i`: *context points to its T context grids (oldest first) and
 *  *target to its target grid, all owned by the dataset and valid until it is
 *  destroyed. Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, i out of
 *  range; the outputs are unchanged). */
VQJ_API vqj_status vqj_dataset_example(const vqj_dataset *dataset, size_t i,
                                       const vqj_grid **context, const vqj_grid **target);

/** Number of bad records skipped while building (skip_bad), 0 otherwise. */
VQJ_API size_t vqj_dataset_num_skipped(const vqj_dataset *dataset);

/** The message of skipped record k (k < VQJ_DATASET_MAX_SKIPPED_MESSAGES, in
 *  file order), owned by the dataset; NULL when there is none. */
VQJ_API const char *vqj_dataset_skipped_message(const vqj_dataset *dataset, size_t k);

/** Split `all` into new training and validation datasets (copies: `all` may
 *  be destroyed afterwards). Examples keep their order. Whole groups (an ARC
 *  task, a JSONL line, a synthetic program: see the constructors) go to
 *  validation, in an order drawn from `seed`, until it holds at least
 *  round(validation_split * N) examples, so no grid sequence is seen by both
 *  parts; the training part always keeps at least one group, so validation
 *  may be empty (when all has one group or validation_split is 0). The same
 *  (dataset, validation_split, seed) always gives the same split.
 *  On success *train and *validation hold new datasets for the caller to
 *  destroy; on failure both are unchanged. Errors: VQJ_ERR_INVALID_ARGUMENT
 *  (NULL pointers, validation_split outside [0, 1)), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_dataset_split(const vqj_dataset *all, float validation_split,
                                     uint64_t seed, vqj_dataset **train,
                                     vqj_dataset **validation);

/** Write the visiting order of `epoch` to `order` (num_examples entries): a
 *  permutation of 0..N-1 that depends only on (seed, epoch, N).
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers). */
VQJ_API vqj_status vqj_dataset_shuffle(const vqj_dataset *dataset, uint64_t seed, int64_t epoch,
                                       size_t *order);
/** @} */

/** @name Evaluation (docs/evaluation.md)
 *  How well the embeddings retrieve the right output grid, how many codes
 *  are in use, and the same retrieval by untrained and hand-made baselines.
 *
 *  An evaluation set holds queries: each has a context of T grids, ending
 *  with the query's input, and a target (the query's output). From ARC
 *  tasks, every pair with an output (train pairs, then test pairs, in file
 *  order) is a query once; its demonstration is the next pair of the same
 *  task, cyclically (a task of one pair is its own demonstration), and the
 *  context is the last T grids of [..., in(a2), out(a2), in(a), out(a),
 *  in(b)] as in vqj_dataset_from_arc(), a = the next pair, a2 the one
 *  after, skipping the query b. The candidates are the distinct output grids
 *  of the whole set: grids are compared by content (size and cells), so an
 *  output that appears twice is one candidate, and a duplicate of the right
 *  output counts as right.
 *
 *  A query's rank is 1 + the number of candidates other than its target
 *  that score at least as well (ties count against the query). Hard
 *  retrieval adds the query's input grid to its candidates (when it is not
 *  already one; when it equals the target it is the target).
 *  @{ */

/** An opaque evaluation set: owns copies of its grids. */
typedef struct vqj_eval_set vqj_eval_set;

/** An evaluation set from `num_tasks` ARC tasks (only read; they may be
 *  destroyed afterwards), with contexts of `context_window` grids (the
 *  model's T). On success *out holds a set the caller destroys with
 *  vqj_eval_set_destroy(); on failure *out is unchanged.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, context_window outside
 *  1..64, no pair with an output in any task), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_eval_set_from_tasks(vqj_context *ctx, const vqj_arc_task *const *tasks,
                                           size_t num_tasks, int context_window,
                                           vqj_eval_set **out);

/** An evaluation set from a dataset (for instance a validation split):
 *  every example is a query whose context is the example's context (its
 *  last grid is the query input), target its target; the demonstration of
 *  the analogy baseline is context grids T-3 and T-2 (none when T < 3: the
 *  analogy baseline is then the features baseline). Ownership as
 *  vqj_eval_set_from_tasks(). Errors: VQJ_ERR_INVALID_ARGUMENT (NULL
 *  pointers, an empty dataset), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_eval_set_from_dataset(vqj_context *ctx, const vqj_dataset *dataset,
                                             vqj_eval_set **out);

/** An evaluation set from the ARC task file or folder of task files at
 *  `path` (the *.json files, in byte order of their names), or the tasks of
 *  a `.jsonl` / `.jsonl.gz` file (one task a line, named by its "id"), or
 *  built-in data (VQJ_ARC_BUILTIN_EVALUATION), as
 *  vqj_eval_set_from_tasks(). A JSONL file whose first record is not a task
 *  (manifest records, vqj_dataset_from_jsonl()) gives the examples of that
 *  dataset, as vqj_eval_set_from_dataset(). Ownership as vqj_eval_set_from_tasks().
 *  Errors: those of vqj_arc_task_load() and vqj_eval_set_from_tasks(). */
VQJ_API vqj_status vqj_eval_set_load(vqj_context *ctx, const char *path, int context_window,
                                     vqj_eval_set **out);

/** Destroy a set. NULL is ignored. */
VQJ_API void vqj_eval_set_destroy(vqj_eval_set *set);

/** Number of queries (0 for NULL). */
VQJ_API size_t vqj_eval_set_num_queries(const vqj_eval_set *set);

/** Number of candidates: distinct output grids (0 for NULL). */
VQJ_API size_t vqj_eval_set_num_candidates(const vqj_eval_set *set);

/** T, the context grids of a query (0 for NULL). */
VQJ_API int vqj_eval_set_context_window(const vqj_eval_set *set);

/** What scores the candidates. */
typedef enum vqj_eval_method {
    VQJ_EVAL_MODEL = 0,    /**< a model's prediction against its grid embeddings */
    VQJ_EVAL_FEATURES = 1, /**< no network: the query input's feature vector */
    VQJ_EVAL_ANALOGY = 2   /**< feature vectors: input + (demo output - demo input) */
} vqj_eval_method;

/** What an evaluation measured. Set `size` to sizeof(vqj_eval_result)
 *  before the call. Rates are in [0, 1]. */
typedef struct vqj_eval_result {
    size_t size;            /**< set by the caller */
    size_t queries;         /**< queries ranked (the JSON's "pairs") */
    size_t candidates;      /**< distinct output grids */
    double chance;          /**< 1 / candidates: top-1 of a random ranking */
    double top1;            /**< share of queries ranked 1 */
    double top5;            /**< share of queries ranked 1..5 */
    double mean_rank;       /**< mean rank, 1 = always first */
    double hard_top1;       /**< top-1 with the query's input among the candidates */
    double hard_top5;       /**< top-5 of the same */
    size_t grids;           /**< distinct grids of the set (inputs and outputs) */
    size_t objects;         /**< objects of those grids as the model's tokenizer keeps them
                                 (0 for the feature baselines) */
    int num_codes;          /**< K (0 for the feature baselines) */
    int distinct_codes;     /**< codes given to at least one object */
    double code_usage;      /**< distinct_codes / K */
    double code_perplexity; /**< exp(entropy of the codes' shares of the objects), in
                                 [1, distinct_codes]; 0 with no object */
    double identical_pairs; /**< pairs of objects with identical feature vectors */
    double code_same_identical; /**< share of those pairs given one code (1 when none) */
    double code_shared_different; /**< share of pairs of objects whose features differ
                                       that share a code (0 when none) */
} vqj_eval_result;

/** Rank every query of `set` by `model`: the prediction is
 *  vqj_model_predict() of the query's context, a candidate's score its
 *  vqj_model_encode_grids() embedding's cosine with the prediction; and
 *  measure the codes of every object of the set's distinct grids
 *  (vqj_model_encode_grids() codes, with vqj_tokenize() features under the
 *  model's tokenizer params for the consistency rates). Thread-safety as
 *  vqj_model_encode_grids(). Errors: VQJ_ERR_INVALID_ARGUMENT (NULL
 *  pointers, out->size too small, the set's T not the model's), and those
 *  of vqj_model_encode_grids(); *out is unchanged on failure. */
VQJ_API vqj_status vqj_eval_model(const vqj_model *model, const vqj_eval_set *set,
                                  vqj_eval_result *out);

/** Rank every query of `set` by a baseline without network: each grid is a
 *  vector (docs/evaluation.md: color shares, height and width, object
 *  count, the largest objects' areas), the prediction is the query input's
 *  vector (VQJ_EVAL_FEATURES) or input + demo output - demo input
 *  (VQJ_EVAL_ANALOGY), and a candidate's score is minus its Euclidean
 *  distance to the prediction. The code fields of `out` are 0.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL pointers, out->size too small, an
 *  unknown method or VQJ_EVAL_MODEL), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_eval_baseline(vqj_context *ctx, const vqj_eval_set *set,
                                     vqj_eval_method method, vqj_eval_result *out);
/** @} */

/** @name Communicator (data-parallel training, docs/distributed.md)
 *  A communicator joins the processes of one training run. Attached to a
 *  context (vqj_context_set_comm()), it makes vqj_trainer_step() split the
 *  global batch it is given across the ranks and keeps every rank's model,
 *  codebook and queue identical; every rank must then make the same calls in
 *  the same order. Backends: "single" (always built; size 1), "mpi" (a build
 *  with `make MPI=1`) and "nccl" (`make CUDA=1 MPI=1`, CUDA contexts). The
 *  collectives are in vqjepa_stages.h.
 *  @{ */

/** Opaque handle of a communicator. */
typedef struct vqj_comm vqj_comm;

/** Whether this build has the MPI backend (1) or not (0). Never fails. */
VQJ_API int vqj_comm_mpi_available(void);

/** A communicator of one process (rank 0 of 1): every collective copies its
 *  input. `ctx` receives errors and is the device the buffers of
 *  vqj_comm_allreduce() and the others live on. The caller destroys *out
 *  with vqj_comm_destroy(). Errors: VQJ_ERR_INVALID_ARGUMENT (NULL),
 *  VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_comm_create_single(vqj_context *ctx, vqj_comm **out);

/** A communicator over the host's MPI communicator: `mpi_comm` points to an
 *  MPI_Comm (NULL: MPI_COMM_WORLD). MPI must be initialized by the host (the
 *  library never calls MPI_Init here); the library duplicates the
 *  communicator, so its traffic never mixes with the host's, and sets
 *  MPI_ERRORS_RETURN on the duplicate so a failed collective is an error
 *  status, not an abort. With a CUDA context and an NCCL build the float
 *  collectives run over NCCL (one GPU a rank: device_index picks it). The
 *  caller destroys *out with vqj_comm_destroy() before MPI_Finalize.
 *  Collective: every rank of `mpi_comm` calls it. Errors:
 *  VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_UNSUPPORTED (a build without MPI, or MPI
 *  not initialized), VQJ_ERR_DEVICE (MPI or NCCL failed), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_comm_create_mpi(vqj_context *ctx, void *mpi_comm, vqj_comm **out);

/** Like vqj_comm_create_mpi() over MPI_COMM_WORLD, but the library
 *  initializes MPI first (MPI_Init_thread with MPI_THREAD_FUNNELED, `argc`
 *  and `argv` may be NULL) when the host has not, and then finalizes it in
 *  vqj_comm_destroy(). For hosts that do not use MPI themselves. The caller
 *  destroys *out with vqj_comm_destroy(). Errors: as vqj_comm_create_mpi(). */
VQJ_API vqj_status vqj_comm_init_mpi(vqj_context *ctx, int *argc, char ***argv,
                                     vqj_comm **out);

/** Free a communicator (NULL is a no-op); detach it from contexts first.
 *  Finalizes MPI when vqj_comm_init_mpi() initialized it. */
VQJ_API void vqj_comm_destroy(vqj_comm *comm);

/** This process's rank, 0 .. size-1 (0 for NULL). */
VQJ_API int vqj_comm_rank(const vqj_comm *comm);

/** The number of ranks (1 for NULL). */
VQJ_API int vqj_comm_size(const vqj_comm *comm);

/** Attach `comm` to `ctx` (NULL detaches). The communicator is borrowed: it
 *  must outlive its use by the context. From then on vqj_trainer_step() on
 *  this context is data-parallel (docs/distributed.md). Errors:
 *  VQJ_ERR_INVALID_ARGUMENT (NULL ctx). */
VQJ_API vqj_status vqj_context_set_comm(vqj_context *ctx, vqj_comm *comm);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* VQJEPA_H */
