/* The CPU backend's thread pool: the context's num_threads run the non-GEMM
 * kernels (OpenBLAS runs the GEMMs on its own threads). In the style of
 * ggml's: the caller takes part, num_threads - 1 workers wait for work, and
 * every parallel loop cuts its index range into contiguous chunks (a few per
 * thread, at fixed boundaries) that the threads claim one at a time, so a
 * thread the OS runs late leaves its share to the others.
 *
 * Determinism: the kernels split work only where each output element is
 * computed by exactly one thread with the same operations in the same order
 * as the serial loop (rows, grids, columns of a column sum, codes of a
 * scatter). So results are bit-identical for every thread count and every
 * assignment of chunks to threads, and a parallel loop may run serially
 * (tiny ranges, or while another thread of the program holds the pool)
 * without changing a bit. */
#ifndef VQJI_THREADPOOL_H
#define VQJI_THREADPOOL_H

#include "core/core.h"

#include <stddef.h>

typedef struct vqji_pool vqji_pool;

/* The body of a parallel loop: handle indices [begin, end) of the range. */
typedef void (*vqji_range_fn)(void *arg, size_t begin, size_t end);

/* A pool of num_threads threads in all (the caller included): num_threads
 * <= 1 makes one with no workers, on which every loop runs serially. */
vqj_status vqji_pool_create(const vqj_context *ctx, int num_threads, vqji_pool **out);
void vqji_pool_destroy(vqji_pool *pool);

/* Run fn over [0, n): with t threads, in c = min(4 t, n) chunks, chunk i
 * being [n i / c, n (i + 1) / c) with each boundary rounded down to a
 * multiple of `align`. Serially, in one call fn(arg, 0, n), when
 * n < 2 min_per_thread, when the pool has one thread, or when another thread
 * is using the pool. pool may be NULL (serial). Returns when all is done. */
void vqji_parallel_for(vqji_pool *pool, size_t n, size_t min_per_thread, size_t align,
                       vqji_range_fn fn, void *arg);

/* Like vqji_parallel_for over items 0..n-1 whose costs are given by the
 * non-decreasing prefix sums cum[0..n] (cum[0] = 0, item i costs
 * cum[i+1] - cum[i]): chunk i holds the items whose start falls in its
 * equal share of cum[n]. For packed grids, cum is the token offsets. */
void vqji_parallel_for_weighted(vqji_pool *pool, size_t n, const int32_t *cum,
                                size_t min_total, vqji_range_fn fn, void *arg);

#endif
