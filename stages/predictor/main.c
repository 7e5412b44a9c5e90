/* predictor: SAM over the test volumes, slice by slice.
 *   <out>/<case>.h5      fewsam.prediction (label volume, the test volume's geometry)
 *   <out>/<case>.nii.gz  the same as NIfTI with the volume's affine
 *   <out>/prompts.csv    every prompt used: case, slice, class, point or box
 *   <out>/index.json     settings, cases, timings (written last)
 * Prompts come from the ground truth per slice and class (the prompted
 * evaluation protocol): a point at the interior-most pixel or the tight box;
 * or none (prompt-free: one mask token per class, softmax over them). Where
 * masks of classes overlap, the higher logit wins. The image encoder runs
 * once per slice, the decoder once per prompt. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/prompts.h"
#include "data/shard.h"
#include "io/nifti.h"
#include "nn/nn.h"
#include "sam/ckpt.h"
#include "sam/sam.h"
#include "sam/slice.h"

static const char usage[] =
    "usage: predictor --weights CKPT --data DIR --out DIR [options]\n"
    "\n"
    "Segments the test volumes with SAM, slice by slice, and writes predicted\n"
    "label volumes (HDF5 and NIfTI) for the scorer.\n"
    "\n"
    "  --weights CKPT     SAM checkpoint (.pth as released, or .safetensors)\n"
    "  --lora CKPT        a trainer checkpoint for these base weights: its LoRA\n"
    "                     adapters merged into the encoder, its mask decoder used\n"
    "                     (input size: the checkpoint's)\n"
    "  --data DIR         loader output (its test/ is read) or a folder of test volumes\n"
    "  --out DIR          predictions folder (replaced if it holds earlier predictions)\n"
    "  --prompt MODE      point (default): a positive point at each object's\n"
    "                     interior-most pixel; box: its tight box; none: prompt-free,\n"
    "                     one mask token per class (needs a model trained that way)\n"
    "  --box-jitter PX    move each box side by up to PX pixels (0)\n"
    "  --multimask        decode 3 masks per prompt and keep the one with the best\n"
    "                     predicted IoU (default: the single-mask output)\n"
    "  --img-size N       model input size (default: the checkpoint's, 1024 for SAM;\n"
    "                     others resize the position embeddings as SAMed does)\n"
    "  --seed N           seed for box jitter (0)\n"
    "  --backend NAME     cpu (default), ref (plain reference kernels), cuda (the\n"
    "                     CUDA build, build/cuda-bin/predictor, on a GPU) or guard\n"
    "                     (cpu kernels on memory the host may not touch)\n"
    "  --config KEY=VAL   model configuration a .pth cannot tell (e.g. dec_heads=4\n"
    "                     for a small model); the safetensors metadata keys; repeatable\n"
    "  --no-nifti         HDF5 only\n"
    "  -h, --help         this help\n";

typedef enum { PROMPT_POINT, PROMPT_BOX, PROMPT_NONE } prompt_mode;
static const char *const prompt_names[] = {"point", "box", "none"};

typedef struct {
    fs_sam *m;
    const fs_nn_ops *ops;
    prompt_mode prompt;
    int multimask;
    double jitter;
    uint64_t seed;
    size_t n_classes;
    /* per-slice work buffers, sized for the largest slice seen */
    float *img, *embed, *low, *iou, *logits, *best;
    size_t cap_hw, cap_in;
    size_t encodes, decodes;
    FILE *prompts;           /* prompts.csv */
    const char *case_id;
    size_t z;
} predictor;

static int ensure(predictor *P, size_t hw, size_t in_hw) {
    size_t g = fs_sam_grid(&P->m->cfg), D = P->m->cfg.out_chans, nm = fs_sam_num_masks(&P->m->cfg);
    size_t low_n = nm * 16 * g * g;
    if (!P->embed) {
        P->embed = malloc(g * g * D * sizeof(float));
        P->low = malloc(low_n * sizeof(float));
        P->iou = malloc(nm * sizeof(float));
        if (!P->embed || !P->low || !P->iou) return fs_error("out of memory");
    }
    if (hw > P->cap_hw) {
        free(P->logits);
        free(P->best);
        P->logits = malloc(nm * hw * sizeof(float));
        P->best = malloc(hw * sizeof(float));
        P->cap_hw = hw;
        if (!P->logits || !P->best) return fs_error("out of memory");
    }
    if (in_hw > P->cap_in) {
        free(P->img);
        P->img = malloc(3 * in_hw * sizeof(float));
        P->cap_in = in_hw;
        if (!P->img) return fs_error("out of memory");
    }
    return FS_OK;
}

