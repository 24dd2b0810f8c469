/* The CUDA backend's shared state and helpers (docs/perf-cuda.md).
 *
 * Every op of src/device/device.h is a stream-ordered launch on the device's
 * one stream; nothing synchronizes except the ops that hand a value to the
 * host (download, sum, dot, all_finite, sum_squares) and sync(). A failed
 * CUDA or cuBLAS call never prints or aborts: the first failure is recorded
 * here and returned (with its message) by the next sync() or download(), as
 * the op table's contract asks.
 *
 * Numerics: the .cu files are built with --fmad=false and the precise
 * division and square root, so each elementwise formula rounds exactly like
 * its C twin in src/device/cpu_*.c; reductions may sum in another order
 * (tests/test_cuda.c states the tolerances). */
#ifndef VQJ_CUDA_COMMON_H
#define VQJ_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

/* Before device.h's extern "C" block: it includes C++'s <cmath> here. */
#include "core/formulas.h"

extern "C" {
#include "device/device.h"
}

/* Threads per block of the generic kernels; a multiple of 32. */
#define CU_THREADS 256
/* Blocks of the two-stage reductions (sum, dot, sum_squares): a fixed
 * count, so a result depends on n only, never on timing. */
#define CU_RED_BLOCKS 512
/* Row chunks of the column sums (bias, layer-norm parameters, ...): partial
 * sums of at most this many chunks, then one ordered pass per column. */
#define CU_COL_CHUNKS 128

typedef struct cuda_device {
    vqji_device base;
    vqji_device_ops ops;
    int ordinal;
    int num_sms;
    cudaStream_t stream;
    cublasHandle_t blas;
    /* The first failure since the last sync(), and its message. */
    vqj_status err;
    char msg[VQJI_ERROR_MAX];
    /* Reduction partials (CU_RED_BLOCKS + 1 doubles) and a pinned host
     * slot for the one value a reduction returns. */
    double *red;
    double *host_red;
    /* Grown on demand and kept: column-sum partials, overlap copies. */
    void *scratch;
    size_t scratch_cap;
} cuda_device;

static inline cuda_device *cu_dev(vqji_device *dev) { return (cuda_device *)dev; }

/* Record a failure (the first one wins) for the next sync(). */
void cu_record(cuda_device *cd, vqj_status status, const char *fmt, ...) VQJI_PRINTF(3, 4);
/* Check a runtime call; false (and recorded) on failure. */
bool cu_ok(cuda_device *cd, cudaError_t e, const char *what);
/* Check the launch that just happened (configuration errors). */
bool cu_launched(cuda_device *cd, const char *kernel);
/* Make the context's GPU current on the calling host thread; false (and
 * recorded) on failure. Every op starts with it. */
bool cu_enter(cuda_device *cd);
/* Device scratch of at least `bytes`, kept between calls; NULL (recorded)
 * when it cannot be had. Valid until the next cu_scratch call. */
void *cu_scratch(cuda_device *cd, size_t bytes);
/* Blocks for a grid-stride loop over `n` items with `threads` per block. */
unsigned cu_blocks(const cuda_device *cd, size_t n, unsigned threads);

/* The op table's parts, filled by each file. */
void vqji_cuda_register_layers(vqji_device_ops *ops); /* cuda_layers.cu */
void vqji_cuda_register_vq(vqji_device_ops *ops);     /* cuda_vq.cu */
void vqji_cuda_register_optim(vqji_device_ops *ops);  /* cuda_optim.cu */
void vqji_cuda_register_loss(vqji_device_ops *ops);   /* cuda_loss.cu */
void vqji_cuda_register_linalg(vqji_device_ops *ops); /* cuda_linalg.cu */

/* Column sums of an [rows x cols] quantity in two ordered stages: a kernel
 * writes double partials[chunk][col] for cu_colsum_chunks(rows) chunks of
 * rows (a second quantity may follow at partials + chunks * cols), then
 * cu_colsum_finish adds each column's total, in chunk order, to out (and
 * the second to out2 when out2 is not NULL). */
int cu_colsum_chunks(int rows);
void cu_colsum_finish(cuda_device *cd, int cols, int chunks, const double *partials,
                      float *out, float *out2);

/* ---- Device helpers ---- */

#define CU_FULL_MASK 0xffffffffu

static __device__ __forceinline__ float cu_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(CU_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ double cu_warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(CU_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float cu_warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(CU_FULL_MASK, v, o));
    return v;
}

/* Sum of one double per thread over a block of blockDim.x (a multiple of 32,
 * at most 1024) threads, in a fixed order; every thread gets the total.
 * `shared` holds 32 doubles. Contains __syncthreads(): call it from every
 * thread of the block. */
static __device__ __forceinline__ double cu_block_sum_d(double v, double *shared)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (int)(blockDim.x >> 5);
    v = cu_warp_sum_d(v);
    __syncthreads(); /* `shared` may still be read by a previous call */
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    double t = lane < nwarps ? shared[lane] : 0.0;
    return cu_warp_sum_d(t);
}

/* Grid-stride loop over size_t indices. */
#define CU_FOR(i, n)                                                                           \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
         i += (size_t)gridDim.x * blockDim.x)

#endif
