/*
 * libvqjepa - an object-centric, vector-quantized JEPA for ARC grids.
 *
 * This is the one public header. Conventions (see docs/api-conventions.md):
 *  - every function that can fail returns a vqj_status; VQJ_OK is 0;
 *  - on failure the message is available from vqj_context_last_error() (or
 *    vqj_last_error() for calls made without a context), outputs are left
 *    unchanged unless documented otherwise, and nothing is leaked;
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
#define VQJ_VERSION_MINOR 1
#define VQJ_VERSION_PATCH 0

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
 *  A context holds the device, the thread count, the seed and the last error
 *  message. Every other handle is created from a context and must be
 *  destroyed before it. @{ */

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

/** The message of the last failed call made with `ctx` on the calling thread,
 *  or "" when that call succeeded or none failed. Messages are kept per
 *  thread, so threads sharing a context never see each other's errors. The
 *  string stays valid until the next call into the library on this thread. */
VQJ_API const char *vqj_context_last_error(const vqj_context *ctx);

/** The message of the last failed call on the calling thread, whatever its
 *  context (the only way to read why vqj_context_create() failed). */
VQJ_API const char *vqj_last_error(void);

/** The device this context computes on. */
VQJ_API vqj_device_kind vqj_context_device(const vqj_context *ctx);

/** The number of CPU threads this context uses (after resolving 0). */
VQJ_API int vqj_context_num_threads(const vqj_context *ctx);

/** The seed this context was created with. */
VQJ_API uint64_t vqj_context_seed(const vqj_context *ctx);

/** Whether this build of the library can run on `device` (compiled in). A
 *  CUDA build still needs a GPU at vqj_context_create(). */
VQJ_API int vqj_device_compiled(vqj_device_kind device);
/** @} */

/** @name Tensors
 *  A tensor is a rows x cols float32 matrix in the context's device memory
 *  (host memory on the CPU). Stage-by-stage training passes tensors between
 *  the encoder, codebook, predictor and loss without copies to the host.
 *  @{ */
typedef struct vqj_tensor vqj_tensor;

/** Create a rows x cols tensor, zero-filled. rows may be 0.
 *  Errors: VQJ_ERR_INVALID_ARGUMENT (NULL, negative sizes), VQJ_ERR_OUT_OF_MEMORY. */
VQJ_API vqj_status vqj_tensor_create(vqj_context *ctx, int rows, int cols, vqj_tensor **out);
/** Destroy a tensor. NULL is ignored. */
VQJ_API void vqj_tensor_destroy(vqj_tensor *tensor);
/** Change the shape; the storage grows when needed and the contents are then
 *  unspecified. Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_OUT_OF_MEMORY (the
 *  tensor is unchanged). */
VQJ_API vqj_status vqj_tensor_reshape(vqj_tensor *tensor, int rows, int cols);
VQJ_API int vqj_tensor_rows(const vqj_tensor *tensor);
VQJ_API int vqj_tensor_cols(const vqj_tensor *tensor);
/** Copy the rows*cols values to or from host memory; `count` must equal
 *  rows*cols. Errors: VQJ_ERR_INVALID_ARGUMENT, VQJ_ERR_DEVICE. */
VQJ_API vqj_status vqj_tensor_read(const vqj_tensor *tensor, float *dst, size_t count);
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

/** @name Grids and the object tokenizer (DESIGN.md section 2)
 *  @{ */

/** Largest accepted height or width of a grid. */
#define VQJ_MAX_GRID_SIDE 256
/** Number of colors; cells hold 0..VQJ_NUM_COLORS-1. */
#define VQJ_NUM_COLORS 10
/** Number of base features per object before the color-count slots. */
#define VQJ_BASE_FEATURES 13

/** A grid: `height` x `width` cells in row-major order, each a color 0..9.
 *  The library only reads `cells`; the caller owns it. */
typedef struct vqj_grid {
    int height;
    int width;
    const uint8_t *cells;
} vqj_grid;

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
 *  across calls to vqj_tokenize(): buffers grow as needed and are kept.
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

#ifdef __cplusplus
}
#endif

#endif /* VQJEPA_H */
