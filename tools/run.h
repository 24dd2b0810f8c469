/* A training run driven by the CLI (`train`, `ablate`, `encode`): every
 * setting comes from one configuration, so a run folder and its
 * checkpoints can always say exactly what was trained. */
#ifndef VQJ_RUN_H
#define VQJ_RUN_H

#include "vqjepa_stages.h"

#include <stdint.h>

/* What the command line adds to or overrides in the configuration. */
typedef struct run_options {
    const char *config_path; /* NULL: the built-in defaults */
    const char *config_text; /* instead of config_path: YAML text (ablate's variants) */
    const char *data_path;   /* ARC file/folder or .jsonl; NULL: the config's, else synthetic */
    const char *out_dir;     /* NULL: the config's training.checkpoint_dir */
    const char *resume;      /* a checkpoint to continue from */
    int epochs;              /* > 0 overrides training.epochs */
    int64_t steps;           /* > 0: stop after this many optimizer steps */
    int threads;             /* 0: all cores */
    int64_t seed;            /* >= 0 overrides seed */
    int device;              /* >= 0: a vqj_device_kind overriding training.device */
    int batch;               /* > 0 overrides training.batch_size */
    int checkpoint_steps;    /* > 0 overrides training.checkpoint_steps; < 0: off; 0: the config's */
    int abort_on_collapse;
    int skip_bad;
    int quiet;               /* no progress output */
    const char *label;       /* shown in progress lines (ablate's variant) */
} run_options;

/* What a run came to, for `ablate`'s table. */
typedef struct run_outcome {
    int64_t steps;          /* optimizer steps completed */
    int epochs;             /* epochs completed */
    double final_val, best_val;
    double context_rank_start, context_rank_end, target_rank_start, target_rank_end;
    double usage_start, usage_min, usage_end;
    double usage_min_after_warmup; /* the lowest window usage past the warmup steps */
    double perplexity_end;         /* the last window's code perplexity */
    double final_val_infonce;      /* the last validation's InfoNCE term */
    int64_t reseeded_max_after_warmup; /* most codes re-seeded in one step past warmup */
    int aborted;            /* an abort criterion fired */
    char abort_reason[200];
    char out_dir[4096];
} run_outcome;

/* Exit statuses beyond cli.h's. */
enum { RUN_INTERRUPTED = 130, RUN_ABORTED = 3 };

/* Train as `o` says; an exit status (cli.h's, RUN_INTERRUPTED or
 * RUN_ABORTED). `out` may be NULL. */
int run_training(const run_options *o, run_outcome *out);

/* The options `train` and `ablate` share: 1 when argv[*i] (and maybe its
 * value, advancing *i) was one, 0 when not, -1 on error. */
int run_parse_option(run_options *o, int argc, char **argv, int *i);

/* Load a configuration (file, text or defaults) with warnings to stderr;
 * NULL after printing why. */
vqj_config *run_load_config(vqj_context *ctx, const run_options *o);

/* The configuration --config names: NULL or "builtin:default" the command
 * line's built-in default, "builtin:gentle" the library's defaults (the
 * seed's gentle run), anything else a YAML file. */
vqj_status run_config_open(vqj_context *ctx, const char *path, vqj_config **out);

/* Data-parallel runs (docs/distributed.md). Launched by mpirun (or another
 * PMI launcher) in an MPI build, the world communicator: MPI is initialized
 * by the library on the first call and finalized at exit. NULL otherwise. */
vqj_comm *run_comm(void);
/* This process's rank (0 without a communicator): only rank 0 writes. */
int run_rank(void);
/* A rank failed: end every rank of the run (MPI_Abort) so that none waits
 * for it forever. Does nothing without a communicator of size > 1. */
void run_comm_fail(int status);

/* A context on `device` whose warnings go to stderr (NULL after printing
 * why). Seeds come from the configuration, not the context. */
vqj_context *run_context(const char *command, int threads, vqj_device_kind device);

/* The device a --device value names: 0 (and *out set) for "cpu" or "cuda"
 * that this build can run; -1 after printing why otherwise (a CPU build
 * asked for cuda). */
int run_parse_device(const char *command, const char *name, vqj_device_kind *out);

/* Make `cfg` compute on `device` (training.device); 0 on success. */
int run_config_device(vqj_config *cfg, vqj_device_kind device);

/* A checkpoint's model: with `trained`, read whole from the file
 * (vqj_model_load); without, the same configuration (and seed) as
 * initialized before training. */
typedef struct run_checkpoint {
    vqj_context *ctx;
    vqj_trainer *init;  /* the untrained trainer behind `model` (trained = 0) */
    vqj_model *base;    /* the loaded model when `model` retokenizes it */
    vqj_model *model;
} run_checkpoint;

/* 0 on success (after printing why otherwise, prefixed by `command`).
 * `over` (may be NULL) overrides the checkpoint's tokenizer params in its
 * fields that are not -1 (background: not 0xffff). */
int run_checkpoint_open(const char *command, const char *path, int threads,
                        vqj_device_kind device, int trained, const vqj_tokenizer_params *over,
                        run_checkpoint *c);
void run_checkpoint_close(run_checkpoint *c);

#endif
