"""The PyTorch baseline of bench_train: one LoRA fine-tuning step of SAM
(tests/py/sam_torch.py, checked against the official model's golden
activations) the way SAMed trains it: LoRA rank --rank on the q and v parts
of every encoder block's qkv (qkv(x)[..., :C] += (x A_q^T) B_q^T, same for v
in the last third), base weights frozen, every mask_decoder.* parameter
trained, loss 0.2 BCE-with-logits + 0.8 soft Dice on the low-res logits,
torch.optim.AdamW step included. Random weights as encoder_torch.py,
float32 master weights, --batch images (1) with one positive point prompt
each, --img pixels, --threads threads (CPU) or the GPU (--device cuda).

Prints one JSON object per math mode (--dtype fp32,tf32,bf16: see
torch_bench.py; bf16 autocasts the forward pass and the loss), one a line,
like bench_train's: {"backend": "torch", "img", "batch", "threads", "depth",
"rank", "math", "seconds" (best of --steps timed steps after --warmup, in
each mode), "median", "seconds_all", "images_per_s", "loss" (of the first
step in this mode), "trainable", "matmul_tflops" (torch.mm of --matmul-n^3
in this mode, after the timed steps), "matmul_n", "peak_rss_mb" (ru_maxrss
of this process), "peak_device_mb" (cuda: torch.cuda.max_memory_allocated
over the timed steps, reset after the warm-up; null on the CPU), "device",
"torch_version"}. On cuda the clock is read after torch.cuda.synchronize();
running out of GPU memory prints {"backend": "torch", "aborted": "CUDA out
of memory", ...} and exits 0.
A watchdog stops the run when the machine's MemAvailable falls below
--min-avail-mib (other processes share the machine; ViT-B at 1024 needs many
GB here): it then prints {"backend": "torch", "aborted": "...",
"peak_rss_mb" (so far: a lower bound), ...} and exits 0.

As a library (tests/py/test_train_torch_golden.py checks it against the
golden training file): add_lora, set_trainable, loss_fn, forward_logits,
train_step."""
import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import threading
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import sam_torch as st  # noqa: E402

DICE_SMOOTH = 1e-5


class LoRAQV(nn.Module):
    """The q and v adapters of one block: A [r, C], B [C, r] (SAMed's names
    under attn.lora: q_A, q_B, v_A, v_B). New adapters: A Kaiming-uniform
    (torch's nn.Linear init), B zero, so the model starts as the base."""

    def __init__(self, dim, rank):
        super().__init__()
        self.dim = dim
        bound = 1.0 / dim ** 0.5
        self.q_A = nn.Parameter(torch.empty(rank, dim).uniform_(-bound, bound))
        self.q_B = nn.Parameter(torch.zeros(dim, rank))
        self.v_A = nn.Parameter(torch.empty(rank, dim).uniform_(-bound, bound))
        self.v_B = nn.Parameter(torch.zeros(dim, rank))


def _lora_qkv_forward(lin, lora, scale):
    def forward(self, x):
        qkv = F.linear(x, self.weight, self.bias)
        C = lora.dim
        # in place, as SAMed's _LoRA_qkv: linear's backward needs its input, not its output
        qkv[..., :C] += scale * F.linear(F.linear(x, lora.q_A), lora.q_B)
        qkv[..., 2 * C:] += scale * F.linear(F.linear(x, lora.v_A), lora.v_B)
        return qkv
    return types.MethodType(forward, lin)


def add_lora(sam, rank=4, scale=1.0):
    """Adds LoRA q/v adapters to every encoder block of sam (in place):
    parameters image_encoder.blocks.{i}.attn.lora.{q_A,q_B,v_A,v_B}; the qkv
    weights keep their official names."""
    for blk in sam.image_encoder.blocks:
        attn = blk.attn
        attn.lora = LoRAQV(attn.qkv.in_features, rank)
        attn.qkv.forward = _lora_qkv_forward(attn.qkv, attn.lora, scale)
    return sam


def set_trainable(sam):
    """LoRA tensors and every mask_decoder.* parameter trainable, the rest
    frozen. Returns the trainable (name, parameter) list."""
    out = []
    for name, p in sam.named_parameters():
        train = ".lora." in name or name.startswith("mask_decoder.")
        p.requires_grad_(train)
        if train:
            out.append((name, p))
    return out