/* One slice: label[h, w] -> pred[h, w]. */
static int predict_slice(predictor *P, const float *image, const uint8_t *label, size_t h, size_t w, uint8_t *pred,
                         fs_rng *rng) {
    memset(pred, 0, h * w);
    int present[256] = {0}, any = 0;
    for (size_t i = 0; i < h * w; i++) present[label[i]] = 1;
    for (size_t c = 1; c < P->n_classes; c++) any |= present[c];
    if (P->prompt != PROMPT_NONE && !any) return FS_OK; /* no object, no prompt, nothing to segment */
    fs_sam_frame f = fs_sam_slice_frame(P->m, h, w);
    if (ensure(P, h * w, f.in_h * f.in_w)) return FS_ERR;
    fs_sam_slice_image(&f, image, P->img);
    if (fs_sam_encode_raw(P->m, P->ops, P->img, 1, f.in_h, f.in_w, P->embed)) return FS_ERR;
    P->encodes++;
    size_t nlow = 16 * fs_sam_grid(&P->m->cfg) * fs_sam_grid(&P->m->cfg), n;

    if (P->prompt == PROMPT_NONE) {
        /* Token c scores class c (token 0 background), argmax over classes. */
        fs_sam_prompt pr = {0};
        if (fs_sam_decode(P->m, P->ops, P->embed, &pr, FS_SAM_MASKS_ALL, P->low, P->iou, &n)) return FS_ERR;
        P->decodes++;
        if (fs_sam_postprocess(P->m, P->ops, P->low, P->n_classes, f.in_h, f.in_w, h, w, P->logits)) return FS_ERR;
        for (size_t i = 0; i < h * w; i++) {
            size_t best = 0;
            for (size_t c = 1; c < P->n_classes; c++)
                if (P->logits[c * h * w + i] > P->logits[best * h * w + i]) best = c;
            pred[i] = (uint8_t)best;
        }
        return FS_OK;
    }

    for (size_t i = 0; i < h * w; i++) P->best[i] = 0; /* a class needs logit > 0, and more than any other */
    for (size_t c = 1; c < P->n_classes; c++) {
        if (!present[c]) continue;
        float pts[2], box[4];
        int lab = 1;
        fs_sam_prompt pr = {0};
        if (P->prompt == PROMPT_POINT) {
            double x, y;
            if (fs_prompt_point(label, h, w, (uint8_t)c, &x, &y)) return FS_ERR;
            /* ResizeLongestSide.apply_coords: pixel coordinates times the scale */
            fprintf(P->prompts, "%s,%zu,%zu,point,%g,%g,,,,\n", P->case_id, P->z, c, x, y);
            pts[0] = (float)(x * (double)f.in_w / (double)w);
            pts[1] = (float)(y * (double)f.in_h / (double)h);
            pr.points = pts;
            pr.labels = &lab;
            pr.n_points = 1;
        } else {
            double b[4];
            if (fs_prompt_box(label, h, w, (uint8_t)c, P->jitter, rng, b)) return FS_ERR;
            fprintf(P->prompts, "%s,%zu,%zu,box,,,%.17g,%.17g,%.17g,%.17g\n", P->case_id, P->z, c, b[0], b[1], b[2], b[3]);
            box[0] = (float)(b[0] * (double)f.in_w / (double)w);
            box[1] = (float)(b[1] * (double)f.in_h / (double)h);
            box[2] = (float)(b[2] * (double)f.in_w / (double)w);
            box[3] = (float)(b[3] * (double)f.in_h / (double)h);
            pr.box = box;
        }
        fs_sam_mask_mode mode = P->multimask ? FS_SAM_MASKS_MULTI : FS_SAM_MASKS_SINGLE;
        if (fs_sam_decode(P->m, P->ops, P->embed, &pr, mode, P->low, P->iou, &n)) return FS_ERR;
        P->decodes++;
        size_t pick = 0;
        for (size_t k = 1; k < n; k++)
            if (P->iou[k] > P->iou[pick]) pick = k;
        if (fs_sam_postprocess(P->m, P->ops, P->low + pick * nlow, 1, f.in_h, f.in_w, h, w, P->logits)) return FS_ERR;
        for (size_t i = 0; i < h * w; i++) {
            if (P->logits[i] > P->best[i]) {
                P->best[i] = P->logits[i];
                pred[i] = (uint8_t)c;
            }
        }
    }
    return FS_OK;
}

