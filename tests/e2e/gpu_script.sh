# tests/gpu/run (make test-gpu) and tests/bench/gpu.sh (make bench-gpu) are
# only ever run for real on a GPU machine; here the first runs on the guard
# backend (the device path with the cpu kernels) and the second as its dry
# run on two small rows, so that the scripts cannot rot: every check must
# pass, and the benchmark must print its table, the plain-path line and its
# JSON.
. tests/lib.sh
out=$(FEWSAM_GPU_BACKEND=guard FEWSAM_GPU_BIN="$BIN" FEWSAM_TEST_TMP="$TMP_BASE/gpu_script" tests/gpu/run 2>&1); rc=$?
if [ ! -f "$SHARED/golden/tiny.safetensors" ]; then skip gpu_script_on_guard "$SHARED/golden/tiny.safetensors missing"
elif [ $rc -eq 0 ] && [ "$(tail -1 <<<"$out")" = "8 passed, 0 failed, 0 skipped" ]; then pass gpu_script_on_guard
else fail gpu_script_on_guard "exit $rc: $(grep -E '^FAIL' <<<"$out" | head -3 | tr '\n' ' ') $(tail -1 <<<"$out")"; fi

BUILD=${BUILD:-$(dirname "$BIN")}
if [ ! -x "$BUILD/bench/bench_train" ]; then skip bench_gpu_dry_run "$BUILD/bench/bench_train not built"
else
  bo=$TMP_BASE/gpu_bench_dry
  rm -rf "$bo"
  out=$(BUILD=$BUILD BENCH_GPU_OUT=$bo BENCH_GPU_DRY=1 BENCH_GPU_DRY_BACKEND=guard BENCH_GPU_ROWS="train 128 1;plain 128 1" \
    tests/bench/gpu.sh 2>&1); rc=$?
  if [ $rc -ne 0 ]; then fail bench_gpu_dry_run "exit $rc: $(tail -3 <<<"$out" | tr '\n' ' ')"
  elif ! grep -q '^| train 128 x1 | fp32 | [0-9.]* |' <<<"$out"; then fail bench_gpu_dry_run "no train row: $out"
  elif ! grep -q 'without them (FEWSAM_CUDA_LT=0 FEWSAM_CUDA_STREAMS=0)' <<<"$out"; then
    fail bench_gpu_dry_run "no plain-path line: $(tail -5 <<<"$out" | tr '\n' ' ')"
  elif ! /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["dry_run"] and len(d["rows"]) == 1
assert any(r["name"].endswith("lt_streams_speedup") for r in d["results"])' "$bo/gpu.json" 2>/dev/null; then
    fail bench_gpu_dry_run "$bo/gpu.json lacks the row or the speedup"
  else pass bench_gpu_dry_run; fi
fi
finish
