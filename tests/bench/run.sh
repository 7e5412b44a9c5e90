#!/usr/bin/env bash
# make bench: SAM ViT-B image encoder, fewsam's CPU backend against the
# PyTorch reference (tests/py/sam_torch.py), same configuration and random
# weights, same thread count, at each size in BENCH_SIZES. Each
# measurement is its own process, so peak memory is per configuration.
# Prints a table and writes $BUILD/bench/results.json: a list of
# {"name", "unit", "fewsam", "baseline", "ratio"}, ratio > 1 = fewsam better.
# Environment: BUILD (build), BENCH_THREADS (2), BENCH_SIZES ("1024 512"),
# BENCH_REPS (2 timed passes after a warm-up; the best is kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
THREADS=${BENCH_THREADS:-2}
SIZES=${BENCH_SIZES:-1024 512}
REPS=${BENCH_REPS:-2}
PY=/usr/bin/python3
OUT=$BUILD/bench
BIN=$OUT/bench_encoder
[ -x "$BIN" ] || { echo "run.sh: error: $BIN not built (make bench builds it)" >&2; exit 1; }
$PY -c 'import torch' 2>/dev/null || { echo "run.sh: error: $PY cannot import torch (python3-torch)" >&2; exit 1; }
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS

echo "SAM ViT-B image encoder, batch 1, float32, $THREADS threads, best of $REPS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
files=()
for s in $SIZES; do
  echo "  img $s: fewsam..." >&2
  "$BIN" --img "$s" --reps "$REPS" >"$OUT/fewsam_$s.json"
  echo "  img $s: torch..." >&2
  $PY tests/bench/encoder_torch.py --img "$s" --reps "$REPS" --threads "$THREADS" >"$OUT/torch_$s.json"
  files+=("$OUT/fewsam_$s.json" "$OUT/torch_$s.json")
done

$PY - "$OUT/results.json" "${files[@]}" <<'PYEOF'
import json, os, sys
out, paths = sys.argv[1], sys.argv[2:]
res, rows = [], []
for f_path, t_path in zip(paths[::2], paths[1::2]):
    f, t = json.load(open(f_path)), json.load(open(t_path))
    s, gf, peak = f["img"], f["gflop"], f["sgemm_gflops"]
    tf, tt = f["seconds"], t["seconds"]
    res += [
        {"name": f"encoder_vit_b_{s}_time", "unit": "s", "fewsam": tf, "baseline": tt, "ratio": round(tt / tf, 3)},
        {"name": f"encoder_vit_b_{s}_peak_rss", "unit": "MB", "fewsam": f["peak_rss_mb"],
         "baseline": t["peak_rss_mb"], "ratio": round(t["peak_rss_mb"] / f["peak_rss_mb"], 3)},
        {"name": f"encoder_vit_b_{s}_gflops", "unit": "GFLOP/s", "fewsam": round(gf / tf, 2),
         "baseline": round(gf / tt, 2), "ratio": round(tt / tf, 3)},
        {"name": f"encoder_vit_b_{s}_fraction_of_sgemm_peak", "unit": "fraction",
         "fewsam": round(gf / tf / peak, 3), "baseline": round(gf / tt / peak, 3), "ratio": round(tt / tf, 3)},
    ]
    rows.append((s, tf, tt, tt / tf, f["peak_rss_mb"], t["peak_rss_mb"], gf, gf / tf, gf / tt, peak))
res.append({"name": "sgemm_2048_gflops", "unit": "GFLOP/s", "fewsam": rows[0][9] if rows else None,
            "baseline": None, "ratio": None})
hdr = ("img", "fewsam s", "torch s", "torch/fewsam", "fewsam MB", "torch MB", "GFLOP", "fewsam GF/s",
       "torch GF/s", "sgemm GF/s")
print("  ".join(f"{h:>12}" for h in hdr))
for r in rows:
    print("  ".join(f"{v:>12}" if isinstance(v, int) else f"{v:>12.2f}" for v in r))
for r in rows:
    print(f"img {r[0]}: fewsam at {100 * r[7] / r[9]:.0f}% of the sgemm rate, torch at {100 * r[8] / r[9]:.0f}%")
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(res, fh, indent=1)
os.replace(tmp, out)
print(f"wrote {out}")
PYEOF
