"""A self-contained PyTorch implementation of Segment Anything (image
encoder, prompt encoder, mask decoder) with the official parameter names,
written from the published architecture so that fewsam's tests and
benchmarks have an independent baseline: it loads the official state-dict
names (safetensors parsed here, no extra packages) and is checked against the
golden activations of the official code by test_sam_torch_golden.py.

Details that matter for exactness: exact (erf) GELU in the encoder and the
decoder's upscaling, LayerNorm eps 1e-6 in encoder blocks and every
LayerNorm2d, torch's default 1e-5 in the two-way transformer, windows padded
with zeros and attended without a mask, relative positions from the
unscaled q, bilinear resizes with align_corners=False.

Usage as a library:
    cfg = config_from_metadata(meta)   # or vit_b_config(img_size=1024)
    sam = Sam(cfg); sam.load_state_dict(tensors_to_torch(weights))
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]

# ---------------------------------------------------------------- safetensors

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64,
           "U8": np.uint8, "I8": np.int8, "BOOL": np.bool_}


def load_safetensors(path):
    """Returns (dict name -> numpy array, metadata dict) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: truncated safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} beyond the file")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw, dtype=np.dtype(dt).newbyteorder("<"), count=(b - a) // np.dtype(dt).itemsize,
                            offset=base + a)
        out[name] = arr.reshape(info["shape"]).copy()
    return out, meta


def tensors_to_torch(arrays, prefix=None, dtype=torch.float32):
    """numpy dict -> torch dict, optionally keeping names under prefix (stripped)."""
    out = {}
    for k, v in arrays.items():
        if prefix is not None:
            if not k.startswith(prefix):
                continue
            k = k[len(prefix):]
        t = torch.from_numpy(v)
        out[k] = t.to(dtype) if t.is_floating_point() else t
    return out

# ---------------------------------------------------------------- configuration


def vit_b_config(img_size=1024):
    """SAM ViT-B (build_sam_vit_b) at img_size (the grid is img_size / 16)."""
    return dict(img_size=img_size, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4,
                window_size=14, global_attn=[2, 5, 8, 11], out_chans=256, dec_depth=2, dec_mlp_dim=2048,
                dec_heads=8, num_multimask=3, iou_hidden=256, iou_depth=3, mask_in_chans=16)


def config_from_metadata(meta):
    """The configuration in a checkpoint's __metadata__ (strings), ViT-B defaults elsewhere."""
    cfg = vit_b_config()
    for k, v in meta.items():
        if k == "global_attn":
            cfg[k] = [int(x) for x in v.split(",") if x.strip()]
        elif k in cfg:
            cfg[k] = int(v)
    return cfg

# ---------------------------------------------------------------- common layers


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    def __init__(self, dim, hidden, act):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x):
        return self.lin2(self.act(self.lin1(x)))

# ---------------------------------------------------------------- image encoder


def window_partition(x, ws):
    """[B, H, W, C] -> ([B*nW, ws, ws, C], (Hp, Wp)), zero-padded bottom/right."""
    B, H, W, C = x.shape
    ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    Hp, Wp = H + ph, W + pw
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(-1, ws, ws, C), (Hp, Wp)


def window_unpartition(win, ws, pad_hw, hw):
    Hp, Wp = pad_hw
    H, W = hw
    B = win.shape[0] // (Hp * Wp // ws // ws)
    x = win.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).contiguous().view(B, Hp, Wp, -1)
    return x[:, :H, :W, :].contiguous()


def get_rel_pos(q_size, k_size, rel_pos):
    """Relative position rows for every (query, key) pair along one axis:
    [q_size, k_size, D]; the table is linearly resized if its length differs."""
    max_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_dist:
        r = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_dist, mode="linear")
        rel_pos = r.reshape(-1, max_dist).permute(1, 0)
    q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    rel = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[rel.long()]


