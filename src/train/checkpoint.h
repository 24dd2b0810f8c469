/* Safetensors checkpoints as the trainer's schema uses them (checkpoint.c,
 * trainer_checkpoint.c). */
#ifndef VQJ_TRAIN_CHECKPOINT_H
#define VQJ_TRAIN_CHECKPOINT_H

#include "core/core.h"

/* vqj_checkpoint_save() with the metadata pairs `meta` (key, value, ...,
 * NULL) and `fn` naming the public call in messages. */
vqj_status vqji_checkpoint_save_meta(vqj_context *ctx, const char *fn, const char *path,
                                     const vqj_checkpoint_entry *entries, size_t n,
                                     const char *const *meta);

/* vqj_checkpoint_load() of a libvqjepa checkpoint that must also hold the
 * decimal counters keys[0 .. num_keys-1] in its metadata, each in
 * [0, max[k]], read into values. Everything is checked before any view is
 * written: on failure nothing changed. */
vqj_status vqji_checkpoint_load_counters(vqj_context *ctx, const char *fn, const char *path,
                                         const vqj_checkpoint_entry *entries, size_t n,
                                         const char *const *keys, const uint64_t *max,
                                         size_t num_keys, uint64_t *values);

#endif
