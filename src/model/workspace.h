/* Forward passes on caller-provided workspaces, for inference from many
 * threads over one set of trained handles (src/model/inference.c).
 *
 * A workspace holds every activation buffer one forward pass writes. Each
 * model handle owns one, which its public forward/backward calls use (so
 * they keep the activations for the backward pass, and one thread at a time
 * uses a handle). The functions below run an inference forward on a
 * workspace the caller made instead: they only read the handle (its
 * parameters and weights), never write it, so any number of threads may run
 * them on one handle at the same time, each with its own workspace, as long
 * as nothing changes the handle meanwhile (training, weight writes,
 * destroy). Their results are bit-identical to the handle's public forward
 * with training = 0 on the same input.
 *
 * A workspace is bound to the handle it was created for, which must outlive
 * it; its buffers grow to the largest batch seen and are reused. It is not
 * itself thread-safe: one call at a time per workspace. */
#ifndef VQJ_WORKSPACE_H
#define VQJ_WORKSPACE_H

#include "core/core.h"

/* ---- encoder ---- */
typedef struct vqji_encoder_ws vqji_encoder_ws;

/* Errors: VQJ_ERR_OUT_OF_MEMORY (*out unchanged). */
vqj_status vqji_encoder_ws_create(const vqj_encoder *encoder, vqji_encoder_ws **out);
void vqji_encoder_ws_destroy(vqji_encoder_ws *ws); /* NULL is ignored */

/* vqj_encoder_forward(encoder, tokens, 0, out) on `ws`: no dropout, the
 * handle's step counter and activations untouched. Unlike the handle's own
 * workspace, an inference workspace keeps one block's activations, which
 * every block overwrites in turn (no backward pass follows), and no dropout
 * masks: with the default 3 blocks it needs about a third of the memory.
 * Errors as vqj_encoder_forward(), plus VQJ_ERR_INTERNAL for a workspace
 * of another encoder. */
vqj_status vqji_encoder_forward_ws(const vqj_encoder *encoder, vqji_encoder_ws *ws,
                                   const vqj_tokens *tokens, vqj_tensor *out);

/* A training workspace: like the handle's own (every block's activations
 * and, with dropout, its masks kept for a backward pass). For a trainer
 * that holds two forward passes of one encoder at once: it swaps this in
 * with vqji_encoder_ws_swap(), runs forward and backward calls on it
 * through the public functions, and swaps the first pass back for its
 * backward. Errors: VQJ_ERR_OUT_OF_MEMORY. */
vqj_status vqji_encoder_train_ws_create(const vqj_encoder *encoder, vqji_encoder_ws **out);

/* Exchange the handle's own workspace (its last forward pass) with `ws`, a
 * training workspace of the same encoder. */
void vqji_encoder_ws_swap(vqj_encoder *encoder, vqji_encoder_ws *ws);

/* ---- codebook ---- */
typedef struct vqji_codebook_ws vqji_codebook_ws;

vqj_status vqji_codebook_ws_create(const vqj_codebook *cb, vqji_codebook_ws **out);
void vqji_codebook_ws_destroy(vqji_codebook_ws *ws);

/* vqj_codebook_forward(cb, z, 0, q, codes, stats) on `ws`: nothing in the
 * codebook changes (no EMA, refresh, k-means++, no state for the backward
 * pass). Errors as vqj_codebook_forward(), plus VQJ_ERR_INTERNAL. */
vqj_status vqji_codebook_quantize_ws(const vqj_codebook *cb, vqji_codebook_ws *ws,
                                     const vqj_tensor *z, vqj_tensor *q, int32_t *codes,
                                     vqj_codebook_stats *stats);

/* The number of codes L per token: G groups x the levels of residual codes
 * (1 for plain codes), group by group. */
int vqji_codebook_levels(const vqj_codebook *cb);

/* The per-level codes of the last vqji_codebook_quantize_ws() on `ws` of n
 * tokens into dst [n x L] (row i: token i's codes 1..L); -1 each
 * when VQ is disabled. Errors: VQJ_ERR_OUT_OF_MEMORY, VQJ_ERR_DEVICE. */
vqj_status vqji_codebook_ws_level_codes(const vqji_codebook_ws *ws, int n, int32_t *dst);

/* ---- predictor ---- */
typedef struct vqji_predictor_ws vqji_predictor_ws;

/* An inference workspace: no backward scratch. */
vqj_status vqji_predictor_ws_create(const vqj_predictor *predictor, vqji_predictor_ws **out);
void vqji_predictor_ws_destroy(vqji_predictor_ws *ws);

/* vqj_predictor_forward_context() / _grids() on `ws`. Errors as those,
 * plus VQJ_ERR_INTERNAL. */
vqj_status vqji_predictor_forward_context_ws(const vqj_predictor *predictor,
                                             vqji_predictor_ws *ws, const vqj_tokens *tokens,
                                             const vqj_tensor *token_vectors, vqj_tensor *out);
vqj_status vqji_predictor_forward_grids_ws(const vqj_predictor *predictor,
                                           vqji_predictor_ws *ws, const vqj_tokens *tokens,
                                           const vqj_tensor *token_vectors, vqj_tensor *out);

/* The context a handle was created from (read-only accessors for code that
 * holds const handles). */
vqj_context *vqji_encoder_context(const vqj_encoder *encoder);
vqj_context *vqji_codebook_context(const vqj_codebook *cb);
vqj_context *vqji_predictor_context(const vqj_predictor *predictor);

/* ---- the inference model (src/model/inference.c) ---- */
/* The context and the tokenizer params a model was created with (for
 * src/eval/eval.c, which tokenizes the same grids to compare features). */
vqj_context *vqji_model_context(const vqj_model *model);
const vqj_tokenizer_params *vqji_model_tokenizer(const vqj_model *model);

/* Make `model` own the handles it was created over (vqj_model_load()):
 * vqj_model_destroy() destroys them after the model. Target handles may be
 * NULL. */
void vqji_model_adopt(vqj_model *model, vqj_encoder *encoder, vqj_codebook *codebook,
                      vqj_predictor *predictor, vqj_encoder *target_encoder,
                      vqj_predictor *target_predictor);

#endif
