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
    vqji_adam_consts k;
} adam_args;

/* Elements [b, e): each is independent, so the split changes nothing. */
static void adam_range(void *arg, size_t b, size_t e)
{
    const adam_args *a = arg;
    float *restrict param = a->param, *restrict m = a->m, *restrict v = a->v;
    const float *restrict grad = a->grad;
    const vqji_adam_consts k = a->k;
    for (size_t i = b; i < e; i++)
        param[i] = vqji_adam_element(k, param[i], grad[i], &m[i], &v[i]);
}

static void cpu_adam_update(vqji_device *dev, size_t n, float *restrict param,
                            const float *restrict grad, float *restrict m, float *restrict v,
                            double lr, float beta1, float beta2, float eps, float weight_decay,
                            bool decoupled, double bias_correction1, double bias_correction2,
                            float grad_coef)
{
    /* The scalars and the elementwise math: core/formulas.h. */
    adam_args a = {
        .param = param,
        .m = m,
        .v = v,
        .grad = grad,
        .k = vqji_adam_consts_make(lr, beta1, beta2, eps, weight_decay, decoupled,
                                   bias_correction1, bias_correction2, grad_coef),
    };
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
        a->target[i] = vqji_ema_blend1(a->target[i], a->online[i], a->decay, a->rest);
}

static void cpu_ema_blend(vqji_device *dev, size_t n, float decay, const float *online,
                          float *target)
{
    blend_args a = {.decay = decay, .rest = vqji_ema_rest(decay), .online = online,
                    .target = target};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, ema_blend_range, &a);
}

void vqji_cpu_register_optim(vqji_device_ops *ops)
{
    ops->sum_squares = cpu_sum_squares;
    ops->adam_update = cpu_adam_update;
    ops->ema_blend = cpu_ema_blend;
}
