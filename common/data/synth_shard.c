/* Synthetic shards: a fewsam.slices file (data/shard.h writes the slices)
 * plus the prompt datasets and synthesis attributes (schemas/slices.md).
 * The slice writer commits to a temporary name of ours; the extras are added
 * there and only then is the file renamed into place, so the shard appears
 * whole or not at all. */
#include "data/synth.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"

struct fs_synth_writer {
    fs_slice_writer *sw;
    char path[4096], tmp[4096];
    uint64_t seed, first;
    fs_synth_prompts prompts;
    char *settings;
    size_t n, m, cap_n, cap_m;
    int64_t *sample_index; /* [n] */
    int32_t *p_sample;     /* [m] row of the shard */
    uint8_t *p_class;      /* [m] */
    float *p_point;        /* [m, 2] */
    float *p_box;          /* [m, 4] */
};

static void writer_free(fs_synth_writer *w) {
    free(w->settings);
    free(w->sample_index);
    free(w->p_sample);
    free(w->p_class);
    free(w->p_point);
    free(w->p_box);
    free(w);
}

int fs_synth_writer_open(fs_synth_writer **out, const char *path, const fs_shard_meta *meta, size_t h, size_t wd,
                         uint64_t seed, uint64_t first_index, fs_synth_prompts prompts, const char *settings) {
    *out = NULL;
    fs_synth_writer *w = calloc(1, sizeof *w);
    if (!w) return fs_error("out of memory");
    if (strlen(path) >= sizeof w->path || fs_tmp_path(w->tmp, sizeof w->tmp, path)) {
        free(w);
        return fs_error("path too long: '%s'", path);
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->seed = seed;
    w->first = first_index;
    w->prompts = prompts;
    w->settings = strdup(settings ? settings : "");
    if (!w->settings) { writer_free(w); return fs_error("out of memory"); }
    if (fs_slice_writer_open(&w->sw, w->tmp, meta, h, wd)) {
        writer_free(w);
        return fs_error_wrap("cannot write '%s'", path);
    }
    *out = w;
    return FS_OK;
}

static int grow(void **p, size_t elem, size_t cap) {
    void *q = realloc(*p, cap * elem);
    if (!q) return FS_ERR;
    *p = q;
    return FS_OK;
}

int fs_synth_writer_add(fs_synth_writer *w, const fs_sample *s) {
    if (s->n_objects > FS_SAMPLE_MAX_OBJECTS) return fs_error("'%s': sample with %zu objects", w->path, s->n_objects);
    if (w->n == w->cap_n) {
        size_t c = w->cap_n ? 2 * w->cap_n : 256;
        if (grow((void **)&w->sample_index, sizeof *w->sample_index, c)) return fs_error("out of memory");
        w->cap_n = c;
    }
    if (w->m + s->n_objects > w->cap_m) {
        size_t c = w->cap_m ? 2 * w->cap_m : 1024;
        while (c < w->m + s->n_objects) c *= 2;
        if (grow((void **)&w->p_sample, sizeof *w->p_sample, c) || grow((void **)&w->p_class, 1, c) ||
            grow((void **)&w->p_point, 2 * sizeof(float), c) || grow((void **)&w->p_box, 4 * sizeof(float), c))
            return fs_error("out of memory");
        w->cap_m = c;
    }
    /* slice_index: the sample index where it fits an i32, else -1 (sample_index has it) */
    int32_t si = s->index <= INT32_MAX ? (int32_t)s->index : -1;
    if (fs_slice_writer_add(w->sw, s->image, s->label, "synthetic", si)) return FS_ERR;
    w->sample_index[w->n] = (int64_t)s->index;
    for (size_t i = 0; i < s->n_objects; i++) {
        const fs_sample_object *o = &s->objects[i];
        w->p_sample[w->m] = (int32_t)w->n;
        w->p_class[w->m] = o->cls;
        memcpy(w->p_point + 2 * w->m, o->point, 2 * sizeof(float));
        memcpy(w->p_box + 4 * w->m, o->box, 4 * sizeof(float));
        w->m++;
    }
    w->n++;
    return FS_OK;
}

static int put_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims, const void *data) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    if (sp < 0) return FS_ERR;
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d < 0 ? FS_ERR : FS_OK;
    if (!rc && dims[0] > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = FS_ERR;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    return rc;
}

static int put_attr_i64(hid_t f, const char *key, int64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, key, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0 ? FS_ERR : FS_OK;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static int put_attr_str(hid_t f, const char *key, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, key, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, &v) < 0 ? FS_ERR : FS_OK;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

static int add_extras(fs_synth_writer *w) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(w->tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return fs_error("cannot write '%s': reopening the temporary file failed", w->path);
    hsize_t n1[1] = {w->n}, m1[1] = {w->m}, m2[2] = {w->m, 2}, m4[2] = {w->m, 4};
    int rc = put_dataset(f, "sample_index", H5T_STD_I64LE, 1, n1, w->sample_index) ||
             put_dataset(f, "prompt_sample", H5T_STD_I32LE, 1, m1, w->p_sample) ||
             put_dataset(f, "prompt_class", H5T_STD_U8LE, 1, m1, w->p_class) ||
             put_dataset(f, "prompt_point", H5T_IEEE_F32LE, 2, m2, w->p_point) ||
             put_dataset(f, "prompt_box", H5T_IEEE_F32LE, 2, m4, w->p_box) ||
             put_attr_i64(f, "synth_seed", (int64_t)w->seed) ||
             put_attr_i64(f, "synth_first_index", (int64_t)w->first) ||
             put_attr_str(f, "synth_prompts", fs_synth_prompts_name(w->prompts)) ||
             put_attr_str(f, "synth_settings", w->settings);
    if (H5Fclose(f) < 0) rc = FS_ERR;
    H5Eclear2(H5E_DEFAULT);
    return rc ? fs_error("cannot write '%s': writing the prompt datasets failed", w->path) : FS_OK;
}

int fs_synth_writer_commit(fs_synth_writer *w) {
    int rc = fs_slice_writer_commit(w->sw);
    w->sw = NULL;
    if (rc) {
        fs_error_wrap("cannot write '%s'", w->path);
        unlink(w->tmp);
        writer_free(w);
        return FS_ERR;
    }
    if (add_extras(w) || fs_commit(w->tmp, w->path)) {
        unlink(w->tmp);
        writer_free(w);
        return FS_ERR;
    }
    writer_free(w);
    return FS_OK;
}

void fs_synth_writer_abort(fs_synth_writer *w) {
    if (!w) return;
    fs_slice_writer_abort(w->sw);
    unlink(w->tmp);
    writer_free(w);
}
