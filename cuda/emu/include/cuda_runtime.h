/* The CPU emulation's stand-in for the CUDA runtime header (cuda/emu/emu.h). */
#include "../emu.h"
