/* The tokenizer on arbitrary grids: the first bytes choose the params and
 * the grids' sides (sides of 0 and above VQJ_MAX_GRID_SIDE included), the
 * rest are the cells (colors above 9 included). Valid grids tokenize with
 * at most max_objects objects each; invalid ones are refused cleanly. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vqj_context *ctx = fuzz_context();
    if (size < 4)
        return 0;
    vqj_tokenizer_params p;
    vqj_tokenizer_params_default(&p);
    p.connectivity = data[0] & 1 ? 8 : 4;
    p.respect_colors = (data[0] >> 1) & 1;
    p.normalize = (data[0] >> 2) & 1;
    p.max_objects = 1 + data[1] % 64;
    p.max_color_features = data[2] % 11;
    p.background = (uint16_t)(data[3] & 0x3);
    data += 4;
    size -= 4;
    vqj_grid grids[4];
    size_t n = 0;
    while (n < 4 && size >= 2) {
        /* sides 0..31, and 32 stands for VQJ_MAX_GRID_SIDE + 1: both ends refused */
        int h = data[0] % 33, w = data[1] % 33;
        h = h == 32 ? VQJ_MAX_GRID_SIDE + 1 : h;
        w = w == 32 ? VQJ_MAX_GRID_SIDE + 1 : w;
        data += 2;
        size -= 2;
        size_t cells = (size_t)h * (size_t)w;
        if (cells > size)
            break;
        grids[n].height = h;
        grids[n].width = w;
        grids[n].cells = data; /* colors 10..255 must be refused */
        data += cells;
        size -= cells;
        n++;
    }
    if (n == 0)
        return 0;
    vqj_tokens *t = NULL;
    if (vqj_tokens_create(ctx, &p, &t) != VQJ_OK)
        abort();
    vqj_status st = vqj_tokenize(ctx, t, grids, n);
    fuzz_check_status(st);
    if (st == VQJ_OK) {
        const int32_t *off = vqj_tokens_offsets(t);
        if (vqj_tokens_num_grids(t) != n)
            abort();
        for (size_t g = 0; g < n; g++)
            if (off[g + 1] < off[g] || off[g + 1] - off[g] > p.max_objects)
                abort();
        size_t rows = vqj_tokens_num_objects(t) * (size_t)vqj_tokens_feature_dim(t);
        const float *f = vqj_tokens_features(t);
        for (size_t i = 0; i < rows; i++)
            if (!(f[i] == f[i])) /* finite features only */
                abort();
    }
    vqj_tokens_destroy(t);
    return 0;
}
