/* JSONL manifests (vqj_dataset_from_jsonl), plain or, when the input
 * starts with the gzip magic, gzip-compressed; with skip_bad when the
 * input's length is odd. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vqj_context *ctx = fuzz_context();
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const char *path = fuzz_file(data, size, gz ? ".jsonl.gz" : ".jsonl");
    vqj_dataset_params p;
    vqj_dataset_params_default(&p);
    p.context_window = 2;
    p.skip_bad = (int)(size & 1);
    vqj_dataset *ds = NULL;
    vqj_status st = vqj_dataset_from_jsonl(ctx, &p, path, &ds);
    fuzz_check_status(st);
    if (st == VQJ_OK && vqj_dataset_num_examples(ds) == 0)
        abort(); /* documented: no examples is an error */
    vqj_dataset_destroy(ds);
    unlink(path);
    return 0;
}
