#!/usr/bin/env bash
# make bench: fewsam's CPU backend against the PyTorch reference
# (tests/py/sam_torch.py), same configuration and random weights, same
# thread count; each measurement is its own process, so peak memory is per
# configuration, and the load average before it is recorded.
#  1. SAM ViT-B image encoder at each size in BENCH_SIZES
#     (bench_encoder vs encoder_torch.py).
#  2. A LoRA training step (bench_train vs train_torch.py): ViT-B at 512,
#     batch 1, one point prompt, rank 4 on q and v, the decoder trained in
#     full, 0.2 BCE + 0.8 Dice, AdamW; time and peak RSS. Goal: >= 1.5x
#     faster with <= half the peak memory.
#  3. Memory of a ViT-B training step at 1024 in store and recompute modes
#     against the 8 GiB goal (and PyTorch's, when it fits the machine: its
#     run stops itself when MemAvailable gets low).
# Prints tables and writes $BUILD/bench/results.json: a list of
# {"name", "unit", "fewsam", "baseline", "ratio"}, ratio > 1 = fewsam better.
# Environment: BUILD (build), BENCH_THREADS (2), BENCH_SIZES ("1024 512"; "" skips 1),
# BENCH_REPS (2 timed passes after a warm-up; the best is kept),
# BENCH_TRAIN (1; 0 skips 2 and 3), BENCH_TRAIN_1024 (1; 0 skips 3),
# BENCH_TRAIN_STEPS (3 timed steps after one warm-up at 512; the best is
# kept), BENCH_TRAIN_BACKEND (cpu; another backend's times are a functional
# check only), BENCH_TORCH_1024 (1; 0 skips PyTorch at
# 1024), BENCH_TORCH_TIMEOUT (900 s for PyTorch's 1024 step),
# BENCH_TRAIN_DEPTH (12 encoder blocks; fewer for a quick check of this
# script: the result names then end in _depthN).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
THREADS=${BENCH_THREADS:-2}
SIZES=${BENCH_SIZES-1024 512}
REPS=${BENCH_REPS:-2}
PY=/usr/bin/python3
OUT=$BUILD/bench
BIN=$OUT/bench_encoder
TBIN=$OUT/bench_train
TRAIN=${BENCH_TRAIN:-1}
TRAIN_1024=${BENCH_TRAIN_1024:-1}
TSTEPS=${BENCH_TRAIN_STEPS:-3}
TBACKEND=${BENCH_TRAIN_BACKEND:-cpu}
TORCH_1024=${BENCH_TORCH_1024:-1}
TORCH_TIMEOUT=${BENCH_TORCH_TIMEOUT:-900}
TDEPTH=${BENCH_TRAIN_DEPTH:-12}
for b in "$BIN" "$TBIN"; do
  [ -x "$b" ] || { echo "run.sh: error: $b not built (make bench builds it)" >&2; exit 1; }
