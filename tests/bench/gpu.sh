#!/usr/bin/env bash
# make bench-gpu: fewsam's CUDA backend against PyTorch on the same GPU in
# the same run. SAM ViT-B with random weights, both sides:
#   encoder  the image encoder forward (bench_encoder vs encoder_torch.py),
#            1024 px at batch 1 and 4, 512 px at batch 1 and 8 (images per call)
#   train    a LoRA training step (bench_train vs train_torch.py: rank 4 on q
#            and v, decoder trained, 0.2 BCE + 0.8 Dice, AdamW; one point
#            prompt per image), 1024 px at batch 1 and 2, 512 px at batch 1 and 4
# in the math modes fp32 (exact), tf32 and bf16 (fewsam: cuBLAS products in
# that mode, attention kernels fp32; torch: TF32 switches, or autocast to
# bfloat16 over fp32 master weights). The larger batches run in tf32 and
# bf16 only (BENCH_GPU_BIG_MATHS), to fit the time budget. Each row is two
# processes back to back, fewsam's then torch's, each measuring every math
# mode of the row in turn: best of BENCH_GPU_REPS (3) timed passes or steps
# after one warm-up per mode, the clock read after a device synchronisation.
# Reported per row and mode: images per second, the ratio (fewsam / torch,
# > 1: fewsam faster), peak device memory over the timed passes (fewsam: the
# bytes its allocator holds, model and activations included; torch:
# max_memory_allocated; both peaks reset after the warm-up) and model FLOP
# utilisation: model FLOPs / time / the card's matmul rate in that mode,
# measured in the same run (an 8192^3 product: fewsam's linear_forward
# through its table, and torch.mm; the higher of the two). Model FLOPs: the
# encoder's analytic matrix-product count (bench_encoder's "gflop"); a
# training step counts 2 x the encoder forward (the forward and the input
# gradients; the frozen weights need no weight gradients; the LoRA and
# mask-decoder products, under 1%, are left out).
#
# One more row, "plain 512 x1" (tf32), runs the training step again with
# cublasLt's fused bias and the side stream turned off (FEWSAM_CUDA_LT=0
# FEWSAM_CUDA_STREAMS=0): a line under the table says what they bring.
#
# Without a GPU it prints one line saying so and exits 0. PyTorch: python3
# on PATH, else /usr/bin/python3 (BENCH_GPU_PYTHON names another); without a
# CUDA torch the torch columns say n/a. Each process has a timeout (BENCH_GPU_TIMEOUT, 120 s, less when the
# budget is nearly spent) and the rows stop when BENCH_GPU_BUDGET (270 s) is
# spent: the rows left are marked skipped. A failed measurement shows as
# "failed" in the table with its reason below it. Prints a Markdown table,
# writes $BUILD/bench/gpu.json; the raw output of every process stays in
# $BUILD/bench/gpu/. Exits 1 only when no fewsam measurement succeeded.
#
# BENCH_GPU_ROWS="train 512 1;plain 512 1" runs only the rows listed;
# BENCH_GPU_OUT puts gpu.json and gpu/ elsewhere than $BUILD/bench.
#
# BENCH_GPU_DRY=1: the same script on the CPU build (build/bench/, backend
# BENCH_GPU_DRY_BACKEND: cpu, or guard for the device-memory path), torch on
# the CPU, 2 encoder blocks, 256 and 128 px, batch 1 and 2, fp32, 1 rep: a
# check of this script and of the programs' options and output where there
# is no GPU (the numbers mean nothing).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
OUT=${BENCH_GPU_OUT:-$BUILD/bench}
RAW=$OUT/gpu
DRY=${BENCH_GPU_DRY:-0}
BUDGET=${BENCH_GPU_BUDGET:-270}
TIMEOUT=${BENCH_GPU_TIMEOUT:-120}
if [ "$DRY" = 1 ]; then
  BIN=$BUILD/bench
  BACKEND=${BENCH_GPU_DRY_BACKEND:-cpu}
  TDEV=cpu
  DEPTH=2 REPS=${BENCH_GPU_REPS:-1} THREADS=${BENCH_GPU_THREADS:-2}
  MATHS=fp32 BIG_MATHS=fp32
  MMN=(--matmul-n 256)
  PLAIN_MATH=fp32
  ROWS=("encoder 256 1" "train 256 1" "encoder 128 1" "train 128 1" "plain 128 1"
        "encoder 256 2" "encoder 128 2" "train 256 2" "train 128 2")
