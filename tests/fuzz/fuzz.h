/* What the libFuzzer harnesses of tests/fuzz/ share: one silent context per
 * process, one thread, and a private file for the inputs that the library
 * reads from a path (docs/failures.md, "Fuzzing"). */
#ifndef VQJ_FUZZ_H
#define VQJ_FUZZ_H

#include "vqjepa_stages.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline vqj_context *fuzz_context(void)
{
    static vqj_context *ctx;
    if (!ctx) {
        vqj_context_params p;
        vqj_context_params_default(&p);
        p.num_threads = 1;
        if (vqj_context_create(&p, &ctx) != VQJ_OK)
            abort();
    }
    return ctx;
}

/* Write the input to a file of this process named by `suffix` (the library
 * picks gzip by a ".gz" ending); its path, valid until the next call. */
static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[256];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/vqj-fuzz-%ld%s", dir, (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    return path;
}

/* A status is one of the documented codes and comes with a message. */
static inline void fuzz_check_status(vqj_status st)
{
    if (st == VQJ_OK)
        return;
    if (st != VQJ_ERR_INVALID_ARGUMENT && st != VQJ_ERR_PARSE && st != VQJ_ERR_IO &&
        st != VQJ_ERR_UNSUPPORTED && st != VQJ_ERR_NUMERIC && st != VQJ_ERR_OUT_OF_MEMORY)
        abort();
    if (!*vqj_last_error())
        abort();
}

#endif
