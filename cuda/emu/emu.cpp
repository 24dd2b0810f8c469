/* The CPU emulation of cuda/emu/emu.h: fibers for CUDA threads (a minimal
 * x86-64 context switch), barriers, warp exchanges, the runtime and cuBLAS
 * calls the backend makes. */
#include "emu.h"

#include <stdio.h>
#include <stdlib.h>

#include <vector>

#if !defined(__x86_64__)
#error "the CUDA emulation's context switch is written for x86-64"
#endif

/* emu_switch(&save_sp, next_sp): push the callee-saved registers, save the
 * stack pointer, load the other one, pop its registers and return into it. */
extern "C" void emu_switch(void **save_sp, void *next_sp);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

namespace emu {

dim3 grid_dim, block_dim;
uint3 block_idx;

enum state { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

struct fiber {
    void *sp;
    char *stack;
    uint3 tid;
    unsigned linear;
    state st;
    int warp_kind; /* which warp operation it waits at: 1 exchange, 2 ballot, 3 syncwarp */
    unsigned seq;  /* warp exchanges so far (picks the buffer) */
    unsigned src;  /* the lane an exchange reads */
};

static const size_t STACK_BYTES = 128 * 1024;
static std::vector<fiber> fibers;
static unsigned block_threads; /* fibers[0 .. block_threads) form the running block */
static fiber *cur;
static void *sched_sp;
static void (*body_fn)(void *);
static void *body_arg;
static const char *kernel_name;
static uint64_t warp_buf[2][32][32];
static cudaError_t last_error = cudaSuccess;

[[noreturn]] static void die(const char *what)
{
    fprintf(stderr, "CUDA emulation: kernel %s, block (%u,%u,%u), thread %u: %s\n",
            kernel_name ? kernel_name : "?", block_idx.x, block_idx.y, block_idx.z,
            cur ? cur->linear : 0u, what);
    abort();
}

const uint3 &thread_idx()
{
    if (!cur)
        die("threadIdx outside a kernel");
    return cur->tid;
}

unsigned lane_id() { return cur->linear & 31u; }

static void park(state st)
{
    cur->st = st;
    emu_switch(&cur->sp, sched_sp);
}

void sync_block() { park(AT_BLOCK); }

void sync_warp()
{
    cur->warp_kind = 3;
    park(AT_WARP);
}

uint64_t warp_exchange(uint64_t mine, unsigned src, int kind)
{
    unsigned warp = cur->linear >> 5, lane = cur->linear & 31u, par = cur->seq++ & 1u;
    warp_buf[par][warp][lane] = mine;
    cur->warp_kind = kind;
    cur->src = src;
    if (warp * 32u + src >= block_threads)
        die("warp exchange with a lane that does not exist");
    park(AT_WARP);
    return warp_buf[par][warp][src & 31u];
}

unsigned ballot(int pred)
{
    unsigned warp = cur->linear >> 5, par = cur->seq & 1u;
    warp_exchange(pred ? 1u : 0u, cur->linear & 31u, 2);
    unsigned mask = 0;
    for (unsigned l = 0; l < 32 && warp * 32 + l < block_threads; l++)
        if (fibers[warp * 32 + l].st != DONE && warp_buf[par][warp][l])
            mask |= 1u << l;
    return mask;
}

static void trampoline()
{
    body_fn(body_arg);
    cur->st = DONE;
    emu_switch(&cur->sp, sched_sp);
    die("a finished fiber was resumed");
}

static void prepare(fiber &f)
{
    uintptr_t top = ((uintptr_t)(f.stack + STACK_BYTES)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;              /* the trampoline's (never used) return address */
    *--sp = (void *)trampoline;   /* where emu_switch returns to */
    for (int r = 0; r < 6; r++)   /* rbp rbx r12 r13 r14 r15 */
        *--sp = nullptr;
    f.sp = sp;
    f.st = RUNNABLE;
    f.seq = 0;
    f.warp_kind = 0;
}

static void run_block(unsigned n_threads)
{
    for (unsigned t = 0; t < n_threads; t++)
        prepare(fibers[t]);
    for (;;) {
        bool ran = false;
        for (unsigned t = 0; t < n_threads; t++)
            if (fibers[t].st == RUNNABLE) {
                cur = &fibers[t];
                emu_switch(&sched_sp, cur->sp);
                ran = true;
            }
        cur = nullptr;
        unsigned live = 0, at_block = 0;
        for (unsigned t = 0; t < n_threads; t++) {
            live += fibers[t].st != DONE;
            at_block += fibers[t].st == AT_BLOCK;
        }
        if (!live)
            return;
        bool released = false;
        /* Warps whose every live lane waits at a warp operation go on. */
        for (unsigned w = 0; w * 32 < n_threads; w++) {
            unsigned wl = 0, wa = 0;
            int kind = -1;
            for (unsigned l = w * 32; l < n_threads && l < w * 32 + 32; l++) {
                if (fibers[l].st == DONE)
                    continue;
                wl++;
                if (fibers[l].st == AT_WARP) {
                    wa++;
                    if (kind >= 0 && kind != fibers[l].warp_kind) {
                        cur = &fibers[l];
                        die("lanes of one warp wait at different warp operations");
                    }
                    kind = fibers[l].warp_kind;
                }
            }
            if (wa && wa == wl) {
                for (unsigned l = w * 32; l < n_threads && l < w * 32 + 32; l++)
                    if (fibers[l].st == AT_WARP) {
                        /* the lane read must have taken part in the exchange */
                        if (kind == 1 && fibers[w * 32 + fibers[l].src].st == DONE) {
                            cur = &fibers[l];
                            die("warp exchange with a lane that has exited");
                        }
                        fibers[l].st = RUNNABLE;
                    }
                released = true;
            }
        }
        if (!released && at_block && at_block == live) {
            for (unsigned t = 0; t < n_threads; t++)
                if (fibers[t].st == AT_BLOCK)
                    fibers[t].st = RUNNABLE;
            released = true;
        }
        if (!released && !ran)
            die("deadlock: no thread can go on (a barrier some threads never reach, or a warp "
                "split between __syncthreads and a warp operation)");
    }
}

void launch(dim3 grid, dim3 block, void (*body)(void *), void *arg, const char *name)
{
    kernel_name = name;
    unsigned n = block.x * block.y * block.z;
    if (block.y != 1 || block.z != 1 || n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "CUDA emulation: kernel %s: invalid launch (%u,%u,%u) x (%u,%u,%u)\n",
                name, grid.x, grid.y, grid.z, block.x, block.y, block.z);
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (fibers.size() < n) {
        size_t old = fibers.size();
        fibers.resize(n);
        for (size_t t = old; t < n; t++)
            fibers[t].stack = (char *)malloc(STACK_BYTES);
    }
    for (unsigned t = 0; t < n; t++) {
        fibers[t].tid = uint3{t, 0, 0};
        fibers[t].linear = t;
    }
    block_threads = n;
    grid_dim = grid;
    block_dim = block;
    body_fn = body;
    body_arg = arg;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                block_idx = uint3{x, y, z};
                run_block(n);
            }
    kernel_name = nullptr;
}

} // namespace emu

/* ---- Runtime ---- */

using emu::last_error;

static cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d)
{
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    if (d != 0)
        return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulation on the CPU");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 2; /* few blocks: grid-stride loops go round */
    p->totalGlobalMem = (size_t)8 << 30;
    return cudaSuccess;
}
struct emu_stream {
    int unused;
};
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    (void)flags;
    *s = new emu_stream();
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    (void)s;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t bytes)
{
    if (bytes > ((size_t)1 << 40)) {
        *p = nullptr;
        return fail(cudaErrorMemoryAllocation);
    }
    /* The exact size (so that AddressSanitizer sees any access past it),
     * filled with NaN bytes so that reads of unwritten memory show. */
    if (posix_memalign(p, 256, bytes ? bytes : 1) != 0) {
        *p = nullptr;
        return fail(cudaErrorMemoryAllocation);
    }
    memset(*p, 0xff, bytes);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    (void)kind;
    (void)s;
    const char *d = (const char *)dst, *c = (const char *)src;
    if (bytes && d < c + bytes && c < d + bytes && d != c) {
        fprintf(stderr, "CUDA emulation: cudaMemcpyAsync on overlapping ranges\n");
        return fail(cudaErrorInvalidValue);
    }
    memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s)
{
    (void)s;
    memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    *free_b = (size_t)4 << 30;
    *total_b = (size_t)8 << 30;
    return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p)
{
    (void)p;
    a->type = cudaMemoryTypeUnregistered;
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInsufficientDriver: return "driver too old";
    default: return "invalid argument";
    }
}
const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    default: return "cudaErrorInvalidValue";
    }
}

/* ---- cuBLAS through CBLAS ---- */

struct emu_blas {
    int unused;
};
cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new emu_blas();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "success" : "an invalid value was used as an argument";
}
const char *cublasGetStatusName(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc)
{
    /* cuBLAS's argument checks (column-major) */
    int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (arows > 1 ? arows : 1) ||
        ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!m || !n)
        return CUBLAS_STATUS_SUCCESS;
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, a, lda, b, ldb,
                *beta, c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDsyrk(cublasHandle_t, cublasFillMode_t uplo, cublasOperation_t t, int n,
                           int k, const double *alpha, const double *a, int lda,
                           const double *beta, double *c, int ldc)
{
    cblas_dsyrk(CblasColMajor, uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower,
                t == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, n, k, *alpha, a, lda, *beta, c,
                ldc);
    return CUBLAS_STATUS_SUCCESS;
}
