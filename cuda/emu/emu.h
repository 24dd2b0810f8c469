/* A CPU emulation of the CUDA subset that the backend (cuda/) uses, for checking the
 * kernels' logic on a machine without a GPU (cuda/emu/run_tests.sh). Not
 * part of any build of the library.
 *
 * Every CUDA thread of a block is a fiber with its own small stack, run one
 * at a time by a scheduler; __syncthreads, __syncwarp and the warp
 * shuffles/ballots are barriers at which fibers switch. A barrier that can
 * never be released (threads of one warp waiting at different warp
 * operations, a __syncthreads some thread skips) aborts with a message
 * instead of hanging. Launches run synchronously, blocks one after another;
 * device memory is host memory; cuBLAS calls go to CBLAS (column-major).
 * What it checks: indexing, the warp and block reduction logic, barrier
 * placement, launch configurations (limits of a real GPU), and results
 * against the CPU backend. What it cannot check: timing, memory ordering
 * between streams, races that need real concurrency (two threads writing
 * one address in the same step simply run in some order here). */
#ifndef VQJ_CUDA_EMU_H
#define VQJ_CUDA_EMU_H

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <utility>

/* ---- Qualifiers and built-in variables ---- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};

namespace emu {
extern dim3 grid_dim, block_dim;
extern uint3 block_idx;
const uint3 &thread_idx();
void sync_block();
void sync_warp();
/* Publish 8 bytes from this lane, wait for the warp, read lane `src`'s. */
uint64_t warp_exchange(uint64_t mine, unsigned src, int kind);
unsigned ballot(int pred);
unsigned lane_id();
void launch(dim3 grid, dim3 block, void (*body)(void *), void *arg, const char *name);
} // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)

inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    (void)mask;
    emu::sync_warp();
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    uint64_t got = emu::warp_exchange(bits, emu::lane_id() ^ (unsigned)lane_mask, 1);
    T r;
    memcpy(&r, &got, sizeof r);
    return r;
}
inline unsigned __ballot_sync(unsigned mask, int pred)
{
    (void)mask;
    return emu::ballot(pred);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, 4);
    return i;
}
inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}

/* ---- Runtime API ---- */

#define CUDART_VERSION 13000
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
} cudaError_t;
typedef struct emu_stream *cudaStream_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost,
    cudaMemcpyHostToDevice,
    cudaMemcpyDeviceToHost,
    cudaMemcpyDeviceToDevice
};
enum cudaMemoryType { cudaMemoryTypeUnregistered, cudaMemoryTypeHost, cudaMemoryTypeDevice };
struct cudaPointerAttributes {
    cudaMemoryType type;
};
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem;
};
struct cudaFuncAttributes {
    int numRegs;
};
#define cudaStreamNonBlocking 1u

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
template <class F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F)
{
    a->numRegs = 0;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes)
{
    return cudaMalloc((void **)p, bytes);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
template <class T> cudaError_t cudaMallocHost(T **p, size_t bytes)
{
    return cudaMallocHost((void **)p, bytes);
}
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);

/* ---- cuBLAS ---- */

typedef struct emu_blas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 } cublasFillMode_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
const char *cublasGetStatusString(cublasStatus_t s);
const char *cublasGetStatusName(cublasStatus_t s);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc);
cublasStatus_t cublasDsyrk(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t t, int n,
                           int k, const double *alpha, const double *a, int lda,
                           const double *beta, double *c, int ldc);

/* ---- Launches: k<<<grid, block, smem, stream>>>(args) is rewritten by
 * run_tests.sh into EMU_LAUNCH(k, grid, block, smem, stream)(args) ---- */

namespace emu {
template <class... P> struct launcher {
    void (*kernel)(P...);
    dim3 grid, block;
    const char *name;
    template <class... A> void operator()(A &&...args) const
    {
        std::tuple<P...> params(std::forward<A>(args)...); /* the kernel's parameter types */
        struct call {
            void (*kernel)(P...);
            std::tuple<P...> *params;
        } c{kernel, &params};
        launch(
            grid, block,
            [](void *p) {
                call *cc = (call *)p;
                std::apply(cc->kernel, *cc->params);
            },
            &c, name);
    }
};
template <class... P>
launcher<P...> launch_of(void (*kernel)(P...), const char *name, dim3 grid, dim3 block,
                         size_t smem = 0, cudaStream_t stream = 0)
{
    (void)smem;
    (void)stream;
    return launcher<P...>{kernel, grid, block, name};
}
} // namespace emu
#define EMU_LAUNCH(k, ...) ::emu::launch_of(k, #k, __VA_ARGS__)

#endif
