/* tools/bench_phases.c: a training step's time by kind of device op, and
 * its GEMMs replayed through plain sgemm (`vqjepa bench --phases`). */
#ifndef VQJ_BENCH_PHASES_H
#define VQJ_BENCH_PHASES_H

#include <stdio.h>
#include <vqjepa_stages.h>

/* Time every op of ctx's device from now on (one context at a time). */
void bench_phases_install(vqj_context *ctx);
/* Restore ctx's op table and free the recorded GEMM calls. */
void bench_phases_uninstall(vqj_context *ctx);
/* Zero the times; record (1) or not (0) the GEMM calls from now on. */
void bench_phases_reset(int record);
/* Print the split of `steps` steps of mean step_s seconds (text, or one
 * JSON line), after replaying the recorded GEMMs. */
void bench_phases_report(FILE *f, const char *variant, int steps, double step_s, int json);

#endif
