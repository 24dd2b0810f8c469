/* Error messages are kept per thread so that threads sharing a context never
 * race on one buffer. */
#include "core.h"

#include <stdio.h>
#include <string.h>

static _Thread_local struct {
    char message[VQJI_ERROR_MAX];
} last_error;

const vqj_context *vqji_context_root(const vqj_context *ctx)
{
    return ctx && ctx->parent ? ctx->parent : ctx;
}

vqj_status vqji_vfail(const vqj_context *ctx, vqj_status status, const char *fmt, va_list ap)
{
    (void)ctx;
    vsnprintf(last_error.message, sizeof last_error.message, fmt, ap);
    return status;
}

vqj_status vqji_fail(const vqj_context *ctx, vqj_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vqji_vfail(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

void vqji_clear_error(const vqj_context *ctx)
{
    (void)ctx;
    last_error.message[0] = '\0';
}

const char *vqj_last_error(void)
{
    return last_error.message;
}

void vqji_log(const vqj_context *ctx, vqj_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->params.log_fn || level < ctx->params.log_level)
        return;
    char message[VQJI_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    ctx->params.log_fn(ctx->params.log_user_data, level, message);
}

const char *vqj_status_string(vqj_status status)
{
    switch (status) {
    case VQJ_OK: return "ok";
    case VQJ_ERR_INVALID_ARGUMENT: return "invalid argument";
    case VQJ_ERR_OUT_OF_MEMORY: return "out of memory";
    case VQJ_ERR_UNSUPPORTED: return "unsupported";
    case VQJ_ERR_IO: return "input/output error";
    case VQJ_ERR_PARSE: return "parse error";
    case VQJ_ERR_NUMERIC: return "non-finite value";
    case VQJ_ERR_DEVICE: return "device error";
    case VQJ_ERR_STATE: return "invalid state";
    case VQJ_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

#define VQJI_STR2(x) #x
#define VQJI_STR(x) VQJI_STR2(x)
const char *vqj_version(void)
{
    return VQJI_STR(VQJ_VERSION_MAJOR) "." VQJI_STR(VQJ_VERSION_MINOR) "." VQJI_STR(
        VQJ_VERSION_PATCH);
}
