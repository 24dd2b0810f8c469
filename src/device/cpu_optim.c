/* CPU optimizer kernels (docs/optimizer.md): the gradient's sum of squares,
 * the fused Adam/AdamW update and the EMA blend of a target network. */
#include "device/cpu.h"

#include <math.h>

static double cpu_sum_squares(vqji_device *dev, size_t n, const float *x)
{
    (void)dev;
    /* Four independent partial sums: the loop is latency bound otherwise.
     * The order is fixed, so the result does not depend on anything but x. */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)x[i] * x[i];
        s1 += (double)x[i + 1] * x[i + 1];
        s2 += (double)x[i + 2] * x[i + 2];
        s3 += (double)x[i + 3] * x[i + 3];
    }
    for (; i < n; i++)
        s0 += (double)x[i] * x[i];
    return (s0 + s1) + (s2 + s3);
}

static void cpu_adam_update(vqji_device *dev, size_t n, float *restrict param,
                            const float *restrict grad, float *restrict m, float *restrict v,
                            double lr, float beta1, float beta2, float eps, float weight_decay,
                            bool decoupled, double bias_correction1, double bias_correction2,
                            float grad_coef)
{
    (void)dev;
    /* The scalars are formed in double and rounded once, as PyTorch does with
     * its Python-float hyperparameters; the elementwise math is float in
     * torch's operation order so the two agree to rounding. */
    const float omb1 = (float)(1.0 - (double)beta1);
    const float omb2 = (float)(1.0 - (double)beta2);
    const float neg_step = (float)(-(lr / bias_correction1));
    const float bc2_sqrt = (float)sqrt(bias_correction2);
    const float l2 = decoupled ? 0.0f : weight_decay;
    const float shrink = decoupled ? (float)(1.0 - lr * (double)weight_decay) : 1.0f;
    const bool use_l2 = l2 != 0.0f, use_shrink = decoupled && weight_decay != 0.0f;
    for (size_t i = 0; i < n; i++) {
        float p = param[i];
        float g = grad[i] * grad_coef;
        if (use_l2)
            g = g + l2 * p;
        if (use_shrink)
            p = p * shrink;
        float mi = m[i] * beta1 + omb1 * g;
        float vi = v[i] * beta2 + omb2 * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + neg_step * mi / denom;
    }
}

static void cpu_ema_blend(vqji_device *dev, size_t n, float decay, const float *online,
                          float *target)
{
    (void)dev;
    const float rest = (float)(1.0 - (double)decay);
    for (size_t i = 0; i < n; i++)
        target[i] = target[i] * decay + rest * online[i];
}

void vqji_cpu_register_optim(vqji_device_ops *ops)
{
    ops->sum_squares = cpu_sum_squares;
    ops->adam_update = cpu_adam_update;
    ops->ema_blend = cpu_ema_blend;
}