else
  BIN=$BUILD/cuda-bench
  BACKEND=cuda
  TDEV=cuda
  DEPTH=12 REPS=${BENCH_GPU_REPS:-3} THREADS=${BENCH_GPU_THREADS:-$(nproc)}
  MATHS=${BENCH_GPU_MATHS:-fp32,tf32,bf16} BIG_MATHS=${BENCH_GPU_BIG_MATHS:-tf32,bf16}
  MMN=()
  # most telling first: when the budget runs out, the larger batches go
  PLAIN_MATH=tf32
  ROWS=("encoder 1024 1" "train 1024 1" "encoder 512 1" "train 512 1" "plain 512 1"
        "encoder 1024 4" "encoder 512 8" "train 1024 2" "train 512 4")
fi
[ -z "${BENCH_GPU_ROWS:-}" ] || IFS=';' read -r -a ROWS <<<"$BENCH_GPU_ROWS"
export OMP_NUM_THREADS=$THREADS
for b in "$BIN/bench_encoder" "$BIN/bench_train"; do
  [ -x "$b" ] || { echo "gpu.sh: error: $b not built (make CUDA=1; for the dry run: make $b)" >&2; exit 1; }
done

rm -rf "$RAW" && mkdir -p "$RAW"

# Is there a GPU? (the probe loads no model)
timeout 60 "$BIN/bench_train" --backend "$BACKEND" --probe >/dev/null 2>"$RAW/probe.err"
rc=$?
if [ $rc -ne 0 ]; then
  if grep -q "no usable GPU" "$RAW/probe.err"; then
    echo "make bench-gpu: skipped: no usable GPU ($(head -1 "$RAW/probe.err"))"
    exit 0
  fi
  echo "gpu.sh: error: $BIN/bench_train --backend $BACKEND --probe failed (exit $rc): $(cat "$RAW/probe.err")" >&2
  exit 1
fi

# PyTorch: the first python3 that imports torch with CUDA (any torch for the dry run)
TPY="" TNOTE=""
cands=("$(command -v python3 || true)" /usr/bin/python3)
[ -z "${BENCH_GPU_PYTHON:-}" ] || cands=("$BENCH_GPU_PYTHON")
for py in "${cands[@]}"; do
  [ -n "$py" ] && [ -x "$py" ] || continue
  v=$("$py" -c 'import torch; print(torch.__version__, int(torch.cuda.is_available()))' 2>/dev/null) || continue
  if [ "$TDEV" = cpu ] || [ "${v##* }" = 1 ]; then TPY=$py; break; fi
  TNOTE="torch ${v% *} at $py has no CUDA"
done
[ -n "$TPY" ] || TNOTE=${TNOTE:-"no python3 imports torch"}
RPY=$(command -v python3 || echo /usr/bin/python3) # the report needs only json

START=$SECONDS

# run_one FILE CMD...: CMD's JSON lines to FILE, its stderr to FILE.err and
# its exit status (or why it did not run) to FILE.rc.
run_one() {
  local out=$1 left lim
  shift
  : >"$out"
  left=$((BUDGET - (SECONDS - START)))
  if [ $left -lt 15 ]; then
    echo "skipped: the ${BUDGET}s budget was spent" >"$out.rc"
    return
  fi
  lim=$((left + 20 < TIMEOUT ? left + 20 : TIMEOUT))
  timeout -k 5 "$lim" "$@" >"$out" 2>"$out.err"
  echo "$?" >"$out.rc"
  case "$(cat "$out.rc")" in 124 | 137) echo "timeout: ${lim}s" >>"$out.err" ;; esac
}

