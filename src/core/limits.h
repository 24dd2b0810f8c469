/* Every integer range the library accepts for a parameter or a size read
 * from an input, stated once. The modules' create-time checks, the
 * configuration's key table (src/config/config.c), the readers and the CLI
 * use these constants; docs/failures.md ("Limits") lists them, and
 * tests/test_limits.c checks that list row by row and checks every
 * configuration key named here at both ends of its range.
 *
 * X(NAME, LO, HI, KEYS, BOUNDS): NAME is in [LO, HI]. KEYS are the
 * configuration keys that set it (comma-separated, "" when none); BOUNDS
 * names what else it bounds (params fields, CLI options, file fields). Each
 * row yields VQJI_LO_NAME and VQJI_HI_NAME (int constants). */
#ifndef VQJ_LIMITS_H
#define VQJ_LIMITS_H

#include "vqjepa.h"

#define VQJI_LIMITS(X)                                                                         \
    X(GRID_SIDE, 1, VQJ_MAX_GRID_SIDE, "",                                                     \
      "grid height and width: ARC task files, JSONL manifests, the tokenizer, augmentations")   \
    X(CONTEXT_WINDOW, 1, 64, "data.context_window", "vqj_dataset_params.context_window")      \
    X(PREDICTOR_CONTEXT_WINDOW, 1, 1024, "", "vqj_predictor_params.context_window")           \
    X(TARGET_OFFSET, 1, 4096, "data.target_offset", "vqj_dataset_params.target_offset")       \
    X(MAX_OBJECTS, 1, 4096, "tokenizer.max_objects",                                           \
      "vqj_tokenizer_params.max_objects, vqj_loss_params.max_objects")                         \
    X(MAX_COLOR_FEATURES, 0, VQJ_NUM_COLORS, "tokenizer.max_color_features",                   \
      "vqj_tokenizer_params.max_color_features")                                               \
    X(FEATURE_DIM, 1, 4096, "", "vqj_encoder_params.feature_dim")                              \
    X(HIDDEN_DIM, 1, 16384, "object_encoder.hidden_dim",                                       \
      "vqj_encoder_params.hidden_dim, vqj_predictor_params.hidden_dim")                        \
    X(RELATIONAL_LAYERS, 0, 64, "object_encoder.relational_layers",                            \
      "vqj_encoder_params.relational_layers")                                                  \
    X(RELATIONAL_HEADS, 1, VQJI_HI_HIDDEN_DIM, "object_encoder.relational_heads",              \
      "vqj_encoder_params.relational_heads (a divisor of hidden_dim)")                         \
    X(NUM_EMBEDDINGS, 1, 65536, "object_encoder.num_embeddings",                               \
      "vqj_codebook_params.num_embeddings, the product of the FSQ levels, the metrics "        \
      "window's num_codes (0 too)")                                                            \
    X(CODEBOOK_DIM, 1, 65536, "", "vqj_codebook_params.dim")                                   \
    X(CODE_DIM, 0, 65536, "object_encoder.code_dim",                                           \
      "vqj_codebook_params.code_dim (0: no projection)")                                       \
    X(FSQ_LEVEL, 2, 256, "object_encoder.fsq_levels", "each of vqj_codebook_params.fsq_levels") \
    X(DEAD_CODE_MAX_PER_STEP, 0, 65536, "object_encoder.dead_code_max_per_step",               \
      "vqj_codebook_params.dead_code_max_per_step (0: no cap)")                                \
    X(NUM_QUANTIZERS, 1, VQJ_MAX_QUANTIZERS, "object_encoder.num_quantizers",                  \
      "vqj_codebook_params.num_quantizers")                                                    \
    X(PROJECTION_DIM, 1, 16384, "loss.projection_dim, model.projection_dim",                   \
      "vqj_predictor_params.projection_dim, vqj_loss_params.projection_dim")                   \
    X(PROJECTION_LAYERS, 1, 16, "loss.projection_layers, model.projection_layers",             \
      "vqj_predictor_params.projection_layers")                                                \
    X(QUEUE_SIZE, 0, 1 << 20, "loss.queue_size", "vqj_loss_params.queue_size")                 \
    X(SIGREG_NUM_SLICES, 1, 65536, "sigreg.num_slices", "vqj_loss_params.sigreg_num_slices")   \
    X(SIGREG_NUM_POINTS, 2, 256, "sigreg.num_points", "vqj_loss_params.sigreg_num_points")     \
    X(GRAD_ACCUM_STEPS, 1, 1024, "training.grad_accum_steps",                                  \
      "vqj_trainer_params.grad_accum_steps")                                                   \
    X(BATCH_SIZE, 1, 1 << 20, "training.batch_size", "vqjepa train --batch")                   \
    X(EPOCHS, 1, 1000000, "training.epochs", "vqjepa train --epochs, a checkpoint's run.epoch") \
    X(CHECKPOINT_INTERVAL, 1, 1000000, "training.checkpoint_interval", "")                     \
    X(CHECKPOINT_STEPS, 0, 1000000000, "training.checkpoint_steps",                            \
      "vqjepa train --checkpoint-steps")                                                       \
    X(EARLY_STOPPING_PATIENCE, 0, 1000000, "training.early_stopping.patience",                 \
      "a checkpoint's run.early_stopping")                                                     \
    X(RANDOM_CROP_RADIUS, 0, VQJ_MAX_GRID_SIDE, "augmentations.random_crop_radius",            \
      "vqj_augment_params.random_crop_radius")                                                 \
    X(METRICS_MAX_SAMPLES, 2, 1 << 24, "diagnostics.embedding_metrics.max_samples",            \
      "vqj_metrics_window_create() max_samples")                                               \
    X(SYNTHETIC_NUM_EXAMPLES, 1, 100000000, "synthetic.num_examples",                          \
      "vqj_synthetic_params.num_examples")                                                     \
    X(SYNTHETIC_SIDE, 4, VQJ_MAX_GRID_SIDE, "synthetic.min_side, synthetic.max_side",          \
      "vqj_synthetic_params.min_side, max_side")                                               \
    X(SYNTHETIC_COLORS, 2, VQJ_NUM_COLORS, "synthetic.min_colors, synthetic.max_colors",       \
      "vqj_synthetic_params.min_colors, max_colors")                                           \
    X(SYNTHETIC_PRIMITIVES, 1, 16, "synthetic.max_primitives",                                 \
      "vqj_synthetic_params.max_primitives")                                                   \
    X(CHECKPOINT_HEADER_BYTES, 0, 100000000, "", "a safetensors file's header length")         \
    X(CHECKPOINT_RANK, 0, 8, "", "a checkpoint tensor's number of dimensions")

#define VQJI_LIMIT_ENUM(name, lo, hi, keys, bounds) VQJI_LO_##name = (lo), VQJI_HI_##name = (hi),
enum { VQJI_LIMITS(VQJI_LIMIT_ENUM) };
#undef VQJI_LIMIT_ENUM

#endif