def loss_fn(logits, target, w_bce=0.2, w_dice=0.8):
    """logits, target [N, 1, L, L] -> (total, bce, dice): BCE-with-logits
    mean over every element, soft Dice per prompt with p = sigmoid, then
    the mean over prompts."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + DICE_SMOOTH) / ((p * p).sum(1) + (t * t).sum(1) + DICE_SMOOTH)
    dice = dice.mean()
    return w_bce * bce + w_dice * dice, bce, dice


def forward_logits(sam, images, prompt_image, coords, labels, trace=None):
    """images [B, 3, S, S] preprocessed; prompt n: coords[n] [P, 2], labels[n]
    [P] on image prompt_image[n] -> low-res logits [N, 1, L, L]
    (multimask_output=False, each prompt decoded on its own)."""
    emb = sam.image_encoder(images, trace=trace)
    if trace is not None:
        trace["image_embeddings"] = emb
    outs = []
    for n in range(len(prompt_image)):
        b = int(prompt_image[n])
        low, _ = sam.decode(emb[b:b + 1], points=(coords[n:n + 1], labels[n:n + 1]), multimask_output=False)
        outs.append(low)
    return torch.cat(outs, 0)


def train_step(sam, opt, images, prompt_image, coords, labels, target, autocast=None):
    """zero_grad, forward, loss, backward, AdamW step; returns the loss
    values (before the step) as floats (total, bce, dice). autocast: a
    context factory for the forward pass and the loss (bf16), or None."""
    opt.zero_grad()
    with (autocast or contextlib.nullcontext)():
        logits = forward_logits(sam, images, prompt_image, coords, labels)
        total, bce, dice = loss_fn(logits.float(), target)
    total.backward()
    opt.step()
    return float(total), float(bce), float(dice)


def random_sam(img, depth, rank, seed=0):
    """ViT-B at img with random weights (torch's default init, rel-pos and
    pos_embed uniform in [-0.02, 0.02] as encoder_torch.py), LoRA added."""
    torch.manual_seed(seed)
    cfg = st.vit_b_config(img)
    cfg["depth"] = depth
    cfg["global_attn"] = [i for i in cfg["global_attn"] if i < depth]
    sam = st.Sam(cfg)
    with torch.no_grad():
        for name, p in sam.image_encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                p.uniform_(-0.02, 0.02)
    return add_lora(sam, rank).train()


def bench_inputs(img, batch=1, device="cpu"):
    """batch images, one positive point at the centre of each, a disc of
    radius L/4 as every low-res target (the same as bench_train.c)."""
    torch.manual_seed(1)
    x = torch.rand(batch, 3, img, img) * 4 - 2
    L = img // 4
    yy, xx = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    c = (L - 1) / 2.0
    target = (((yy - c) ** 2 + (xx - c) ** 2) <= (L / 4.0) ** 2).float().reshape(1, 1, L, L).repeat(batch, 1, 1, 1)
    coords = torch.tensor([[[img / 2.0, img / 2.0]]]).repeat(batch, 1, 1)
    labels = torch.ones(batch, 1, dtype=torch.int32)
    return x.to(device), list(range(batch)), coords.to(device), labels.to(device), target.to(device)


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("inf")


def start_watchdog(min_avail_mib, report):
    """Exits the process (status 0, after report(reason)) when MemAvailable
    drops below min_avail_mib: better a lower bound than the OOM killer
    picking another process."""
    def watch():
        while True:
            avail = mem_available_mib()
            if avail < min_avail_mib:
                report(f"MemAvailable {avail:.0f} MiB < {min_avail_mib:.0f} MiB")
                sys.stdout.flush()
                os._exit(0)
            time.sleep(0.1)
    threading.Thread(target=watch, daemon=True).start()


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_bench as tb

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--img", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", default="fp32", help="comma-separated: fp32, tf32, bf16 (default fp32)")
    ap.add_argument("--matmul-n", type=int, default=0, help="matmul-rate size (default 8192 on cuda, else 512)")
    ap.add_argument("--min-avail-mib", type=float, default=1536,
                    help="stop when the machine's MemAvailable falls below this (0: never)")
    a = ap.parse_args()
    modes = tb.parse_modes(a.dtype, a.device, ap.error)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("train_torch: error: --device cuda: torch has no usable GPU")
    dev = a.device
    mm_n = a.matmul_n or (8192 if dev == "cuda" else 512)
    torch.set_num_threads(a.threads)
    head = {"backend": "torch", "img": a.img, "batch": a.batch, "threads": a.threads, "depth": a.depth,
            "rank": a.rank}
    if a.min_avail_mib > 0:
        start_watchdog(a.min_avail_mib, lambda why: print(json.dumps(
            {**head, "aborted": why, "peak_rss_mb": round(peak_rss_mib(), 1), "torch_version": torch.__version__})))
    sam = random_sam(a.img, a.depth, a.rank).to(dev)
    params = [p for _, p in set_trainable(sam)]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
    inputs = bench_inputs(a.img, a.batch, dev)
    for mode in modes:
        ctx = tb.set_mode(mode, dev)
        times, first_loss = [], None
        try:
            for r in range(a.warmup + a.steps):
                if r == a.warmup:
                    tb.reset_peak(dev)
                t0 = tb.clock(dev)
                loss = train_step(sam, opt, *inputs, autocast=ctx)
                t = tb.clock(dev) - t0
                if first_loss is None:
                    first_loss = loss[0]
                if not all(map(lambda v: v == v and abs(v) != float("inf"), loss)):
                    sys.exit(f"train_torch: error: non-finite loss (math {mode})")
                if r >= a.warmup:
                    times.append(t)
        except torch.cuda.OutOfMemoryError if hasattr(torch.cuda, "OutOfMemoryError") else MemoryError:
            print(json.dumps({**head, "math": mode, "aborted": "CUDA out of memory",
                              "peak_device_mb": tb.peak_mb(dev), "device": tb.device_name(dev),
                              "torch_version": torch.__version__}), flush=True)
            return
        if not times:
            times = [t]
        peak = tb.peak_mb(dev)
        rss = peak_rss_mib()
        print(json.dumps({**head, "threads": torch.get_num_threads(), "math": mode,
                          "seconds": round(min(times), 4), "median": round(statistics.median(times), 4),
                          "seconds_all": [round(t, 4) for t in times],
                          "images_per_s": round(a.batch / min(times), 3), "loss": round(first_loss, 6),
                          "trainable": sum(p.numel() for p in params),
                          "matmul_tflops": tb.matmul_tflops(mode, dev, mm_n), "matmul_n": mm_n,
                          "peak_rss_mb": round(rss, 1), "peak_device_mb": peak, "device": tb.device_name(dev),
                          "torch_version": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