echo "bench-gpu: $BACKEND ($BIN) vs torch on $TDEV (${TPY:-$TNOTE}), budget ${BUDGET}s" >&2
files=()
for row in "${ROWS[@]}"; do
  read -r what img batch <<<"$row"
  maths=$MATHS
  [ "$batch" = 1 ] || maths=$BIG_MATHS
  tag=${what}_${img}_b${batch}
  if [ "$what" = plain ]; then # fewsam only: the A/B of its own options
    echo "  [$((SECONDS - START))s] train $img x$batch ($PLAIN_MATH), plain path: fewsam..." >&2
    run_one "$RAW/$tag.fewsam" env FEWSAM_CUDA_LT=0 FEWSAM_CUDA_STREAMS=0 "$BIN/bench_train" --steps "$REPS" \
      --warmup 1 --backend "$BACKEND" --img "$img" --batch "$batch" --math "$PLAIN_MATH" --depth "$DEPTH" "${MMN[@]}"
    files+=("$what:$img:$batch:$PLAIN_MATH:$RAW/$tag")
    continue
  fi
  if [ "$what" = encoder ]; then
    fcmd=("$BIN/bench_encoder" --reps "$REPS")
    tcmd=(tests/bench/encoder_torch.py --reps "$REPS")
  else
    fcmd=("$BIN/bench_train" --steps "$REPS" --warmup 1)
    tcmd=(tests/bench/train_torch.py --steps "$REPS" --warmup 1)
  fi
  echo "  [$((SECONDS - START))s] $what $img x$batch ($maths): fewsam..." >&2
  run_one "$RAW/$tag.fewsam" "${fcmd[@]}" --backend "$BACKEND" --img "$img" --batch "$batch" --math "$maths" \
    --depth "$DEPTH" "${MMN[@]}"
  echo "  [$((SECONDS - START))s] $what $img x$batch ($maths): torch..." >&2
  if [ -n "$TPY" ]; then
    run_one "$RAW/$tag.torch" "$TPY" "${tcmd[@]}" --device "$TDEV" --img "$img" --batch "$batch" --dtype "$maths" \
      --depth "$DEPTH" --threads "$THREADS" "${MMN[@]}"
  else
    : >"$RAW/$tag.torch"
    echo "n/a: $TNOTE" >"$RAW/$tag.torch.rc"
  fi
  files+=("$what:$img:$batch:$maths:$RAW/$tag")
done
echo "  [$((SECONDS - START))s] done" >&2

TORCH_NOTE=${TNOTE:-"every torch run failed"} \
  "$RPY" - "$OUT/gpu.json" "$DRY" "$REPS" "$DEPTH" "$((SECONDS - START))" "${files[@]}" <<'PYEOF'
import json, math, os, sys

out, dry, reps, depth, elapsed = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
specs = sys.argv[6:]


miscounts = []  # the two FLOP counts (this script's and bench_encoder's) must agree


def encoder_gflop(img, depth):
    """bench_encoder's analytic count (tests/bench/bench_common.h), ViT-B."""
    C, heads, ws, P, O, mlp = 768.0, 12, 14.0, 16, 256.0, 4.0
    g = img / P
    T, D = g * g, C / heads
    f = 2 * T * C * 3.0 * P * P
    for i in range(depth):
        if i in (2, 5, 8, 11):
            Tq, n, r = T, T, g
        else:
            nw = math.ceil(g / ws)
            Tq, n, r = nw * nw * ws * ws, ws * ws, ws
        f += 2 * Tq * C * 3 * C + (Tq / n) * heads * (4 * n * n * D + 2 * n * 2 * r * D) + 2 * Tq * C * C
        f += 2 * 2 * T * C * C * mlp
    return (f + 2 * T * C * O + 2 * T * O * O * 9) / 1e9


def read(path):
    """(mode -> JSON object, status text or None when it ran cleanly)."""
    lines = {}
    if os.path.exists(path):
        for ln in open(path):
            ln = ln.strip()
            if ln.startswith("{"):
                try:
                    d = json.loads(ln)
                except ValueError:
                    continue
                lines[d.get("math", "fp32")] = d
    rc = open(path + ".rc").read().strip() if os.path.exists(path + ".rc") else "?"
    if rc == "0":
        return lines, None
    err = ""
    if os.path.exists(path + ".err"):
        tail = [l.strip() for l in open(path + ".err") if l.strip()]
        err = tail[-1] if tail else ""
    if not rc.isdigit():
        return lines, rc  # skipped / n/a
    if rc in ("124", "137"):
        return lines, f"failed: {err or 'timeout'}"
    return lines, f"failed: exit {rc}" + (f": {err}" if err else "")


