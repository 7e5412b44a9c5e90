/* trainer: LoRA fine-tuning of SAM on labelled slices (the exemplars, or any
 * fewsam.slices shards), point or box prompts from the labels.
 *   <out>/checkpoint.safetensors          the latest state (fewsam.checkpoint:
 *                                         trainable tensors, AdamW moments, settings)
 *   <out>/checkpoint-<iter>.safetensors   every --ckpt-every iterations
 *   <out>/train.jsonl                     one JSON object per iteration
 * Samples come from a source (data/source.h): the slices themselves, or
 * exemplar-guided synthesis in this process (--synth) or by synthesizer
 * processes over ZeroMQ (--stream). Every sample is a pure function of
 * (seed, iteration, position in the batch), whichever the source makes it,
 * so a run stopped and resumed from its checkpoint ends bit for bit where an
 * uninterrupted one does (same machine, backend and threads), and
 * in-process and streamed synthesis give the same parameters. */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/batch.h"
#include "data/source.h"
#include "data/synth_opts.h"
#include "nn/nn.h"
#include "sam/adamw.h"
#include "sam/ckpt.h"
#include "sam/init.h"
#include "sam/sam.h"
#include "sam/train.h"
#include "wire/msg.h"

static const char usage[] =
    "usage: trainer --weights CKPT --data SHARDS --out DIR [options]\n"
    "       trainer --init random --config KEY=VAL... --data SHARDS --out DIR [options]\n"
    "\n"
    "Fine-tunes SAM with LoRA on labelled slices: prompts (one per object)\n"
    "from the labels, 0.2 BCE + 0.8 Dice, AdamW with SAMed's schedule. Writes\n"
    "DIR/checkpoint.safetensors (for predictor --lora) and DIR/train.jsonl.\n"
    "\n"
    "  --weights CKPT       base SAM checkpoint (.pth as released, or .safetensors)\n"
    "  --data SHARDS        a fewsam.slices file (e.g. the exemplars), a folder of\n"
    "                       them, or a loader output (its train/); each sample is a\n"
    "                       slice holding an object, drawn uniformly (slices without\n"
    "                       any are never drawn)\n"
    "  --out DIR            output folder (created; a new run replaces the\n"
    "                       checkpoints of an earlier one there)\n"
    "  --img-size N         model input size (default: the checkpoint's; SAMed: 512)\n"
    "  --iters N            optimiser steps (1000)\n"
    "  --batch N            images per step (2; SAMed uses 12), one prompt set per\n"
    "                       object on each\n"
    "  --accum N            micro-batches of --batch images per step (1)\n"
    "  --lr F               base learning rate (0.005)\n"
    "  --warmup N           linear warm-up steps (default: 250, at most iters/10),\n"
    "                       then poly(0.9) decay\n"
    "  --weight-decay F     AdamW weight decay (0.1); betas 0.9/0.999, eps 1e-8\n"
    "  --clip F             clip the global gradient norm to F (0: off)\n"
    "  --loss-weights B,D   weights of the BCE and Dice terms (0.2,0.8)\n"
    "  --lora-rank N        LoRA rank (4)\n"
    "  --lora-scale F       LoRA scale (1)\n"
    "  --lora-targets T     q,v (default), q,k,v, all (qkv, proj, mlp), none, or a\n"
    "                       comma list of q, k, v, proj, lin1, lin2\n"
    "  --decoder MODE       full (train the mask decoder, default), lora (adapters of\n"
    "                       --lora-rank/--lora-scale on its attention projections,\n"
    "                       weights frozen) or frozen\n"
    "  --encoder MODE       lora (adapters on the image encoder, default), full (every\n"
    "                       image-encoder weight and the prompt embeddings; no\n"
    "                       adapters) or frozen\n"
    "  --init random        start from a seeded random initialisation (--seed) of the\n"
    "                       configuration --config gives (img_size, patch_size,\n"
    "                       embed_dim, depth, num_heads, window_size, global_attn,\n"
    "                       out_chans, dec_depth, dec_mlp_dim, dec_heads, ...; the\n"
    "                       rest as ViT-B) instead of --weights\n"
    "  --export FILE        at the end, also write the trained model as a plain SAM\n"
    "                       checkpoint (.safetensors, adapters merged, configuration\n"
    "                       and this command in its metadata), usable as --weights\n"
    "  --note TEXT          kept as 'note' in the checkpoint's (and export's) metadata\n"
    "  --prompt MODE        point (interior-most pixel, default), box, or mixed (each\n"
    "                       prompt set one or the other at random)\n"
    "  --box-jitter PX      move each box side by up to PX slice pixels (0)\n"
    "  --seed N             samples and LoRA initialisation (0)\n"
    "  --ckpt-every N       also keep DIR/checkpoint-<iter>.safetensors every N steps\n"
    "  --resume             continue from DIR/checkpoint.safetensors (same settings)\n"
    "  --stop-at N          stop after step N (checkpoint written; the schedule\n"
    "                       still runs to --iters; --resume continues)\n"
    "  --log-every N        a progress line every N steps (default: about 20 lines)\n"
    "  --backend NAME       cpu (default), ref (plain reference kernels, slow), cuda\n"
    "                       (the CUDA build, build/cuda-bin/trainer, on a GPU) or\n"
    "                       guard (cpu kernels on memory the host may not touch)\n"
    "  --recompute          keep only block inputs for the backward pass (less memory,\n"
    "                       one more encoder forward)\n"
    "  --config KEY=VAL     model configuration a .pth cannot tell (e.g.\n"
    "                       dec_heads=4), or the whole one with --init random;\n"
    "                       repeatable\n"
    "  -h, --help           this help\n"
    "\n"
    "synthetic samples (exemplar-guided synthesis from --data, one exemplar\n"
    "shard): position p of step t is sample t * batch * accum + p, a pure\n"
    "function of (--seed, index), made here or by synthesizers alike:\n"
    "  --synth              synthesize in this process\n"
    "  --stream ENDPOINT    bind ENDPOINT (ipc:///path, tcp://*:5555) and take the\n"
    "                       samples from synthesizer processes (synthesizer\n"
    "                       --connect, with this --data, --seed and synthesis\n"
    "                       settings; any number, joining and leaving at will)\n"
    "  --credit N           samples requested or buffered at most (16)\n"
    "  --heartbeat-ms N     heartbeat interval (250)\n"
    "  --peer-timeout-ms N  drop a synthesizer silent this long and ask its\n"
    "                       samples of another (2000)\n"
    "  --stream-wait S      give up when no sample came for S seconds (600; 0: never)\n"
    "  --stream-verify N    also make every Nth sample (and the first) here and stop\n"
    "                       if the synthesizers' differs (64; 0: never)\n"
    "  --max-message-mb F   the largest message accepted (256)\n"
    "  --curve-secret-key K this trainer's CURVE secret key (Z85, or a file holding\n"
    "                       it; curve-keygen): encrypted transport\n"
    "  --debug-sleep-ms N   (for tests) sleep N ms after every step: a slow consumer\n"
    "synthesis settings (the synthesizer's, give both the same):\n";

