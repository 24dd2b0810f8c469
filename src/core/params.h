/* Copying a caller's size-prefixed params struct over the defaults: a caller
 * built against an older header passes a smaller size and gets the defaults
 * for the fields it does not know; a larger size from a newer header is
 * accepted when the extra bytes are zero (nothing we do not understand was
 * asked for). */
#ifndef VQJ_PARAMS_H
#define VQJ_PARAMS_H

#include "core/core.h"

#include <stddef.h>
#include <string.h>

/* The first published size of every size-prefixed struct, stated once: the
 * end of the last field it had in 0.1.0. A caller built against that header
 * passes at least this much; fields appended since take their defaults (or,
 * in results, are not written). These never change when a struct grows
 * (docs/api-conventions.md; tests/test_params.c checks each params struct at
 * exactly this size). */
#define VQJI_END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define VQJI_V1_CONTEXT_PARAMS VQJI_END_OF(vqj_context_params, log_level)
#define VQJI_V1_TOKENIZER_PARAMS VQJI_END_OF(vqj_tokenizer_params, respect_colors)
#define VQJI_V1_ENCODER_PARAMS VQJI_END_OF(vqj_encoder_params, relational_dropout)
#define VQJI_V1_CODEBOOK_PARAMS offsetof(vqj_codebook_params, dead_code_threshold)
#define VQJI_V1_PREDICTOR_PARAMS offsetof(vqj_predictor_params, final_activation)
#define VQJI_V1_LOSS_PARAMS offsetof(vqj_loss_params, mask_duplicate_negatives)
#define VQJI_V1_OPTIMIZER_PARAMS VQJI_END_OF(vqj_optimizer_params, min_lr_scale)
#define VQJI_V1_TRAINER_PARAMS offsetof(vqj_trainer_params, ema_update_passes)
#define VQJI_V1_DATASET_PARAMS VQJI_END_OF(vqj_dataset_params, max_examples_per_task)
#define VQJI_V1_SYNTHETIC_PARAMS VQJI_END_OF(vqj_synthetic_params, max_primitives)
#define VQJI_V1_AUGMENT_PARAMS VQJI_END_OF(vqj_augment_params, background)
/* Results the library writes up to the caller's size. */
#define VQJI_V1_LOSS_VALUES VQJI_END_OF(vqj_loss_values, temperature)
#define VQJI_V1_CODEBOOK_STATS offsetof(vqj_codebook_stats, dead_replaced)
#define VQJI_V1_TRAIN_METRICS VQJI_END_OF(vqj_train_metrics, usage_ratio)
#define VQJI_V1_EMBEDDING_METRICS VQJI_END_OF(vqj_embedding_metrics, gaussian_score)
#define VQJI_V1_WINDOW_METRICS VQJI_END_OF(vqj_window_metrics, usage_ratio)
#define VQJI_V1_RUN_PARAMS VQJI_END_OF(vqj_run_params, run_name)
/* vqj_eval_result came after 0.1.0: its first published struct is 0.2's. */
#define VQJI_V1_EVAL_RESULT VQJI_END_OF(vqj_eval_result, code_shared_different)

/* A result struct's `size` (set by the caller) must cover the first
 * published struct, `first_size` bytes; `type` names it in the message. */
static inline vqj_status vqji_result_check(const vqj_context *ctx, size_t size, size_t first_size,
                                           const char *fn, const char *type)
{
    if (size < first_size)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: out->size is %zu, smaller than any published %s (%zu); set it to "
                         "sizeof(%s)",
                         fn, size, type, first_size, type);
    return VQJ_OK;
}

/* Write the result `full` (full_size bytes) into the caller's `out`, up to
 * the caller's size; `size` keeps the caller's value. */
static inline void vqji_result_copy(void *out, const void *full, size_t full_size)
{
    const size_t size = *(const size_t *)out;
    memcpy(out, full, size < full_size ? size : full_size);
    *(size_t *)out = size;
}

/* sizeof() of a struct of the first release whose fields end at `v1`: the
 * end rounded up to the structs' alignment (each starts with a size_t). */
#define VQJI_V1_PADDED(v1) (((v1) + sizeof(size_t) - 1) / sizeof(size_t) * sizeof(size_t))

/* `first_size` is the end of the struct's fields in the first release that
 * had it. A caller of that release passes its sizeof(), which may reach
 * into a field added since (0.1's vqj_codebook_params ends at 44 bytes, is
 * 48 long, and today's dead_code_threshold sits at 44): those padding bytes
 * hold whatever the caller's memory held, so from such a caller only the
 * first release's fields are read. */
static inline vqj_status vqji_params_copy(const vqj_context *ctx, void *dst, size_t dst_size,
                                          const void *src, size_t first_size, const char *what)
{
    size_t src_size = *(const size_t *)src;
    if (src_size < first_size)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.size is %zu, smaller than any published version (%zu); fill the "
                         "struct with its *_default() function",
                         what, src_size, first_size);
    if (src_size > dst_size) {
        const unsigned char *extra = (const unsigned char *)src + dst_size;
        for (size_t i = 0; i < src_size - dst_size; i++)
            if (extra[i])
                return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                                 "%s has fields from a newer libvqjepa (size %zu > %zu) that "
                                 "this version cannot honour",
                                 what, src_size, dst_size);
    }
    size_t copy = src_size < dst_size ? src_size : dst_size;
    if (src_size < dst_size && src_size <= VQJI_V1_PADDED(first_size))
        copy = first_size;
    memcpy(dst, src, copy);
    *(size_t *)dst = dst_size;
    return VQJ_OK;
}

#endif
