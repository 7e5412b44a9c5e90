# golden_train: training against the official PyTorch code (tiny config):
# LoRA q/v + full decoder, point prompts with BCE + Dice (tiny_train: logits,
# losses, every gradient, 3 AdamW steps) and prompt-free multi-class with
# CE + Dice (tiny_semantic), through `golden --check`; with the ref backend,
# block recomputation, and the cpu backend once it has backward kernels.
. tests/lib.sh
G=$BIN/golden
GD=$SHARED/golden
if [ ! -x "$G" ]; then fail golden_built "$G is missing"; finish; fi
if [ ! -f "$GD/tiny_train.safetensors" ]; then skip golden_train "$GD/tiny_train.safetensors missing"; finish; fi

# golden_ok NAME EXPECTED_SUMMARY ARGS...: --check passes with that many tensors checked
golden_ok() {
  local n=$1 want=$2; shift 2
  local out rc
  out=$("$G" --weights $GD/tiny.safetensors "$@" --check --strict 2>&1); rc=$?
  if [ $rc -ne 0 ]; then fail "$n" "exit $rc: $(grep -E 'FAIL|error' <<<"$out" | head -3)"; return; fi
  if ! grep -qx "$want" <<<"$out"; then fail "$n" "summary '$(tail -1 <<<"$out")', expected '$want'"; return; fi
  pass "$n"
}

# tiny_train: act.low_res_logits, loss.* (3), train.losses, 16 LoRA + 120
# decoder gradients and finals, grad.act.* (5)
golden_ok train_ref "282 ok, 0 failed" --golden $GD/tiny_train.safetensors
# tiny_semantic: logits, loss.* (3), 136 gradients; images and LoRA from tiny_train
golden_ok semantic_ref "140 ok, 0 failed" --golden $GD/tiny_semantic.safetensors
golden_ok semantic_init "140 ok, 0 failed" --golden $GD/tiny_semantic.safetensors --init $GD/tiny_train.safetensors
golden_ok train_recompute "282 ok, 0 failed" --golden $GD/tiny_train.safetensors --recompute
golden_ok semantic_recompute "140 ok, 0 failed" --golden $GD/tiny_semantic.safetensors --recompute

# the trainable count is printed
check trainable_printed bash -c "'$G' --weights $GD/tiny.safetensors --golden $GD/tiny_train.safetensors --check 2>&1 >/dev/null | grep -q 'trainable parameters: 42656 (LoRA 2048'"

# the fast backend, once it has backward kernels
out=$("$G" --weights $GD/tiny.safetensors --golden $GD/tiny_train.safetensors --backend cpu --check 2>&1)
if grep -q "has no backward kernels" <<<"$out"; then
  skip train_cpu "fs_nn_cpu has no backward kernels yet"
  skip semantic_cpu "fs_nn_cpu has no backward kernels yet"
else
  golden_ok train_cpu "282 ok, 0 failed" --golden $GD/tiny_train.safetensors --backend cpu
  golden_ok semantic_cpu "140 ok, 0 failed" --golden $GD/tiny_semantic.safetensors --backend cpu
fi

expect_error bad_init "cannot open|no such file|No such file" "$G" --weights $GD/tiny.safetensors \
  --golden $GD/tiny_semantic.safetensors --init $GD/absent.safetensors --check
finish
