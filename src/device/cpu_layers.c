/* CPU layer kernels: forward/backward pairs (docs/model.md). */
#include "device/cpu.h"

void vqji_cpu_register_layers(vqji_device_ops *ops)
{
    (void)ops;
}
