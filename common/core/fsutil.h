/* File-system helpers. Outputs are written to a temporary name beside the
 * target and renamed into place, so a failed or killed stage never leaves a
 * half-written file under the name the next stage looks for. */
#ifndef FS_FSUTIL_H
#define FS_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

/* "<dir>/.<base>.tmp.<pid>" for target path; buf of n bytes. */
int fs_tmp_path(char *buf, size_t n, const char *path);
/* Renames tmp onto path (after fsync of the file); on failure removes tmp. */
int fs_commit(const char *tmp, const char *path);

/* A stdio stream on a temporary name; fs_atomic_close commits it (ok != 0)
 * or removes it (ok == 0). */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4096];
} fs_atomic_file;
int fs_atomic_open(fs_atomic_file *af, const char *path);
int fs_atomic_close(fs_atomic_file *af, int ok);

int fs_mkdirs(const char *dir);               /* mkdir -p */
int fs_is_file(const char *path);
int fs_is_dir(const char *path);
/* Joins a and b with one '/'. */
int fs_path_join(char *buf, size_t n, const char *a, const char *b);
const char *fs_basename(const char *path);
/* Sorted names of entries in dir (no "." or ".."), malloc'd array of malloc'd
 * strings; free with fs_free_list. */
int fs_list_dir(const char *dir, char ***names, size_t *count);
void fs_free_list(char **names, size_t count);
/* Publishes a finished output folder: removes an existing `out` (only when
 * it holds `marker`, i.e. it is an earlier output of the same kind, or is
 * empty) and renames `tmp` onto it. */
int fs_replace_dir(const char *tmp, const char *out, const char *marker);
/* rm -rf dir (does not follow symlinks). Missing dir is not an error. */
int fs_remove_tree(const char *dir);
/* Whole file into memory (malloc'd, NUL-terminated beyond size). */
int fs_read_file(const char *path, unsigned char **data, size_t *size);

#endif
