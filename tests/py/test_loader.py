"""loader on the real cases in ../shared/data: shapes, label counts against
nibabel's reading of the source files, intensity range, orientation
independence, the phantom's determinism and the TransUNet layout."""
import glob
import os
import shutil

from fstest import SHARED, finish, need, run, scratch, shared, test

np, h5py, nib = need("numpy", "h5py", "nibabel")
from nibabel import orientations as ornt  # noqa: E402

BRATS = os.path.join(SHARED, "data", "brats")
SYNAPSE = os.path.join(SHARED, "data", "synapse")
BRATS_CASES = sorted(os.path.basename(d) for d in glob.glob(os.path.join(BRATS, "BraTS*")))


def read_output(out):
    """{case: (image [z,h,w], label [z,h,w])} over train and test files, train
    slices placed at their slice_index."""
    cases = {}
    for f in sorted(glob.glob(os.path.join(out, "test", "*.h5"))):
        with h5py.File(f, "r") as h:
            assert h.attrs["schema"] in ("fewsam.volume", b"fewsam.volume")
            cases.setdefault(os.path.basename(f)[:-3], []).append(("test", h["image"][()], h["label"][()], None, h.attrs["affine"].reshape(4, 4), h.attrs["spacing"]))
    for f in sorted(glob.glob(os.path.join(out, "train", "*.h5"))):
        with h5py.File(f, "r") as h:
            assert h.attrs["schema"] in ("fewsam.slices", b"fewsam.slices")
            cases.setdefault(os.path.basename(f)[:-3], []).append(("train", h["image"][()], h["label"][()], h["slice_index"][()], None, None))
    return cases


brats_out = None


@test
def brats_loads_with_shapes_counts_and_range():
    shared("data", "brats")
    global brats_out
    out = os.path.join(scratch("loader_brats"), "out")
    run("loader", "--data", "brats", "--in", BRATS, "--out", out, "--keep-blank", "--seed", "3")
    brats_out = out
    got = read_output(out)
    assert sorted(got) == BRATS_CASES, sorted(got)
    n_test = sum(1 for c in got.values() for p in c if p[0] == "test")
    assert n_test == 1, n_test  # 0.25 of 4 cases
    for case, parts in got.items():
        seg = np.asanyarray(nib.load(os.path.join(BRATS, case, case + "_seg.nii.gz")).dataobj)
        tumour = int((seg > 0).sum())
        voxels = sum(int((p[2] > 0).sum()) for p in parts)
        assert voxels == tumour, (case, voxels, tumour)
        for kind, im, lab, idx, aff, sp in parts:
            assert im.dtype == np.float32 and lab.dtype == np.uint8
            assert im.shape[1:] == (240, 240), im.shape  # axial slices of a 240x240x155 volume
            if kind == "train":
                assert im.shape[0] == 155 and list(idx) == list(range(155))
            else:
                assert im.shape == (155, 240, 240)
                assert np.allclose(sp, [1, 1, 1])
            assert im.min() >= 0 and im.max() <= 1, (im.min(), im.max())
            assert im.max() == 1 and (im == 0).mean() > 0.5  # background 0, brain spread to [0, 1]
            assert set(np.unique(lab)) <= {0, 1}


@test
def brats_regions_keep_the_sub_regions():
    shared("data", "brats")
    out = os.path.join(scratch("loader_brats_regions"), "out")
    run("loader", "--data", "brats", "--in", BRATS, "--out", out, "--labels", "regions", "--keep-blank",
        "--test-cases", BRATS_CASES[0])
    case = BRATS_CASES[0]
    seg = np.asanyarray(nib.load(os.path.join(BRATS, case, case + "_seg.nii.gz")).dataobj)
    with h5py.File(os.path.join(out, "test", case + ".h5"), "r") as h:
        lab = h["label"][()]
        classes = [c.decode() if isinstance(c, bytes) else c for c in h["classes"][()]]
    assert classes == ["background", "tumour core", "edema", "enhancing tumour"], classes
    # 2015 labels: 1 and 3 form the core, 2 edema, 4 enhancing
    assert (lab == 1).sum() == ((seg == 1) | (seg == 3)).sum()
    assert (lab == 2).sum() == (seg == 2).sum()
    assert (lab == 3).sum() == (seg == 4).sum()


@test
def brats_drops_blank_slices_by_default():
    shared("data", "brats")
    out = os.path.join(scratch("loader_brats_blank"), "out")
    run("loader", "--data", "brats", "--in", BRATS, "--out", out, "--test-cases", BRATS_CASES[0])
    for f in glob.glob(os.path.join(out, "train", "*.h5")):
        with h5py.File(f, "r") as h:
            im = h["image"][()]
            assert 0 < im.shape[0] < 155
            assert all(im[k].max() > im[k].min() for k in range(im.shape[0]))


