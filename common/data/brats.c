/* BraTS layouts: <root>/<case>/<case>_flair.nii.gz + <case>_seg.nii.gz
 * (2012-2021 releases) or <case>-t2f.nii.gz + <case>-seg.nii.gz (2023).
 * FLAIR only; labels to whole tumour (> 0) or three sub-regions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/dataset.h"
#include "data/preprocess.h"
#include "io/nifti.h"

/* Finds <dir>/<case><suffix> with .nii.gz or .nii; 1 when found. */
static int find_file(char *out, size_t n, const char *dir, const char *case_id, const char *suffix) {
    static const char *const ext[] = {".nii.gz", ".nii"};
    for (int e = 0; e < 2; e++) {
        snprintf(out, n, "%s/%s%s%s", dir, case_id, suffix, ext[e]);
        if (fs_is_file(out)) return 1;
    }
    snprintf(out, n, "%s/%s%s.nii.gz", dir, case_id, suffix);
    return 0;
}

int fs_brats_scan(fs_dataset *ds) {
    char **names;
    size_t count;
    if (!fs_is_dir(ds->root)) return fs_error("cannot open BraTS folder '%s': no such directory", ds->root);
    if (fs_list_dir(ds->root, &names, &count)) return FS_ERR;
    ds->cases = calloc(count ? count : 1, sizeof *ds->cases);
    ds->n_cases = 0;
    int rc = FS_OK;
    for (size_t i = 0; i < count && rc == FS_OK; i++) {
        char dir[4096];
        if (fs_path_join(dir, sizeof dir, ds->root, names[i]) || !fs_is_dir(dir)) continue;
        fs_case_ref *c = &ds->cases[ds->n_cases];
        memset(c, 0, sizeof *c);
        snprintf(c->id, sizeof c->id, "%s", names[i]);
        c->number = -1;
        const char *digits = names[i] + strcspn(names[i], "0123456789");
        if (*digits) c->number = strtol(digits, NULL, 10);
        int has_flair = find_file(c->image_path, sizeof c->image_path, dir, names[i], "_flair");
        int has_seg = find_file(c->label_path, sizeof c->label_path, dir, names[i], "_seg");
        if (!has_flair && !has_seg) {
            char p23[4096], s23[4096];
            int f23 = find_file(p23, sizeof p23, dir, names[i], "-t2f");
            int g23 = find_file(s23, sizeof s23, dir, names[i], "-seg");
            if (f23 || g23) {
                c->is_2023 = 1;
                has_flair = f23;
                has_seg = g23;
                memcpy(c->image_path, p23, sizeof p23);
                memcpy(c->label_path, s23, sizeof s23);
            }
        }
        if (!has_flair && !has_seg) {
            fs_warn("'%s': no FLAIR or label file, skipped", dir);
            continue;
        }
        if (!has_flair) rc = fs_error("case '%s': missing FLAIR file '%s'", c->id, c->image_path);
        else if (!has_seg) rc = fs_error("case '%s': missing label file '%s'", c->id, c->label_path);
        else ds->n_cases++;
    }
    fs_free_list(names, count);
    if (rc == FS_OK && ds->n_cases == 0)
        rc = fs_error("'%s': no BraTS cases (looked for <case>/<case>_flair.nii.gz and <case>-t2f.nii.gz)", ds->root);
    return rc;
}

int fs_brats_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label) {
    if (fs_nifti_read(c->image_path, image) || fs_nifti_read(c->label_path, label)) return FS_ERR;
    if (fs_dataset_check_pair(image, c->image_path, label, c->label_path)) return FS_ERR;
    /* Sub-regions: 2012-2021 use 1 necrosis/non-enhancing (2015 splits it
     * into 1 and 3), 2 edema, 4 enhancing; 2023 uses 1, 2, 3. */
    uint8_t map[256] = {0};
    for (int v = 1; v < 256; v++) map[v] = 1;
    if (ds->brats_labels == FS_BRATS_REGIONS) {
        map[1] = 1;
        map[2] = 2;
        map[3] = c->is_2023 ? 3 : 1;
        map[4] = 3;
    }
    if (fs_dataset_labels_u8(label, map, c->label_path)) return FS_ERR;
    if (fs_volume_canonical(image) || fs_volume_canonical(label)) return FS_ERR;
    size_t nk = image->data.shape[0], nj = image->data.shape[1], ni = image->data.shape[2], n_fg;
    float background;
    if (fs_normalize_foreground(image->data.data, nk, nj, ni, ds->pct_lo, ds->pct_hi, &background, &n_fg))
        return fs_error_wrap("'%s'", c->image_path);
    fs_debug("%s: background %g, %zu brain voxels", c->id, background, n_fg);
    return FS_OK;
}
