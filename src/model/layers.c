/* Composite layers over the device op table (docs/model.md, "Layers"). */
#include "model/layers.h"

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

/* The splitmix64 step: a bijective 64-bit mix with good avalanche. */
static uint64_t vqji_seed_mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t vqji_dropout_seed(uint64_t context_seed, uint64_t step, uint32_t site)
{
    /* Chained mixing rather than a plain XOR, so that (step, site) pairs
     * cannot cancel each other. The constant keeps dropout seeds apart from
     * the vqji_rng streams derived from the same context seed. */
    uint64_t h = vqji_seed_mix(context_seed ^ 0x44524F504F555421ull); /* "DROPOUT!" */
    h = vqji_seed_mix(h ^ step);
    return vqji_seed_mix(h ^ (uint64_t)site);
}
