/* Internal view of the predictor (grid pooling, context aggregation,
 * projection head). */
#ifndef VQJ_PREDICTOR_H
#define VQJ_PREDICTOR_H

#include "core/core.h"

/* The predictor's parameters as created (a full, current-size copy). */
const vqj_predictor_params *vqji_predictor_params(const vqj_predictor *predictor);

/* The grid vectors r [G x D] of the last forward (device memory, valid
 * until the next forward): the relational loss and diagnostics read them. */
const float *vqji_predictor_grid_vectors(const vqj_predictor *predictor);

/* The aggregated context vectors c [B x D] of the last context forward
 * (device memory, valid until the next forward). */
const float *vqji_predictor_context_vectors(const vqj_predictor *predictor);

#endif
