/* The CUDA backend: device memory, one stream, cuBLAS for GEMM, and the
 * basic elementwise ops and reductions. The layer, VQ, optimizer and loss
 * kernels live in cuda_layers.cu, cuda_vq.cu, cuda_optim.cu, cuda_loss.cu.
 * Design and integration notes: docs/perf-cuda.md. */
#include "cuda_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Errors ---- */

void cu_record(cuda_device *cd, vqj_status status, const char *fmt, ...)
{
    if (cd->err != VQJ_OK)
        return; /* the first failure is the one worth reporting */
    cd->err = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cd->msg, sizeof cd->msg, fmt, ap);
    va_end(ap);
}

static vqj_status status_of(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? VQJ_ERR_OUT_OF_MEMORY : VQJ_ERR_DEVICE;
}

bool cu_ok(cuda_device *cd, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return true;
    cudaGetLastError(); /* a non-sticky error must not resurface at the next launch check */
    cu_record(cd, status_of(e), "CUDA device %d: %s failed: %s (%s)", cd->ordinal, what,
              cudaGetErrorString(e), cudaGetErrorName(e));
    return false;
}

bool cu_launched(cuda_device *cd, const char *kernel)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return true;
    cu_record(cd, status_of(e), "CUDA device %d: launching %s failed: %s (%s)", cd->ordinal,
              kernel, cudaGetErrorString(e), cudaGetErrorName(e));
    return false;
}

static bool blas_ok(cuda_device *cd, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return true;
    cu_record(cd, s == CUBLAS_STATUS_ALLOC_FAILED ? VQJ_ERR_OUT_OF_MEMORY : VQJ_ERR_DEVICE,
              "CUDA device %d: %s failed: %s (%s)", cd->ordinal, what, cublasGetStatusString(s),
              cublasGetStatusName(s));
    return false;
}

bool cu_enter(cuda_device *cd)
{
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == cd->ordinal)
        return true;
    return cu_ok(cd, cudaSetDevice(cd->ordinal), "cudaSetDevice");
}

/* Hand the recorded failure (if any) to the caller through vqji_fail. */
static vqj_status report(cuda_device *cd)
{
    vqj_status st = cd->err;
    if (st == VQJ_OK)
        return VQJ_OK;
    cd->err = VQJ_OK;
    return vqji_fail(cd->base.ctx, st, "%s", cd->msg);
}

unsigned cu_blocks(const cuda_device *cd, size_t n, unsigned threads)
{
    size_t want = (n + threads - 1) / threads;
    size_t cap = (size_t)(cd->num_sms > 0 ? cd->num_sms : 1) * 32;
    if (want > cap)
        want = cap;
    return want ? (unsigned)want : 1u;
}

void *cu_scratch(cuda_device *cd, size_t bytes)
{
    if (bytes <= cd->scratch_cap && cd->scratch)
        return cd->scratch;
    size_t cap = cd->scratch_cap + cd->scratch_cap / 2;
    if (cap < bytes)
        cap = bytes;
    if (cap < 4096)
        cap = 4096;
    /* Queued kernels may still read the old block. */
    if (!cu_ok(cd, cudaStreamSynchronize(cd->stream), "cudaStreamSynchronize"))
        return NULL;
    if (cd->scratch)
        cudaFree(cd->scratch);
    cd->scratch = NULL;
    cd->scratch_cap = 0;
    void *p = NULL;
    if (!cu_ok(cd, cudaMalloc(&p, cap), "cudaMalloc (backend scratch)"))
        return NULL;
    cd->scratch = p;
    cd->scratch_cap = cap;
    return p;
}

/* ---- Column sums in two ordered stages ---- */

int cu_colsum_chunks(int rows)
{
    int c = (rows + 63) / 64; /* at least 64 rows a chunk */
    if (c > CU_COL_CHUNKS)
        c = CU_COL_CHUNKS;
    return c < 1 ? 1 : c;
}

