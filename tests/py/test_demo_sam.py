"""The demo checkpoint and what makes it: the shapes stage (instance labels,
determinism, errors), the trainer from a random initialisation with every
parameter trained (--init random, --encoder full, --export) whose export
the predictor and the trainer read as a SAM checkpoint, full-mode resume
bit for bit, and the committed pipelines/demo-sam.safetensors (its
configuration, and how it was made, in __metadata__)."""
import os

from fstest import finish, need, read_safetensors, run, scratch, test

np, h5py = need("numpy", "h5py")

base = scratch("demo_sam")
CFG = ["img_size=32", "patch_size=8", "embed_dim=16", "depth=2", "num_heads=2", "window_size=2", "global_attn=1",
       "out_chans=16", "dec_mlp_dim=32", "dec_heads=2", "iou_hidden=16", "mask_in_chans=4"]
CFG_ARGS = [a for c in CFG for a in ("--config", c)]


def read_st(path):
    meta, t = read_safetensors(path)
    return meta, {k: (v[1], v[2]) for k, v in t.items()}


SH = os.path.join(base, "shapes.h5")
run("shapes", "--out", SH, "--count", "40", "--size", "32", "--max-objects", "5", "--seed", "3",
    "--preview", os.path.join(base, "preview.png"))


@test
def shapes_shard():
    with h5py.File(SH, "r") as f:
        img, lab = f["image"][...], f["label"][...]
        assert img.shape == (40, 32, 32) and lab.shape == (40, 32, 32)
        assert img.min() >= 0 and img.max() <= 1 and img.std() > 0.05
        assert lab.max() <= 5
        objects = [len(set(np.unique(l)) - {0}) for l in lab]
        assert sum(o > 0 for o in objects) >= 36 and max(objects) >= 3, objects
        # the smallest kept object has the minimum area (6 pixels at this size)
        for l in lab:
            for k in set(np.unique(l)) - {0}:
                assert (l == k).sum() >= 6
    assert os.path.getsize(os.path.join(base, "preview.png")) > 1000
    # a pure function of (seed, index): the same slices again, and other ones for another seed
    again, other = os.path.join(base, "again.h5"), os.path.join(base, "other.h5")
    run("shapes", "--out", again, "--count", "10", "--size", "32", "--max-objects", "5", "--seed", "3")
    run("shapes", "--out", other, "--count", "10", "--size", "32", "--max-objects", "5", "--seed", "4")
    with h5py.File(SH, "r") as a, h5py.File(again, "r") as b, h5py.File(other, "r") as c:
        assert (a["image"][:10] == b["image"][...]).all() and (a["label"][:10] == b["label"][...]).all()
        assert not (a["image"][:10] == c["image"][...]).all()


@test
def shapes_errors():
    for args, what in ((["--count", "3"], "--out"), (["--out", "x.h5", "--size", "8"], "size"),
                       (["--out", "x.h5", "--max-objects", "16"], "max-objects")):
        rc, _, err = run("shapes", *args, check=False)
        assert rc == 2 and what in err, (args, rc, err)


EXP = os.path.join(base, "scratch.safetensors")


@test
def random_init_full_training_export():
    out = os.path.join(base, "full")
    _, _, err = run("trainer", "--init", "random", *CFG_ARGS, "--encoder", "full", "--prompt", "mixed", "--data", SH,
                    "--out", out, "--iters", "6", "--batch", "2", "--lr", "0.002", "--seed", "5", "--note", "unit",
                    "--export", EXP)
    assert "image and prompt encoders" in err and "exported" in err, err
    meta, t = read_st(os.path.join(out, "checkpoint.safetensors"))
    assert meta["encoder"] == "full" and meta["lora_targets"] == "none" and meta["prompt"] == "mixed"
    assert "image_encoder.pos_embed" in t and "prompt_encoder.point_embeddings.0.weight" in t
    assert "adamw.m.image_encoder.patch_embed.proj.weight" in t
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" not in t
    em, et = read_st(EXP)
    assert em["img_size"] == "32" and em["global_attn"] == "1" and em["dec_heads"] == "2" and em["note"] == "unit"
    assert em["trained_steps"] == "6" and "--init random" in em["command"] and em["seed"] == "5"
    assert not any(k.startswith("adamw.") for k in et)
    # trained tensors moved from their initial values: pos_embed equals the checkpoint's
    assert et["image_encoder.pos_embed"][1] == t["image_encoder.pos_embed"][1]
    # the export is a SAM checkpoint: the predictor runs it, the trainer fine-tunes it with LoRA
    demo = os.path.join(base, "phantom")
    run("loader", "--data", "demo", "--cases", "2", "--out", demo, "--size", "32")
    run("predictor", "--weights", EXP, "--data", demo, "--out", os.path.join(base, "pred"))
    _, _, err = run("trainer", "--weights", EXP, "--data", SH, "--out", os.path.join(base, "lora"), "--iters", "2",
                    "--batch", "1")
    assert "LoRA" in err
    # a full-mode checkpoint over a file base: the predictor puts every trained tensor back
    ft = os.path.join(base, "ft")
    run("trainer", "--weights", EXP, "--encoder", "full", "--data", SH, "--out", ft, "--iters", "2", "--batch", "1",
        "--lr", "0.01")
    run("predictor", "--weights", EXP, "--lora", os.path.join(ft, "checkpoint.safetensors"), "--data", demo,
        "--out", os.path.join(base, "pred_ft"))
    with h5py.File(os.path.join(base, "pred", "demo0002.h5"), "r") as a, \
            h5py.File(os.path.join(base, "pred_ft", "demo0002.h5"), "r") as b:
        assert a["label"].shape == b["label"].shape


