"""The PyTorch reference of tests/py/sam_torch.py against the golden
activations of the official segment-anything code (../shared/golden): the
encoder's every block, the neck, the dense positional encoding, prompt
embeddings, the decoder's internals, masks and IoU for point, point+box and
box prompts, and the resized (32 px) checkpoint. The benchmark's PyTorch
baseline runs this same code, so it cannot drift from the official model.
Tolerance (golden README): max |a - b| <= 1e-4 * (1 + max |b|) per tensor."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fstest import SHARED, finish, need, test  # noqa: E402

need("torch", "numpy")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import sam_torch as st  # noqa: E402

GOLDEN = os.path.join(SHARED, "golden")
if not os.path.exists(os.path.join(GOLDEN, "tiny.safetensors")):
    print(f"skip sam_torch_golden: no {GOLDEN}/tiny.safetensors")
    sys.exit(0)

torch.set_num_threads(2)
WEIGHTS, META = st.load_safetensors(os.path.join(GOLDEN, "tiny.safetensors"))
FWD, FWD_META = st.load_safetensors(os.path.join(GOLDEN, "tiny_forward.safetensors"))
SAM = st.load_sam(os.path.join(GOLDEN, "tiny.safetensors"))
T = lambda name: torch.from_numpy(FWD[name])  # noqa: E731


def close(name, got, want):
    got = got.detach().double().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    tol = 1e-4 * (1 + float(np.max(np.abs(want))) if want.size else 1.0)
    assert err <= tol, f"{name}: max err {err:.3g} > {tol:.3g}"
    return err


ENC = {}


@test
def preprocess():
    with torch.no_grad():
        x = SAM.preprocess(T("input.image"))
    close("preprocessed", x, FWD["act.preprocessed"])


@test
def image_encoder_blocks():
    with torch.no_grad():
        emb = SAM.image_encoder(T("act.preprocessed"), trace=ENC)
    ENC["out"] = emb
    close("patch_embed", ENC["patch_embed"], FWD["act.patch_embed"])
    for i in range(int(META["depth"])):
        close(f"blocks.{i}", ENC[f"blocks.{i}"], FWD[f"act.blocks.{i}"])
    close("image_embeddings", emb, FWD["act.image_embeddings"])


@test
def dense_pe():
    with torch.no_grad():
        close("image_pe", SAM.prompt_encoder.get_dense_pe(), FWD["act.image_pe"])


def decode_case(b, kind):
    coords, labels, boxes = T("input.point_coords")[b:b + 1], T("input.point_labels")[b:b + 1], T("input.boxes")
    pts, bx = None, None
    if kind == "points":
        pts = (coords, labels)
    elif kind == "box":
        pts = (coords[:, :2], labels[:, :2].clamp(min=0))
        bx = boxes[b:b + 1]
    else:
        bx = boxes[b:b + 1]
    emb = T("act.image_embeddings")[b:b + 1]  # the golden embedding: isolates the decoder
    tr = {}
    with torch.no_grad():
        low, iou = SAM.decode(emb, pts, bx, multimask_output=False, trace=tr)
        multi = SAM.decode(emb, pts, bx, multimask_output=True) if kind == "points" else None
    return tr, low, iou, multi


@test
def decoder_points():
    in_size = tuple(int(v) for v in FWD_META["input_size"].split(","))
    orig = tuple(int(v) for v in FWD_META["original_size"].split(","))
    for b in range(2):
        p = f"act.img{b}.points."
        tr, low, iou, (lowm, ioum) = decode_case(b, "points")
        for k in ("sparse", "dense", "decoder.hs", "decoder.src", "decoder.upscaled"):
            close(p + k, tr[k], FWD[p + k])
        close(p + "low_res_masks", low, FWD[p + "low_res_masks"])
        close(p + "iou", iou, FWD[p + "iou"])
        close(p + "low_res_masks_multi", lowm, FWD[p + "low_res_masks_multi"])
        close(p + "iou_multi", ioum, FWD[p + "iou_multi"])
        with torch.no_grad():
            masks = SAM.postprocess_masks(low, in_size, orig)
        close(p + "masks", masks, FWD[p + "masks"])


@test
def decoder_box():
    for b in range(2):
        p = f"act.img{b}.box."
        tr, low, iou, _ = decode_case(b, "box")
        for k in ("sparse", "dense", "decoder.hs", "decoder.src", "decoder.upscaled"):
            close(p + k, tr[k], FWD[p + k])
        close(p + "low_res_masks", low, FWD[p + "low_res_masks"])
        close(p + "iou", iou, FWD[p + "iou"])
        _, low, _, _ = decode_case(b, "boxonly")
        close(f"act.img{b}.boxonly.low_res_masks", low, FWD[f"act.img{b}.boxonly.low_res_masks"])


@test
def full_pipeline_from_pixels():
    """Image pixels through preprocessing, our encoder and decoder to masks."""
    with torch.no_grad():
        emb = SAM.image_encoder(SAM.preprocess(T("input.image")))
        for b in range(2):
            low, iou = SAM.decode(emb[b:b + 1], (T("input.point_coords")[b:b + 1], T("input.point_labels")[b:b + 1]))
            close(f"img{b}.low_res_masks", low, FWD[f"act.img{b}.points.low_res_masks"])
            close(f"img{b}.iou", iou, FWD[f"act.img{b}.points.iou"])


@test
def resized_checkpoint():
    path = os.path.join(GOLDEN, "tiny_resized.safetensors")
    if not os.path.exists(path):
        return "skip: no tiny_resized.safetensors"
    R, RM = st.load_safetensors(path)
    cfg = dict(st.config_from_metadata(META), img_size=int(RM["img_size"]))
    enc = st.ImageEncoderViT(cfg)
    sd = st.tensors_to_torch(WEIGHTS, prefix="image_encoder.")
    g = cfg["img_size"] // cfg["patch_size"]
    # The file stores the resized rel_pos_h only; rel_pos_w gets the same
    # bilinear resize, which must reproduce the stored rel_pos_h exactly.
    for i in cfg["global_attn"]:
        for axis in ("h", "w"):
            name = f"blocks.{i}.attn.rel_pos_{axis}"
            r = torch.nn.functional.interpolate(sd[name][None, None], size=(2 * g - 1, sd[name].shape[1]),
                                                mode="bilinear", align_corners=False)[0, 0]
            stored = R.get("resized.image_encoder." + name)
            if stored is not None:
                close("resized " + name, r, stored)
            sd[name] = r
    for k, v in st.tensors_to_torch(R, prefix="resized.image_encoder.").items():
        sd[k] = v
    enc.load_state_dict(sd, strict=True)
    with torch.no_grad():
        close("resized image_embeddings", enc(torch.from_numpy(R["input.preprocessed"])), R["act.image_embeddings"])


@test
def rejects_bad_safetensors():
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(b"\xff" * 8 + b"{}")
        f.flush()
        try:
            st.load_safetensors(f.name)
        except ValueError as e:
            assert "beyond the file" in str(e)
        else:
            raise AssertionError("a header length beyond the file was accepted")


finish()
