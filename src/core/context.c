#include "core/core.h"
#include "core/params.h"
#include "device/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void vqj_context_params_default(vqj_context_params *params)
{
    if (!params)
        return;
    *params = (vqj_context_params){
        .size = sizeof *params,
        .device = VQJ_DEVICE_CPU,
        .device_index = 0,
        .num_threads = 0,
        .seed = 123,
        .log_fn = NULL,
        .log_user_data = NULL,
        .log_level = VQJ_LOG_INFO,
    };
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

vqj_status vqji_context_derive(vqj_context *parent, uint64_t seed, vqj_context **out)
{
    vqj_context *ctx;
    vqj_status st = vqji_calloc(parent, 1, sizeof *ctx, "a derived context", (void **)&ctx);
    if (st)
        return st;
    *ctx = *parent;
    ctx->params.seed = seed;
    ctx->parent = vqji_context_root(parent);
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

vqj_device_kind vqj_context_device(const vqj_context *ctx)
{
    return ctx ? ctx->params.device : VQJ_DEVICE_CPU;
}

int vqj_context_num_threads(const vqj_context *ctx)
{
    return ctx ? ctx->params.num_threads : 0;
}

uint64_t vqj_context_seed(const vqj_context *ctx)
{
    return ctx ? ctx->params.seed : 0;
}
