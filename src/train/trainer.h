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
/* The tokenizer params vqj_trainer_step() tokenizes with. */
const vqj_tokenizer_params *vqji_trainer_tokenizer(const vqj_trainer *trainer);
/* Make the trainer own the handles it borrows, the derived context `ctx`
 * they were made in and `config_yaml` (malloc'd; may be NULL), all released
 * by vqj_trainer_destroy() (vqj_trainer_create_from_config()). */
void vqji_trainer_adopt(vqj_trainer *trainer, vqj_context *ctx, char *config_yaml);
/* Whether an accumulation cycle is open: micro-batches have accumulated a
 * gradient that the next optimizer step has not yet applied. */
bool vqji_trainer_cycle_open(const vqj_trainer *trainer);
/* The configuration text given to vqji_trainer_adopt(), or NULL. */
const char *vqji_trainer_config_yaml(const vqj_trainer *trainer);

#endif
