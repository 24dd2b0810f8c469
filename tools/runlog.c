#include "runlog.h"
#include "run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void join(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

int runlog_append(const char *dir, const char *name, json_t *record)
{
    if (run_rank() != 0) /* data-parallel: only rank 0 writes the run folder */
        return 0;
    char path[4096];
    join(path, sizeof path, dir, name);
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "vqjepa: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *text = json_dumps(record, JSON_COMPACT | JSON_REAL_PRECISION(9));
    int rc = text && fprintf(f, "%s\n", text) > 0 ? 0 : -1;
    free(text);
    if (fclose(f) != 0)
        rc = -1;
    if (rc)
        fprintf(stderr, "vqjepa: cannot write %s\n", path);
    return rc;
}

json_t *runlog_read(const char *dir, const char *name)
{
    char path[4096];
    join(path, sizeof path, dir, name);
    json_t *all = json_array();
    FILE *f = fopen(path, "r");
    if (!f)
        return all;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (n == 1 && line[0] == '\n')
            continue;
        json_error_t err;
        json_t *rec = json_loads(line, 0, &err);
        if (!rec) {
            fprintf(stderr, "vqjepa: %s:%ld: %s\n", path, lineno, err.text);
            json_decref(all);
            all = NULL;
            break;
        }
        json_array_append_new(all, rec);
    }
    free(line);
    fclose(f);
    return all;
}

double runlog_number(const json_t *record, const char *path)
{
    char key[128];
    const json_t *cur = record;
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        if (len >= sizeof key)
            return NAN;
        memcpy(key, path, len);
        key[len] = '\0';
        cur = json_object_get(cur, key);
        path += len + (dot ? 1 : 0);
    }
    return cur && json_is_number(cur) ? json_number_value(cur) : NAN;
}
