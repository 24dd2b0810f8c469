/* Composite layers over the device op table (docs/model.md, "Layers"). */
#include "model/layers.h"
#include "core/formulas.h"

void vqji_linear_forward(vqji_device *dev, int n, int in, int out, const float *x,
                         const float *w, const float *b, float *y)
{
    /* y = x W^T: W is stored [out x in], so it is op(B) = W transposed. */
    dev->ops->gemm(dev, false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (b)
        dev->ops->bias_forward(dev, n, out, b, y);
}

void vqji_linear_backward(vqji_device *dev, int n, int in, int out, const float *x,
                          const float *w, const float *dy, float *dx, float *dw, float *db)
{
    /* beta = 1 makes both GEMMs accumulate, as every backward op does. */
    if (dx)
        dev->ops->gemm(dev, false, false, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    dev->ops->gemm(dev, true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db)
        dev->ops->bias_backward(dev, n, out, dy, db);
}

uint64_t vqji_dropout_seed(uint64_t context_seed, uint64_t step, uint32_t site)
{
    /* Chained mixing rather than a plain XOR, so that (step, site) pairs
     * cannot cancel each other. The constant keeps dropout seeds apart from
     * the vqji_rng streams derived from the same context seed. */
    uint64_t h = vqji_splitmix64(context_seed ^ 0x44524F504F555421ull); /* "DROPOUT!" */
    h = vqji_splitmix64(h ^ step);
    return vqji_splitmix64(h ^ (uint64_t)site);
}
