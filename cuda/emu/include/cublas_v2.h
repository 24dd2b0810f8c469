/* The CPU emulation's stand-in for the cuBLAS header (cuda/emu/emu.h). */
#include "../emu.h"
