/* Internal view of the trainer for code that saves and restores it
 * (checkpoints) or reports on it (diagnostics). */
#ifndef VQJ_TRAINER_H
#define VQJ_TRAINER_H

#include "core/core.h"

typedef struct vqji_trainer_parts {
    vqj_encoder *encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor;
    vqj_loss *loss;
    vqj_optimizer *optimizer;
    vqj_encoder *target_encoder;     /* NULL without a target network */
    vqj_predictor *target_predictor; /* NULL without a target network */
} vqji_trainer_parts;

/* The handles a trainer borrows and the target network it owns. */
vqji_trainer_parts vqji_trainer_get_parts(const vqj_trainer *trainer);
const vqj_trainer_params *vqji_trainer_params(const vqj_trainer *trainer);

#endif
