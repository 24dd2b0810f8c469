/* The context's parameters and accessors. vqj_context_create() and
 * vqj_context_destroy(), which make and release the context's device, are
 * the device layer's (src/device/device.c). */
#include "core/core.h"

#include <stdlib.h>

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
