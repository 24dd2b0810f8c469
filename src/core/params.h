/* Copying a caller's size-prefixed params struct over the defaults: a caller
 * built against an older header passes a smaller size and gets the defaults
 * for the fields it does not know; a larger size from a newer header is
 * accepted when the extra bytes are zero (nothing we do not understand was
 * asked for). */
#ifndef VQJ_PARAMS_H
#define VQJ_PARAMS_H

#include "core/core.h"

#include <string.h>

/* `first_size` is the struct's size in the first release that had it. */
static inline vqj_status vqji_params_copy(const vqj_context *ctx, void *dst, size_t dst_size,
                                          const void *src, size_t first_size, const char *what)
{
    size_t src_size = *(const size_t *)src;
    if (src_size < first_size)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.size is %zu, smaller than any published version (%zu); fill the "
                         "struct with its *_default() function",
                         what, src_size, first_size);
    if (src_size > dst_size) {
        const unsigned char *extra = (const unsigned char *)src + dst_size;
        for (size_t i = 0; i < src_size - dst_size; i++)
            if (extra[i])
                return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                                 "%s has fields from a newer libvqjepa (size %zu > %zu) that "
                                 "this version cannot honour",
                                 what, src_size, dst_size);
    }
    memcpy(dst, src, src_size < dst_size ? src_size : dst_size);
    *(size_t *)dst = dst_size;
    return VQJ_OK;
}

#endif
