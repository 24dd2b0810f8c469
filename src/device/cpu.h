/* The CPU backend's parts: each file fills its slots of the op table. */
#ifndef VQJ_CPU_H
#define VQJ_CPU_H

#include "device/device.h"
#include "device/threadpool.h"

void vqji_cpu_register_layers(vqji_device_ops *ops); /* cpu_layers.c */
void vqji_cpu_register_vq(vqji_device_ops *ops);     /* cpu_vq.c */
void vqji_cpu_register_optim(vqji_device_ops *ops);  /* cpu_optim.c */
void vqji_cpu_register_loss(vqji_device_ops *ops);   /* cpu_loss.c */
void vqji_cpu_register_linalg(vqji_device_ops *ops); /* cpu_linalg.c */

/* The pool that runs the non-GEMM kernels on the context's num_threads
 * (dev->impl of a CPU device; NULL, as on a bare host table: serial). */
static inline vqji_pool *vqji_cpu_pool(const vqji_device *dev)
{
    return dev ? (vqji_pool *)dev->impl : NULL;
}

/* Elementwise loops split into parts of at least this many floats: below it,
 * waking a worker costs more than it saves. */
#define VQJI_PAR_MIN_ELEMS 16384

#endif
