# golden: the SAM forward pass against the tensors of the official PyTorch
# code (tiny config: forward with points/boxes, and the 64-px checkpoint run
# at 32 px), from both the safetensors and the .pth checkpoint; checkpoints
# with a mis-shaped or missing tensor are refused naming the tensor.
. tests/lib.sh
PY=/usr/bin/python3
G=$BIN/golden
GD=$SHARED/golden
if [ ! -x "$G" ]; then fail golden_built "$G is missing"; finish; fi
if [ ! -f "$GD/tiny.safetensors" ]; then skip golden_e2e "$GD/tiny.safetensors missing"; finish; fi
D=$(scratch e2e_golden)

# check NAME ARGS...: golden --check passes, every tensor line says ok
golden_ok() {
  local n=$1; shift
  local out rc
  out=$("$G" "$@" --check 2>&1); rc=$?
  if [ $rc -ne 0 ]; then fail "$n" "exit $rc: $(grep -E 'FAIL|error' <<<"$out" | head -3)"; return; fi
  if ! grep -qE '^[0-9]+ ok, 0 failed$' <<<"$out"; then fail "$n" "no summary line"; return; fi
  pass "$n"
}

# tiny.pth has no metadata: the decoder's head count (4) cannot be read off shapes
for w in "tiny.safetensors" "tiny.pth --meta dec_heads=4"; do
  tag=${w%% *}; tag=${tag//./_}
  golden_ok "forward_$tag" --weights $GD/$w --golden $GD/tiny_forward.safetensors
  golden_ok "resized_$tag" --weights $GD/$w --golden $GD/tiny_resized.safetensors
done

# the fast CPU backend computes the same function
golden_ok forward_cpu_backend --weights $GD/tiny.safetensors --golden $GD/tiny_forward.safetensors --backend cpu
golden_ok resized_cpu_backend --weights $GD/tiny.safetensors --golden $GD/tiny_resized.safetensors --backend cpu

# the count of checked tensors: every act.* of the forward file
n=$("$G" --weights $GD/tiny.safetensors --golden $GD/tiny_forward.safetensors --check 2>/dev/null | tail -1)
if [ "$n" = "44 ok, 0 failed" ]; then pass forward_checks_all; else fail forward_checks_all "$n"; fi

# --out writes the computed tensors
if "$G" --weights $GD/tiny.safetensors --golden $GD/tiny_resized.safetensors --out $D/resized.safetensors 2>/dev/null &&
   $PY -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n)); sys.exit(0 if h["act.image_embeddings"]["shape"]==[1,32,4,4] and "resized.image_encoder.pos_embed" in h else 1)' $D/resized.safetensors; then
  pass out_written
else
  fail out_written "no act.image_embeddings [1,32,4,4] in $D/resized.safetensors"
fi

# without the head count, the .pth decoder differs: the check must fail
if "$G" --weights $GD/tiny.pth --golden $GD/tiny_forward.safetensors --check >/dev/null 2>&1; then
  fail pth_heads_matter "passed with 8 decoder heads"
else
  pass pth_heads_matter
fi

# training files (grad.*, loss.*, final.*) are computed and checked by golden_train.sh

# broken checkpoints: rewrite tiny.safetensors with one tensor re-shaped or dropped
$PY - "$GD/tiny.safetensors" "$D" <<'PYEOF'
import json, struct, sys
src, d = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); base = 8 + n
meta = hdr.pop("__metadata__", None)
def write(path, h):
    out = {"__metadata__": meta} if meta else {}
    blobs, off = [], 0
    for k, v in h.items():
        a, b = v["data_offsets"]
        blobs.append(raw[base + a:base + b])
        out[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + b - a]}
        off += b - a
    js = json.dumps(out).encode()
    js += b" " * (-len(js) % 8)
    open(path, "wb").write(struct.pack("<Q", len(js)) + js + b"".join(blobs))
h = dict(hdr); h["image_encoder.blocks.3.attn.qkv.weight"] = dict(h["image_encoder.blocks.3.attn.qkv.weight"], shape=[32, 96])
write(d + "/shape.safetensors", h)
h = dict(hdr); del h["mask_decoder.output_upscaling.3.bias"]
write(d + "/missing.safetensors", h)
PYEOF
expect_error bad_shape "'image_encoder.blocks.3.attn.qkv.weight' has shape \[32,96\], expected \[96,32\]" \
  "$G" --weights $D/shape.safetensors --golden $GD/tiny_forward.safetensors --check
expect_error missing_tensor "'mask_decoder.output_upscaling.3.bias' is missing" \
  "$G" --weights $D/missing.safetensors --golden $GD/tiny_forward.safetensors --check
expect_error bad_backend "unknown backend" "$G" --weights $GD/tiny.safetensors --golden $GD/tiny_forward.safetensors --backend gpu
expect_error no_weights "required" "$G" --golden $GD/tiny_forward.safetensors
finish
