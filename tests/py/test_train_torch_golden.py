"""The PyTorch training baseline of make bench (tests/bench/train_torch.py)
against the golden LoRA fine-tuning file of the official code
(../shared/golden/tiny_train.safetensors): the same adapters, trainable
set, loss and AdamW give the golden logits, loss, gradients (of every
trainable tensor and of the encoder's activations) and the parameters after
3 AdamW steps, so the benchmark times the computation that fewsam's
fs_train_step_batch performs.
Tolerances (golden README): activations and loss 1e-4 * (1 + max |b|),
gradients 1e-3 * (1 + max |b|); after the steps 1e-5 per element, or 2 lr
where the gradient is tiny."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from fstest import SHARED, finish, need, test  # noqa: E402

need("torch", "numpy")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import sam_torch as st  # noqa: E402
import train_torch as tt  # noqa: E402

GOLDEN = os.path.join(SHARED, "golden")
TRAIN_PATH = os.path.join(GOLDEN, "tiny_train.safetensors")
if not os.path.exists(TRAIN_PATH) or not os.path.exists(os.path.join(GOLDEN, "tiny.safetensors")):
    print(f"skip train_torch_golden: no {TRAIN_PATH}")
    sys.exit(0)

torch.set_num_threads(2)
G, GMETA = st.load_safetensors(TRAIN_PATH)
T = lambda name: torch.from_numpy(G[name])  # noqa: E731


def close(name, got, want, rel):
    got = got.detach().double().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    tol = rel * (1 + (float(np.max(np.abs(want))) if want.size else 0.0))
    assert err <= tol, f"{name}: max err {err:.3g} > {tol:.3g}"
    return err


def model():
    sam = tt.add_lora(st.load_sam(os.path.join(GOLDEN, "tiny.safetensors")), rank=int(GMETA.get("lora_rank", 4)))
    sd = {k[len("init."):]: torch.from_numpy(v) for k, v in G.items() if k.startswith("init.")}
    missing = set(sd) - set(dict(sam.named_parameters()))
    assert not missing, f"init tensors with no parameter: {sorted(missing)[:3]}"
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if name in sd:
                p.copy_(sd[name])
    trainable = tt.set_trainable(sam)
    return sam.train(), trainable


def inputs():
    return (T("input.images"), [int(i) for i in G["input.prompt_image"]], T("input.point_coords"),
            T("input.point_labels"), T("input.target"))


@test
def trainable_set_matches_golden():
    _, trainable = model()
    names = {n for n, _ in trainable}
    golden = {k[len("grad."):] for k in G if k.startswith("grad.") and not k.startswith("grad.act.")}
    assert names == golden, f"only here: {sorted(names - golden)[:3]}, only golden: {sorted(golden - names)[:3]}"


@test
def loss_and_gradients():
    sam, trainable = model()
    images, pimg, coords, labels, target = inputs()
    trace = {}
    logits = tt.forward_logits(sam, images, pimg, coords, labels, trace=trace)
    for v in trace.values():
        if v.requires_grad:  # the patch embedding is frozen: no gradient reaches it
            v.retain_grad()
    total, bce, dice = tt.loss_fn(logits, target)
    total.backward()
    close("low_res_logits", logits, G["act.low_res_logits"], 1e-4)
    close("loss.total", total.reshape(1), G["loss.total"], 1e-4)
    close("loss.bce", bce.reshape(1), G["loss.bce"], 1e-4)
    close("loss.dice", dice.reshape(1), G["loss.dice"], 1e-4)
    for name, p in trainable:
        g = p.grad if p.grad is not None else torch.zeros_like(p)  # None: the loss never reaches it
        close("grad." + name, g, G["grad." + name], 1e-3)
    close("grad.act.image_embeddings", trace["image_embeddings"].grad, G["grad.act.image_embeddings"], 1e-3)
    i = 0
    while f"grad.act.blocks.{i}" in G:
        close(f"grad.act.blocks.{i}", trace[f"blocks.{i}"].grad, G[f"grad.act.blocks.{i}"], 1e-3)
        i += 1
    assert i > 0


@test
def three_adamw_steps():
    sam, trainable = model()
    lr = float(GMETA.get("lr", 1e-3))
    betas = tuple(float(b) for b in GMETA.get("betas", "0.9,0.999").split(","))
    opt = torch.optim.AdamW([p for _, p in trainable], lr=lr, betas=betas, eps=float(GMETA.get("eps", 1e-8)),
                            weight_decay=float(GMETA.get("weight_decay", 0.01)))
    losses = [tt.train_step(sam, opt, *inputs())[0] for _ in range(3)]
    with torch.no_grad():
        images, pimg, coords, labels, target = inputs()
        losses.append(float(tt.loss_fn(tt.forward_logits(sam, images, pimg, coords, labels), target)[0]))
    close("train.losses", np.array(losses), G["train.losses"], 1e-4)
    n_far = n_all = 0
    for name, p in trainable:
        want = G["final." + name].astype(np.float64)
        err = np.abs(p.detach().double().numpy() - want)
        # an element whose gradient is tiny may move by up to 2 lr (Adam divides by sqrt(v))
        assert err.max() <= 2 * lr + 1e-6, f"final.{name}: max err {err.max():.3g} > 2 lr"
        n_far += int(np.sum(err > 1e-5 * (1 + np.abs(want))))
        n_all += err.size
    assert n_far <= 0.01 * n_all, f"{n_far} of {n_all} elements beyond 1e-5 after 3 steps"


finish()
