"""The device path without a GPU: the guard backend runs the cpu kernels on
memory the host may not touch (and checks every pointer a kernel gets), so a
trainer or predictor run on it exercises everything a CUDA run does but the
CUDA kernels themselves: model and training state in backend memory, inputs
copied in, results copied out, checkpoints pulled back to the host. Since the
kernels are the cpu ones, the results must equal the cpu backend's bit for
bit."""
import json
import os

from fstest import finish, need, need_shared, read_safetensors, run, scratch, test

np, h5py = need("numpy", "h5py")

W = need_shared("golden", "tiny.safetensors")
base = scratch("device_path")
demo = os.path.join(base, "demo")
run("loader", "--data", "demo", "--cases", "3", "--out", demo, "--seed", "2", "--size", "64")
EX = os.path.join(base, "exemplars.h5")
run("exemplar-sampler", "--in", demo, "--out", EX, "--count", "6", "--strategy", "stratified", "--seed", "1")


def tensors(path):
    meta, t = read_safetensors(path)
    return meta, {k: v[2] for k, v in t.items()}


def train(out, backend, *args, check=True):
    return run("trainer", "--weights", W, "--data", EX, "--out", out, "--backend", backend, "--iters", "4",
               "--batch", "2", "--seed", "5", "--lr", "0.01", *args, check=check)


def same_checkpoints(a, b, what):
    ma, ta = tensors(os.path.join(a, "checkpoint.safetensors"))
    mb, tb = tensors(os.path.join(b, "checkpoint.safetensors"))
    assert sorted(ta) == sorted(tb) and len(ta) > 3, what
    for k in ta:
        assert ta[k] == tb[k], (what, k)
    return ma, mb


MODES = {
    "lora_decoder_full": (),
    "decoder_lora_all_targets": ("--decoder", "lora", "--lora-targets", "all"),
    "encoder_full_boxes": ("--encoder", "full", "--lora-targets", "none", "--prompt", "box"),
    "recompute_accum_clip": ("--recompute", "--accum", "2", "--clip", "0.5"),
}


@test
def training_on_guard_equals_cpu_bit_for_bit():
    for name, extra in MODES.items():
        a, b = os.path.join(base, f"cpu_{name}"), os.path.join(base, f"guard_{name}")
        train(a, "cpu", *extra)
        train(b, "guard", *extra)
        ma, mb = same_checkpoints(a, b, name)
        assert ma["backend"] == "cpu" and mb["backend"] == "guard", (ma["backend"], mb["backend"])
        la = [json.loads(l)["loss"] for l in open(os.path.join(a, "train.jsonl"))]
        lb = [json.loads(l)["loss"] for l in open(os.path.join(b, "train.jsonl"))]
        assert la == lb and len(la) == 4, (name, la, lb)


@test
def resume_on_guard_equals_uninterrupted():
    full, part = os.path.join(base, "guard_full"), os.path.join(base, "guard_resumed")
    train(full, "guard")
    train(part, "guard", "--stop-at", "2")
    _, _, err = train(part, "guard", "--resume")
    assert "steps 3..4" in err, err
    same_checkpoints(full, part, "resume")
    # and a checkpoint written on one backend resumes on the other
    cross = os.path.join(base, "cpu_then_guard")
    train(cross, "cpu", "--stop-at", "2")
    train(cross, "guard", "--resume")
    same_checkpoints(full, cross, "cpu then guard")


@test
def export_on_guard_equals_cpu():
    outs = {}
    for backend in ("cpu", "guard"):
        out = os.path.join(base, f"export_{backend}")
        train(out, backend, "--export", os.path.join(out, "model.safetensors"))
        outs[backend] = tensors(os.path.join(out, "model.safetensors"))[1]
    assert outs["cpu"] == outs["guard"]


def predictions(d):
    """{case: {dataset: array}} of a predictor output folder's HDF5 files."""
    res = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".h5"):
            with h5py.File(os.path.join(d, f), "r") as h:
                res[f] = {k: h[k][()] for k in h.keys() if isinstance(h[k], h5py.Dataset)}
    return res


@test
def prediction_on_guard_equals_cpu():
    ck = os.path.join(base, "cpu_lora_decoder_full", "checkpoint.safetensors")
    if not os.path.exists(ck):
        train(os.path.dirname(ck), "cpu")
    for prompt in ("box", "point"):
        got = {}
        for backend in ("cpu", "guard"):
            out = os.path.join(base, f"pred_{prompt}_{backend}")
            run("predictor", "--weights", W, "--lora", ck, "--data", demo, "--out", out, "--backend", backend,
                "--prompt", prompt, "--no-nifti")
            got[backend] = predictions(out)
        assert got["cpu"] and sorted(got["cpu"]) == sorted(got["guard"]), prompt
        for case, ds in got["cpu"].items():
            assert sorted(ds) == sorted(got["guard"][case]), (prompt, case)
            for k, v in ds.items():
                assert np.array_equal(v, got["guard"][case][k]), (prompt, case, k)


@test
def cuda_without_the_cuda_build_is_one_clear_line():
    for stage in ("trainer", "predictor"):
        rc, _, err = run(stage, "--weights", W, "--data", EX, "--out", os.path.join(base, "never"), "--backend",
                         "cuda", check=False)
        assert rc == 2, (stage, rc, err)
        assert "backend 'cuda' is not in this program" in err and "cuda-bin" in err, err
        assert not os.path.exists(os.path.join(base, "never"))


finish()
