/* Internal side of the configuration files (src/config/config.c): the key
 * table, exposed so that tests can check that docs/config.md names every key
 * and that each key's range agrees with its module's create-time checks. */
#ifndef VQJ_CONFIG_H
#define VQJ_CONFIG_H

#include "core/core.h"

/* Number of keys the library reads, in the order vqj_config_write_yaml()
 * writes them. */
size_t vqji_config_num_keys(void);
/* Dotted path of key i ("object_encoder.hidden_dim"); NULL when out of range. */
const char *vqji_config_key(size_t i);
/* 1 when key i is this library's own (absent from the reference system's
 * files), 0 when the reference system has it too. */
int vqji_config_key_is_extension(size_t i);

/* Keys of the reference system that are accepted and ignored with a
 * warning; a section ("pre_tokenized") stands for every key under it. */
size_t vqji_config_num_ignored(void);
const char *vqji_config_ignored(size_t i);

/* The 1-based line at which `path` was set by the file, 0 when it kept its
 * default (or is not a key). */
int vqji_config_key_line(const vqj_config *cfg, const char *path);

#endif
