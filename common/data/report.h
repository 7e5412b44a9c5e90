/* Score tables: per case and class DSC and HD95 (mm and voxels), means over
 * cases per class and over classes, published reference numbers where the
 * data set has them, and other runs' means side by side. Written as
 *   scores.json  {"dataset", "convention", "classes", "cases": [{"case",
 *                 "dsc": {class: v}, "hd95_mm": {..}, "hd95_vox": {..}}],
 *                 "mean": {"dsc": {..}, "hd95_mm": {..}, "hd95_vox": {..}},
 *                 "mean_dsc", "mean_hd95_mm", "mean_hd95_vox",
 *                 "reference": {"source", "dsc_percent": {..},
 *                 "mean_dsc_percent"} or null, "compare": [...]}
 *                 (DSC as a fraction in [0, 1]; HD95 in mm and voxels)
 *   scores.csv   case,class,dsc,hd95_mm,hd95_vox (one row per case and class)
 *   scores.md    a Markdown table, classes as columns. */
#ifndef FS_REPORT_H
#define FS_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "data/metrics.h"

/* Published numbers for a data set (DSC in percent, TransUNet's class order). */
typedef struct {
    const char *dataset;
    const char *source;
    size_t n_classes;
    const char *class_names[16];
    double dsc_percent[16];
    double mean_dsc_percent;
} fs_report_reference;

/* The reference for a data set name, or NULL. */
const fs_report_reference *fs_report_reference_for(const char *dataset);

/* Another run's means (from its scores.json), matched to our classes by
 * name; NaN where that run lacks a class. */
typedef struct {
    char name[128];
    char path[1024];
    double *dsc, *hd95_mm, *hd95_vox; /* n_classes of the report */
    double mean_dsc, mean_hd95_mm, mean_hd95_vox;
} fs_report_compare;

typedef struct {
    char dataset[64];
    size_t n_classes;          /* foreground classes scored */
    char **class_names;        /* n_classes */
    size_t n_cases, cap;
    char **case_ids;           /* n_cases */
    fs_class_scores *scores;   /* [n_cases][n_classes] */
    size_t n_compare;
    fs_report_compare *compare;
} fs_report;

/* class_names: n_classes names of the scored classes (copied). */
int fs_report_init(fs_report *r, const char *dataset, size_t n_classes, const char *const *class_names);
void fs_report_free(fs_report *r);
/* Appends a case; scores: n_classes entries (copied). */
int fs_report_add_case(fs_report *r, const char *case_id, const fs_class_scores *scores);

/* Means over cases per class (per_class: n_classes entries, may be NULL) and
 * over classes of those (any of the three outputs may be NULL). NaN with no
 * cases. */
void fs_report_means(const fs_report *r, fs_class_scores *per_class, double *mean_dsc, double *mean_hd95_mm,
                     double *mean_hd95_vox);

/* Reads another run's scores.json as a comparison row labelled name. */
int fs_report_add_compare(fs_report *r, const char *name, const char *json_path);

int fs_report_write_json(const fs_report *r, FILE *f);
int fs_report_write_csv(const fs_report *r, FILE *f);
int fs_report_write_markdown(const fs_report *r, FILE *f);

/* scores.json, scores.csv and scores.md into dir (which must exist): all
 * three or none (each written to a temporary name first). */
int fs_report_write_dir(const fs_report *r, const char *dir);

#endif