typedef struct {
    const char *key, *option;
    char val[1024];
} setting;

/* The settings that shape the result: stored in the checkpoint, compared on --resume. */
enum { S_ITERS, S_BATCH, S_ACCUM, S_LR, S_WARMUP, S_WD, S_CLIP, S_BETAS, S_LOSS, S_PROMPT, S_JITTER, S_SEED,
       S_DATA_FP, S_SAM_CONFIG, S_SOURCE, N_SETTINGS };

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* Removes DIR/checkpoint-<digits>.safetensors left by an earlier run. */
static void remove_numbered(const char *dir) {
    char **names;
    size_t n;
    if (fs_list_dir(dir, &names, &n)) return;
    for (size_t i = 0; i < n; i++) {
        unsigned long it;
        char tail[32];
        if (sscanf(names[i], "checkpoint-%lu%31s", &it, tail) == 2 && !strcmp(tail, ".safetensors")) {
            char p[4400];
            fs_path_join(p, sizeof p, dir, names[i]);
            unlink(p);
        }
    }
    fs_free_list(names, n);
}

/* The log of a resumed run keeps the lines of the steps the checkpoint holds. */
static FILE *open_log(const char *path, size_t keep_through, int resume) {
    if (!resume) return fopen(path, "w");
    unsigned char *old = NULL;
    size_t size = 0;
    if (fs_is_file(path) && fs_read_file(path, &old, &size)) return NULL;
    fs_atomic_file af;
    if (fs_atomic_open(&af, path)) {
        free(old);
        return NULL;
    }
    for (char *line = (char *)old, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        unsigned long it;
        if (sscanf(line, "{\"iter\": %lu", &it) == 1 && it <= keep_through) fprintf(af.f, "%s\n", line);
    }
    free(old);
    if (fs_atomic_close(&af, 1)) return NULL;
    return fopen(path, "a");
}

/* The step a resumed run starts from, after checking that the checkpoint
 * was written with the settings of this one (dies naming the first that
 * differs). */
