/* The device table's op names, device creation, and the context calls that
 * make and release a context's device. */
#include "device/device.h"
#include "core/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *const vqji_device_op_names[VQJI_DEVICE_NUM_OPS] = {
#define VQJI_OP_NAME(ret, op, params) #op,
    VQJI_DEVICE_OPS(VQJI_OP_NAME)
#undef VQJI_OP_NAME
};

const char *vqji_device_ops_missing(const vqji_device_ops *ops)
{
#define VQJI_OP_CHECK(ret, op, params)                                                         \
    if (!ops->op)                                                                              \
        return #op;
    VQJI_DEVICE_OPS(VQJI_OP_CHECK)
#undef VQJI_OP_CHECK
    return NULL;
}

vqj_status vqji_device_create(const vqj_context *ctx, vqji_device **out)
{
    switch (ctx->params.device) {
    case VQJ_DEVICE_CPU:
        return vqji_cpu_device_create(ctx, out);
    case VQJ_DEVICE_CUDA:
#ifdef VQJ_WITH_CUDA
        return vqji_cuda_device_create(ctx, out);
#else
        return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                         "this build of libvqjepa has no CUDA backend; rebuild it with "
                         "`make CUDA=1` (needs the CUDA Toolkit: nvcc and cuBLAS)");
#endif
    }
    return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "unknown device kind %d",
                     (int)ctx->params.device);
}

void vqji_device_destroy(vqji_device *dev)
{
    if (dev)
        dev->ops->destroy(dev);
}

int vqj_device_compiled(vqj_device_kind device)
{
    switch (device) {
    case VQJ_DEVICE_CPU:
        return 1;
    case VQJ_DEVICE_CUDA:
#ifdef VQJ_WITH_CUDA
        return 1;
#else
        return 0;
#endif
    }
    return 0;
}

vqj_status vqji_device_reserve(vqji_device *dev, void **buf, size_t *cap, size_t bytes)
{
    if (*buf && bytes <= *cap)
        return VQJ_OK;
    void *p;
    vqj_status st = dev->ops->alloc(dev, bytes, &p);
    if (st)
        return st;
    dev->ops->free(dev, *buf);
    *buf = p;
    *cap = bytes;
    return VQJ_OK;
}

vqj_status vqj_context_create(const vqj_context_params *params, vqj_context **out)
{
    vqji_clear_error(NULL);
    if (!out)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_context_create: out is NULL");
    *out = NULL;
    if (!params)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_context_create: params is NULL");
    vqj_context_params p;
    vqj_context_params_default(&p);
    vqj_status st = vqji_params_copy(NULL, &p, sizeof p, params, VQJI_V1_CONTEXT_PARAMS,
                                     "vqj_context_params");
    if (st)
        return st;
    if (p.device != VQJ_DEVICE_CPU && p.device != VQJ_DEVICE_CUDA)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_context_params.device is %d; use VQJ_DEVICE_CPU or VQJ_DEVICE_CUDA",
                         (int)p.device);
    if (p.num_threads < 0)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_context_params.num_threads is %d; use 0 (all cores) or more",
                         p.num_threads);
    if (p.device_index < 0)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_context_params.device_index is %d; must be >= 0", p.device_index);
    if (p.num_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.num_threads = n > 0 ? (int)n : 1;
    }

    vqj_context *ctx;
    st = vqji_calloc(NULL, 1, sizeof *ctx, "the context", (void **)&ctx);
    if (st)
        return st;
    ctx->params = p;
    st = vqji_device_create(ctx, &ctx->device);
    if (st) { /* the device's message stays in vqj_last_error() */
        free(ctx);
        return st;
    }
    vqji_log(ctx, VQJ_LOG_INFO, "libvqjepa %s: %s device, %d threads, seed %llu", vqj_version(),
             ctx->device->ops->name, p.num_threads, (unsigned long long)p.seed);
    *out = ctx;
    return VQJ_OK;
}

void vqj_context_destroy(vqj_context *ctx)
{
    if (!ctx)
        return;
    if (!ctx->parent) /* a derived context shares its parent's device */
        vqji_device_destroy(ctx->device);
    free(ctx);
}
