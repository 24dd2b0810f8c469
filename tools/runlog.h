/* A training run's folder: the JSONL files the reference system wrote
 * (docs/diagnostics.md names their fields), read back by `monitor`,
 * `report` and `ablate`. */
#ifndef VQJ_RUNLOG_H
#define VQJ_RUNLOG_H

#include <jansson.h>
#include <stddef.h>

#define RUNLOG_LOSS "loss_metrics.jsonl"
#define RUNLOG_EPOCH "epoch_metrics.jsonl"
#define RUNLOG_EMBEDDING "embedding_metrics.jsonl"

/* Append one JSON object as a line to DIR/NAME; 0 on success. The line is
 * flushed so that `monitor` can read a run that is still going. */
int runlog_append(const char *dir, const char *name, json_t *record);

/* Every line of DIR/NAME parsed, as a JSON array (empty when the file does
 * not exist); NULL with a message on stderr when a line is not JSON. */
json_t *runlog_read(const char *dir, const char *name);

/* The number at a dotted path ("context.effective_rank") of a record, or
 * NAN when absent. */
double runlog_number(const json_t *record, const char *path);

#endif
