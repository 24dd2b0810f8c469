/* Internal core: the context, error reporting, allocation and the seeded RNG.
 * Internal symbols use the vqji_ prefix; only vqj_ symbols are exported. */
#ifndef VQJ_CORE_H
#define VQJ_CORE_H

#include "vqjepa_stages.h"
#include "core/limits.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VQJI_ERROR_MAX 512

typedef struct vqji_device vqji_device;

struct vqj_context {
    vqj_context_params params; /* a full, current-size copy */
    vqji_device *device;
    const vqj_context *parent; /* a derived context: errors go to the parent's */
    vqj_comm *comm; /* borrowed; NULL: one process (src/comm/comm.h) */
};

/* A context over `parent`'s device with another seed (a trainer built from
 * a configuration computes with the configuration's seed). The parent must
 * outlive it. Destroy it with vqj_context_destroy(), which leaves the shared
 * device alone. */
vqj_status vqji_context_derive(vqj_context *parent, uint64_t seed, vqj_context **out);
/* The context `ctx` was derived from (itself unless derived). */
const vqj_context *vqji_context_root(const vqj_context *ctx);
/* Whether handles of `a` and `b` may work together: the same context, or
 * contexts derived from one (they share its device). */
static inline bool vqji_same_context(const vqj_context *a, const vqj_context *b)
{
    return vqji_context_root(a) == vqji_context_root(b);
}

#if defined(__GNUC__) || defined(__clang__)
#define VQJI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define VQJI_PRINTF(f, a)
#endif

/* Record `status` with a formatted message for `ctx` (may be NULL) on the
 * calling thread and return `status`, so error paths read
 * `return vqji_fail(ctx, VQJ_ERR_..., "...", ...);`. */
vqj_status vqji_fail(const vqj_context *ctx, vqj_status status, const char *fmt, ...)
    VQJI_PRINTF(3, 4);
vqj_status vqji_vfail(const vqj_context *ctx, vqj_status status, const char *fmt, va_list ap);
/* Forget the calling thread's last error (called on entry to API functions). */
void vqji_clear_error(const vqj_context *ctx);

/* Deliver a message to the context's log callback, if any. */
void vqji_log(const vqj_context *ctx, vqj_log_level level, const char *fmt, ...) VQJI_PRINTF(3, 4);

/* Allocation that records a message naming `what` on failure. A request of
 * zero bytes succeeds with a valid pointer so callers need no special case. */
vqj_status vqji_malloc(const vqj_context *ctx, size_t bytes, const char *what, void **out);
vqj_status vqji_calloc(const vqj_context *ctx, size_t count, size_t size, const char *what,
                       void **out);
/* Grow *buf to at least `bytes` (contents kept); *capacity tracks its size. */
vqj_status vqji_reserve(const vqj_context *ctx, void **buf, size_t *capacity, size_t bytes,
                        const char *what);
/* count * size, false when it overflows size_t. */
bool vqji_mul_size(size_t count, size_t size, size_t *out);
/* The memory limit in bytes (0: none) and where it comes from: the variable
 * VQJEPA_MEMORY_LIMIT, else 8 x physical memory (docs/failures.md). -1 for
 * a malformed variable. */
int vqji_memory_limit(double *limit, const char **source);

/* Fault injection for the tests (tests/alloc_fail_test.c, tests/test_checkpoint.c;
 * not public ABI, docs/failures.md). vqji_alloc_fail_at(n), n > 0: the
 * n-th allocation through vqji_malloc/calloc/reserve from now on (that one
 * only) fails as if memory were exhausted; 0 turns it off. Either way the
 * count of allocations restarts at 0: vqji_alloc_count() reads it.
 * vqji_alloc_injected() counts one allocation and says whether it is the
 * one to fail (for allocators outside this file: jansson's in the tests). */
void vqji_alloc_fail_at(long n);
long vqji_alloc_count(void);
bool vqji_alloc_injected(void);
/* The write(2) that checkpoint writes go through; NULL restores write(2). A
 * test installs one that fails (ENOSPC, EIO) or writes short. */
typedef long (*vqji_write_fn)(int fd, const void *buf, size_t n);
void vqji_set_write_hook(vqji_write_fn fn);
long vqji_write(int fd, const void *buf, size_t n);
/* The other steps of an atomic file write (checkpoint.c): creating the
 * temporary file, fsyncing it, renaming it over the final name and
 * fsyncing the folder. vqji_io_fault(op, path) is called before each one
 * with the final path: 0 lets it run; otherwise errno is set to the value a
 * test's hook returned and the step fails as if the system call had.
 * NULL (the default) injects nothing. */
typedef enum vqji_io_op {
    VQJI_IO_CREATE,
    VQJI_IO_FSYNC,
    VQJI_IO_RENAME,
    VQJI_IO_SYNC_FOLDER
} vqji_io_op;
typedef int (*vqji_io_fault_fn)(vqji_io_op op, const char *path);
void vqji_set_io_fault_hook(vqji_io_fault_fn fn);
int vqji_io_fault(vqji_io_op op, const char *path);

/* Seeded RNG: xoshiro256** seeded through splitmix64. Deterministic across
 * platforms; one state per consumer, derived from the context seed and a
 * stream id so that consumers never share a sequence. */
typedef struct vqji_rng {
    uint64_t s[4];
} vqji_rng;

void vqji_rng_seed(vqji_rng *rng, uint64_t seed, uint64_t stream);
uint64_t vqji_rng_next(vqji_rng *rng);
/* Uniform in [0, 1) with 24 bits, exactly representable as float. */
float vqji_rng_uniform(vqji_rng *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t vqji_rng_below(vqji_rng *rng, uint64_t n);
/* Standard normal (Box-Muller, one value per call). */
float vqji_rng_normal(vqji_rng *rng);

#endif
