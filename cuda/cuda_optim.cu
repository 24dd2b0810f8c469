/* CUDA optimizer kernels (src/device/cpu_optim.c; docs/optimizer.md): the
 * fused Adam/AdamW update (one pass over parameters, gradient and both
 * moments, with clipping and gradient scale folded into grad_coef) and the
 * EMA blend of a target network. Same float operations in the same order as
 * the CPU, so the two agree bit for bit. sum_squares, the global-norm
 * clipping's reduction, shares cuda_backend.cu's deterministic two-stage
 * reduction. */
#include "cuda_common.h"

#include <math.h>

/* The scalars and the elementwise math: core/formulas.h, as cpu_optim.c. */
static __global__ void k_adam(size_t n, float *param, const float *grad, float *m, float *v,
                              vqji_adam_consts k)
{
    CU_FOR(i, n) param[i] = vqji_adam_element(k, param[i], grad[i], &m[i], &v[i]);
}

static void cuda_adam_update(vqji_device *dev, size_t n, float *param, const float *grad,
                             float *m, float *v, double lr, float beta1, float beta2, float eps,
                             float weight_decay, bool decoupled, double bias_correction1,
                             double bias_correction2, float grad_coef)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    const vqji_adam_consts k =
        vqji_adam_consts_make(lr, beta1, beta2, eps, weight_decay, decoupled, bias_correction1,
                              bias_correction2, grad_coef);
    k_adam<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, param, grad, m, v, k);
    cu_launched(cd, "adam_update");
}

static __global__ void k_ema_blend(size_t n, float decay, float rest, const float *online,
                                   float *target)
{
    CU_FOR(i, n) target[i] = vqji_ema_blend1(target[i], online[i], decay, rest);
}

static void cuda_ema_blend(vqji_device *dev, size_t n, float decay, const float *online,
                           float *target)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    const float rest = vqji_ema_rest(decay);
    k_ema_blend<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, decay, rest,
                                                                             online, target);
    cu_launched(cd, "ema_blend");
}

void vqji_cuda_register_optim(vqji_device_ops *ops)
{
    ops->adam_update = cuda_adam_update;
    ops->ema_blend = cuda_ema_blend;
}
