/* Thin composites over the device ops that the model code calls
 * (docs/model.md, "Layers"). Built only from dev->ops, so they run on every
 * backend. Like the ops, backward functions ACCUMULATE into gradients. */
#ifndef VQJ_LAYERS_H
#define VQJ_LAYERS_H

#include "device/device.h"

#include <stdint.h>

/* y [n x out] = x [n x in] W^T + b, W [out x in] (PyTorch layout), b [out]
 * or NULL for no bias. y is overwritten. */
void vqji_linear_forward(vqji_device *dev, int n, int in, int out, const float *x,
                         const float *w, const float *b, float *y);

/* dx += dy W (skipped when dx is NULL), dW += dy^T x, db += Σ_rows dy
 * (skipped when db is NULL). */
void vqji_linear_backward(vqji_device *dev, int n, int in, int out, const float *x,
                          const float *w, const float *dy, float *dx, float *dw, float *db);

/* The seed of one dropout site at one training step, from the context seed:
 * distinct (step, site) pairs give unrelated masks, and the same triple
 * always gives the same mask on every device. */
uint64_t vqji_dropout_seed(uint64_t context_seed, uint64_t step, uint32_t site);

#endif
