#include "core.h"
#include "formulas.h"

#include <math.h>

void vqji_rng_seed(vqji_rng *rng, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < 4; i++, x += VQJI_SPLITMIX64_GAMMA)
        rng->s[i] = vqji_splitmix64(x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t vqji_rng_next(vqji_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float vqji_rng_uniform(vqji_rng *rng)
{
    return (float)(vqji_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

uint64_t vqji_rng_below(vqji_rng *rng, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do
        r = vqji_rng_next(rng);
    while (r >= limit);
    return r % n;
}

float vqji_rng_normal(vqji_rng *rng)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - (double)(vqji_rng_next(rng) >> 11) * 0x1.0p-53;
    double u2 = (double)(vqji_rng_next(rng) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
