/* I/O faults for the CLI's tests (tests/crash_test.sh, docs/failures.md):
 * an LD_PRELOAD library that makes one step of an atomic file write fail.
 *
 *   VQJ_FAULT=OP:PATTERN[:ERRNO] LD_PRELOAD=bin/fault_inject.so bin/vqjepa ...
 *
 * OP is create (mkstemp of a temporary file whose name holds PATTERN),
 * fsync (of a file whose path holds PATTERN: a temporary file is named
 * after its final name), rename (to a path holding PATTERN) or syncdir
 * (fsync of a folder whose path holds PATTERN). Every matching call fails
 * with ERRNO (EIO, ENOSPC, EACCES or EROFS; default EIO); the rest go to the
 * C library. Both the CLI's own writes and libvqjepa.so's go through these
 * symbols. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether VQJ_FAULT asks `op` to fail for `path`; the errno to fail with. */
static int injected(const char *op, const char *path)
{
    const char *spec = getenv("VQJ_FAULT");
    size_t n = strlen(op);
    if (!spec || !path || strncmp(spec, op, n) != 0 || spec[n] != ':')
        return 0;
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s", spec + n + 1);
    char *colon = strchr(pattern, ':');
    int err = EIO;
    if (colon) {
        *colon = '\0';
        const char *e = colon + 1;
        err = !strcmp(e, "ENOSPC")   ? ENOSPC
              : !strcmp(e, "EACCES") ? EACCES
              : !strcmp(e, "EROFS")  ? EROFS
                                     : EIO;
    }
    return strstr(path, pattern) ? err : 0;
}

static void *next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

static int temp_file(const char *name, char *tmpl)
{
    int err = injected("create", tmpl);
    if (err) {
        errno = err;
        return -1;
    }
    int (*real)(char *) = (int (*)(char *))next(name);
    return real(tmpl);
}

int mkstemp(char *tmpl) { return temp_file("mkstemp", tmpl); }
int mkstemp64(char *tmpl) { return temp_file("mkstemp64", tmpl); }

int fsync(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n > 0) {
        path[n] = '\0';
        struct stat sb;
        int dir = fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode);
        int err = injected(dir ? "syncdir" : "fsync", path);
        if (err) {
            errno = err;
            return -1;
        }
    }
    int (*real)(int) = (int (*)(int))next("fsync");
    return real(fd);
}

int rename(const char *from, const char *to)
{
    int err = injected("rename", to);
    if (err) {
        errno = err;
        return -1;
    }
    int (*real)(const char *, const char *) =
        (int (*)(const char *, const char *))next("rename");
    return real(from, to);
}
