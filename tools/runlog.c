#include "runlog.h"
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void join(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

int runlog_failures;

/* write(2) until done: a short write (a full disk) goes on or fails. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int runlog_append(const char *dir, const char *name, json_t *record)
{
    if (run_rank() != 0) /* data-parallel: only rank 0 writes the run folder */
        return 0;
    char path[4096];
    join(path, sizeof path, dir, name);
    char *text = json_dumps(record, JSON_COMPACT | JSON_REAL_PRECISION(9));
    size_t len = text ? strlen(text) : 0;
    char *line = text ? realloc(text, len + 2) : NULL;
    if (!line) {
        free(text);
        fprintf(stderr, "vqjepa: out of memory writing %s\n", path);
        runlog_failures++;
        return -1;
    }
    line[len] = '\n';
    /* One write(2) of the whole line with O_APPEND: a process killed at any
     * moment leaves whole lines (a full disk may leave a torn last line,
     * which runlog_read() skips). */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    int rc = fd >= 0 && write_all(fd, line, len + 1) == 0 ? 0 : -1;
    int err = errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    free(line);
    if (rc) {
        fprintf(stderr, "vqjepa: cannot write %s: %s\n", path, strerror(err));
        runlog_failures++;
    }
    return rc;
}

FILE *runlog_create(const char *path, char *tmp, size_t cap)
{
    if ((size_t)snprintf(tmp, cap, "%s.tmp.XXXXXX", path) >= cap) {
        fprintf(stderr, "vqjepa: path too long: %s\n", path);
        return NULL;
    }
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "vqjepa: cannot write %s: %s\n", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
    }
    return f;
}

int runlog_commit(FILE *f, const char *tmp, const char *path, int ok)
{
    int err = 0;
    if (ok && (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0))
        err = errno ? errno : EIO;
    if (fclose(f) != 0 && ok && !err)
        err = errno;
    if (ok && !err && rename(tmp, path) != 0)
        err = errno;
    if (!ok || err) {
        unlink(tmp);
        if (ok)
            fprintf(stderr, "vqjepa: cannot write %s: %s\n", path, strerror(err));
        return -1;
    }
    /* Make the rename durable, as checkpoints do: fsync the folder (a file
     * system that cannot sync a folder says EINVAL). */
    char folder[4096];
    const char *slash = strrchr(path, '/');
    snprintf(folder, sizeof folder, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1,
             slash ? path : ".");
    int dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int bad = fsync(dfd) != 0 && errno != EINVAL && errno != EROFS;
        err = errno;
        close(dfd);
        if (bad) {
            fprintf(stderr, "vqjepa: wrote %s but cannot sync its folder: %s\n", path,
                    strerror(err));
            return -1;
        }
    }
    return 0;
}

int runlog_remove_stale(const char *dir)
{
    static const char *const kinds[] = {".safetensors", ".yaml", ".json", ".html", ".md"};
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t || strlen(t) != 11 || strstr(t + 1, ".tmp."))
            continue;
        size_t stem = (size_t)(t - e->d_name);
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
            size_t kl = strlen(kinds[k]);
            if (stem > kl && !memcmp(t - kl, kinds[k], kl)) {
                char path[4096];
                join(path, sizeof path, dir, e->d_name);
                if (unlink(path) == 0)
                    removed++;
                break;
            }
        }
    }
    closedir(d);
    return removed;
}

/* The length of DIR/NAME up to its last newline, or -1 when the file ends
 * with one (or is empty or absent). */
static off_t torn_at(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size == 0)
        return -1;
    char buf[4096];
    off_t end = sb.st_size;
    int last = 1;
    while (end > 0) {
        size_t n = end < (off_t)sizeof buf ? (size_t)end : sizeof buf;
        off_t at = end - (off_t)n;
        if (pread(fd, buf, n, at) != (ssize_t)n)
            return -1;
        for (size_t i = n; i-- > 0;) {
            if (buf[i] == '\n')
                return last && i == n - 1 ? -1 : at + (off_t)i + 1;
            last = 0;
        }
        end = at;
    }
    return 0; /* one unfinished line and nothing before it */
}

int runlog_trim_torn(const char *dir)
{
    static const char *const logs[] = {RUNLOG_LOSS, RUNLOG_EPOCH, RUNLOG_EMBEDDING};
    int trimmed = 0;
    for (size_t i = 0; i < sizeof logs / sizeof *logs; i++) {
        char path[4096];
        join(path, sizeof path, dir, logs[i]);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            continue; /* not written yet (or not a file we may change) */
        off_t keep = torn_at(fd);
        int rc = keep >= 0 ? ftruncate(fd, keep) : 0;
        int err = errno;
        close(fd);
        if (rc != 0) {
            fprintf(stderr, "vqjepa: cannot cut the unfinished last line of %s: %s\n", path,
                    strerror(err));
            return -1;
        }
        trimmed += keep >= 0;
    }
    return trimmed;
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
        if (!rec && line[n - 1] != '\n') {
            /* A torn last line (the disk filled mid-write): skipped. */
            fprintf(stderr, "vqjepa: %s:%ld: skipping an unfinished last line\n", path, lineno);
            break;
        }
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