static size_t resume_step(const char *ckpt_path, const setting *S, const fs_sam *m, const fs_train_config *tc,
                          uint64_t base_fp, const fs_nn_ops *ops, long iters) {
    if (!fs_is_file(ckpt_path)) {
        fs_error("cannot resume: '%s' does not exist", ckpt_path);
        fs_cli_die();
    }
    const char *keys[N_SETTINGS + 1];
    for (int i = 0; i < N_SETTINGS; i++) keys[i] = S[i].key;
    keys[N_SETTINGS] = "backend";
    fs_sam_ckpt_meta *cm = malloc(sizeof *cm);
    fs_sam_ckpt_info info;
    if (!cm) {
        fs_error("out of memory");
        fs_cli_die();
    }
    if (fs_sam_ckpt_read_meta(ckpt_path, keys, N_SETTINGS + 1, cm, &info)) fs_cli_die();
    char t_have[64], t_want[64];
    const char *what = NULL;
    char have[1100] = "", want[1100] = "";
    if (info.base_fingerprint != base_fp) {
        what = "--weights (other base weights)";
        snprintf(have, sizeof have, "%016" PRIx64, base_fp);
        snprintf(want, sizeof want, "%016" PRIx64, info.base_fingerprint);
    } else if (info.img_size != m->cfg.img_size) {
        what = "--img-size";
        snprintf(have, sizeof have, "%zu", m->cfg.img_size);
        snprintf(want, sizeof want, "%zu", info.img_size);
    } else if (info.encoder != tc->encoder) {
        what = "--encoder";
        snprintf(have, sizeof have, "%s", fs_train_encoder_mode_name(tc->encoder));
        snprintf(want, sizeof want, "%s", fs_train_encoder_mode_name(info.encoder));
    } else if (info.lora.targets != tc->lora.targets) {
        what = "--lora-targets";
        snprintf(have, sizeof have, "%s", fs_sam_ckpt_targets_str(tc->lora.targets, t_have, sizeof t_have));
        snprintf(want, sizeof want, "%s", fs_sam_ckpt_targets_str(info.lora.targets, t_want, sizeof t_want));
    } else if ((tc->lora.targets || (tc->decoder == FS_TRAIN_DECODER_LORA && info.decoder == tc->decoder)) &&
               info.lora.rank != tc->lora.rank) {
        what = "--lora-rank";
        snprintf(have, sizeof have, "%zu", tc->lora.rank);
        snprintf(want, sizeof want, "%zu", info.lora.rank);
    } else if (info.lora.scale != tc->lora.scale) {
        what = "--lora-scale";
        snprintf(have, sizeof have, "%.9g", (double)tc->lora.scale);
        snprintf(want, sizeof want, "%.9g", (double)info.lora.scale);
    } else if (info.decoder != tc->decoder) {
        what = "--decoder";
        snprintf(have, sizeof have, "%s", fs_train_decoder_mode_name(tc->decoder));
        snprintf(want, sizeof want, "%s", fs_train_decoder_mode_name(info.decoder));
    }
    for (int i = 0; !what && i < N_SETTINGS; i++) {
        const char *v = fs_sam_ckpt_meta_get(cm, S[i].key);
        if (!v || strcmp(v, S[i].val)) {
            what = S[i].option;
            snprintf(have, sizeof have, "%s", S[i].val);
            snprintf(want, sizeof want, "%s", v ? v : "(not recorded)");
        }
    }
    if (what) {
        fs_error("cannot resume from '%s': %s is %s here, %s in the checkpoint", ckpt_path, what, have, want);
        fs_cli_die();
    }
    const char *b = fs_sam_ckpt_meta_get(cm, "backend");
    if (b && strcmp(b, ops->name))
        fs_warn("resuming on backend '%s' (the checkpoint was trained on '%s'): the result will differ in the "
                "last bits from an uninterrupted run",
                ops->name, b);
    free(cm);
    if (info.step > (size_t)iters) {
        fs_error("'%s' holds step %zu, beyond --iters %ld", ckpt_path, info.step, iters);
        fs_cli_die();
    }
    return info.step;
}

/* What the training loop needs. */
typedef struct {
    fs_train *t;
    fs_sam *m;
    const fs_nn_ops *ops;
    fs_source *src;
    fs_batch *B;
    const fs_batch_config *bc;
    const fs_sam_ckpt_meta *meta;
    uint64_t base_fp;
    const char *out, *ckpt_path;
    FILE *log;
    double lr;
    long iters, warmup, batch, accum, every, log_every, debug_sleep_ms;
} run_ctx;

/* Dies with the current error, telling the synthesizers first (bye), so
 * that they leave now rather than after their give-up time. */
static void die_run(const run_ctx *R) __attribute__((noreturn));
static void die_run(const run_ctx *R) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", fs_error_msg());
    fs_source_close(R->src);
    fs_error("%s", msg);
    fs_cli_die();
}

/* Steps [start, stop): each draws its samples, accumulates the gradients of
 * its micro-batches, takes one AdamW step, logs, and checkpoints when due. */
