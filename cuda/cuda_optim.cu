/* CUDA optimizer kernels (src/device/cpu_optim.c; docs/optimizer.md): the
 * fused Adam/AdamW update (one pass over parameters, gradient and both
 * moments, with clipping and gradient scale folded into grad_coef) and the
 * EMA blend of a target network. Same float operations in the same order as
 * the CPU, so the two agree bit for bit. sum_squares, the global-norm
 * clipping's reduction, shares cuda_backend.cu's deterministic two-stage
 * reduction. */
#include "cuda_common.h"

#include <math.h>

typedef struct adam_consts {
    float beta1, beta2, omb1, omb2, neg_step, bc2_sqrt, eps, l2, shrink, grad_coef;
    int use_l2, use_shrink;
} adam_consts;

static __global__ void k_adam(size_t n, float *param, const float *grad, float *m, float *v,
                              adam_consts k)
{
    CU_FOR(i, n)
    {
        float p = param[i];
        float g = grad[i] * k.grad_coef;
        if (k.use_l2)
            g = g + k.l2 * p;
        if (k.use_shrink)
            p = p * k.shrink;
        float mi = m[i] * k.beta1 + k.omb1 * g;
        float vi = v[i] * k.beta2 + k.omb2 * g * g;
        float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + k.neg_step * mi / denom;
    }
}

static void cuda_adam_update(vqji_device *dev, size_t n, float *param, const float *grad,
                             float *m, float *v, double lr, float beta1, float beta2, float eps,
                             float weight_decay, bool decoupled, double bias_correction1,
                             double bias_correction2, float grad_coef)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    /* The scalars exactly as cpu_optim.c forms them (double, rounded once). */
    adam_consts k;
    k.beta1 = beta1;
    k.beta2 = beta2;
    k.omb1 = (float)(1.0 - (double)beta1);
    k.omb2 = (float)(1.0 - (double)beta2);
    k.neg_step = (float)(-(lr / bias_correction1));
    k.bc2_sqrt = (float)sqrt(bias_correction2);
    k.eps = eps;
    k.l2 = decoupled ? 0.0f : weight_decay;
    k.shrink = decoupled ? (float)(1.0 - lr * (double)weight_decay) : 1.0f;
    k.use_l2 = k.l2 != 0.0f;
    k.use_shrink = decoupled && weight_decay != 0.0f;
    k.grad_coef = grad_coef;
    k_adam<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, param, grad, m, v, k);
    cu_launched(cd, "adam_update");
}

static __global__ void k_ema_blend(size_t n, float decay, float rest, const float *online,
                                   float *target)
{
    CU_FOR(i, n) target[i] = target[i] * decay + rest * online[i];
}

static void cuda_ema_blend(vqji_device *dev, size_t n, float decay, const float *online,
                           float *target)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    const float rest = (float)(1.0 - (double)decay);
    k_ema_blend<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, decay, rest,
                                                                             online, target);
    cu_launched(cd, "ema_blend");
}

void vqji_cuda_register_optim(vqji_device_ops *ops)
{
    ops->adam_update = cuda_adam_update;
    ops->ema_blend = cuda_ema_blend;
}