rows = []
rates = {}  # mode -> {"fewsam": best, "torch": best}
device, torch_version = None, None
plain = []  # (img, batch, mode, JSON or None, status)
for spec in specs:
    what, img, batch, maths, base = spec.split(":", 4)
    img, batch = int(img), int(batch)
    f_lines, f_st = read(base + ".fewsam")
    if what == "plain":
        plain.append((img, batch, maths, f_lines.get(maths), f_st))
        continue
    t_lines, t_st = read(base + ".torch")
    for mode in maths.split(","):
        f, t = f_lines.get(mode), t_lines.get(mode)
        for who, d in (("fewsam", f), ("torch", t)):
            if d and d.get("matmul_tflops"):
                r = rates.setdefault(mode, {})
                r[who] = max(r.get(who, 0), d["matmul_tflops"])
        if f and not device:
            device = f.get("device")
        if t:
            device = device or t.get("device")
            torch_version = t.get("torch_version")
        gf = encoder_gflop(img, depth) * batch * (2 if what == "train" else 1)
        if f and "gflop" in f and abs(f["gflop"] - gf) > 0.01 * gf + 0.05:
            miscounts.append(f"error: {what} {img} x{batch}: fewsam's model GFLOP {f['gflop']} differ from "
                             f"this script's {gf:.2f}: the utilisation figures are wrong")
        rows.append({"what": what, "img": img, "batch": batch, "math": mode, "gflop": round(gf, 2),
                     "fewsam": f, "torch": t, "fewsam_status": None if f else (f_st or "failed: no output"),
                     "torch_status": None if t and "aborted" not in t else
                     (f"failed: {t['aborted']}" if t else (t_st or "failed: no output"))})


def card(mode):
    r = rates.get(mode, {})
    return max(r.values()) if r else None


def ips(d):
    return d["images_per_s"] if d and "images_per_s" in d else None


def peak(d):
    if not d:
        return None
    if d.get("peak_device_mb") is not None:
        return d["peak_device_mb"]
    return d.get("peak_rss_mb") if dry else None


def mfu(d, row):
    c = card(row["math"])
    if not d or "seconds" not in d or not c:
        return None
    return row["gflop"] / d["seconds"] / 1e3 / c


def cell(v, fmt, status):
    if v is not None:
        return fmt.format(v)
    if status:
        return status.split(":")[0]  # failed / skipped / n/a
    return "n/a"