static void train_steps(const run_ctx *R, size_t start, size_t stop) {
    double ema_s = 0;
    for (size_t it = start; it < stop; it++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        double rate = fs_lr_samed(R->lr, it, (size_t)R->warmup, (size_t)R->iters);
        fs_loss_value sum = {0, 0, 0};
        size_t items = 0;
        fs_train_zero_grad(R->t);
        for (size_t a = 0; a < (size_t)R->accum; a++) {
            fs_train_batch tb;
            fs_loss_value lv;
            if (fs_source_draw(R->src, R->B, R->m, R->bc, it, a * (size_t)R->batch, (size_t)R->batch)) {
                fs_error_wrap("step %zu", it + 1);
                die_run(R);
            }
            fs_batch_view(R->B, &tb);
            if (fs_train_forward_backward(R->t, R->ops, &tb, &lv)) {
                fs_error_wrap("step %zu", it + 1);
                die_run(R);
            }
            sum.total += lv.total;
            sum.xent += lv.xent;
            sum.dice += lv.dice;
            items += R->B->n_items;
        }
        if (R->accum > 1) fs_train_scale_grad(R->t, 1.0f / (float)R->accum);
        fs_train_step(R->t, rate);
        double s = seconds_since(&t0);
        ema_s = it == start ? s : 0.9 * ema_s + 0.1 * s;
        double n = (double)R->accum, loss = sum.total / n, bce = sum.xent / n, dice = sum.dice / n;
        if (!isfinite(loss)) {
            fs_error("step %zu: the loss is %g (try a lower --lr or --clip)", it + 1, loss);
            die_run(R);
        }
        fprintf(R->log,
                "{\"iter\": %zu, \"loss\": %.9g, \"bce\": %.9g, \"dice\": %.9g, \"lr\": %.9g, "
                "\"grad_norm\": %.9g, \"seconds\": %.4f, \"prompts\": %zu}\n",
                it + 1, loss, bce, dice, rate, fs_train_last_grad_norm(R->t), s, items);
        fflush(R->log);
        size_t done = it + 1;
        if (done == start + 1 || done % (size_t)R->log_every == 0 || done == stop) {
            char eta[32];
            fmt_duration(eta, sizeof eta, ema_s * (double)(stop - done));
            fs_info("iter %zu/%ld  loss %.4f (bce %.4f, dice %.4f)  lr %.3g  %.3g s/it  ETA %s", done, R->iters,
                    loss, bce, dice, rate, ema_s, eta);
        }
        int periodic = R->every > 0 && done % (size_t)R->every == 0;
        if (periodic) {
            char p[4400];
            snprintf(p, sizeof p, "%s/checkpoint-%zu.safetensors", R->out, done);
            if (fs_sam_ckpt_save(p, R->t, R->m, R->base_fp, R->meta)) die_run(R);
        }
        if (periodic || done == stop)
            if (fs_sam_ckpt_save(R->ckpt_path, R->t, R->m, R->base_fp, R->meta)) die_run(R);
        if (R->debug_sleep_ms > 0) usleep((useconds_t)R->debug_sleep_ms * 1000);
    }
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enum { O_SIZE = 256, O_LOSSW, O_ITERS, O_BATCH, O_ACCUM, O_LR, O_WARMUP, O_WD, O_CLIP, O_RANK, O_SCALE, O_TARGETS,
           O_DECODER, O_PROMPT, O_JITTER, O_SEED, O_EVERY, O_RESUME, O_STOP, O_LOGEVERY, O_BACKEND, O_RECOMPUTE,
           O_CONFIG, O_ENCODER, O_INIT, O_EXPORT, O_NOTE, O_SYNTH, O_STREAM, O_CREDIT, O_HEARTBEAT, O_PEER_TIMEOUT,
           O_STREAM_WAIT, O_VERIFY, O_MAXMSG, O_CURVE, O_DEBUG_SLEEP };
    struct option opts[64 + FS_SYNTH_N_OPTS] = {
        {"weights", required_argument, 0, 'w'}, {"data", required_argument, 0, 'd'},
        {"out", required_argument, 0, 'o'}, {"img-size", required_argument, 0, O_SIZE},
        {"iters", required_argument, 0, O_ITERS}, {"batch", required_argument, 0, O_BATCH},
        {"accum", required_argument, 0, O_ACCUM}, {"lr", required_argument, 0, O_LR},
        {"warmup", required_argument, 0, O_WARMUP}, {"weight-decay", required_argument, 0, O_WD},
        {"clip", required_argument, 0, O_CLIP}, {"lora-rank", required_argument, 0, O_RANK},
        {"loss-weights", required_argument, 0, O_LOSSW},
        {"lora-scale", required_argument, 0, O_SCALE}, {"lora-targets", required_argument, 0, O_TARGETS},
        {"decoder", required_argument, 0, O_DECODER}, {"prompt", required_argument, 0, O_PROMPT},
        {"box-jitter", required_argument, 0, O_JITTER}, {"seed", required_argument, 0, O_SEED},
        {"ckpt-every", required_argument, 0, O_EVERY}, {"resume", no_argument, 0, O_RESUME},
        {"stop-at", required_argument, 0, O_STOP}, {"log-every", required_argument, 0, O_LOGEVERY},
        {"backend", required_argument, 0, O_BACKEND}, {"recompute", no_argument, 0, O_RECOMPUTE},
        {"config", required_argument, 0, O_CONFIG}, {"encoder", required_argument, 0, O_ENCODER},
        {"init", required_argument, 0, O_INIT}, {"export", required_argument, 0, O_EXPORT},
        {"note", required_argument, 0, O_NOTE},
        {"synth", no_argument, 0, O_SYNTH}, {"stream", required_argument, 0, O_STREAM},
        {"credit", required_argument, 0, O_CREDIT}, {"heartbeat-ms", required_argument, 0, O_HEARTBEAT},
        {"peer-timeout-ms", required_argument, 0, O_PEER_TIMEOUT},
        {"stream-wait", required_argument, 0, O_STREAM_WAIT}, {"stream-verify", required_argument, 0, O_VERIFY},
        {"max-message-mb", required_argument, 0, O_MAXMSG}, {"curve-secret-key", required_argument, 0, O_CURVE},
        {"debug-sleep-ms", required_argument, 0, O_DEBUG_SLEEP}, {"help", no_argument, 0, 'h'}};
    {
        size_t no = 0;
        while (opts[no].name) no++;
        no += fs_synth_opts_add(opts + no);
        opts[no] = (struct option){0, 0, 0, 0};
    }
    fs_synth_opts so;
    fs_synth_opts_init(&so, argc, argv);
    fs_source_config scfg;
    fs_source_config_default(&scfg, FS_SOURCE_POOL);
    const char *curve = NULL;
    long debug_sleep_ms = 0;
    const char *weights = NULL, *data = NULL, *out = NULL, *backend = "cpu", *export_path = NULL;
    const char *note = NULL;
    int init_random = 0, targets_given = 0;
    long img_size = 0, iters = 1000, batch = 2, accum = 1, warmup = -1, every = 0, stop_at = 0, log_every = 0;
    double lr = 0.005, wd = 0.1, clip = 0, jitter = 0;
    uint64_t seed = 0;
    int resume = 0, c;
    fs_train_config tc;
    fs_train_config_default(&tc);
    fs_batch_config bc = {FS_BATCH_POINT, 0, 0};
    char *cfg_keys[32], *cfg_vals[32], sam_config[1024] = "";
    size_t n_cfg = 0;
    while ((c = getopt_long(argc, argv, "w:d:o:h", opts, NULL)) != -1) {
        if (fs_synth_opts_apply(&so, c, optarg)) continue;
        switch (c) {
        case 'w': weights = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case O_SIZE: img_size = fs_cli_long("img-size", optarg, 16, 4096); break;
        case O_ITERS: iters = fs_cli_long("iters", optarg, 1, 100000000); break;
        case O_BATCH: batch = fs_cli_long("batch", optarg, 1, 4096); break;
        case O_ACCUM: accum = fs_cli_long("accum", optarg, 1, 4096); break;
        case O_LR: lr = fs_cli_double("lr", optarg, 0, 10); break;
        case O_WARMUP: warmup = fs_cli_long("warmup", optarg, 0, 100000000); break;
        case O_WD: wd = fs_cli_double("weight-decay", optarg, 0, 10); break;
        case O_CLIP: clip = fs_cli_double("clip", optarg, 0, 1e9); break;
        case O_LOSSW: {
            double w[2];
            fs_cli_pair("loss-weights", "BCE,DICE", optarg, 0, 1e6, w);
            if (w[0] + w[1] <= 0) fs_cli_usage_error("--loss-weights: both weights are 0");
            tc.loss.w_xent = w[0];
            tc.loss.w_dice = w[1];
            break;
        }
        case O_RANK: tc.lora.rank = (size_t)fs_cli_long("lora-rank", optarg, 1, 1024); break;
        case O_SCALE: tc.lora.scale = (float)fs_cli_double("lora-scale", optarg, 0, 1e6); break;
        case O_TARGETS:
            if (fs_lora_parse_targets(optarg, &tc.lora.targets))
                fs_cli_usage_error("--lora-targets: %s", fs_error_msg());
            targets_given = 1;
            break;
        case O_ENCODER:
            if (fs_train_encoder_mode_parse(optarg, &tc.encoder)) fs_cli_usage_error("--encoder: %s", fs_error_msg());
            break;
        case O_INIT:
            if (strcmp(optarg, "random")) fs_cli_usage_error("--init: '%s' is not random", optarg);
            init_random = 1;
            break;
        case O_EXPORT: export_path = optarg; break;
        case O_NOTE: note = optarg; break;
        case O_DECODER:
            if (fs_train_decoder_mode_parse(optarg, &tc.decoder)) fs_cli_usage_error("--decoder: %s", fs_error_msg());
            break;
        case O_PROMPT:
            if (!strcmp(optarg, "point")) bc.prompt = FS_BATCH_POINT;
            else if (!strcmp(optarg, "box")) bc.prompt = FS_BATCH_BOX;
            else if (!strcmp(optarg, "mixed")) bc.prompt = FS_BATCH_MIXED;
            else fs_cli_usage_error("--prompt: '%s' is not point or box", optarg);
            break;
        case O_JITTER: jitter = fs_cli_double("box-jitter", optarg, 0, 1e4); break;
        case O_SEED: seed = fs_cli_u64("seed", optarg); break;
        case O_EVERY: every = fs_cli_long("ckpt-every", optarg, 0, 100000000); break;
        case O_RESUME: resume = 1; break;
        case O_STOP: stop_at = fs_cli_long("stop-at", optarg, 1, 100000000); break;
        case O_LOGEVERY: log_every = fs_cli_long("log-every", optarg, 1, 100000000); break;
        case O_BACKEND: backend = optarg; break;
        case O_RECOMPUTE: tc.recompute = 1; break;
        case O_CONFIG: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) fs_cli_usage_error("--config: expected KEY=VALUE, got '%s'", optarg);
            if (n_cfg == 32) fs_cli_usage_error("--config: too many settings");
            cfg_keys[n_cfg] = strndup(optarg, (size_t)(eq - optarg));
            cfg_vals[n_cfg++] = eq + 1;
            size_t len = strlen(sam_config);
            snprintf(sam_config + len, sizeof sam_config - len, "%s%s", len ? " " : "", optarg);
            break;
        }
        case O_SYNTH:
            if (scfg.kind == FS_SOURCE_STREAM) fs_cli_usage_error("--synth and --stream exclude each other");
            scfg.kind = FS_SOURCE_SYNTH;
            break;
        case O_STREAM:
            if (scfg.kind == FS_SOURCE_SYNTH) fs_cli_usage_error("--synth and --stream exclude each other");
            scfg.kind = FS_SOURCE_STREAM;
            scfg.endpoint = optarg;
            break;
        case O_CREDIT: scfg.stream.credit = (size_t)fs_cli_long("credit", optarg, 1, 4096); break;
        case O_HEARTBEAT: scfg.stream.heartbeat_ms = (int)fs_cli_long("heartbeat-ms", optarg, 10, 600000); break;
        case O_PEER_TIMEOUT:
            scfg.stream.timeout_ms = (int)fs_cli_long("peer-timeout-ms", optarg, 20, 3600000);
            break;
        case O_STREAM_WAIT: scfg.wait_s = (int)fs_cli_long("stream-wait", optarg, 0, 100000000); break;
        case O_VERIFY: scfg.verify_every = fs_cli_u64("stream-verify", optarg); break;
        case O_MAXMSG:
            scfg.stream.max_message_bytes = (size_t)(fs_cli_double("max-message-mb", optarg, 0.0625, 4096) * 1048576);
            break;
        case O_CURVE: curve = optarg; break;
        case O_DEBUG_SLEEP: debug_sleep_ms = fs_cli_long("debug-sleep-ms", optarg, 0, 600000); break;
        case 'h':
            fputs(usage, stdout);
            fputs(fs_synth_opts_usage, stdout);
            return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (init_random && weights) fs_cli_usage_error("--init random and --weights exclude each other");
    if (init_random && !n_cfg) fs_cli_usage_error("--init random needs the model's configuration (--config KEY=VAL)");
    if ((!weights && !init_random) || !data || !out)
        fs_cli_usage_error("--weights (or --init random), --data and --out are required");
    if (tc.encoder != FS_TRAIN_ENCODER_LORA) {
        if (targets_given && tc.lora.targets)
            fs_cli_usage_error("--lora-targets: adapters need --encoder lora (the encoder is %s here)",
                               tc.encoder == FS_TRAIN_ENCODER_FULL ? "trained in full" : "frozen");
        tc.lora.targets = 0;
    }
    if (jitter > 0 && bc.prompt == FS_BATCH_POINT) fs_cli_usage_error("--box-jitter needs --prompt box (or mixed)");
    if (scfg.kind == FS_SOURCE_POOL && so.given)
        fs_cli_usage_error("synthesis settings need --synth or --stream (samples are the exemplars otherwise)");
    if (scfg.kind != FS_SOURCE_STREAM && curve) fs_cli_usage_error("--curve-secret-key needs --stream");
    if (scfg.stream.heartbeat_ms * 2 > scfg.stream.timeout_ms)
        fs_cli_usage_error("--peer-timeout-ms %d must be at least twice --heartbeat-ms %d", scfg.stream.timeout_ms,
                           scfg.stream.heartbeat_ms);
    if (so.cfg.prompts != FS_SYNTH_PROMPTS_CLASS)
        fs_cli_usage_error("--prompts %s: the trainer's targets are class masks (class prompts only)",
                           fs_synth_prompts_name(so.cfg.prompts));
    if (fs_synth_config_check(&so.cfg)) fs_cli_usage_error("%s", fs_error_msg());
    if (stop_at > iters) fs_cli_usage_error("--stop-at %ld is beyond --iters %ld", stop_at, iters);
    if (!tc.lora.targets && tc.encoder != FS_TRAIN_ENCODER_FULL && tc.decoder == FS_TRAIN_DECODER_FROZEN)
        fs_cli_usage_error("--lora-targets none with --decoder frozen leaves nothing to train");
    if (!stop_at) stop_at = iters;
    if (warmup < 0) warmup = iters / 10 < 250 ? iters / 10 : 250;
    if (!log_every) log_every = iters / 20 > 0 ? iters / 20 : 1;
    bc.box_jitter = jitter;
    bc.seed = seed;
    tc.seed = seed;
    tc.batch = (size_t)batch;
    tc.clip = (float)clip;
    tc.adamw = fs_adamw_defaults(lr, wd);
    const fs_nn_ops *ops = fs_nn_backend(backend);
    if (!ops) fs_cli_usage_error("--backend: %s", fs_error_msg());
    if (!fs_train_backend_ok(ops)) {
        const fs_nn_ops *ref = fs_nn_backend("ref");
        if (!ref || !fs_train_backend_ok(ref)) {
            fs_error("backend '%s' has no backward kernels", ops->name);
            fs_cli_die();
        }
        fs_warn("backend '%s' has no backward kernels yet: training on 'ref' (exact but slow)", ops->name);
        ops = ref;
    }

    char ckpt_path[4400], log_path[4400];
    fs_path_join(ckpt_path, sizeof ckpt_path, out, "checkpoint.safetensors");
    fs_path_join(log_path, sizeof log_path, out, "train.jsonl");

    /* Inputs first: nothing is written before they all check out. */
    char curve_key[41];
    if (curve) {
        if (fs_wire_key_load(curve, curve_key)) fs_cli_die();
        scfg.stream.curve_secret_key = curve_key;
    }
    scfg.data = data;
    scfg.backgrounds = so.backgrounds;
    scfg.synth = so.cfg;
    scfg.synth.seed = seed;
    scfg.per_step = (size_t)(batch * accum);
    fs_source *src;
    if (fs_source_open(&src, &scfg)) fs_cli_die();
    const fs_pool *pool = fs_source_pool(src);
    fs_sam *m;
    char base_desc[128];
    if (init_random) {
        fs_sam_config sc;
        if (fs_sam_config_from_keys(&sc, (const char *const *)cfg_keys, (const char *const *)cfg_vals, n_cfg))
            fs_cli_usage_error("--config: %s", fs_error_msg());
        if (img_size) sc.img_size = (size_t)img_size;
        if (fs_sam_create_random(&m, &sc, seed)) fs_cli_die();
        snprintf(base_desc, sizeof base_desc, "random initialisation (seed %" PRIu64 ")", seed);
        weights = base_desc;
    } else if (fs_sam_load_meta(&m, weights, (size_t)img_size, (const char *const *)cfg_keys,
                                (const char *const *)cfg_vals, n_cfg)) {
        fs_cli_die();
    }
    uint64_t base_fp = fs_sam_fingerprint(m), data_fp = fs_source_fingerprint(src);
    fs_info("%s SAM (%s), input %zu; %zu slices (%zu with objects) from %zu shard%s in '%s'; backend %s",
            fs_sam_config_name(&m->cfg), weights, m->cfg.img_size, pool->n, pool->n_usable, pool->n_shards,
            pool->n_shards == 1 ? "" : "s", data, ops->name);

    setting S[N_SETTINGS] = {
        [S_ITERS] = {"iters", "--iters", ""},          [S_BATCH] = {"batch", "--batch", ""},
        [S_ACCUM] = {"accum", "--accum", ""},          [S_LR] = {"lr", "--lr", ""},
        [S_WARMUP] = {"warmup", "--warmup", ""},       [S_WD] = {"weight_decay", "--weight-decay", ""},
        [S_CLIP] = {"clip", "--clip", ""},             [S_BETAS] = {"adamw", "the optimiser", ""},
        [S_LOSS] = {"loss", "the loss weights", ""},   [S_PROMPT] = {"prompt", "--prompt", ""},
        [S_JITTER] = {"box_jitter", "--box-jitter", ""}, [S_SEED] = {"seed", "--seed", ""},
        [S_DATA_FP] = {"data_fingerprint", "--data (its slices differ)", ""},
        [S_SAM_CONFIG] = {"sam_config", "--config", ""},
        [S_SOURCE] = {"samples", "the samples (--synth or --stream and the synthesis settings)", ""}};
    snprintf(S[S_ITERS].val, 1024, "%ld", iters);
    snprintf(S[S_BATCH].val, 1024, "%ld", batch);
    snprintf(S[S_ACCUM].val, 1024, "%ld", accum);
    snprintf(S[S_LR].val, 1024, "%.17g", lr);
    snprintf(S[S_WARMUP].val, 1024, "%ld", warmup);
    snprintf(S[S_WD].val, 1024, "%.17g", wd);
    snprintf(S[S_CLIP].val, 1024, "%.9g", (double)tc.clip);
    snprintf(S[S_BETAS].val, 1024, "betas %.17g,%.17g eps %.17g", tc.adamw.beta1, tc.adamw.beta2, tc.adamw.eps);
    snprintf(S[S_LOSS].val, 1024, "%.17g bce + %.17g dice", tc.loss.w_xent, tc.loss.w_dice);
    snprintf(S[S_PROMPT].val, 1024, "%s",
             bc.prompt == FS_BATCH_POINT ? "point" : bc.prompt == FS_BATCH_BOX ? "box" : "mixed");
    snprintf(S[S_JITTER].val, 1024, "%.17g", jitter);
    snprintf(S[S_SEED].val, 1024, "%" PRIu64, seed);
    snprintf(S[S_DATA_FP].val, 1024, "%016" PRIx64, data_fp);
    snprintf(S[S_SAM_CONFIG].val, 1024, "%s", sam_config);
    fs_source_describe(src, S[S_SOURCE].val, 1024);

    size_t start = resume ? resume_step(ckpt_path, S, m, &tc, base_fp, ops, iters) : 0;

    fs_train *t;
    if (fs_sam_bind(m, ops) || fs_train_create(&t, m, &tc)) fs_cli_die();
    if (resume && fs_sam_ckpt_restore(ckpt_path, t)) fs_cli_die();
    if (start >= (size_t)stop_at) {
        fs_info("'%s' already holds step %zu of %ld: nothing to do", ckpt_path, start, iters);
        return FS_EXIT_OK;
    }
    fs_batch B;
    if (fs_batch_alloc(&B, m, (size_t)batch, pool->n_classes)) fs_cli_die();

    fs_sam_ckpt_meta *meta = calloc(1, sizeof *meta);
    if (!meta) {
        fs_error("out of memory");
        fs_cli_die();
    }
    for (int i = 0; i < N_SETTINGS; i++)
        if (fs_sam_ckpt_meta_set(meta, S[i].key, "%s", S[i].val)) fs_cli_die();
    if (fs_sam_ckpt_meta_set(meta, "base", "%s", weights) || fs_sam_ckpt_meta_set(meta, "data", "%s", data) ||
        fs_sam_ckpt_meta_set(meta, "backend", "%s", ops->name) ||
        fs_sam_ckpt_meta_set(meta, "recompute", "%d", tc.recompute) ||
        fs_sam_ckpt_meta_set(meta, "n_classes", "%zu", pool->n_classes) ||
        fs_sam_ckpt_meta_set(meta, "schedule", "linear warm-up then poly 0.9 (SAMed)") ||
        (note && fs_sam_ckpt_meta_set(meta, "note", "%s", note)))
        fs_cli_die();

    /* the stream binds before anything is written: a bad endpoint leaves no trace */
    if (fs_source_start(src, start, (size_t)stop_at)) fs_cli_die();
    if (fs_source_endpoint(src))
        fs_info("samples %zu..%zu from synthesizers at %s (credit %zu)", start * scfg.per_step,
                (size_t)stop_at * scfg.per_step - 1, fs_source_endpoint(src), scfg.stream.credit);
    if (fs_mkdirs(out)) fs_cli_die();
    if (!resume) { /* a new run replaces an earlier one's checkpoints */
        remove_numbered(out);
        unlink(ckpt_path);
    }
    FILE *log = open_log(log_path, start, resume);
    if (!log) {
        fs_error_errno("cannot write '%s'", log_path);
        fs_cli_die();
    }
    fs_info("training steps %zu..%ld of %ld: batch %ld x %ld, lr %g, warm-up %ld, weight decay %g, prompt %s, "
            "seed %" PRIu64,
            start + 1, stop_at, iters, batch, accum, lr, warmup, wd, S[S_PROMPT].val, seed);

    struct timespec t_run;
    clock_gettime(CLOCK_MONOTONIC, &t_run);
    run_ctx R = {t, m, ops, src, &B, &bc, meta, base_fp, out, ckpt_path, log, lr, iters, warmup, batch, accum, every,
                 log_every, debug_sleep_ms};
    train_steps(&R, start, (size_t)stop_at);
    char summary[1024];
    fs_source_summary(src, summary, sizeof summary);
    if (summary[0]) fs_info("%s", summary);
    fs_source_close(src); /* synthesizers told bye now, not after the export */
    fclose(log);
    char took[32];
    fmt_duration(took, sizeof took, seconds_since(&t_run));
    fs_info("%s: step %ld of %ld in %s", ckpt_path, stop_at, iters, took);
    if (export_path) {
        /* the run's settings (iterations, seed, data, ...) and this command say how the weights were made */
        size_t n = meta->n + 2, len = 0;
        const char **ek = calloc(n, sizeof *ek), **ev = calloc(n, sizeof *ev);
        char *cmd = calloc(1, 4096);
        if (!ek || !ev || !cmd) {
            fs_error("out of memory");
            fs_cli_die();
        }
        for (int i = 0; i < argc && len < 4000; i++)
            len += (size_t)snprintf(cmd + len, 4096 - len, "%s%s", i ? " " : "", i ? argv[i] : "trainer");
        size_t k = 0;
        for (size_t i = 0; i < meta->n; i++) {
            ek[k] = meta->key[i];
            ev[k++] = meta->val[i];
        }
        ek[k] = "command";
        ev[k++] = cmd;
        char steps[32];
        snprintf(steps, sizeof steps, "%ld", stop_at);
        ek[k] = "trained_steps";
        ev[k++] = steps;
        fs_train_pull(t); /* the trained decoder and adapters, back in the host copies */
        fs_lora_merge(fs_train_lora(t), &m->cfg, &m->p);
        if (fs_sam_export(export_path, m, ek, ev, k)) fs_cli_die();
        fs_info("exported the trained model to %s", export_path);
        free(ek);
        free(ev);
        free(cmd);
    }
    free(meta);
    fs_batch_free(&B);
    fs_train_free(t);
    fs_sam_free(m);
    for (size_t i = 0; i < n_cfg; i++) free(cfg_keys[i]);
    return FS_EXIT_OK;
}
