/* The communicator layer (include/vqjepa.h, "Communicator"): collectives
 * over the ranks of a data-parallel run, beside the device layer. Model code
 * calls the vqji_comm_* functions below with the context it works in; with
 * no communicator attached (or one of size 1) they do nothing, so the
 * one-process build computes exactly what it did before. */
#ifndef VQJ_COMM_H
#define VQJ_COMM_H

#include "core/core.h"

#include <stdint.h>

/* The attached communicator's size (1 without one) and this rank (0). */
int vqji_comm_size(const vqj_context *ctx);
int vqji_comm_rank(const vqj_context *ctx);

/* Collectives over buffers in the memory of ctx's device; errors are
 * recorded against ctx. All of them are no-ops (or copies) at size 1. */
vqj_status vqji_comm_allreduce_dev(const vqj_context *ctx, void *buf, size_t count,
                                   vqj_comm_type type, vqj_comm_op op);
/* Rank r contributes counts[r] elements; recv receives them in rank order
 * (sum of counts elements). `send` holds counts[rank] elements. */
vqj_status vqji_comm_allgatherv_dev(const vqj_context *ctx, const void *send, void *recv,
                                    const int64_t *counts, vqj_comm_type type);
vqj_status vqji_comm_broadcast_dev(const vqj_context *ctx, void *buf, size_t count,
                                   vqj_comm_type type, int root);

/* Small control values in host memory (counts, flags, losses). */
vqj_status vqji_comm_allreduce_host(const vqj_context *ctx, void *buf, size_t count,
                                    vqj_comm_type type, vqj_comm_op op);
vqj_status vqji_comm_allgather_host(const vqj_context *ctx, const void *send, size_t count,
                                    void *recv, vqj_comm_type type);
/* As vqji_comm_allgatherv_dev over host memory; `send` may be this rank's
 * place in `recv` (in place). */
vqj_status vqji_comm_allgatherv_host(const vqj_context *ctx, const void *send, void *recv,
                                     const int64_t *counts, vqj_comm_type type);

/* The element counts of all ranks from this rank's `mine` (host, size
 * entries) and their sum; *first is the sum over the ranks before this one. */
vqj_status vqji_comm_counts(const vqj_context *ctx, int64_t mine, int64_t *counts,
                            int64_t *total, int64_t *first);

#endif