static __global__ void k_colsum_finish(int cols, int chunks, const double *partials, float *out,
                                       float *out2)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols)
        return;
    double t = 0.0, t2 = 0.0;
    for (int c = 0; c < chunks; c++)
        t += partials[(size_t)c * cols + j];
    out[j] += (float)t;
    if (out2) {
        const double *p2 = partials + (size_t)chunks * cols;
        for (int c = 0; c < chunks; c++)
            t2 += p2[(size_t)c * cols + j];
        out2[j] += (float)t2;
    }
}

void cu_colsum_finish(cuda_device *cd, int cols, int chunks, const double *partials, float *out,
                      float *out2)
{
    k_colsum_finish<<<(cols + CU_THREADS - 1) / CU_THREADS, CU_THREADS, 0, cd->stream>>>(
        cols, chunks, partials, out, out2);
    cu_launched(cd, "colsum_finish");
}

/* ---- Memory ---- */

static void cuda_destroy(vqji_device *dev)
{
    cuda_device *cd = cu_dev(dev);
    cudaSetDevice(cd->ordinal);
    if (cd->stream)
        cudaStreamSynchronize(cd->stream);
    if (cd->blas)
        cublasDestroy(cd->blas);
    cudaFree(cd->scratch);
    cudaFree(cd->red);
    if (cd->host_red)
        cudaFreeHost(cd->host_red);
    if (cd->stream)
        cudaStreamDestroy(cd->stream);
    free(cd);
}

static vqj_status cuda_alloc(vqji_device *dev, size_t bytes, void **out)
{
    cuda_device *cd = cu_dev(dev);
    if (!cu_enter(cd))
        return report(cd);
    void *p = NULL;
    /* cudaMalloc(0) may give NULL; the contract wants a valid pointer. */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return vqji_fail(dev->ctx, status_of(e),
                         "out of memory allocating %zu bytes on CUDA device %d (%zu of %zu "
                         "bytes free): %s",
                         bytes, cd->ordinal, free_b, total_b, cudaGetErrorString(e));
    }
    *out = p;
    return VQJ_OK;
}

static void cuda_free(vqji_device *dev, void *ptr)
{
    if (!ptr)
        return;
    cuda_device *cd = cu_dev(dev);
    if (!cu_enter(cd))
        return;
    /* cudaFree waits for work using the block; report, never abort. */
    cu_ok(cd, cudaFree(ptr), "cudaFree");
}

/* Pinned (page-locked) host memory is copied asynchronously, so the host
 * could change it before the copy happens; pageable memory (everything the
 * library itself uploads) is staged before cudaMemcpyAsync returns. */
static bool is_pinned(const void *host)
{
    cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, host) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return at.type == cudaMemoryTypeHost;
}

static vqj_status cuda_upload(vqji_device *dev, void *dst, const void *src, size_t bytes)
{
    cuda_device *cd = cu_dev(dev);
    if (!bytes)
        return VQJ_OK;
    if (cu_enter(cd) &&
        cu_ok(cd, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cd->stream),
              "cudaMemcpyAsync (upload)") &&
        is_pinned(src))
        cu_ok(cd, cudaStreamSynchronize(cd->stream), "cudaStreamSynchronize (upload)");
    /* A failure recorded earlier is reported here too: the caller checks
     * this status, and the data it uploads would feed broken state. */
    return report(cd);
}

static vqj_status cuda_download(vqji_device *dev, void *dst, const void *src, size_t bytes)
{
    cuda_device *cd = cu_dev(dev);
    if (cu_enter(cd) && bytes &&
        cu_ok(cd, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cd->stream),
              "cudaMemcpyAsync (download)"))
        cu_ok(cd, cudaStreamSynchronize(cd->stream), "cudaStreamSynchronize (download)");
    return report(cd);
}

static void cuda_copy(vqji_device *dev, void *dst, const void *src, size_t bytes)
{
    cuda_device *cd = cu_dev(dev);
    if (!bytes || dst == src || !cu_enter(cd))
        return;
    const char *d = (const char *)dst, *s = (const char *)src;
    bool overlap = d < s + bytes && s < d + bytes;
    if (!overlap) {
        cu_ok(cd, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cd->stream),
              "cudaMemcpyAsync (copy)");
        return;
    }
    /* memmove semantics, as the CPU backend: through the scratch block. */
    void *tmp = cu_scratch(cd, bytes);
    if (tmp &&
        cu_ok(cd, cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, cd->stream),
              "cudaMemcpyAsync (overlapping copy)"))
        cu_ok(cd, cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, cd->stream),
              "cudaMemcpyAsync (overlapping copy)");
}

