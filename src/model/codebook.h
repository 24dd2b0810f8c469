/* Internal view of the codebook (docs/model.md, "Codebook") for the trainer:
 * the public API in vqjepa.h is the whole behaviour; this adds what other
 * library parts need without going through host copies. */
#ifndef VQJ_CODEBOOK_H
#define VQJ_CODEBOOK_H

#include "core/core.h"

/* Laplace smoothing of the EMA counts (docs/model.md). */
#define VQJI_CODEBOOK_EPS 1e-5f

/* The parameters as created (a full, current-size copy). */
const vqj_codebook_params *vqji_codebook_params(const vqj_codebook *cb);

/* Device pointer of the codes [K x D], e.g. for a trainer that quantizes
 * without the public tensor round trip. */
const float *vqji_codebook_embedding(const vqj_codebook *cb);

#endif
