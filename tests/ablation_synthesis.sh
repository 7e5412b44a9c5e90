#!/usr/bin/env bash
# The synthesis ablation on the real BraTS cases: few-shot fine-tuning with
# exemplar-guided synthesis (SYNTH=on, samples streamed by synthesizer
# processes) against training on the exemplars alone (SYNTH=off), everything
# else equal; held-out DSC from the scorer for both. A reported comparison,
# not a pass/fail test (tests/run does not run it).
#
# usage: tests/ablation_synthesis.sh [MAKE VARIABLES...]
#   e.g. tests/ablation_synthesis.sh ITERS=600 SYNTH_ARGS="--rotate 10"
#
# Defaults: the tiny random-weight model of ../shared/golden at input 64
# (the loader resizes slices to 64), 32 foreground exemplar slices, 300
# steps of batch 2, LoRA on every encoder linear, lr 0.002 (the settings of
# tests/py/test_trainer.py's learning test), cpu backend; the split holds
# one of the four cases out. Both runs share one run folder, so the loader
# and sampler run once and SYNTH reruns only the trainer, predictor and
# scorer. Prints both score tables and writes RUN/ablation-synth.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FEWSAM_SHARED:-../shared}
RUN=${RUN:-runs/ablation-synth}
BRATS=${BRATS_DIR:-$SHARED/data/brats}
[ -d "$BRATS" ] || { echo "ablation: no BraTS cases in $BRATS" >&2; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
make --no-print-directory -s CUDA=0 >/dev/null
settings=(DATA=brats RUN="$RUN" BRATS_DIR="$BRATS" SAM="$SHARED/golden/tiny.safetensors"
  LOADER_ARGS="--labels whole --size 64" COUNT=32 SAMPLER_STRATEGY=foreground SEED=1
  ITERS=300 BATCH=2 LR=0.002 LORA_TARGETS=all BACKEND=cpu TRAIN_BACKEND=cpu SYNTHESIZERS=2 "$@")
mkdir -p "$RUN/ablation-synth"
for synth in off on; do
  echo "ablation: SYNTH=$synth" >&2
  make --no-print-directory -f pipeline.mk score "${settings[@]}" SYNTH=$synth >"$RUN/ablation-synth/make-$synth.log" 2>&1 \
    || { tail -20 "$RUN/ablation-synth/make-$synth.log" >&2; exit 1; }
  cp "$RUN/scores/scores.json" "$RUN/ablation-synth/scores-$synth.json"
  cp "$RUN/scores/scores.md" "$RUN/ablation-synth/scores-$synth.md"
done
/usr/bin/python3 - "$RUN" "${settings[*]}" <<'PY' | tee "$RUN/ablation-synth.md"
import json, os, sys
run, settings = sys.argv[1], sys.argv[2]
rows = []
for synth, name in (("off", "exemplars only (SYNTH=off)"), ("on", "with synthesis (SYNTH=on)")):
    s = json.load(open(os.path.join(run, "ablation-synth", f"scores-{synth}.json")))
    rows.append((name, s))
zs = json.load(open(os.path.join(run, "scores-zeroshot", "scores.json")))
print(f"Synthesis ablation, BraTS, held-out test cases; {settings}\n")
print("| training | mean DSC | mean HD95 (mm) |")
print("|---|---|---|")
print(f"| zero-shot (no training) | {100 * zs['mean_dsc']:.1f}% | {zs.get('mean_hd95_mm', float('nan')):.1f} |")
for name, s in rows:
    print(f"| {name} | {100 * s['mean_dsc']:.1f}% | {s.get('mean_hd95_mm', float('nan')):.1f} |")
PY
for synth in off on; do echo; echo "SYNTH=$synth:"; cat "$RUN/ablation-synth/scores-$synth.md"; done