failures = []
table = ["| what | math | fewsam img/s | torch img/s | ratio | fewsam peak MiB | torch peak MiB | fewsam MFU | "
         "torch MFU |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
results = []
for r in rows:
    f = r["fewsam"] if not r["fewsam_status"] else None
    t = r["torch"] if not r["torch_status"] else None
    fi, ti = ips(f), ips(t)
    ratio = fi / ti if fi and ti else None
    fm, tm = mfu(f, r), mfu(t, r)
    name = f"{r['what']} {r['img']} x{r['batch']}"
    for who, st in (("fewsam", r["fewsam_status"]), ("torch", r["torch_status"])):
        if st and not st.startswith("n/a"):
            failures.append(f"{name} {r['math']} {who}: {st}")
    table.append(f"| {name} | {r['math']} | {cell(fi, '{:.2f}', r['fewsam_status'])} | "
                 f"{cell(ti, '{:.2f}', r['torch_status'])} | {cell(ratio, '{:.2f}x', 'n/a')} | "
                 f"{cell(peak(f), '{:.0f}', r['fewsam_status'])} | {cell(peak(t), '{:.0f}', r['torch_status'])} | "
                 f"{cell(None if fm is None else 100 * fm, '{:.1f}%', r['fewsam_status'])} | "
                 f"{cell(None if tm is None else 100 * tm, '{:.1f}%', r['torch_status'])} |")
    key = f"gpu_{r['what']}_vitb_{r['img']}_batch{r['batch']}_{r['math']}" + (f"_depth{depth}" if depth != 12 else "")
    results.append({"name": key + "_images_per_s", "unit": "img/s", "fewsam": fi, "baseline": ti,
                    "ratio": round(ratio, 3) if ratio else None})
    pf, pt = peak(f), peak(t)
    results.append({"name": key + "_peak_device", "unit": "MiB", "fewsam": pf, "baseline": pt,
                    "ratio": round(pt / pf, 3) if pf and pt else None})
    results.append({"name": key + "_mfu", "unit": "fraction", "fewsam": round(fm, 4) if fm is not None else None,
                    "baseline": round(tm, 4) if tm is not None else None,
                    "ratio": round(fm / tm, 3) if fm and tm else None})

tv = torch_version or f"(not run: {os.environ.get('TORCH_NOTE', '?')})"
print(("\nDRY RUN (BENCH_GPU_DRY=1: CPU build, torch on the CPU, tiny model; the numbers mean nothing)\n" if dry
       else "\n") + f"SAM ViT-B{'' if depth == 12 else f' ({depth} blocks)'}: fewsam vs PyTorch {tv} on "
      f"{device or 'an unknown device'}, best of {reps} after one warm-up per mode; {elapsed} s")
mm_n = {who: next((r[who]["matmul_n"] for r in rows if r[who] and "matmul_n" in r[who]), "?")
        for who in ("fewsam", "torch")}
print(f"Matmul rate (fewsam: linear_forward {mm_n['fewsam']}^3, torch: torch.mm {mm_n['torch']}^3; best of 3 after "
      f"a warm-up; the best of the run's processes), TFLOP/s: " + "; ".join(
          f"{m}: fewsam {rates[m].get('fewsam', 'n/a')}, torch {rates[m].get('torch', 'n/a')}" for m in rates) +
      ". MFU = model FLOPs / time / the higher of the two in the row's mode.")
print("Model FLOPs: encoder forward, the analytic matrix-product count; training step, 2 x that (forward + input "
      "gradients; frozen weights have none; LoRA and decoder < 1%, left out). fewsam's tf32/bf16 apply to its "
      "cuBLAS products (attention kernels stay fp32); torch's bf16 is autocast over fp32 weights. Peaks over the "
      "timed passes" + (" (dry run: peak RSS)." if dry else
                        ": fewsam's device allocator, torch's max_memory_allocated."))
print()
print("\n".join(table))
if failures:
    print()
    for x in failures:
        print(f"- {x}")
for img, batch, mode, d, st in plain:
    r = next((r for r in rows if (r["what"], r["img"], r["batch"], r["math"]) == ("train", img, batch, mode)), None)
    fast, slow = ips(r["fewsam"]) if r and not r["fewsam_status"] else None, ips(d)
    if fast and slow:
        print(f"\nTraining step {img} x{batch} {mode}: {fast:.2f} img/s with cublasLt's fused bias and the side "
              f"stream, {slow:.2f} img/s without them (FEWSAM_CUDA_LT=0 FEWSAM_CUDA_STREAMS=0): {fast / slow:.3f}x"
              + (" (dry run: on the CPU the two are the same code)" if dry else ""))
        results.append({"name": f"gpu_train_{img}_batch{batch}_{mode}_lt_streams_speedup", "unit": "img/s",
                        "fewsam": fast, "baseline": slow, "ratio": round(fast / slow, 3)})
    else:
        print(f"\nTraining step {img} x{batch} {mode}, plain path: not measured ({st or 'no result'})")

doc = {"device": device, "torch_version": torch_version, "dry_run": dry, "reps": reps, "depth": depth,
       "seconds": int(elapsed), "matmul_tflops": {m: {**rates[m], "card": card(m)} for m in rates},
       "rows": [{k: v for k, v in r.items() if k not in ("fewsam", "torch")} |
                {"fewsam_images_per_s": ips(r["fewsam"]), "torch_images_per_s": ips(r["torch"]),
                 "fewsam_peak_mb": peak(r["fewsam"]), "torch_peak_mb": peak(r["torch"]),
                 "fewsam_mfu": mfu(r["fewsam"], r), "torch_mfu": mfu(r["torch"], r)} for r in rows],
       "results": results, "failures": failures}
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(doc, fh, indent=1)
os.replace(tmp, out)
print(f"\nwrote {out}")
for m in miscounts:
    print(m, file=sys.stderr)
sys.exit(0 if any(r["fewsam_status"] is None for r in rows) and not miscounts else 1)
PYEOF
