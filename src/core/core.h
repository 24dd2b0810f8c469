/* Internal core: the context, error reporting, allocation and the seeded RNG.
 * Internal symbols use the vqji_ prefix; only vqj_ symbols are exported. */
#ifndef VQJ_CORE_H
#define VQJ_CORE_H

#include "vqjepa.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VQJI_ERROR_MAX 512

typedef struct vqji_device vqji_device;

struct vqj_context {
    vqj_context_params params; /* a full, current-size copy */
    vqji_device *device;
    vqj_comm *comm; /* borrowed; NULL: one process (src/comm/comm.h) */
};

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