def add_decomposed_rel_pos(attn, q, rel_pos_h, rel_pos_w, q_size, k_size):
    """attn[B, qh*qw, kh*kw] += q.Rh[qy, ky] + q.Rw[qx, kx] (q unscaled)."""
    qh, qw = q_size
    kh, kw = k_size
    Rh = get_rel_pos(qh, kh, rel_pos_h)
    Rw = get_rel_pos(qw, kw, rel_pos_w)
    B, _, dim = q.shape
    r_q = q.reshape(B, qh, qw, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    attn = attn.view(B, qh, qw, kh, kw) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return attn.view(B, qh * qw, kh * kw)


class EncoderAttention(nn.Module):
    def __init__(self, dim, num_heads, input_size, qkv_bias=True, use_rel_pos=True):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x):
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        attn = attn.softmax(dim=-1)
        x = (attn @ v).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, window_size, input_size):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, num_heads,
                                     input_size if window_size == 0 else (window_size, window_size))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x):
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).permute(0, 2, 3, 1)  # B, H, W, C


class ImageEncoderViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        g = cfg["img_size"] // cfg["patch_size"]
        C = cfg["embed_dim"]
        self.img_size = cfg["img_size"]
        self.patch_embed = PatchEmbed(cfg["patch_size"], 3, C)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, C))
        self.blocks = nn.ModuleList()
        for i in range(cfg["depth"]):
            ws = 0 if i in cfg["global_attn"] else cfg["window_size"]
            self.blocks.append(EncoderBlock(C, cfg["num_heads"], cfg["mlp_ratio"], ws, (g, g)))
        O = cfg["out_chans"]
        self.neck = nn.Sequential(nn.Conv2d(C, O, 1, bias=False), LayerNorm2d(O),
                                  nn.Conv2d(O, O, 3, padding=1, bias=False), LayerNorm2d(O))

    def forward(self, x, trace=None):
        """x[B, 3, S, S] preprocessed -> [B, out_chans, g, g]; trace (a dict)
        receives 'patch_embed' and 'blocks.i' activations."""
        x = self.patch_embed(x)
        if trace is not None:
            trace["patch_embed"] = x
        x = x + self.pos_embed
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if trace is not None:
                trace[f"blocks.{i}"] = x
        return self.neck(x.permute(0, 3, 1, 2))

# ---------------------------------------------------------------- prompt encoder


class PositionEmbeddingRandom(nn.Module):
    def __init__(self, num_pos_feats):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _pe_encoding(self, coords):
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size):
        h, w = size
        gm = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), dtype=gm.dtype, device=gm.device)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._pe_encoding(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords_input, image_size):
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(self.positional_encoding_gaussian_matrix.dtype))


class PromptEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["out_chans"]
        g = cfg["img_size"] // cfg["patch_size"]
        mic = cfg["mask_in_chans"]
        self.embed_dim = D
        self.input_image_size = (cfg["img_size"], cfg["img_size"])
        self.image_embedding_size = (g, g)
        self.pe_layer = PositionEmbeddingRandom(D // 2)
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, D) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, D)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mic // 4, kernel_size=2, stride=2), LayerNorm2d(mic // 4), nn.GELU(),
            nn.Conv2d(mic // 4, mic, kernel_size=2, stride=2), LayerNorm2d(mic), nn.GELU(),
            nn.Conv2d(mic, D, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, D)

    def get_dense_pe(self):
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points, labels, pad):
        points = points + 0.5  # to the pixel centre
        if pad:
            points = torch.cat([points, torch.zeros((points.shape[0], 1, 2), dtype=points.dtype, device=points.device)],
                               dim=1)
            labels = torch.cat([labels, -torch.ones((labels.shape[0], 1), dtype=labels.dtype, device=labels.device)],
                               dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        emb[labels == -1] = 0.0
        emb[labels == -1] += self.not_a_point_embed.weight
        emb[labels == 0] += self.point_embeddings[0].weight
        emb[labels == 1] += self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes):
        boxes = boxes + 0.5
        corners = self.pe_layer.forward_with_coords(boxes.reshape(-1, 2, 2), self.input_image_size)
        corners[:, 0, :] += self.point_embeddings[2].weight
        corners[:, 1, :] += self.point_embeddings[3].weight
        return corners

    def forward(self, points=None, boxes=None, masks=None, batch=1):
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = batch
        dt = self.no_mask_embed.weight.dtype
        sparse = torch.empty((bs, 0, self.embed_dim), dtype=dt, device=self.no_mask_embed.weight.device)
        if points is not None:
            sparse = torch.cat([sparse, self._embed_points(points[0], points[1], pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            g = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, g[0], g[1])
        return sparse, dense

# ---------------------------------------------------------------- mask decoder


class DecoderAttention(nn.Module):
    """Attention with q/k/v projections to an internal dim (downsampled)."""

    def __init__(self, dim, num_heads, downsample_rate=1):
        super().__init__()
        self.internal_dim = dim // downsample_rate
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, self.internal_dim)
        self.k_proj = nn.Linear(dim, self.internal_dim)
        self.v_proj = nn.Linear(dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, dim)

    def _heads(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q, k, v):
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_dim, downsample, skip_first_layer_pe):
        super().__init__()
        self.self_attn = DecoderAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, num_heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, num_heads, downsample)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth, dim, num_heads, mlp_dim, downsample=2):
        super().__init__()
        self.layers = nn.ModuleList(
            [TwoWayAttentionBlock(dim, num_heads, mlp_dim, downsample, i == 0) for i in range(depth)])
        self.final_attn_token_to_image = DecoderAttention(dim, num_heads, downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image_embedding, image_pe, point_embedding):
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MLP(nn.Module):
    def __init__(self, in_dim, hidden, out_dim, num_layers):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1)
        outs = [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, outs)])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["out_chans"]
        self.num_mask_tokens = cfg["num_multimask"] + 1
        self.transformer = TwoWayTransformer(cfg["dec_depth"], D, cfg["dec_heads"], cfg["dec_mlp_dim"])
        self.iou_token = nn.Embedding(1, D)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, D)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(D, D // 4, kernel_size=2, stride=2), LayerNorm2d(D // 4), nn.GELU(),
            nn.ConvTranspose2d(D // 4, D // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(
            [MLP(D, D, D // 8, 3) for _ in range(self.num_mask_tokens)])
        self.iou_prediction_head = MLP(D, cfg["iou_hidden"], self.num_mask_tokens, cfg.get("iou_depth", 3))

    def predict_masks(self, image_embeddings, image_pe, sparse, dense, trace=None):
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        out_tokens = out_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1)
        tokens = torch.cat((out_tokens, sparse), dim=1)
        src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0) + dense
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        if trace is not None:
            trace["decoder.hs"], trace["decoder.src"] = hs, src
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        if trace is not None:
            trace["decoder.upscaled"] = upscaled
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                                for i in range(self.num_mask_tokens)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output, trace=None):
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse, dense, trace)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl, :, :], iou[:, sl]

# ---------------------------------------------------------------- the model


class Sam(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ImageEncoderViT(cfg)
        self.prompt_encoder = PromptEncoder(cfg)
        self.mask_decoder = MaskDecoder(cfg)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    def preprocess(self, x):
        """x[B, 3, h, w] in [0, 255] -> normalised, zero-padded to img_size bottom/right."""
        x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        S = self.image_encoder.img_size
        return F.pad(x, (0, S - x.shape[-1], 0, S - x.shape[-2]))

    def postprocess_masks(self, masks, input_size, original_size):
        S = self.image_encoder.img_size
        masks = F.interpolate(masks, (S, S), mode="bilinear", align_corners=False)
        masks = masks[..., :input_size[0], :input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)

    def decode(self, image_embedding, points=None, boxes=None, masks=None, multimask_output=False, trace=None):
        """One image's embedding [1, C, g, g] and its prompt -> (low_res_masks, iou)."""
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
        if trace is not None:
            trace["sparse"], trace["dense"] = sparse, dense
        return self.mask_decoder(image_embedding, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output, trace)


def load_sam(path, dtype=torch.float32):
    """A Sam with the weights and configuration of a safetensors checkpoint."""
    arrays, meta = load_safetensors(path)
    sam = Sam(config_from_metadata(meta))
    sam.load_state_dict(tensors_to_torch(arrays, dtype=dtype), strict=True)
    return sam.to(dtype).eval()
