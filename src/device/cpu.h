/* The CPU backend's parts: each file fills its slots of the op table. */
#ifndef VQJ_CPU_H
#define VQJ_CPU_H

#include "device/device.h"

void vqji_cpu_register_layers(vqji_device_ops *ops); /* cpu_layers.c */
void vqji_cpu_register_vq(vqji_device_ops *ops);     /* cpu_vq.c */
void vqji_cpu_register_optim(vqji_device_ops *ops);  /* cpu_optim.c */
void vqji_cpu_register_loss(vqji_device_ops *ops);   /* cpu_loss.c */
void vqji_cpu_register_linalg(vqji_device_ops *ops); /* cpu_linalg.c */

#endif