SYN_COUNTS = {1: 997, 2: 1333, 3: 3676, 4: 3947, 5: 38634, 6: 644, 7: 9452, 8: 4675}
BTCV = {1: 8, 2: 4, 3: 3, 4: 2, 5: 6, 6: 11, 7: 1, 8: 7}  # TransUNet class -> BTCV label


@test
def synapse_ct_has_8_organs_with_source_counts():
    shared("data", "synapse")
    out = os.path.join(scratch("loader_synapse"), "out")
    run("loader", "--data", "synapse", "--in", SYNAPSE, "--out", out)
    got = read_output(out)
    assert list(got) == ["case0001"], list(got)
    src = np.asanyarray(nib.load(os.path.join(SYNAPSE, "RawData/Training/label/label0001.nii.gz")).dataobj)
    ct = np.asanyarray(nib.load(os.path.join(SYNAPSE, "RawData/Training/img/img0001.nii.gz")).dataobj)
    parts = got["case0001"]
    kinds = sorted(p[0] for p in parts)
    assert kinds == ["test", "train"], kinds  # one case: split by slices
    total = {c: sum(int((p[2] == c).sum()) for p in parts) for c in range(1, 9)}
    for c, btcv in BTCV.items():
        assert total[c] == int((src == btcv).sum()) == SYN_COUNTS[c], (c, total[c])
    nz = sum(p[1].shape[0] for p in parts)
    assert nz == ct.shape[2] == 30
    for p in parts:
        im = p[1]
        assert im.shape[1:] == (101, 122), im.shape  # LPS: rows = A-P axis (101), columns = R-L axis (122)
        assert im.min() >= 0 and im.max() <= 1
    # window: -125 HU maps to 0, 275 to 1; air (-1000) is 0
    test = [p for p in parts if p[0] == "test"][0]
    hu = np.clip(ct.astype(np.float64), -125, 275)
    expect = ((hu - -125) / 400).transpose(2, 1, 0)[:, ::-1, ::-1]  # RAS -> LPS: flip i and j
    z0 = nz - test[1].shape[0]
    assert np.abs(test[1] - expect[z0:]).max() < 1e-6


def reoriented_copy(src_dir, dst_dir, case, names, codes):
    os.makedirs(os.path.join(dst_dir, case), exist_ok=True)
    for n in names:
        img = nib.load(os.path.join(src_dir, case, n))
        t = ornt.ornt_transform(ornt.io_orientation(img.affine), ornt.axcodes2ornt(codes))
        new = img.as_reoriented(t)
        assert nib.aff2axcodes(new.affine) == codes
        nib.save(new, os.path.join(dst_dir, case, n))


@test
def brats_orientation_does_not_change_slices():
    shared("data", "brats")
    case = BRATS_CASES[1]
    names = [case + "_flair.nii.gz", case + "_seg.nii.gz"]
    base = scratch("loader_orient_brats")
    outs = {}
    for codes in [("L", "P", "S"), ("R", "A", "S"), ("L", "A", "S"), ("S", "R", "A")]:
        d = os.path.join(base, "".join(codes))
        reoriented_copy(BRATS, d, case, names, codes)
        out = os.path.join(d, "out")
        run("loader", "--data", "brats", "--in", d, "--out", out, "--keep-blank")
        outs[codes] = read_output(out)[case]
    ref = outs[("L", "P", "S")]
    for codes, parts in outs.items():
        for a, b in zip(ref, parts):
            assert a[0] == b[0]
            assert np.array_equal(a[1], b[1]), codes
            assert np.array_equal(a[2], b[2]), codes
            if a[0] == "test":
                assert np.allclose(a[4], b[4], atol=1e-4), (codes, a[4], b[4])


@test
def synapse_orientation_does_not_change_slices():
    shared("data", "synapse")
    base = scratch("loader_orient_syn")
    outs = {}
    for codes in [("R", "A", "S"), ("L", "P", "S"), ("L", "A", "S"), ("A", "S", "L")]:
        root = os.path.join(base, "".join(codes), "RawData", "Training")
        for sub, name in (("img", "img0001.nii.gz"), ("label", "label0001.nii.gz")):
            img = nib.load(os.path.join(SYNAPSE, "RawData/Training", sub, name))
            t = ornt.ornt_transform(ornt.io_orientation(img.affine), ornt.axcodes2ornt(codes))
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            nib.save(img.as_reoriented(t), os.path.join(root, sub, name))
        out = os.path.join(base, "".join(codes), "out")
        run("loader", "--data", "synapse", "--in", os.path.join(base, "".join(codes)), "--out", out)
        outs[codes] = read_output(out)["case0001"]
    ref = outs[("R", "A", "S")]
    for codes, parts in outs.items():
        for a, b in zip(ref, parts):
            assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2]), codes


