"""Helpers of test_vit_b.py: the official ViT-B state-dict names and shapes
(parsed from ../shared/reference/sam_vit_b_params.txt), a random but
well-conditioned ViT-B state dict with them, and a minimal safetensors writer
for golden-format files (F32 tensors and string metadata)."""
import json
import math
import re
import struct

import numpy as np

_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+\[([0-9, ]*)\]\s+(\d+)\s+(param|buffer)\b")


def read_param_table(path):
    """[(name, shape tuple)] in the file's (state-dict) order; checks the
    element counts the file states against the shapes."""
    rows = []
    with open(path) as f:
        for line in f:
            if line.lstrip().startswith("#"):
                continue
            m = _ROW.match(line)
            if not m:
                continue
            idx, name, dims, numel = int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
            if idx != len(rows):
                raise ValueError(f"{path}: row {idx} out of order")
            if math.prod(shape) != numel:
                raise ValueError(f"{path}: {name}: shape {shape} does not hold {numel} elements")
            rows.append((name, shape))
    return rows


def _std(name, shape):
    """Scale of a random tensor: what keeps every activation of order one
    through 12 encoder blocks and the decoder (so that fp32 and float64
    agree to the golden tolerance for a correct implementation, while any
    misplaced tensor changes the result far beyond it)."""
    if name.endswith("positional_encoding_gaussian_matrix"):
        return None, 1.0  # official: scale 1 * randn
    if name.endswith("pos_embed"):
        return None, 0.1
    if ".rel_pos_" in name:
        return None, 0.1
    if len(shape) == 1:
        if name.endswith(".weight"):  # LayerNorm gains
            return 1.0, 0.1
        return None, 0.1  # biases
    if name.startswith("mask_decoder.output_upscaling.") and len(shape) == 4:
        return None, 1.0 / math.sqrt(shape[0])  # ConvTranspose2d [in, out, k, k]: one tap per output
    if (name.startswith("prompt_encoder.") and "embed" in name) or name.endswith(("iou_token.weight",
                                                                                  "mask_tokens.weight")):
        return None, 1.0  # nn.Embedding rows: N(0, 1) as torch initialises them
    return None, 1.0 / math.sqrt(math.prod(shape[1:]))  # Linear [out, in], Conv2d [out, in, kh, kw]


def random_state_dict(table, seed=1234):
    """An OrderedDict name -> float32 torch tensor with the table's names and
    shapes, drawn from one seeded generator in table order."""
    import collections

    import torch
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for name, shape in table:
        mean, std = _std(name, shape)
        t = torch.randn(shape, generator=g, dtype=torch.float32) * std
        if mean is not None:
            t += mean
        sd[name] = t
    return sd


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> array-like (stored as little-endian F32, in the given
    order); metadata: str -> str. Header padded with spaces to 8 bytes."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64).astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
