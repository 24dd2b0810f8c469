#include "core.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fault injection (core.h): the countdown to the allocation that fails. */
static atomic_long fail_countdown;
static atomic_long alloc_count;

void vqji_alloc_fail_at(long n)
{
    atomic_store(&fail_countdown, 0);
    atomic_store(&alloc_count, 0);
    atomic_store(&fail_countdown, n > 0 ? n : 0);
}

long vqji_alloc_count(void) { return atomic_load(&alloc_count); }

bool vqji_alloc_injected(void)
{
    atomic_fetch_add(&alloc_count, 1);
    if (atomic_load_explicit(&fail_countdown, memory_order_relaxed) <= 0)
        return false;
    return atomic_fetch_sub(&fail_countdown, 1) == 1;
}

static _Atomic(vqji_write_fn) write_hook;

void vqji_set_write_hook(vqji_write_fn fn) { atomic_store(&write_hook, fn); }

long vqji_write(int fd, const void *buf, size_t n)
{
    vqji_write_fn fn = atomic_load(&write_hook);
    return fn ? fn(fd, buf, n) : (long)write(fd, buf, n);
}

static _Atomic(vqji_io_fault_fn) io_fault_hook;

void vqji_set_io_fault_hook(vqji_io_fault_fn fn) { atomic_store(&io_fault_hook, fn); }

int vqji_io_fault(vqji_io_op op, const char *path)
{
    vqji_io_fault_fn fn = atomic_load(&io_fault_hook);
    int err = fn ? fn(op, path) : 0;
    if (err)
        errno = err;
    return err;
}

bool vqji_mul_size(size_t count, size_t size, size_t *out)
{
    if (size != 0 && count > SIZE_MAX / size)
        return false;
    *out = count * size;
    return true;
}

vqj_status vqji_malloc(const vqj_context *ctx, size_t bytes, const char *what, void **out)
{
    void *p = vqji_alloc_injected() ? NULL : malloc(bytes ? bytes : 1);
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
    void *p = vqji_alloc_injected() ? NULL : calloc(bytes ? bytes : 1, 1);
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
    void *p = vqji_alloc_injected() ? NULL : realloc(*buf, grown ? grown : 1);
    if (!p)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "out of memory growing %s to %zu bytes",
                         what, grown);
    *buf = p;
    *capacity = grown;
    return VQJ_OK;
}

void vqj_free(void *ptr) { free(ptr); }

/* The memory limit of vqj_trainer_create_from_config() and of inflated
 * gzip input: VQJEPA_MEMORY_LIMIT (bytes,
 * with an optional k, M, G or T suffix, powers of 1024; 0 turns the check
 * off) or else 8 x the machine's physical memory (0 when unknown: no
 * check). The factor 8: the estimate assumes every grid fills max_objects
 * slots, and real grids fill few (builtin:gentle, 64 slots: 35 GB
 * estimated, 3.3 GB peak RSS), so only a configuration that cannot fit
 * whatever the data is refused by default, on machines down to 5 GB.
 * Returns -1 for a malformed variable. */
int vqji_memory_limit(double *limit, const char **source)
{
    const char *env = getenv("VQJEPA_MEMORY_LIMIT");
    if (env && *env) {
        char *end = NULL;
        double v = strtod(env, &end);
        double mul = 1;
        if (end && *end) {
            const char *units = "kMGT";
            const char *u = strchr(units, *end);
            if (!u || end[1])
                return -1;
            for (const char *q = units; q <= u; q++)
                mul *= 1024;
        }
        if (end == env || !(v >= 0) || v > 1e30)
            return -1;
        *limit = v * mul;
        *source = "VQJEPA_MEMORY_LIMIT";
        return 0;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    *limit = pages > 0 && page > 0 ? 8.0 * (double)pages * (double)page : 0;
    *source = "8 x the machine's physical memory; VQJEPA_MEMORY_LIMIT overrides it";
    return 0;
}
