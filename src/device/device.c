#include "device/device.h"

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
