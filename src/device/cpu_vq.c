/* CPU vector-quantization kernels: nearest code and EMA statistics. */
#include "device/cpu.h"

void vqji_cpu_register_vq(vqji_device_ops *ops)
{
    (void)ops;
}
