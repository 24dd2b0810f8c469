/* Internal view of the encoder (feature MLP + relational layers) and small
 * helpers shared by the model handles (encoder.c, predictor.c). */
#ifndef VQJ_ENCODER_H
#define VQJ_ENCODER_H

#include "core/core.h"
#include "device/tensor.h"
#include "device/device.h"

/* The dropout step counter: every training forward uses the masks of the
 * current step and then advances it. A trainer saves it in checkpoints and
 * restores it so that a resumed run draws the same masks. */
uint64_t vqji_encoder_step(const vqj_encoder *encoder);
void vqji_encoder_set_step(vqj_encoder *encoder, uint64_t step);

/* The encoder's parameters as created (a full, current-size copy). */
const vqj_encoder_params *vqji_encoder_params(const vqj_encoder *encoder);

/* ---- helpers for model handles ---- */

/* The vqji_rng stream of a named tensor (FNV-1a of the name), so every
 * tensor of every module draws its own sequence from the context seed and a
 * module's init does not depend on which other modules exist. */
uint64_t vqji_model_stream(const char *name);

/* Initialise tensor `index` of `w` from the context seed and the tensor's
 * stream: uniform(-bound, bound), normal(0, std), or a constant. */
vqj_status vqji_model_init_uniform(vqj_weights *w, size_t index, float bound);
vqj_status vqji_model_init_normal(vqj_weights *w, size_t index, float std);
vqj_status vqji_model_init_const(vqj_weights *w, size_t index, float value);

#endif
