#include "core.h"

#include <stdlib.h>
#include <string.h>

bool vqji_mul_size(size_t count, size_t size, size_t *out)
{
    if (size != 0 && count > SIZE_MAX / size)
        return false;
    *out = count * size;
    return true;
}

vqj_status vqji_malloc(const vqj_context *ctx, size_t bytes, const char *what, void **out)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes for %s",
                         bytes, what);
    *out = p;
    return VQJ_OK;
}

vqj_status vqji_calloc(const vqj_context *ctx, size_t count, size_t size, const char *what,
                       void **out)
{
    size_t bytes;
    if (!vqji_mul_size(count, size, &bytes))
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "size of %s overflows (%zu x %zu bytes)",
                         what, count, size);
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes for %s",
                         bytes, what);
    *out = p;
    return VQJ_OK;
}

vqj_status vqji_reserve(const vqj_context *ctx, void **buf, size_t *capacity, size_t bytes,
                        const char *what)
{
    if (*buf && bytes <= *capacity)
        return VQJ_OK;
    size_t grown = *capacity + *capacity / 2;
    if (grown < bytes)
        grown = bytes;
    void *p = realloc(*buf, grown ? grown : 1);
    if (!p)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "out of memory growing %s to %zu bytes",
                         what, grown);
    *buf = p;
    *capacity = grown;
    return VQJ_OK;
}

void vqj_free(void *ptr) { free(ptr); }
