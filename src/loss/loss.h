/* Internal entry points of the loss handle (docs/losses.md) for the trainer
 * and the tests: the public functions in vqjepa.h wrap these after
 * validating their arguments and moving host data to the device. */
#ifndef VQJ_LOSS_H
#define VQJ_LOSS_H

#include "core/core.h"

/* The vqji_rng stream base of SIGReg's directions; step s uses stream
 * VQJI_SIGREG_STREAM + s of the context seed. */
#define VQJI_SIGREG_STREAM 0x5349475245470000ull /* "SIGREG\0\0" */

/* SIGReg with given directions: `directions` is host memory
 * [P x sigreg_num_slices], unit columns (the public call draws them). Same
 * contract as vqj_loss_sigreg() otherwise; lets the tests feed the
 * reference's directions. */
vqj_status vqji_loss_sigreg_with(vqj_loss *loss, const vqj_tensor *c, const float *directions,
                                 vqj_tensor *dc, float *value);

/* How many times SIGReg drew a set of directions (tests: a zero weight draws
 * none). */
uint64_t vqji_loss_sigreg_draws(const vqj_loss *loss);

/* Relational consistency on device arrays in the packed layout of
 * device.h: `batch` examples of `t` context grids (ctx_* hold batch*t grids,
 * n_ctx tokens) and one target grid each (tgt_*: batch grids, n_tgt
 * tokens); token vectors h [n x d]; dh_* accumulated, NULL to skip. The
 * caller guarantees every grid has at most max_objects objects and that
 * the arrays are consistent; inputs are checked for finiteness here. */
vqj_status vqji_loss_relational_packed(vqj_loss *loss, int batch, int t, int d,
                                       const int32_t *ctx_offsets, const uint8_t *ctx_adj,
                                       const int64_t *ctx_adj_offsets, size_t n_ctx,
                                       const float *h_ctx, float *dh_ctx,
                                       const int32_t *tgt_offsets, const uint8_t *tgt_adj,
                                       const int64_t *tgt_adj_offsets, size_t n_tgt,
                                       const float *h_tgt, float *dh_tgt, float *value);

/* The negatives masked by the last InfoNCE call (tests). */
int64_t vqji_loss_masked(const vqj_loss *loss);

/* The loss's parameters as created (a full, current-size copy). */
const vqj_loss_params *vqji_loss_params(const vqj_loss *loss);

#endif