@test
def phantom_is_deterministic_and_labelled():
    base = scratch("loader_demo")
    a, b, c = (os.path.join(base, n) for n in ("a", "b", "c"))
    run("loader", "--data", "demo", "--out", a, "--cases", "4", "--seed", "7")
    run("loader", "--data", "demo", "--out", b, "--cases", "4", "--seed", "7")
    run("loader", "--data", "demo", "--out", c, "--cases", "4", "--seed", "8")
    ga, gb, gc = read_output(a), read_output(b), read_output(c)
    assert sorted(ga) == ["demo0001", "demo0002", "demo0003", "demo0004"]
    same = all(np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2]) for k in ga for x, y in zip(ga[k], gb[k]))
    assert same
    differs = any(not np.array_equal(x[1], y[1]) for k in ga for x, y in zip(ga[k], gc[k]))
    assert differs
    labels = set()
    for parts in ga.values():
        for p in parts:
            labels |= set(np.unique(p[2]).tolist())
            assert p[1].min() >= 0 and p[1].max() <= 1
    assert len(labels) >= 5, labels


@test
def transunet_layout_loads():
    root = scratch("loader_transunet")
    os.makedirs(os.path.join(root, "train_npz"))
    os.makedirs(os.path.join(root, "test_vol_h5"))
    rng = np.random.default_rng(0)
    for case in (5, 6):
        for s in range(4):
            im = rng.random((32, 24), dtype=np.float32)
            lab = (rng.random((32, 24)) * 9).astype(np.uint8)
            np.savez(os.path.join(root, "train_npz", f"case{case:04d}_slice{s:03d}.npz"), image=im, label=lab)
    vol = rng.random((3, 32, 24), dtype=np.float32)
    vlab = np.floor(rng.random((3, 32, 24)) * 9).astype(np.float32)  # TransUNet stores labels as floats
    with h5py.File(os.path.join(root, "test_vol_h5", "case0001.npy.h5"), "w") as h:
        h["image"] = vol
        h["label"] = vlab
    out = os.path.join(root, "out")
    run("loader", "--data", "transunet", "--in", root, "--out", out, "--keep-blank")
    got = read_output(out)
    assert sorted(got) == ["case0001", "case0005", "case0006"], sorted(got)
    t = got["case0001"][0]
    assert t[0] == "test" and np.array_equal(t[1], vol) and np.array_equal(t[2], vlab.astype(np.uint8))
    tr = got["case0006"][0]
    assert tr[0] == "train" and tr[1].shape == (4, 32, 24)
    last = np.load(os.path.join(root, "train_npz", "case0006_slice003.npz"))
    assert np.array_equal(tr[1][3], last["image"]) and np.array_equal(tr[2][3], last["label"])


@test
def resampled_training_slices():
    out = os.path.join(scratch("loader_size"), "out")
    run("loader", "--data", "demo", "--out", out, "--cases", "2", "--size", "64")
    for f in glob.glob(os.path.join(out, "train", "*.h5")):
        with h5py.File(f, "r") as h:
            assert h["image"].shape[1:] == (64, 64) and h["label"].shape[1:] == (64, 64)
    for f in glob.glob(os.path.join(out, "test", "*.h5")):
        with h5py.File(f, "r") as h:
            assert h["image"].shape[1:] == (128, 128)  # test volumes keep their native grid


@test
def brats_2023_names_and_zero_background():
    """The 2023 file names (-t2f / -seg) and a release-style volume whose
    background is 0 and brain intensities positive: the same slices as the
    preprocessed copy with its negative background."""
    shared("data", "brats")
    case = BRATS_CASES[2]
    base = scratch("loader_brats2023")
    d = os.path.join(base, "in", case)
    os.makedirs(d)
    flair = nib.load(os.path.join(BRATS, case, case + "_flair.nii.gz"))
    x = np.asanyarray(flair.dataobj).astype(np.float64)
    bg = x.min()
    y = np.where(x == bg, 0, x - bg + 10).astype(np.float32)
    nib.save(nib.Nifti1Image(y, flair.affine), os.path.join(d, case + "-t2f.nii.gz"))
    shutil.copy(os.path.join(BRATS, case, case + "_seg.nii.gz"), os.path.join(d, case + "-seg.nii.gz"))
    out = os.path.join(base, "out")
    run("loader", "--data", "brats", "--in", os.path.join(base, "in"), "--out", out, "--keep-blank")
    ref_out = os.path.join(base, "ref")
    os.makedirs(os.path.join(base, "refin"))
    os.symlink(os.path.abspath(os.path.join(BRATS, case)), os.path.join(base, "refin", case))
    run("loader", "--data", "brats", "--in", os.path.join(base, "refin"), "--out", ref_out, "--keep-blank")
    a, b = read_output(out)[case], read_output(ref_out)[case]
    for pa, pb in zip(a, b):
        assert np.array_equal(pa[2], pb[2])
        assert np.abs(pa[1] - pb[1]).max() < 1e-5, np.abs(pa[1] - pb[1]).max()


finish()
