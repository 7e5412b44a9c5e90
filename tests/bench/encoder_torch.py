"""The PyTorch baseline of bench_encoder: SAM ViT-B's image encoder from
tests/py/sam_torch.py (checked against the official model's golden
activations) with random weights, float32, inference mode, at --img pixels
on --threads threads. Prints one JSON object like bench_encoder's:
{"backend": "torch", "img", "threads", "seconds" (best of --reps timed passes
after one warm-up), "seconds_all", "peak_rss_mb" (ru_maxrss of this process),
"torch_version"}."""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))

import torch  # noqa: E402

import sam_torch as st  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--img", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = st.vit_b_config(a.img)
    cfg["depth"] = a.depth
    enc = st.ImageEncoderViT(cfg).eval()
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                p.uniform_(-0.02, 0.02)
    x = torch.rand(1, 3, a.img, a.img) * 4 - 2
    times = []
    with torch.inference_mode():
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            y = enc(x)
            t = time.perf_counter() - t0
            if not torch.isfinite(y).all():
                sys.exit("encoder_torch: error: non-finite output")
            if r > 0:
                times.append(t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"backend": "torch", "img": a.img, "threads": torch.get_num_threads(), "depth": a.depth,
                      "seconds": round(min(times), 4), "seconds_all": [round(t, 4) for t in times],
                      "peak_rss_mb": round(rss, 1), "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
