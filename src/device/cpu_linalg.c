/* CPU linear algebra for the diagnostics (docs/diagnostics.md): the host
 * routines of core/linalg.h on the device's (host) memory. */
#include "device/cpu.h"

#include "core/linalg.h"

static void cpu_covariance(vqji_device *dev, int n, int d, const float *x, double *centered,
                           double *cov)
{
    (void)dev;
    vqji_host_covariance(n, d, x, centered, cov);
}

static vqj_status cpu_sym_eigvals(vqji_device *dev, int n, double *a, double *w)
{
    return vqji_host_sym_eigvals(dev->ctx, n, a, w);
}

void vqji_cpu_register_linalg(vqji_device_ops *ops)
{
    ops->covariance = cpu_covariance;
    ops->sym_eigvals = cpu_sym_eigvals;
}