static vqj_status cuda_sync(vqji_device *dev)
{
    cuda_device *cd = cu_dev(dev);
    if (cu_enter(cd))
        cu_ok(cd, cudaStreamSynchronize(cd->stream), "cudaStreamSynchronize");
    return report(cd);
}

/* ---- GEMM (cuBLAS) ---- */

static __global__ void k_scale_matrix(int m, int n, float beta, float *c, int ldc)
{
    size_t total = (size_t)m * n;
    CU_FOR(t, total)
    {
        size_t i = t / (size_t)n, j = t % (size_t)n;
        float *p = c + i * (size_t)ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: hand
 * cuBLAS the operands swapped, each with its own transpose flag. */
static void cuda_gemm(vqji_device *dev, bool trans_a, bool trans_b, int m, int n, int k,
                      float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                      float *c, int ldc)
{
    cuda_device *cd = cu_dev(dev);
    if (m <= 0 || n <= 0 || !cu_enter(cd))
        return;
    if (k <= 0) {
        k_scale_matrix<<<cu_blocks(cd, (size_t)m * n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(
            m, n, beta, c, ldc);
        cu_launched(cd, "gemm (k = 0)");
        return;
    }
    blas_ok(cd,
            cublasSgemm(cd->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                        trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                        &beta, c, ldc),
            "cublasSgemm");
}

/* ---- Elementwise ---- */

static __global__ void k_fill(size_t n, float v, float *x)
{
    CU_FOR(i, n) x[i] = v;
}

static __global__ void k_scale(size_t n, float a, float *x)
{
    CU_FOR(i, n) x[i] *= a;
}

static __global__ void k_axpy(size_t n, float a, const float *x, float *y)
{
    CU_FOR(i, n) y[i] += a * x[i];
}

static void cuda_fill(vqji_device *dev, size_t n, float value, float *x)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    k_fill<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, value, x);
    cu_launched(cd, "fill");
}

static void cuda_scale(vqji_device *dev, size_t n, float alpha, float *x)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    k_scale<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, alpha, x);
    cu_launched(cd, "scale");
}

static void cuda_axpy(vqji_device *dev, size_t n, float alpha, const float *x, float *y)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    k_axpy<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, alpha, x, y);
    cu_launched(cd, "axpy");
}

/* ---- Reductions into one host value ----
 * Stage 1: CU_RED_BLOCKS blocks, each a double partial of a grid-stride
 * slice; stage 2: one block sums the partials in a fixed order. Same n, same
 * inputs: same bits, run after run. */

enum { RED_SUM, RED_DOT, RED_SQ };

static __global__ void k_reduce_partial(int mode, size_t n, const float *x, const float *y,
                                        double *partials)
{
    __shared__ double sh[32];
    double acc = 0.0;
    CU_FOR(i, n)
    {
        double v = (double)x[i];
        acc += mode == RED_SUM ? v : mode == RED_DOT ? v * (double)y[i] : v * v;
    }
    double t = cu_block_sum_d(acc, sh);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = t;
}

static __global__ void k_reduce_final(int count, const double *partials, double *out)
{
    __shared__ double sh[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x)
        acc += partials[i];
    double t = cu_block_sum_d(acc, sh);
    if (threadIdx.x == 0)
        *out = t;
}

