/* Safetensors checkpoints: vqj_checkpoint_verify(), the metadata reader
 * and vqj_checkpoint_load() into a small codebook (K 4, D 3) on any bytes.
 * A failed load leaves the codebook unchanged (documented). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vqj_context *ctx = fuzz_context();
    static vqj_codebook *cb;
    if (!cb) {
        vqj_codebook_params p;
        vqj_codebook_params_default(&p);
        p.num_embeddings = 4;
        p.dim = 3;
        if (vqj_codebook_create(ctx, &p, &cb) != VQJ_OK)
            abort();
    }
    const char *path = fuzz_file(data, size, ".safetensors");
    fuzz_check_status(vqj_checkpoint_verify(ctx, path));
    char buf[64];
    size_t len = 0;
    fuzz_check_status(vqj_checkpoint_read_metadata(ctx, path, "format", buf, sizeof buf, &len));
    vqj_weights *w = vqj_codebook_weights(cb);
    float before[12], after[12];
    if (vqj_weights_read(w, "codebook.embedding", before, 12) != VQJ_OK)
        abort();
    vqj_checkpoint_entry e = {NULL, w};
    vqj_status st = vqj_checkpoint_load(ctx, path, &e, 1, VQJ_CHECKPOINT_ALLOW_EXTRA);
    fuzz_check_status(st);
    if (vqj_weights_read(w, "codebook.embedding", after, 12) != VQJ_OK)
        abort();
    if (st != VQJ_OK && memcmp(before, after, sizeof before) != 0)
        abort();
    unlink(path);
    return 0;
}
