/* Synapse (BTCV abdomen) raw layout: RawData/Training/img/imgNNNN.nii.gz and
 * label/labelNNNN.nii.gz. 13 BTCV labels remapped to TransUNet's 8 organs; CT
 * clipped to the soft-tissue window and scaled to [0, 1]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/dataset.h"
#include "data/preprocess.h"
#include "io/nifti.h"

/* BTCV -> TransUNet: 8 aorta->1, 4 gallbladder->2, 3 left kidney->3,
 * 2 right kidney->4, 6 liver->5, 11 pancreas->6, 1 spleen->7, 7 stomach->8;
 * esophagus, IVC, veins and adrenals -> background. */
static const uint8_t btcv_to_transunet[14] = {0, 7, 4, 3, 2, 0, 5, 8, 1, 0, 0, 6, 0, 0};

/* The folder holding img/ and label/: root itself, root/Training or
 * root/RawData/Training. */
static int find_training_dir(char *out, size_t n, const char *root) {
    static const char *const sub[] = {"", "/Training", "/RawData/Training"};
    for (int i = 0; i < 3; i++) {
        snprintf(out, n, "%s%s/img", root, sub[i]);
        if (fs_is_dir(out)) {
            snprintf(out, n, "%s%s", root, sub[i]);
            return 1;
        }
    }
    return 0;
}

int fs_synapse_scan(fs_dataset *ds) {
    char dir[4096], imgdir[4200];
    if (!fs_is_dir(ds->root)) return fs_error("cannot open Synapse folder '%s': no such directory", ds->root);
    if (!find_training_dir(dir, sizeof dir, ds->root))
        return fs_error("'%s': no Synapse layout (looked for RawData/Training/img/imgNNNN.nii.gz)", ds->root);
    snprintf(imgdir, sizeof imgdir, "%s/img", dir);
    char **names;
    size_t count;
    if (fs_list_dir(imgdir, &names, &count)) return FS_ERR;
    ds->cases = calloc(count ? count : 1, sizeof *ds->cases);
    ds->n_cases = 0;
    int rc = FS_OK;
    for (size_t i = 0; i < count && rc == FS_OK; i++) {
        long num;
        int used = 0;
        if (sscanf(names[i], "img%ld%n", &num, &used) != 1) continue;
        const char *ext = names[i] + used;
        if (strcmp(ext, ".nii.gz") && strcmp(ext, ".nii")) continue;
        fs_case_ref *c = &ds->cases[ds->n_cases];
        memset(c, 0, sizeof *c);
        c->number = num;
        snprintf(c->id, sizeof c->id, "case%04ld", num);
        snprintf(c->image_path, sizeof c->image_path, "%s/%s", imgdir, names[i]);
        snprintf(c->label_path, sizeof c->label_path, "%s/label/label%.*s%s", dir, used - 3, names[i] + 3, ext);
        if (!fs_is_file(c->label_path)) rc = fs_error("case '%s': missing label file '%s'", c->id, c->label_path);
        else ds->n_cases++;
    }
    fs_free_list(names, count);
    if (rc == FS_OK && ds->n_cases == 0) rc = fs_error("'%s': no imgNNNN.nii.gz files", imgdir);
    return rc;
}

int fs_synapse_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label) {
    if (fs_nifti_read(c->image_path, image) || fs_nifti_read(c->label_path, label)) return FS_ERR;
    if (fs_dataset_check_pair(image, c->image_path, label, c->label_path)) return FS_ERR;
    uint8_t map[256] = {0};
    memcpy(map, btcv_to_transunet, sizeof btcv_to_transunet);
    if (fs_dataset_labels_u8(label, map, c->label_path)) return FS_ERR;
    fs_window01(image->data.data, fs_tensor_numel(&image->data), (float)ds->hu_lo, (float)ds->hu_hi);
    if (fs_volume_canonical(image) || fs_volume_canonical(label)) return FS_ERR;
    return FS_OK;
}