/* NaN (and the failure recorded for the next sync) when the device fails. */
static double reduce(cuda_device *cd, int mode, size_t n, const float *x, const float *y)
{
    if (!n)
        return 0.0;
    if (!cu_enter(cd))
        return NAN;
    unsigned blocks = (unsigned)((n + CU_THREADS - 1) / CU_THREADS);
    if (blocks > CU_RED_BLOCKS)
        blocks = CU_RED_BLOCKS;
    k_reduce_partial<<<blocks, CU_THREADS, 0, cd->stream>>>(mode, n, x, y, cd->red);
    if (!cu_launched(cd, "reduce"))
        return NAN;
    k_reduce_final<<<1, 1024, 0, cd->stream>>>((int)blocks, cd->red, cd->red + CU_RED_BLOCKS);
    if (!cu_launched(cd, "reduce (final)"))
        return NAN;
    if (!cu_ok(cd,
               cudaMemcpyAsync(cd->host_red, cd->red + CU_RED_BLOCKS, sizeof(double),
                               cudaMemcpyDeviceToHost, cd->stream),
               "cudaMemcpyAsync (reduction result)") ||
        !cu_ok(cd, cudaStreamSynchronize(cd->stream), "cudaStreamSynchronize (reduction)"))
        return NAN;
    return *cd->host_red;
}

static float cuda_sum(vqji_device *dev, size_t n, const float *x)
{
    return (float)reduce(cu_dev(dev), RED_SUM, n, x, NULL);
}

static float cuda_dot(vqji_device *dev, size_t n, const float *x, const float *y)
{
    return (float)reduce(cu_dev(dev), RED_DOT, n, x, y);
}

/* The optimizer's slot; it shares the reduction machinery. */
static double cuda_sum_squares(vqji_device *dev, size_t n, const float *x)
{
    return reduce(cu_dev(dev), RED_SQ, n, x, NULL);
}

static __global__ void k_all_finite(size_t n, const float *x, unsigned *bad)
{
    CU_FOR(i, n)
    {
        if (!isfinite(x[i])) {
            *bad = 1u;
            return;
        }
    }
}

static bool cuda_all_finite(vqji_device *dev, size_t n, const float *x)
{
    cuda_device *cd = cu_dev(dev);
    if (!n)
        return true;
    if (!cu_enter(cd))
        return false;
    unsigned *flag = (unsigned *)(cd->red + CU_RED_BLOCKS);
    unsigned *host = (unsigned *)cd->host_red;
    if (!cu_ok(cd, cudaMemsetAsync(flag, 0, sizeof *flag, cd->stream), "cudaMemsetAsync"))
        return false;
    k_all_finite<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, x, flag);
    if (!cu_launched(cd, "all_finite") ||
        !cu_ok(cd,
               cudaMemcpyAsync(host, flag, sizeof *flag, cudaMemcpyDeviceToHost, cd->stream),
               "cudaMemcpyAsync (all_finite)") ||
        !cu_ok(cd, cudaStreamSynchronize(cd->stream), "cudaStreamSynchronize (all_finite)"))
        return false;
    return *host == 0u;
}

/* ---- Creation ---- */

static void register_base(vqji_device_ops *ops)
{
    ops->name = "cuda";
    ops->destroy = cuda_destroy;
    ops->alloc = cuda_alloc;
    ops->free = cuda_free;
    ops->upload = cuda_upload;
    ops->download = cuda_download;
    ops->copy = cuda_copy;
    ops->sync = cuda_sync;
    ops->gemm = cuda_gemm;
    ops->fill = cuda_fill;
    ops->scale = cuda_scale;
    ops->axpy = cuda_axpy;
    ops->sum = cuda_sum;
    ops->dot = cuda_dot;
    ops->all_finite = cuda_all_finite;
    ops->sum_squares = cuda_sum_squares;
}

/* The message of a failed creation step, with the runtime's reason. */
static vqj_status create_fail(const vqj_context *ctx, cuda_device *cd, vqj_status st,
                              const char *what, const char *why)
{
    if (cd)
        cuda_destroy(&cd->base);
    return vqji_fail(ctx, st, "CUDA device %d: %s failed: %s", ctx->params.device_index, what,
                     why);
}