@test
def full_resume_bit_for_bit():
    a, b = os.path.join(base, "ra"), os.path.join(base, "rb")
    common = ("--init", "random", *CFG_ARGS, "--encoder", "full", "--data", SH, "--iters", "4", "--batch", "2",
              "--seed", "2")
    run("trainer", *common, "--out", a)
    run("trainer", *common, "--out", b, "--stop-at", "2")
    _, _, err = run("trainer", *common, "--out", b, "--resume")
    assert "steps 3..4" in err, err
    _, ta = read_st(os.path.join(a, "checkpoint.safetensors"))
    _, tb = read_st(os.path.join(b, "checkpoint.safetensors"))
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k] == tb[k], k
    rc, _, err = run("trainer", "--init", "random", *CFG_ARGS, "--encoder", "lora", "--data", SH, "--out", b,
                     "--iters", "4", "--batch", "2", "--seed", "2", "--resume", check=False)
    assert rc == 1 and "--encoder" in err, err


@test
def trainer_option_errors():
    for args, what in ((["--init", "random", "--data", SH, "--out", "x"], "--config"),
                       (["--init", "random", *CFG_ARGS, "--weights", EXP, "--data", SH, "--out", "x"], "exclude"),
                       (["--init", "zeros", *CFG_ARGS, "--data", SH, "--out", "x"], "random"),
                       (["--weights", EXP, "--encoder", "full", "--lora-targets", "q,v", "--data", SH, "--out", "x"],
                        "--encoder lora"),
                       (["--weights", EXP, "--encoder", "half", "--data", SH, "--out", "x"], "lora, full or frozen"),
                       (["--init", "random", "--config", "depth=3", "--data", SH, "--out", "x"], "global_attn")):
        rc, _, err = run("trainer", *args, check=False)
        assert rc == 2 and what in err, (args, rc, err)


@test
def committed_demo_checkpoint():
    path = "pipelines/demo-sam.safetensors"
    if not os.path.exists(path):
        return "skip: pipelines/demo-sam.safetensors not built (make demo-checkpoint)"
    assert os.path.getsize(path) < 8 << 20
    meta, t = read_st(path)
    for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "window_size", "global_attn", "out_chans",
              "dec_heads", "note", "command", "trained_steps", "seed", "iters"):
        assert k in meta, k
    assert "demo-checkpoint" in meta["note"] and "shapes" in meta["note"] and "--init random" in meta["command"]
    assert meta["trained_steps"] == meta["iters"]
    assert len(t) > 100 and not any(k.startswith("adamw.") for k in t)



@test
def sam_demo_is_the_default():
    import subprocess
    run_dir = os.path.join(base, "mkrun")
    def dry(*args):
        p = subprocess.run(["make", "--no-print-directory", "-n", "-f", "pipeline.mk", f"BIN={os.environ.get('BIN', 'build/bin')}",
                            f"RUN={run_dir}", *args], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr
    rc, out = dry("pipeline")
    assert rc == 0 and "--weights pipelines/demo-sam.safetensors" in out and "trainer" in out, out[-500:]
    rc, out = dry("pipeline", "SAM=demo", "DATA=brats")
    assert rc == 0 and "--weights pipelines/demo-sam.safetensors" in out, out[-500:]
    rc, out = dry("pipeline", "SAM=")
    assert rc == 0 and "--weights" not in out, out[-500:]
    rc, out = dry("pipeline", "DATA=demo-sam")
    assert rc != 0 and "recipe" in out, out[-500:]


finish()
