# tests/gpu/run (make test-gpu) is only ever run for real on a GPU machine;
# here it runs on the guard backend (the device path with the cpu kernels),
# so that the script itself cannot rot: every check must pass.
. tests/lib.sh
out=$(FEWSAM_GPU_BACKEND=guard FEWSAM_GPU_BIN="$BIN" FEWSAM_TEST_TMP="$TMP_BASE/gpu_script" tests/gpu/run 2>&1); rc=$?
if [ ! -f "$SHARED/golden/tiny.safetensors" ]; then skip gpu_script_on_guard "$SHARED/golden/tiny.safetensors missing"
elif [ $rc -eq 0 ] && [ "$(tail -1 <<<"$out")" = "8 passed, 0 failed, 0 skipped" ]; then pass gpu_script_on_guard
else fail gpu_script_on_guard "exit $rc: $(grep -E '^FAIL' <<<"$out" | head -3 | tr '\n' ' ') $(tail -1 <<<"$out")"; fi
finish
