/* Train a small model for a few steps on the built-in synthetic data and
 * save a checkpoint: the first half of an agent's life.
 *
 *   bin/example_train_checkpoint [CHECKPOINT] [STEPS]
 *
 * The configuration is YAML in the reference system's layout; the
 * checkpoint stores it, so bin/example_encode_tasks and bin/example_agent
 * rebuild the same model from the checkpoint alone. */
#include "common.h"

#include <string.h>
/* The dataset and batch size from the configuration: stage-level getters. */
#include <vqjepa_stages.h>

static const char config_yaml[] = "seed: 7\n"
                                  "object_encoder:\n"
                                  "  hidden_dim: 64\n"
                                  "  num_embeddings: 64\n"
                                  "  relational_layers: 2\n"
                                  "  relational_heads: 4\n"
                                  "  vq_refresh_interval: 20\n"
                                  "model:\n"
                                  "  projection_dim: 32\n"
                                  "loss:\n"
                                  "  projection_dim: 32\n"
                                  "  queue_size: 256\n"
                                  "sigreg:\n"
                                  "  num_slices: 64\n"
                                  "optimizer:\n"
                                  "  lr: 1.0e-3\n"
                                  "training:\n"
                                  "  batch_size: 32\n"
                                  "  grad_accum_steps: 1\n"
                                  "  lr_scheduler:\n"
                                  "    warmup_steps: 5\n"
                                  "    total_steps: 200\n"
                                  "synthetic:\n"
                                  "  num_examples: 2000\n";

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "example.safetensors";
    int steps = argc > 2 ? atoi(argv[2]) : 20;

    vqj_context_params cp;
    vqj_context_params_default(&cp);
    vqj_context *ctx = NULL;
    CHECK(vqj_context_create(&cp, &ctx));
    vqj_config *cfg = NULL;
    CHECK(vqj_config_parse(ctx, config_yaml, strlen(config_yaml), "example", &cfg));
    /* Every module from the configuration, seeded by its "seed". */
    vqj_trainer *trainer = NULL;
    CHECK(vqj_trainer_create_from_config(ctx, cfg, &trainer));

    vqj_dataset_params dp;
    vqj_synthetic_params sp;
    vqj_run_params rp = {.size = sizeof rp};
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params_default(&sp);
    CHECK(vqj_config_dataset_params(cfg, &dp));
    CHECK(vqj_config_synthetic_params(cfg, &sp));
    CHECK(vqj_config_run(cfg, &rp));
    vqj_dataset *data = NULL;
    CHECK(vqj_dataset_synthetic(ctx, &dp, &sp, &data));
    const int T = vqj_dataset_context_window(data), B = rp.batch_size;
    vqj_grid *context = malloc((size_t)B * T * sizeof *context);
    vqj_grid *targets = malloc((size_t)B * sizeof *targets);
    size_t n = vqj_dataset_num_examples(data);

    for (int step = 0; step < steps; step++) {
        for (int e = 0; e < B; e++) {
            const vqj_grid *cg, *tg;
            CHECK(vqj_dataset_example(data, ((size_t)step * B + e) % n, &cg, &tg));
            memcpy(context + (size_t)e * T, cg, (size_t)T * sizeof *cg);
            targets[e] = *tg;
        }
        vqj_train_metrics mt = {.size = sizeof mt};
        CHECK(vqj_trainer_step(trainer, context, targets, B, &mt));
        if (step % 5 == 0 || step == steps - 1)
            printf("step %3lld  loss %.4f  infonce %.4f  perplexity %.1f  codes used %d\n",
                   (long long)mt.step, (double)mt.loss, (double)mt.infonce,
                   (double)mt.perplexity, mt.active_codes);
    }
    /* NULL: the configuration the trainer was made from goes with it. */
    CHECK(vqj_trainer_save(trainer, path, NULL));
    printf("checkpoint: %s\n", path);

    free(context);
    free(targets);
    vqj_dataset_destroy(data);
    vqj_trainer_destroy(trainer);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
    return 0;
}