extern "C" vqj_status vqji_cuda_device_create(const vqj_context *ctx, vqji_device **out)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        const char *hint = e == cudaErrorInsufficientDriver
                               ? " (no NVIDIA driver is loaded, or it is older than the CUDA "
                                 "runtime this library was built with)"
                               : "";
        return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                         "no CUDA device found: %s%s [%s, CUDA runtime %d.%d]; this build of "
                         "libvqjepa has the CUDA backend but no usable GPU: use VQJ_DEVICE_CPU",
                         cudaGetErrorString(e), hint, cudaGetErrorName(e), CUDART_VERSION / 1000,
                         CUDART_VERSION % 1000 / 10);
    }
    if (count <= 0)
        return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                         "no CUDA device found: the driver reports 0 devices; use "
                         "VQJ_DEVICE_CPU");
    int index = ctx->params.device_index;
    if (index >= count)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_context_params.device_index is %d but this machine has %d CUDA "
                         "device%s (0..%d)",
                         index, count, count == 1 ? "" : "s", count - 1);
    if ((e = cudaSetDevice(index)) != cudaSuccess)
        return create_fail(ctx, NULL, VQJ_ERR_DEVICE, "cudaSetDevice", cudaGetErrorString(e));
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, index)) != cudaSuccess)
        return create_fail(ctx, NULL, VQJ_ERR_DEVICE, "cudaGetDeviceProperties",
                           cudaGetErrorString(e));
    /* The kernels are built for sm_90 (plus compute_90 PTX that newer GPUs
     * compile at load); an older GPU has no image to run. */
    cudaFuncAttributes fa;
    if ((e = cudaFuncGetAttributes(&fa, k_fill)) != cudaSuccess) {
        cudaGetLastError();
        return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                         "CUDA device %d (%s, compute capability %d.%d) cannot run this build's "
                         "kernels (%s); libvqjepa's CUDA backend is built for compute "
                         "capability 9.0 and newer",
                         index, prop.name, prop.major, prop.minor, cudaGetErrorString(e));
    }

    cuda_device *cd;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *cd, "the CUDA device", (void **)&cd);
    if (st)
        return st;
    cd->ordinal = index;
    cd->num_sms = prop.multiProcessorCount;
    register_base(&cd->ops);
    vqji_cuda_register_layers(&cd->ops);
    vqji_cuda_register_vq(&cd->ops);
    vqji_cuda_register_optim(&cd->ops);
    vqji_cuda_register_loss(&cd->ops);
    vqji_cuda_register_linalg(&cd->ops);
    cd->base.ops = &cd->ops;
    cd->base.ctx = ctx;
    cd->base.num_threads = ctx->params.num_threads;
    cd->base.impl = cd;

    if ((e = cudaStreamCreateWithFlags(&cd->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return create_fail(ctx, cd, VQJ_ERR_DEVICE, "cudaStreamCreate", cudaGetErrorString(e));
    cublasStatus_t bs = cublasCreate(&cd->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cd->blas = NULL;
        return create_fail(ctx, cd, VQJ_ERR_DEVICE, "cublasCreate", cublasGetStatusString(bs));
    }
    /* fp32 GEMMs stay fp32: no TF32 tensor-core rounding unless asked for
     * (VQJ_CUDA_TF32=1 in the environment; docs/perf-cuda.md). */
    const char *tf32 = getenv("VQJ_CUDA_TF32");
    cublasMath_t math = tf32 && strcmp(tf32, "1") == 0 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                        : CUBLAS_DEFAULT_MATH;
    if ((bs = cublasSetStream(cd->blas, cd->stream)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetMathMode(cd->blas, math)) != CUBLAS_STATUS_SUCCESS)
        return create_fail(ctx, cd, VQJ_ERR_DEVICE, "cuBLAS setup", cublasGetStatusString(bs));
    if ((e = cudaMalloc((void **)&cd->red, (CU_RED_BLOCKS + 1) * sizeof(double))) !=
            cudaSuccess ||
        (e = cudaMallocHost((void **)&cd->host_red, sizeof(double))) != cudaSuccess)
        return create_fail(ctx, cd, status_of(e), "allocating the reduction buffers",
                           cudaGetErrorString(e));
    vqji_log(ctx, VQJ_LOG_INFO, "CUDA device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB",
             index, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    *out = &cd->base;
    return VQJ_OK;
}
