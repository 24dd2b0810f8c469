/* The storage behind vqj_tensor and vqj_weights: device memory, allocated
 * and moved through the context's device (tensor.c). Modules above the
 * device layer use these calls rather than the device's ops on the storage. */
#ifndef VQJ_TENSOR_H
#define VQJ_TENSOR_H

#include "core/core.h"

struct vqj_tensor {
    vqj_context *ctx;
    int rows, cols;
    float *data; /* device memory */
    size_t capacity; /* floats */
};

/* Device pointer of a tensor: for model code. */
static inline float *vqji_tensor_data(const vqj_tensor *t) { return t->data; }

/* Set every value of t to 0. */
void vqji_tensor_zero(vqj_tensor *t);
/* Whether every value of t is finite. */
bool vqji_tensor_all_finite(const vqj_tensor *t);
/* Append the rows of src to dst, keeping dst's rows (same width; dst may
 * have 0 rows, or another width, which counts as empty). */
vqj_status vqji_tensor_append_rows(vqj_tensor *dst, const vqj_tensor *src);
/* dst += rows [first, first + rows(dst)) of src (same width). */
void vqji_tensor_add_rows(vqj_tensor *dst, const vqj_tensor *src, int64_t first);

/* A module's named tensors in one device buffer: trainable tensors first (so
 * an optimizer sees one contiguous [num_params] vector and its gradient),
 * then state. Build with vqji_weights_add, then vqji_weights_finalize. */
#define VQJI_WEIGHT_NAME_MAX 64
typedef struct vqji_weight {
    char name[VQJI_WEIGHT_NAME_MAX];
    int ndim;
    int64_t shape[2];
    size_t count;
    size_t offset; /* floats from the start of data */
    int trainable;
    int optional; /* a checkpoint without it still loads; it keeps its value */
} vqji_weight;

struct vqj_weights {
    vqj_context *ctx;
    vqji_weight *items;
    size_t count, capacity;
    size_t num_params; /* trainable floats: data[0 .. num_params-1] */
    size_t total;      /* all floats */
    float *data;       /* device */
    float *grad;       /* device, num_params floats */
};

void vqji_weights_init(vqj_weights *w, vqj_context *ctx);
/* Register a tensor before finalize; returns its index in *index. */
vqj_status vqji_weights_add(vqj_weights *w, const char *name, int64_t rows, int64_t cols,
                            int trainable, size_t *index);
/* Lay out and allocate data and grad (zeroed). */
vqj_status vqji_weights_finalize(vqj_weights *w);
void vqji_weights_release(vqj_weights *w);
/* Device pointers of tensor `index` and of its gradient (NULL for state). */
float *vqji_weights_data(const vqj_weights *w, size_t index);
float *vqji_weights_grad(const vqj_weights *w, size_t index);
vqj_status vqji_weights_find(const vqj_weights *w, const char *name, size_t *index);
void vqji_weights_zero_grad(vqj_weights *w);
/* Device pointer of the whole gradient, num_params floats. */
static inline float *vqji_weights_grads(const vqj_weights *w) { return w->grad; }
/* Copy every value of w (trainable and state) into `copy`, reshaped to
 * [total x 1], and back: a snapshot for undoing an update. */
vqj_status vqji_weights_save(const vqj_weights *w, vqj_tensor *copy);
void vqji_weights_restore(vqj_weights *w, const vqj_tensor *copy);
/* The first `count` (<= num_params) gradient values to and from host memory. */
vqj_status vqji_weights_grad_download(const vqj_weights *w, float *host, size_t count);
vqj_status vqji_weights_grad_upload(vqj_weights *w, const float *host, size_t count);

#endif