done
$PY -c 'import torch' 2>/dev/null || { echo "run.sh: error: $PY cannot import torch (python3-torch)" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/train_*.json "$OUT"/train_*.load "$OUT"/fewsam_*.load "$OUT"/torch_*.load
export OMP_NUM_THREADS=$THREADS

# measure OUT.json CMD...: CMD's stdout to OUT.json, the load average before it to OUT.json.load
measure() {
  local out=$1
  shift
  cut -d' ' -f1-3 /proc/loadavg >"$out.load"
  "$@" >"$out"
}

[ -z "$SIZES" ] ||
  echo "SAM ViT-B image encoder, batch 1, float32, $THREADS threads, best of $REPS" \
    "(load average: $(cut -d' ' -f1-3 /proc/loadavg))"
files=()
for s in $SIZES; do
  echo "  img $s: fewsam..." >&2
  measure "$OUT/fewsam_$s.json" "$BIN" --img "$s" --reps "$REPS"
  echo "  img $s: torch..." >&2
  measure "$OUT/torch_$s.json" $PY tests/bench/encoder_torch.py --img "$s" --reps "$REPS" --threads "$THREADS"
  files+=("$OUT/fewsam_$s.json" "$OUT/torch_$s.json")
done

if [ "$TRAIN" = 1 ]; then
  fs=("$TBIN" --backend "$TBACKEND" --depth "$TDEPTH")
  pt=($PY tests/bench/train_torch.py --threads "$THREADS" --depth "$TDEPTH")
  echo "  train 512: fewsam ($TBACKEND)..." >&2
  measure "$OUT/train_fewsam_512.json" "${fs[@]}" --img 512 --steps "$TSTEPS" --warmup 1
  echo "  train 512: torch..." >&2
  measure "$OUT/train_torch_512.json" "${pt[@]}" --img 512 --steps "$TSTEPS" --warmup 1
  if [ "$TRAIN_1024" = 1 ]; then
    echo "  train 1024: fewsam ($TBACKEND, store)..." >&2
    measure "$OUT/train_fewsam_1024.json" "${fs[@]}" --img 1024 --steps 1 --warmup 0
    echo "  train 1024: fewsam ($TBACKEND, recompute)..." >&2
    measure "$OUT/train_fewsam_1024_recompute.json" "${fs[@]}" --img 1024 --steps 1 --warmup 0 --recompute
    if [ "$TORCH_1024" = 1 ]; then
      echo "  train 1024: torch (up to ${TORCH_TIMEOUT}s)..." >&2
      rc=0
      measure "$OUT/train_torch_1024.json" timeout "$TORCH_TIMEOUT" "${pt[@]}" --img 1024 --steps 1 --warmup 0 ||
        rc=$?
      if [ "$rc" != 0 ]; then
        echo "run.sh: PyTorch's 1024 step did not finish (exit $rc; 124: over ${TORCH_TIMEOUT}s)" >&2
        rm -f "$OUT/train_torch_1024.json"
      fi
    fi
  fi
fi

$PY - "$OUT/results.json" "${files[@]}" <<'PYEOF'
import json, os, sys
out, paths = sys.argv[1], sys.argv[2:]
res, rows = [], []
outdir = os.path.dirname(out)
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
if rows:
    res.append({"name": "sgemm_2048_gflops", "unit": "GFLOP/s", "fewsam": rows[0][9], "baseline": None,
                "ratio": None})
hdr = ("img", "fewsam s", "torch s", "torch/fewsam", "fewsam MB", "torch MB", "GFLOP", "fewsam GF/s",
       "torch GF/s", "sgemm GF/s")
if rows:
    print("  ".join(f"{h:>12}" for h in hdr))
for r in rows:
    print("  ".join(f"{v:>12}" if isinstance(v, int) else f"{v:>12.2f}" for v in r))
for r in rows:
    print(f"img {r[0]}: fewsam at {100 * r[7] / r[9]:.0f}% of the sgemm rate, torch at {100 * r[8] / r[9]:.0f}%")


def load(name):
    p = os.path.join(outdir, name + ".json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    d = json.load(open(p))
    la = p + ".load"
    d["load"] = open(la).read().strip() if os.path.exists(la) else "?"
    return d


GOAL_1024_MIB = 8192
f512, t512 = load("train_fewsam_512"), load("train_torch_512")
def tag(d):
    return "" if d["depth"] == 12 else f"_depth{d['depth']}"


if f512 and t512:
    tf, tt, mf, mt = f512["seconds"], t512["seconds"], f512["peak_rss_mb"], t512["peak_rss_mb"]
    res += [
        {"name": f"train_step_vitb_512{tag(f512)}", "unit": "s", "fewsam": tf, "baseline": tt,
         "ratio": round(tt / tf, 3)},
        {"name": f"train_step_vitb_512{tag(f512)}_peak_rss", "unit": "MiB", "fewsam": mf, "baseline": mt,
         "ratio": round(mt / mf, 3)},
    ]
    print(f"\nLoRA training step, ViT-B 512 ({f512['depth']} blocks), batch 1, one point, rank 4 on q,v, "
          f"decoder trained, AdamW; fewsam backend {f512['backend']}, "
          f"best of {len(f512['seconds_all'])} after a warm-up")
    print(f"{'':>8}  {'best s':>8}  {'median s':>8}  {'peak MiB':>9}  {'loss':>8}  load before")
    for who, d in (("fewsam", f512), ("torch", t512)):
        print(f"{who:>8}  {d['seconds']:>8.3f}  {d['median']:>8.3f}  {d['peak_rss_mb']:>9.0f}  {d['loss']:>8.4f}  "
              f"{d['load']}")
    speed, mem = tt / tf, mf / mt
    print(f"speed-up {speed:.2f}x (goal >= 1.5x: {'met' if speed >= 1.5 else 'NOT met'}), memory {mem:.2f} of "
          f"PyTorch's (goal <= 0.5: {'met' if mem <= 0.5 else 'NOT met'})")
    if f512["backend"] != "cpu":
        print(f"note: fewsam ran on '{f512['backend']}', not the CPU backend: a functional check, not a result")
f_s, f_r, t_1 = load("train_fewsam_1024"), load("train_fewsam_1024_recompute"), load("train_torch_1024")
if f_s or f_r:
    print(f"\nOne ViT-B training step at 1024 ({(f_s or f_r)['depth']} blocks), batch 1, one point: "
          f"peak RSS against the {GOAL_1024_MIB} MiB goal")
    print(f"{'':>18}  {'peak MiB':>9}  {'step s':>8}  {'goal':>8}  load before")
    torch_ok = t_1 is not None and "aborted" not in t_1
    for mode, d in (("store", f_s), ("recompute", f_r)):
        if not d:
            continue
        m = d["peak_rss_mb"]
        suffix = "" if mode == "store" else "_recompute"
        print(f"{'fewsam ' + mode:>18}  {m:>9.0f}  {d['seconds']:>8.2f}  "
              f"{'met' if m <= GOAL_1024_MIB else 'NOT met':>8}  {d['load']}")
        res.append({"name": f"train_step_vitb_1024{tag(d)}{suffix}_peak_rss_vs_8gib_goal", "unit": "MiB", "fewsam": m,
                    "baseline": GOAL_1024_MIB, "ratio": round(GOAL_1024_MIB / m, 3)})
        if torch_ok:
            res.append({"name": f"train_step_vitb_1024{tag(d)}{suffix}_peak_rss", "unit": "MiB", "fewsam": m,
                        "baseline": t_1["peak_rss_mb"], "ratio": round(t_1["peak_rss_mb"] / m, 3)})
            res.append({"name": f"train_step_vitb_1024{tag(d)}{suffix}", "unit": "s", "fewsam": d["seconds"],
                        "baseline": t_1["seconds"], "ratio": round(t_1["seconds"] / d["seconds"], 3)})
    if torch_ok:
        print(f"{'torch':>18}  {t_1['peak_rss_mb']:>9.0f}  {t_1['seconds']:>8.2f}  "
              f"{'met' if t_1['peak_rss_mb'] <= GOAL_1024_MIB else 'NOT met':>8}  {t_1['load']}")
    elif t_1 is not None:
        print(f"{'torch':>18}  >{t_1['peak_rss_mb']:>8.0f}  (stopped: {t_1['aborted']})  {t_1['load']}")
    if f_s and f_s["backend"] != "cpu":
        print(f"note: fewsam ran on '{f_s['backend']}', not the CPU backend: times are not results")

tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(res, fh, indent=1)
os.replace(tmp, out)
print(f"wrote {out}")
PYEOF

# 4. Transport: sample batches (8 x 512x512 f32 + u8 per message) from a
# worker process to fs_stream over ipc:// and tcp://127.0.0.1, in GB/s of
# sample payload. No PyTorch counterpart: the baseline is a single-threaded
# memcpy of the same bytes in the same run (ratio = transport / memcpy, so
# below 1 by nature). BENCH_WIRE=0 skips it.
if [ "${BENCH_WIRE:-1}" = 1 ]; then
  WBIN=$OUT/bench_wire
  [ -x "$WBIN" ] || { echo "run.sh: error: $WBIN not built (make bench builds it)" >&2; exit 1; }
  echo "  transport: ipc and tcp..." >&2
  measure "$OUT/wire.json" "$WBIN" --size 512 --batch 8 --samples 800
  $PY - "$OUT/results.json" "$OUT/wire.json" <<'PYEOF'
import json, os, sys
out, wpath = sys.argv[1], sys.argv[2]
w = json.load(open(wpath))
load = open(wpath + ".load").read().strip() if os.path.exists(wpath + ".load") else "?"
res = json.load(open(out)) if os.path.exists(out) else []
res = [r for r in res if not r["name"].startswith("wire_")]
print(f"\nSample transport, {w['batch']} x {w['size']}x{w['size']} (f32 image + u8 label) per message, "
      f"{w['samples']} samples, one worker process (load average before: {load})")
print(f"{'':>8}  {'GB/s':>8}  {'of memcpy':>9}")
for t in ("ipc", "tcp"):
    g = w[f"{t}_gbps"]
    print(f"{t:>8}  {g:>8.3f}  {g / w['memcpy_gbps']:>9.3f}")
    res.append({"name": f"wire_{t}_{w['size']}_batch{w['batch']}_throughput", "unit": "GB/s", "fewsam": g,
                "baseline": w["memcpy_gbps"], "ratio": round(g / w["memcpy_gbps"], 3)})
print(f"{'memcpy':>8}  {w['memcpy_gbps']:>8.3f}  (baseline: one thread, same bytes)")
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(res, fh, indent=1)
os.replace(tmp, out)
PYEOF
fi

# 5. Synthesis: samples per second per core at 512x512 (one thread, CPU
# seconds), bench_synth against tests/bench/synth_numpy.py (the same
# pipeline in numpy + scipy.ndimage) on the same exemplars: phantom slices
# at 512 written by bench_synth, or BENCH_SYNTH_EXEMPLARS=FILE.h5 (e.g. real
# BraTS exemplars from loader --size 512 and exemplar-sampler). Goal: ratio
# >= 10. BENCH_SYNTH=0 skips it.
if [ "${BENCH_SYNTH:-1}" = 1 ]; then
  SBIN=$OUT/bench_synth
  [ -x "$SBIN" ] || { echo "run.sh: error: $SBIN not built (make bench builds it)" >&2; exit 1; }
  SEX=${BENCH_SYNTH_EXEMPLARS:-$OUT/synth_exemplars_512.h5}
  [ -n "${BENCH_SYNTH_EXEMPLARS:-}" ] || [ -f "$SEX" ] || "$SBIN" --make-exemplars "$SEX" --size 512 --count 8
  echo "  synthesis 512: fewsam..." >&2
  measure "$OUT/synth_fewsam.json" env OMP_NUM_THREADS=1 "$SBIN" --exemplars "$SEX" --samples 300 --reps 3
  echo "  synthesis 512: numpy..." >&2
  measure "$OUT/synth_numpy.json" env OMP_NUM_THREADS=1 $PY tests/bench/synth_numpy.py --exemplars "$SEX" --samples 40 \
    --reps 2
  $PY - "$OUT/results.json" "$OUT/synth_fewsam.json" "$OUT/synth_numpy.json" <<'PYEOF'
import json, os, sys
out, fp, npth = sys.argv[1:4]
f, n = json.load(open(fp)), json.load(open(npth))
load = lambda p: open(p + ".load").read().strip() if os.path.exists(p + ".load") else "?"
res = json.load(open(out)) if os.path.exists(out) else []
res = [r for r in res if not r["name"].startswith("synth_")]
ratio = f["samples_per_s"] / n["samples_per_s"]
print(f"\nExemplar-guided synthesis at {f['size']}x{f['size']}, default settings, one thread (CPU seconds)")
print(f"{'':>8}  {'samples/s':>9}  {'ms each':>8}  {'objects':>7}  {'peak MiB':>8}  load before")
for who, d, p in (("fewsam", f, fp), ("numpy", n, npth)):
    print(f"{who:>8}  {d['samples_per_s']:>9.1f}  {d['ms_per_sample']:>8.2f}  {d['objects_per_sample']:>7.2f}  "
          f"{d['peak_rss_mb']:>8.0f}  {load(p)}")
print(f"speed-up {ratio:.1f}x (goal >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
res.append({"name": f"synth_samples_per_s_{f['size']}", "unit": "samples/s", "fewsam": f["samples_per_s"],
            "baseline": n["samples_per_s"], "ratio": round(ratio, 3)})
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(res, fh, indent=1)
os.replace(tmp, out)
PYEOF
fi
