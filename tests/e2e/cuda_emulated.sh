# The CUDA kernels (common/nn/cuda/*.cu) on the CPU emulation of
# tests/gpu/emu (Makefile: EMU): tests/gpu/test_gpu.c, the same kernel checks
# make test-gpu runs on a GPU, against the CUDA sources compiled by g++,
# under two schedules: blocks and threads in order, and last to first with
# the side stream held back until the main stream waits for it. First the
# emulator itself must catch what it claims to (deadlock, a barrier some
# threads skip, shared-memory overrun and limits, launch bounds). A pass
# says the kernels' logic is right; only a GPU says they run there.
# attention_global (64x64 tokens, 12 heads) takes about 11 minutes under
# emulation on 2 cores: it reports itself skipped unless FEWSAM_EMU_FULL=1.
# Then the model itself through the emulated CUDA backend (tests/gpu/run).
. tests/lib.sh
BUILD=${BUILD:-$(dirname "$BIN")}
E=$BUILD/emu
if [ ! -x "$E/test_gpu" ] || [ ! -x "$E/selftest" ]; then
  skip cuda_emulated "$E/test_gpu is not built (the emulator needs x86-64 with FMA)"; finish
fi
D=$(scratch cuda_emulated)

# selftest CASE NAME PATTERN: the case's output must match PATTERN
selftest() {
  local out
  out=$(timeout 60 "$E/selftest" "$1" 2>&1)
  if grep -qE -- "$3" <<<"$out"; then pass "$2"; else fail "$2" "expected /$3/: $(tr '\n' ' ' <<<"$out" | cut -c1-300)"; fi
}
out=$(timeout 60 "$E/selftest" 0 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q ': right$' <<<"$out" && grep -q 'no emulator-detected errors' <<<"$out"; then
  pass emu_shuffles_and_barriers_compute_right
else fail emu_shuffles_and_barriers_compute_right "exit $rc: $out"; fi
selftest 1 emu_catches_deadlock 'EMU FATAL: DEADLOCK in kernel deadlock_kernel'
selftest 2 emu_catches_a_barrier_some_threads_skip 'not reached by every thread'
selftest 3 emu_catches_shared_memory_overrun 'dynamic shared memory written past its 1024 bytes|AddressSanitizer: (use-after-poison|heap-buffer-overflow)'
selftest 4 emu_enforces_the_shared_memory_limit 'without the attribute\): invalid argument'
selftest 5 emu_shared_memory_starts_as_nan 'uninitialised shared memory\): -?nan'
selftest 6 emu_enforces_launch_bounds 'has __launch_bounds__\(128\) but was launched with 256'

skip_list=attention_global
[ "${FEWSAM_EMU_FULL:-0}" = 1 ] && skip_list=
scheds=(inorder reversed)
# under ASan the emulator runs about three times slower: one schedule
nm "$E/test_gpu" 2>/dev/null | grep -q __asan_init && scheds=(inorder)
for sched in "${scheds[@]}"; do
  env=(FEWSAM_TEST_SKIP=$skip_list)
  [ "$sched" = reversed ] && env+=(EMU_ORDER=rev EMU_DEFER_STREAM=2)
  out=$(env "${env[@]}" timeout 900 "$E/test_gpu" 2>"$D/$sched.err"); rc=$?
  printf '%s\n' "$out" >"$D/$sched.out"
  n_ok=$(grep -cE '^ok ' <<<"$out"); bad=$(grep -E '^FAIL ' <<<"$out" | head -3 | tr '\n' ' ')
  skipped=$(grep -E '^skip ' <<<"$out" | sed 's/^skip \([a-z_0-9]*\):.*/\1/' | tr '\n' ' ')
  emu=$(grep -E 'EMU (ERROR|FATAL)' "$D/$sched.err" | head -2 | tr '\n' ' ')
  echo "# $sched: $n_ok kernel tests ok; skipped: ${skipped:-none}"
  if [ $rc -ne 0 ] || [ -n "$bad" ] || [ -n "$emu" ] || ! grep -q 'EMU SUMMARY: no emulator-detected errors' "$D/$sched.err"; then
    fail "cuda_kernels_emulated_$sched" "exit $rc; ${bad}${emu}$(tail -2 "$D/$sched.err" | tr '\n' ' ')"
  elif [ "$n_ok" -lt 20 ]; then
    fail "cuda_kernels_emulated_$sched" "only $n_ok tests ran: $(tr '\n' ' ' <<<"$out")"
  else
    pass "cuda_kernels_emulated_$sched"
  fi
done
# The model on the emulated backend: tests/gpu/run's checks (golden files
# through the CUDA path, a LoRA run against the CPU's, resume bit for bit,
# the predictor against the CPU's) with the emulated CUDA builds of golden,
# trainer and predictor.
if [ ! -x "$E/bin/golden" ] || [ ! -x "$E/bin/trainer" ] || [ ! -x "$E/bin/predictor" ]; then
  fail cuda_model_emulated "$E/bin/{golden,trainer,predictor} are not built"
else
  out=$(FEWSAM_GPU_BIN=$E/bin FEWSAM_GPU_BACKEND=cuda FEWSAM_GPU_KERNELS=0 FEWSAM_TEST_TMP=$D/model BUILD=$BUILD \
    timeout 900 tests/gpu/run 2>&1); rc=$?
  grep -E '^# ' <<<"$out"
  grep -E '^(ok|FAIL|skip) ' <<<"$out" | sed -E 's/^(ok|FAIL|skip) /\1 emulated_/'
  [ $rc -eq 0 ] || [ -n "$(grep -E '^FAIL ' <<<"$out")" ] || fail cuda_model_emulated "tests/gpu/run exited $rc: $(tail -2 <<<"$out")"
  failures=$((failures + $(grep -cE '^FAIL ' <<<"$out")))
  # with the golden files here every check must run: an emulated backend
  # that answered "no usable GPU" would otherwise pass as ten skips
  if [ -f "$SHARED/golden/tiny.safetensors" ]; then
    counts=$(tail -1 <<<"$out")
    if [[ "$counts" =~ ^([0-9]+)\ passed,\ 0\ failed,\ 0\ skipped$ ]] && [ "${BASH_REMATCH[1]}" -ge 10 ]; then
      pass cuda_model_emulated_ran_every_check
    else
      fail cuda_model_emulated_ran_every_check "expected at least 10 passed and nothing skipped: $counts"
    fi
  fi
fi
if [ -n "$skip_list" ]; then skip cuda_attention_global_emulated "about 11 minutes under emulation (FEWSAM_EMU_FULL=1 runs it)"; fi
finish