static int predict_case(predictor *P, const char *path, const char *tmp, int nifti, FILE *index, int first,
                        double *seconds) {
    fs_case_volume v;
    if (fs_case_volume_read(path, &v)) return FS_ERR;
    int rc = FS_OK;
    if (P->n_classes == 0) P->n_classes = v.meta.n_classes;
    if (v.meta.n_classes != P->n_classes) {
        rc = fs_error("'%s': %zu classes, earlier cases have %zu", path, v.meta.n_classes, P->n_classes);
        goto out;
    }
    if (P->prompt == PROMPT_NONE && P->n_classes > fs_sam_mask_count(P->m, FS_SAM_MASKS_ALL)) {
        rc = fs_error("--prompt none needs one mask token per class: the model has %zu tokens, the data %zu classes",
                      fs_sam_mask_count(P->m, FS_SAM_MASKS_ALL), P->n_classes);
        goto out;
    }
    size_t nz = v.label.shape[0], h = v.label.shape[1], w = v.label.shape[2];
    fs_prediction p;
    memset(&p, 0, sizeof p);
    p.meta = v.meta;
    snprintf(p.case_id, sizeof p.case_id, "%s", v.case_id);
    memcpy(p.label.spacing, v.image.spacing, sizeof p.label.spacing);
    memcpy(p.label.affine, v.image.affine, sizeof p.label.affine);
    if (fs_tensor_alloc(&p.label.data, FS_U8, 3, v.label.shape)) { rc = FS_ERR; goto out; }
    /* The jitter stream is keyed by case, so a case's prompts do not depend
     * on which other cases were predicted before it. */
    fs_rng rng;
    fs_rng_init(&rng, P->seed, fs_fnv1a(FS_FNV_OFFSET, v.case_id, strlen(v.case_id)));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    P->case_id = v.case_id;
    for (size_t z = 0; z < nz && rc == FS_OK; z++) {
        P->z = z;
        rc = predict_slice(P, (const float *)v.image.data.data + z * h * w, (const uint8_t *)v.label.data + z * h * w,
                           h, w, (uint8_t *)p.label.data.data + z * h * w, &rng);
        if (rc) fs_error_wrap("'%s' slice %zu", path, z);
        fs_progress(v.case_id, z + 1, nz);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    char out[4400];
    if (rc == FS_OK) {
        snprintf(out, sizeof out, "%s/%s.h5", tmp, v.case_id);
        rc = fs_prediction_write(out, &p);
    }
    if (rc == FS_OK && nifti) {
        snprintf(out, sizeof out, "%s/%s.nii.gz", tmp, v.case_id);
        rc = fs_nifti_write(out, &p.label);
    }
    if (rc == FS_OK) {
        fprintf(index, "%s\n    {\"case\": ", first ? "" : ",");
        fs_json_string(index, v.case_id);
        fprintf(index, ", \"slices\": %zu, \"seconds\": %.3f}", nz, *seconds);
    }
    fs_tensor_free(&p.label.data);
out:
    fs_case_volume_free(&v);
    return rc;
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enum { O_PROMPT = 256, O_JITTER, O_MULTI, O_SIZE, O_SEED, O_BACKEND, O_NONIFTI, O_CONFIG, O_LORA };
    static const struct option opts[] = {
        {"weights", required_argument, 0, 'w'}, {"data", required_argument, 0, 'd'},
        {"out", required_argument, 0, 'o'}, {"prompt", required_argument, 0, O_PROMPT},
        {"box-jitter", required_argument, 0, O_JITTER}, {"multimask", no_argument, 0, O_MULTI},
        {"img-size", required_argument, 0, O_SIZE}, {"seed", required_argument, 0, O_SEED},
        {"backend", required_argument, 0, O_BACKEND}, {"no-nifti", no_argument, 0, O_NONIFTI},
        {"config", required_argument, 0, O_CONFIG}, {"lora", required_argument, 0, O_LORA},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *weights = NULL, *data = NULL, *out = NULL, *backend = "cpu", *lora = NULL;
    predictor P;
    memset(&P, 0, sizeof P);
    long img_size = 0;
    int nifti = 1, c;
    char *cfg_keys[32], *cfg_vals[32];
    size_t n_cfg = 0;
    while ((c = getopt_long(argc, argv, "w:d:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': weights = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case O_PROMPT: {
            int k = 0;
            while (k < 3 && strcmp(optarg, prompt_names[k])) k++;
            if (k == 3) fs_cli_usage_error("--prompt: '%s' is not point, box or none", optarg);
            P.prompt = (prompt_mode)k;
            break;
        }
        case O_JITTER: P.jitter = fs_cli_double("box-jitter", optarg, 0, 1e4); break;
        case O_MULTI: P.multimask = 1; break;
        case O_SIZE: img_size = fs_cli_long("img-size", optarg, 16, 4096); break;
        case O_SEED: P.seed = fs_cli_u64("seed", optarg); break;
        case O_BACKEND: backend = optarg; break;
        case O_NONIFTI: nifti = 0; break;
        case O_LORA: lora = optarg; break;
        case O_CONFIG: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) fs_cli_usage_error("--config: expected KEY=VALUE, got '%s'", optarg);
            if (n_cfg == 32) fs_cli_usage_error("--config: too many settings");
            cfg_keys[n_cfg] = strndup(optarg, (size_t)(eq - optarg));
            cfg_vals[n_cfg++] = eq + 1;
            break;
        }
        case 'h': fputs(usage, stdout); return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!weights || !data || !out) fs_cli_usage_error("--weights, --data and --out are required");
    P.ops = fs_nn_backend(backend);
    if (!P.ops) fs_cli_usage_error("--backend: %s", fs_error_msg());

    char dir[4200];
    snprintf(dir, sizeof dir, "%s/test", data);
    if (!fs_is_dir(dir)) snprintf(dir, sizeof dir, "%s", data);
    char **names;
    size_t n_names;
    if (!fs_is_dir(dir)) {
        fs_error("cannot open '%s': no such directory", data);
        fs_cli_die();
    }
    if (fs_list_dir(dir, &names, &n_names)) fs_cli_die();
    size_t n_cases = 0;
    for (size_t i = 0; i < n_names; i++) {
        size_t len = strlen(names[i]);
        n_cases += len > 3 && !strcmp(names[i] + len - 3, ".h5");
    }
    if (n_cases == 0) {
        fs_error("'%s': no test volumes (*.h5)", dir);
        fs_cli_die();
    }
    /* A trainer checkpoint fixes the input size; it is checked before the
     * base model is loaded, and its tensors are put on the model after. */
    fs_sam_ckpt_info lora_info;
    if (lora) {
        const char *keys[] = {"iters"};
        fs_sam_ckpt_meta *lm = malloc(sizeof *lm);
        if (!lm) {
            fs_error("out of memory");
            fs_cli_die();
        }
        if (fs_sam_ckpt_read_meta(lora, keys, 1, lm, &lora_info)) fs_cli_die();
        if (img_size && (size_t)img_size != lora_info.img_size) {
            fs_error("'%s' was trained at input size %zu: --img-size %ld does not fit it", lora,
                     lora_info.img_size, img_size);
            fs_cli_die();
        }
        img_size = (long)lora_info.img_size;
        const char *iters = fs_sam_ckpt_meta_get(lm, "iters");
        if (iters && strtoull(iters, NULL, 10) != lora_info.step)
            fs_warn("'%s' holds step %zu of a run of %s: training did not finish", lora, lora_info.step, iters);
        free(lm);
    }
    if (fs_sam_load_meta(&P.m, weights, (size_t)img_size, (const char *const *)cfg_keys,
                         (const char *const *)cfg_vals, n_cfg))
        fs_cli_die();
    if (lora && fs_sam_ckpt_apply(lora, P.m, &lora_info)) fs_cli_die();
    fs_info("%s SAM (%s%s%s), input %zu, prompt %s%s, backend %s", fs_sam_config_name(&P.m->cfg), weights,
            lora ? " + " : "", lora ? lora : "", P.m->cfg.img_size, prompt_names[P.prompt],
            P.multimask ? " (multimask)" : "", P.ops->name);

    char tmp[4200];
    size_t olen = strlen(out);
    while (olen > 1 && out[olen - 1] == '/') olen--;
    snprintf(tmp, sizeof tmp, "%.*s.tmp.%ld", (int)olen, out, (long)getpid());
    if (fs_mkdirs(tmp)) fs_cli_die();
    fs_atomic_file prompts_file;
    char ppath[4400];
    snprintf(ppath, sizeof ppath, "%s/prompts.csv", tmp);
    if (fs_atomic_open(&prompts_file, ppath)) { fs_remove_tree(tmp); fs_cli_die(); }
    P.prompts = prompts_file.f;
    fprintf(P.prompts, "case,slice,class,kind,x,y,x0,y0,x1,y1\n");
    char *body = NULL;
    size_t body_len = 0;
    FILE *index = open_memstream(&body, &body_len);
    int rc = FS_OK, first = 1;
    double total_s = 0;
    for (size_t i = 0; i < n_names && rc == FS_OK; i++) {
        size_t len = strlen(names[i]);
        if (len <= 3 || strcmp(names[i] + len - 3, ".h5")) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        double s = 0;
        rc = predict_case(&P, path, tmp, nifti, index, first, &s);
        first = 0;
        total_s += s;
    }
    fclose(index);
    if (fs_atomic_close(&prompts_file, rc == FS_OK) && rc == FS_OK) rc = FS_ERR;
    if (rc == FS_OK) {
        fs_atomic_file af;
        char ipath[4400];
        snprintf(ipath, sizeof ipath, "%s/index.json", tmp);
        rc = fs_atomic_open(&af, ipath);
        if (rc == FS_OK) {
            fprintf(af.f, "{\n  \"schema\": \"fewsam.predictions\",\n  \"version\": 1,\n  \"weights\": ");
            fs_json_string(af.f, weights);
            fprintf(af.f, ",\n  \"lora\": ");
            if (lora) fs_json_string(af.f, lora);
            else fprintf(af.f, "null");
            if (lora) fprintf(af.f, ",\n  \"lora_step\": %zu", lora_info.step);
            fprintf(af.f, ",\n  \"model\": \"%s\",\n  \"img_size\": %zu,\n  \"prompt\": \"%s\",\n  \"multimask\": %s,\n",
                    fs_sam_config_name(&P.m->cfg), P.m->cfg.img_size, prompt_names[P.prompt],
                    P.multimask ? "true" : "false");
            fprintf(af.f, "  \"box_jitter\": %g,\n  \"seed\": %llu,\n  \"backend\": \"%s\",\n", P.jitter,
                    (unsigned long long)P.seed, P.ops->name);
            fprintf(af.f, "  \"encoder_runs\": %zu,\n  \"decoder_runs\": %zu,\n  \"seconds\": %.3f,\n", P.encodes,
                    P.decodes, total_s);
            fprintf(af.f, "  \"cases\": [%s\n  ]\n}\n", body ? body : "");
            rc = fs_atomic_close(&af, 1);
        }
    }
    free(body);
    if (rc == FS_OK) rc = fs_replace_dir(tmp, out, "index.json");
    if (rc) {
        fs_remove_tree(tmp);
        fs_cli_die();
    }
    fs_info("%zu cases -> %s: %zu encoder and %zu decoder runs in %.1f s", n_cases, out, P.encodes, P.decodes,
            total_s);
    fs_free_list(names, n_names);
    fs_sam_free(P.m);
    free(P.img); free(P.embed); free(P.low); free(P.iou); free(P.logits); free(P.best);
    return FS_EXIT_OK;
}
