/* A training run's folder: the JSONL files the reference system wrote
 * (docs/diagnostics.md names their fields), read back by `monitor`,
 * `report` and `ablate`. */
#ifndef VQJ_RUNLOG_H
#define VQJ_RUNLOG_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define RUNLOG_LOSS "loss_metrics.jsonl"
#define RUNLOG_EPOCH "epoch_metrics.jsonl"
#define RUNLOG_EMBEDDING "embedding_metrics.jsonl"

/* Append one JSON object as a line to DIR/NAME; 0 on success. The line is
 * flushed so that `monitor` can read a run that is still going. */
int runlog_append(const char *dir, const char *name, json_t *record);

/* How many runlog_append() calls failed (after a message on stderr): the
 * run stops at the next step rather than train with its records lost. */
extern int runlog_failures;

/* A file written whole or not at all: runlog_create() opens a temporary
 * file beside PATH (its name in tmp[cap]); runlog_commit() closes it and,
 * when ok and every write succeeded, fsyncs and renames it to PATH and
 * fsyncs PATH's folder, else removes it; 0 on success. A failure of the
 * writes, the fsyncs or the rename gets a message on stderr (ok == 0 does
 * not: the caller said why). */
FILE *runlog_create(const char *path, char *tmp, size_t cap);
int runlog_commit(FILE *f, const char *tmp, const char *path, int ok);

/* Remove the temporary files (NAME.tmp.XXXXXX) a killed run left in DIR
 * (one run writes a folder at a time); how many. */
int runlog_remove_stale(const char *dir);

/* Cut the unfinished last line that a killed run (or a full disk) may leave
 * at the end of DIR's JSONL logs, so that the records appended next start
 * on a line of their own; how many files were cut, -1 after a message on
 * stderr. */
int runlog_trim_torn(const char *dir);

/* Every line of DIR/NAME parsed, as a JSON array (empty when the file does
 * not exist); NULL with a message on stderr when a line is not JSON. */
json_t *runlog_read(const char *dir, const char *name);

/* The number at a dotted path ("context.effective_rank") of a record, or
 * NAN when absent. */
double runlog_number(const json_t *record, const char *path);

#endif
