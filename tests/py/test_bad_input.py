"""Bad input to the loader and the exemplar-sampler: one clear error line
naming the file and the problem, a non-zero exit, nothing left behind."""
import glob
import os
import shutil

from fstest import finish, need, run, scratch, shared, test

np, h5py, nib = need("numpy", "h5py", "nibabel")

CASE = "BraTS15_pat0001"


def leftovers(base):
    """Every file or folder under base except the inputs the test made."""
    return sorted(p for p in glob.glob(os.path.join(base, "**"), recursive=True)
                  if "/in" not in p[len(base):] and p != base + "/")


def expect_failure(stage, args, pattern, base, code=1):
    rc, out, err = run(stage, *args, check=False)
    assert rc == code, f"exit {rc}, expected {code}; stderr: {err.strip()}"
    lines = [l for l in err.strip().splitlines() if l]
    assert lines, "no error message"
    msg = lines[-1] if code == 1 else " ".join(lines)
    assert pattern in msg, f"'{pattern}' not in: {err.strip()}"
    if code == 1:
        assert msg.startswith(f"{stage}: error: "), msg
    left = leftovers(base)
    assert left == [], f"left behind: {left}"
    return msg


def brats_copy(base):
    d = os.path.join(base, "in")
    shutil.copytree(shared("data", "brats", CASE), os.path.join(d, CASE))
    for p in glob.glob(os.path.join(d, "**"), recursive=True):
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    return d


@test
def truncated_nifti():
    base = scratch("bad_truncated")
    d = brats_copy(base)
    f = os.path.join(d, CASE, CASE + "_flair.nii.gz")
    data = open(f, "rb").read()
    open(f, "wb").write(data[: len(data) // 2])
    msg = expect_failure("loader", ["--data", "brats", "--in", d, "--out", os.path.join(base, "out")], f, base)
    assert "truncated" in msg or "corrupt" in msg, msg


@test
def label_shape_differs_from_image():
    base = scratch("bad_shape")
    d = brats_copy(base)
    seg = os.path.join(d, CASE, CASE + "_seg.nii.gz")
    img = nib.load(seg)
    small = nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, :100], img.affine)
    nib.save(small, seg)
    msg = expect_failure("loader", ["--data", "brats", "--in", d, "--out", os.path.join(base, "out")], seg, base)
    assert "shape" in msg and "[100,240,240]" in msg and "[155,240,240]" in msg, msg


@test
def missing_case_file():
    base = scratch("bad_missing")
    d = brats_copy(base)
    os.remove(os.path.join(d, CASE, CASE + "_seg.nii.gz"))
    expect_failure("loader", ["--data", "brats", "--in", d, "--out", os.path.join(base, "out")],
                   f"case '{CASE}': missing label file", base)


@test
def missing_data_folder():
    base = scratch("bad_nodir")
    expect_failure("loader", ["--data", "synapse", "--in", os.path.join(base, "nowhere"), "--out",
                              os.path.join(base, "out")], "no such directory", base)


@test
def unknown_options_exit_2():
    base = scratch("bad_options")
    for stage, args in (("loader", ["--data", "demo", "--out", os.path.join(base, "o"), "--frobnicate"]),
                        ("exemplar-sampler", ["--in", base, "--out", os.path.join(base, "e.h5"), "--bogus", "1"]),
                        ("loader", ["--data", "mri", "--out", os.path.join(base, "o")]),
                        ("exemplar-sampler", ["--in", base, "--out", os.path.join(base, "e.h5"), "--fraction", "abc"])):
        expect_failure(stage, args, "--", base, code=2)


@test
def help_exits_0():
    for stage in ("loader", "exemplar-sampler"):
        rc, out, err = run(stage, "--help")
        assert rc == 0 and "usage:" in out


def demo_data(base):
    d = os.path.join(base, "in")
    run("loader", "--data", "demo", "--cases", "3", "--out", d)
    return d


@test
def shard_missing_dataset():
    base = scratch("bad_shard")
    d = demo_data(base)
    shard = sorted(glob.glob(os.path.join(d, "train", "*.h5")))[0]
    with h5py.File(shard, "a") as h:
        del h["label"]
    expect_failure("exemplar-sampler", ["--in", d, "--out", os.path.join(base, "ex.h5")], shard, base)
    _, _, err = run("exemplar-sampler", "--in", d, "--out", os.path.join(base, "ex.h5"), check=False)
    assert "label" in err, err


@test
def truncated_shard():
    base = scratch("bad_shard_trunc")
    d = demo_data(base)
    shard = sorted(glob.glob(os.path.join(d, "train", "*.h5")))[-1]
    data = open(shard, "rb").read()
    open(shard, "wb").write(data[: len(data) // 3])
    expect_failure("exemplar-sampler", ["--in", d, "--out", os.path.join(base, "ex.h5")], shard, base)


@test
def not_a_loader_output_is_not_replaced():
    base = scratch("bad_out")
    keep = os.path.join(base, "in", "precious")
    os.makedirs(keep)
    open(os.path.join(keep, "thesis.tex"), "w").write("x")
    rc, _, err = run("loader", "--data", "demo", "--cases", "1", "--out", keep, check=False)
    assert rc == 1 and "not an earlier output" in err, err
    assert os.listdir(keep) == ["thesis.tex"]
    assert [p for p in os.listdir(os.path.join(base, "in")) if p != "precious"] == []


finish()
