"""The PyTorch baseline of bench_encoder: SAM ViT-B's image encoder from
tests/py/sam_torch.py (checked against the official model's golden
activations) with random weights, inference mode, --batch images of --img
pixels per call, on --threads threads (CPU) or the GPU (--device cuda).
Prints one JSON object per math mode (--dtype fp32,tf32,bf16: see
torch_bench.py), one a line, like bench_encoder's:
{"backend": "torch", "img", "batch", "threads", "depth", "math", "seconds"
(one call, best of --reps timed passes after one warm-up), "seconds_all",
"images_per_s", "matmul_tflops" (torch.mm of --matmul-n^3 in this mode,
after the timed passes), "matmul_n", "peak_rss_mb" (ru_maxrss of this
process), "peak_device_mb" (cuda: torch.cuda.max_memory_allocated over the
timed passes, reset after the warm-up, so the weights count and the
warm-up's transients do not; null on the CPU), "device", "torch_version"}.
On cuda the clock is read after torch.cuda.synchronize()."""
import argparse
import json
import os
import resource
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import sam_torch as st  # noqa: E402
import torch_bench as tb  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--img", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", default="fp32", help="comma-separated: fp32, tf32, bf16 (default fp32)")
    ap.add_argument("--matmul-n", type=int, default=0, help="matmul-rate size (default 8192 on cuda, else 512)")
    a = ap.parse_args()
    modes = tb.parse_modes(a.dtype, a.device, ap.error)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("encoder_torch: error: --device cuda: torch has no usable GPU")
    dev = a.device
    mm_n = a.matmul_n or (8192 if dev == "cuda" else 512)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = st.vit_b_config(a.img)
    cfg["depth"] = a.depth
    enc = st.ImageEncoderViT(cfg).eval()
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                p.uniform_(-0.02, 0.02)
    enc = enc.to(dev)
    x = (torch.rand(a.batch, 3, a.img, a.img) * 4 - 2).to(dev)
    for mode in modes:
        ctx = tb.set_mode(mode, dev)
        times = []
        with torch.inference_mode():
            for r in range(a.reps + 1):
                if r == 1:
                    tb.reset_peak(dev)
                t0 = tb.clock(dev)
                with ctx():
                    y = enc(x)
                t = tb.clock(dev) - t0
                if not torch.isfinite(y).all():
                    sys.exit(f"encoder_torch: error: non-finite output (math {mode})")
                if r > 0:
                    times.append(t)
            del y
        peak = tb.peak_mb(dev)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        best = min(times)
        print(json.dumps({"backend": "torch", "img": a.img, "batch": a.batch, "threads": torch.get_num_threads(),
                          "depth": a.depth, "math": mode, "seconds": round(best, 4),
                          "seconds_all": [round(t, 4) for t in times], "images_per_s": round(a.batch / best, 3),
                          "matmul_tflops": tb.matmul_tflops(mode, dev, mm_n), "matmul_n": mm_n,
                          "peak_rss_mb": round(rss, 1), "peak_device_mb": peak, "device": tb.device_name(dev),
                          "torch_version": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
