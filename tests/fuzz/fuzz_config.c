/* YAML configurations (vqj_config_parse): any bytes give a config or a
 * clean error; a config that parses is written back as YAML that parses
 * again and writes the same text. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vqj_context *ctx = fuzz_context();
    vqj_config *cfg = NULL, *again = NULL;
    vqj_status st = vqj_config_parse(ctx, (const char *)data, size, "fuzz", &cfg);
    fuzz_check_status(st);
    if (st != VQJ_OK)
        return 0;
    char *yaml = NULL, *yaml2 = NULL;
    if (vqj_config_write_yaml(cfg, &yaml) != VQJ_OK ||
        vqj_config_parse(ctx, yaml, strlen(yaml), "again", &again) != VQJ_OK ||
        vqj_config_write_yaml(again, &yaml2) != VQJ_OK || strcmp(yaml, yaml2) != 0)
        abort();
    vqj_run_params rp = {.size = sizeof rp};
    if (vqj_config_run(cfg, &rp) != VQJ_OK)
        abort();
    vqj_free(yaml);
    vqj_free(yaml2);
    vqj_config_destroy(again);
    vqj_config_destroy(cfg);
    return 0;
}
