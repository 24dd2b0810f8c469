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

/* Adam's float scalars (formed once per update) and buffers. */
typedef struct adam_args {
    float *param, *m, *v;
    const float *grad;
    float beta1, beta2, omb1, omb2, neg_step, bc2_sqrt, eps, l2, shrink, grad_coef;
    bool use_l2, use_shrink;
} adam_args;

/* Elements [b, e): each is independent, so the split changes nothing. */
static void adam_range(void *arg, size_t b, size_t e)
{
    const adam_args *a = arg;
    float *restrict param = a->param, *restrict m = a->m, *restrict v = a->v;
    const float *restrict grad = a->grad;
    const float beta1 = a->beta1, beta2 = a->beta2, omb1 = a->omb1, omb2 = a->omb2;
    const float neg_step = a->neg_step, bc2_sqrt = a->bc2_sqrt, eps = a->eps, l2 = a->l2;
    const float shrink = a->shrink, grad_coef = a->grad_coef;
    const bool use_l2 = a->use_l2, use_shrink = a->use_shrink;
    for (size_t i = b; i < e; i++) {
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

static void cpu_adam_update(vqji_device *dev, size_t n, float *restrict param,
                            const float *restrict grad, float *restrict m, float *restrict v,
                            double lr, float beta1, float beta2, float eps, float weight_decay,
                            bool decoupled, double bias_correction1, double bias_correction2,
                            float grad_coef)
{
    /* The scalars are formed in double and rounded once, as PyTorch does with
     * its Python-float hyperparameters; the elementwise math is float in
     * torch's operation order so the two agree to rounding. */
    adam_args a = {
        .param = param,
        .m = m,
        .v = v,
        .grad = grad,
        .beta1 = beta1,
        .beta2 = beta2,
        .omb1 = (float)(1.0 - (double)beta1),
        .omb2 = (float)(1.0 - (double)beta2),
        .neg_step = (float)(-(lr / bias_correction1)),
        .bc2_sqrt = (float)sqrt(bias_correction2),
        .eps = eps,
        .l2 = decoupled ? 0.0f : weight_decay,
        .shrink = decoupled ? (float)(1.0 - lr * (double)weight_decay) : 1.0f,
        .grad_coef = grad_coef,
    };
    a.use_l2 = a.l2 != 0.0f;
    a.use_shrink = decoupled && weight_decay != 0.0f;
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS / 4, 16, adam_range, &a);
}

typedef struct blend_args {
    float decay, rest;
    const float *online;
    float *target;
} blend_args;

static void ema_blend_range(void *arg, size_t b, size_t e)
{
    const blend_args *a = arg;
    for (size_t i = b; i < e; i++)
        a->target[i] = a->target[i] * a->decay + a->rest * a->online[i];
}

static void cpu_ema_blend(vqji_device *dev, size_t n, float decay, const float *online,
                          float *target)
{
    blend_args a = {.decay = decay, .rest = (float)(1.0 - (double)decay), .online = online,
                    .target = target};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, ema_blend_range, &a);
}

void vqji_cpu_register_optim(vqji_device_ops *ops)
{
    ops->sum_squares = cpu_sum_squares;
    ops->adam_update = cpu_adam_update;
    ops->ema_blend = cpu_ema_blend;
}
