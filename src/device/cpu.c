/* The CPU backend: host memory, GEMM through OpenBLAS, the other kernels on
 * the context's thread pool (threadpool.h). */
#include "device/device.h"
#include "device/cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_device {
    vqji_device base;
    vqji_device_ops ops; /* filled once at creation by the cpu_*.c files */
} cpu_device;

static void cpu_destroy(vqji_device *dev)
{
    vqji_pool_destroy(vqji_cpu_pool(dev));
    free(dev);
}

static vqj_status cpu_alloc(vqji_device *dev, size_t bytes, void **out)
{
    /* 64-byte alignment suits AVX-512 loads and cache lines. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p)
        return vqji_fail(dev->ctx, VQJ_ERR_OUT_OF_MEMORY,
                         "out of memory allocating %zu bytes on the CPU device", bytes);
    *out = p;
    return VQJ_OK;
}

static void cpu_free(vqji_device *dev, void *ptr)
{
    (void)dev;
    free(ptr);
}

static vqj_status cpu_upload(vqji_device *dev, void *dst, const void *src, size_t bytes)
{
    (void)dev;
    if (bytes)
        memcpy(dst, src, bytes);
    return VQJ_OK;
}

/* The elementwise ops' arguments, for the pool's range functions. */
typedef struct ew_args {
    float *y;
    const float *x;
    float a;
} ew_args;

static void copy_range(void *p, size_t b, size_t e)
{
    const ew_args *w = p;
    memcpy((char *)w->y + b, (const char *)w->x + b, e - b);
}

static void cpu_copy(vqji_device *dev, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src)
        return;
    const char *d = dst, *s = src;
    if (d < s + bytes && s < d + bytes) { /* overlapping: memmove, serially */
        memmove(dst, src, bytes);
        return;
    }
    ew_args w = {.y = dst, .x = src};
    vqji_parallel_for(vqji_cpu_pool(dev), bytes, 4 * VQJI_PAR_MIN_ELEMS, 64, copy_range, &w);
}

static vqj_status cpu_sync(vqji_device *dev)
{
    (void)dev;
    return VQJ_OK;
}

static void cpu_gemm(vqji_device *dev, bool trans_a, bool trans_b, int m, int n, int k,
                     float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                     float *c, int ldc)
{
    (void)dev;
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        /* BLAS leaves C alone only for beta = 1; make k = 0 mean "scale C". */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void fill_range(void *p, size_t b, size_t e)
{
    const ew_args *w = p;
    uint32_t bits;
    memcpy(&bits, &w->a, sizeof bits);
    if (bits == 0) { /* +0.0f is all-zero bytes (-0.0f is not) */
        memset(w->y + b, 0, (e - b) * sizeof *w->y);
        return;
    }
    for (size_t i = b; i < e; i++)
        w->y[i] = w->a;
}

static void cpu_fill(vqji_device *dev, size_t n, float value, float *x)
{
    ew_args w = {.y = x, .a = value};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, fill_range, &w);
}

static void scale_range(void *p, size_t b, size_t e)
{
    const ew_args *w = p;
    for (size_t i = b; i < e; i++)
        w->y[i] *= w->a;
}

static void cpu_scale(vqji_device *dev, size_t n, float alpha, float *x)
{
    ew_args w = {.y = x, .a = alpha};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, scale_range, &w);
}

static void axpy_range(void *p, size_t b, size_t e)
{
    const ew_args *w = p;
    for (size_t i = b; i < e; i++)
        w->y[i] += w->a * w->x[i];
}

static void cpu_axpy(vqji_device *dev, size_t n, float alpha, const float *x, float *y)
{
    ew_args w = {.y = y, .x = x, .a = alpha};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, axpy_range, &w);
}

static float cpu_sum(vqji_device *dev, size_t n, const float *x)
{
    (void)dev;
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    return (float)s;
}

static float cpu_dot(vqji_device *dev, size_t n, const float *x, const float *y)
{
    (void)dev;
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * y[i];
    return (float)s;
}

static bool cpu_all_finite(vqji_device *dev, size_t n, const float *x)
{
    (void)dev;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

static const vqji_device_ops cpu_base_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_upload,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .fill = cpu_fill,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .sum = cpu_sum,
    .dot = cpu_dot,
    .all_finite = cpu_all_finite,
};

vqj_status vqji_cpu_device_create(const vqj_context *ctx, vqji_device **out)
{
    cpu_device *cpu;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *cpu, "the CPU device", (void **)&cpu);
    if (st)
        return st;
    cpu->ops = cpu_base_ops;
    vqji_cpu_register_layers(&cpu->ops);
    vqji_cpu_register_vq(&cpu->ops);
    vqji_cpu_register_optim(&cpu->ops);
    vqji_cpu_register_loss(&cpu->ops);
    vqji_cpu_register_linalg(&cpu->ops);
    vqji_device *dev = &cpu->base;
    dev->ops = &cpu->ops;
    dev->ctx = ctx;
    dev->num_threads = ctx->params.num_threads;
    vqji_pool *pool = NULL;
    if ((st = vqji_pool_create(ctx, dev->num_threads, &pool))) {
        free(cpu);
        return st;
    }
    dev->impl = pool;
    /* OpenBLAS keeps one global thread count; the last context created sets it. */
    openblas_set_num_threads(dev->num_threads);
    *out = dev;
    return VQJ_OK;
}
