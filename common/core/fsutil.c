#define _GNU_SOURCE /* nftw */
#include "core/fsutil.h"

#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int fs_tmp_path(char *buf, size_t n, const char *path) {
    const char *slash = strrchr(path, '/');
    int k = slash ? snprintf(buf, n, "%.*s/.%s.tmp.%ld", (int)(slash - path), path, slash + 1, (long)getpid())
                  : snprintf(buf, n, ".%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= n) return fs_error("path too long: '%s'", path);
    return FS_OK;
}

int fs_commit(const char *tmp, const char *path) {
    if (rename(tmp, path) != 0) {
        fs_error_errno("cannot rename '%s' to '%s'", tmp, path);
        unlink(tmp);
        return FS_ERR;
    }
    return FS_OK;
}

int fs_atomic_open(fs_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return fs_error("path too long: '%s'", path);
    strcpy(af->path, path);
    if (fs_tmp_path(af->tmp, sizeof af->tmp, path)) return FS_ERR;
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return fs_error_errno("cannot create '%s'", af->tmp);
    return FS_OK;
}

int fs_atomic_close(fs_atomic_file *af, int ok) {
    if (!af->f) return FS_ERR;
    int bad = ferror(af->f);
    if (fflush(af->f) != 0) bad = 1;
    if (!bad && ok) fsync(fileno(af->f));
    if (fclose(af->f) != 0) bad = 1;
    af->f = NULL;
    if (!ok || bad) {
        unlink(af->tmp);
        return ok ? fs_error("cannot write '%s': write failed", af->path) : FS_OK;
    }
    return fs_commit(af->tmp, af->path);
}

int fs_mkdirs(const char *dir) {
    char buf[4096];
    if (strlen(dir) >= sizeof buf) return fs_error("path too long: '%s'", dir);
    strcpy(buf, dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return fs_error_errno("cannot create directory '%s'", buf);
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return fs_error_errno("cannot create directory '%s'", buf);
    if (!fs_is_dir(buf)) return fs_error("cannot create directory '%s': a file is in the way", buf);
    return FS_OK;
}

int fs_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_path_join(char *buf, size_t n, const char *a, const char *b) {
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/') la--;
    int k = snprintf(buf, n, "%.*s/%s", (int)la, a, b);
    if (k < 0 || (size_t)k >= n) return fs_error("path too long: '%s/%s'", a, b);
    return FS_OK;
}

const char *fs_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int fs_list_dir(const char *dir, char ***names, size_t *count) {
    DIR *d = opendir(dir);
    *names = NULL;
    *count = 0;
    if (!d) return fs_error_errno("cannot open directory '%s'", dir);
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(*names, cap * sizeof *nn);
            if (!nn) { closedir(d); fs_free_list(*names, *count); return fs_error("out of memory"); }
            *names = nn;
        }
        (*names)[(*count)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof **names, cmp_str);
    return FS_OK;
}

void fs_free_list(char **names, size_t count) {
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}

int fs_read_file(const char *path, unsigned char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    *data = NULL;
    *size = 0;
    if (!f) return fs_error_errno("cannot open '%s'", path);
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) { fclose(f); return fs_error("out of memory reading '%s'", path); }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        unsigned char *nb = realloc(buf, cap + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return fs_error_errno("cannot read '%s'", path); }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return FS_OK;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

int fs_remove_tree(const char *dir) {
    struct stat st;
    if (lstat(dir, &st) != 0) return FS_OK;
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) return fs_error_errno("cannot remove '%s'", dir);
    return FS_OK;
}

int fs_replace_dir(const char *tmp, const char *out, const char *marker) {
    if (fs_is_dir(out)) {
        char mark[4200];
        snprintf(mark, sizeof mark, "%s/%s", out, marker);
        char **names;
        size_t n;
        if (fs_list_dir(out, &names, &n)) return FS_ERR;
        fs_free_list(names, n);
        if (n && !fs_is_file(mark))
            return fs_error("'%s' exists and is not an earlier output (no %s): not replacing it", out, marker);
        if (fs_remove_tree(out)) return FS_ERR;
    } else if (fs_is_file(out)) {
        return fs_error("'%s' exists and is a file", out);
    }
    if (rename(tmp, out) != 0) return fs_error_errno("cannot rename '%s' to '%s'", tmp, out);
    return FS_OK;
}
