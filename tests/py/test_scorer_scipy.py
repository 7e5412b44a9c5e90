"""scorer against an independent computation: random multi-class label
volumes with anisotropic spacing, truth as fewsam.volume HDF5, predictions as
fewsam.prediction HDF5 and as NIfTI (in another orientation); every DSC and
HD95 in scores.json must match medpy's definition computed with scipy
(binary_erosion with the 6-connected cross, distance_transform_edt with the
spacing, numpy.percentile) and TransUNet's empty-mask convention."""
import json
import os
import subprocess
import sys

try:
    import numpy as np
    import h5py
    import nibabel as nib
    from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure
except ImportError as e:  # pragma: no cover
    print(f"skip scorer_scipy: {e}")
    sys.exit(0)

BIN = os.environ.get("BIN", "build/bin")
TMP = os.path.join(os.environ.get("FEWSAM_TEST_TMP", "build/tmp"), "py_scorer_scipy")
SCORER = os.path.join(BIN, "scorer")
CLASSES = ["background", "liver", "left kidney", "spleen", "tumour"]
TOL = 1e-6
failures = 0


def ok(name):
    print(f"ok {name}")


def fail(name, why):
    global failures
    failures += 1
    print(f"FAIL {name}: {why}")


# ---- fixtures ----

def canonical_affine(spacing):
    """Voxel (i, j, k) -> RAS for the canonical LPS axes."""
    sx, sy, sz = spacing
    return np.diag([-sx, -sy, sz, 1.0])


def write_meta(f, schema, case_id, spacing):
    f.attrs["schema"] = schema
    f.attrs["version"] = np.int64(1)
    f.attrs["dataset"] = "pytest"
    f.attrs["provenance"] = "tests/py/test_scorer_scipy.py"
    f.attrs["case_id"] = case_id
    f.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
    f.attrs["affine"] = canonical_affine(spacing).reshape(16)
    f.create_dataset("classes", data=np.array(CLASSES, dtype=h5py.string_dtype()))


def write_truth(path, case_id, label, spacing):
    with h5py.File(path, "w") as f:
        write_meta(f, "fewsam.volume", case_id, spacing)
        f.create_dataset("image", data=(label.astype(np.float32) / len(CLASSES)))
        f.create_dataset("label", data=label.astype(np.uint8))


def write_pred_h5(path, case_id, label, spacing):
    with h5py.File(path, "w") as f:
        write_meta(f, "fewsam.prediction", case_id, spacing)
        f.create_dataset("label", data=label.astype(np.uint8))


def write_pred_nifti(path, label, spacing, dtype):
    """The canonical [k, j, i] label written RAS-oriented (i and j flipped),
    so the scorer must reorient it back."""
    sx, sy, sz = spacing
    nz, ny, nx = label.shape
    data = label.transpose(2, 1, 0)[::-1, ::-1, :].astype(dtype)
    aff = np.diag([sx, sy, sz, 1.0])
    aff[0, 3] = -sx * (nx - 1)
    aff[1, 3] = -sy * (ny - 1)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), aff), path)


def blobs(rng, shape, label, cls, count):
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    for _ in range(count):
        c = [rng.uniform(-1, n) for n in shape]
        r = [rng.uniform(1.0, n / 3 + 1) for n in shape]
        m = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        label[m] = cls


def make_case(rng, i):
    shape = (int(rng.integers(8, 16)), int(rng.integers(20, 34)), int(rng.integers(18, 30)))
    spacing = (float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.0)), float(rng.uniform(1.5, 5.0)))
    truth = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for cls in range(1, len(CLASSES)):
        if not (i == 1 and cls == 3):          # spleen missing from the truth of case 1
            blobs(rng, shape, truth, cls, int(rng.integers(1, 3)))
    # the prediction: the truth shifted a little, plus noise blobs
    shift = [int(rng.integers(-1, 2)) for _ in range(3)]
    pred[:] = np.roll(truth, shift, axis=(0, 1, 2))
    for cls in range(1, len(CLASSES)):
        if rng.uniform() < 0.5:
            blobs(rng, shape, pred, cls, 1)
    if i == 1:
        blobs(rng, shape, pred, 3, 1)          # predicted where the truth is empty
    if i == 2:
        pred[pred == 4] = 0                    # tumour missing from the prediction
    # an object on the array edge
    truth[0, :3, :4] = 1
    pred[0, :2, :5] = 1
    return truth, pred, spacing


# ---- the independent reference ----

def surface(m):
    return m ^ binary_erosion(m, structure=generate_binary_structure(3, 1), iterations=1)


def hd95(p, g, sampling):
    ps, gs = surface(p), surface(g)
    d1 = distance_transform_edt(~gs, sampling=sampling)[ps]
    d2 = distance_transform_edt(~ps, sampling=sampling)[gs]
    return float(np.percentile(np.hstack((d1, d2)), 95))


def expected(pred, truth, spacing, cls):
    p, g = pred == cls, truth == cls
    if p.sum() > 0 and g.sum() > 0:
        dsc = 2.0 * np.logical_and(p, g).sum() / (p.sum() + g.sum())
        sampling = (spacing[2], spacing[1], spacing[0])
        return dsc, hd95(p, g, sampling), hd95(p, g, (1, 1, 1))
    if p.sum() > 0:
        return 1.0, 0.0, 0.0
    return 0.0, 0.0, 0.0


def close(a, b):
    return a is not None and abs(a - b) <= TOL


def run_scorer(args, name):
    r = subprocess.run([SCORER] + args, capture_output=True, text=True)
    if r.returncode != 0:
        fail(name, f"scorer exited {r.returncode}: {r.stderr.strip()[-500:]}")
        return None
    return r


def main():
    if not os.access(SCORER, os.X_OK):
        fail("scorer_built", f"{SCORER} is missing")
        return
    os.makedirs(TMP, exist_ok=True)
    truth_dir, pred_dir, out = (os.path.join(TMP, d) for d in ("truth", "pred", "out"))
    for d in (truth_dir, pred_dir):
        os.makedirs(d, exist_ok=True)
        for n in os.listdir(d):
            os.remove(os.path.join(d, n))
    rng = np.random.default_rng(12345)
    cases = {}
    for i in range(5):
        cid = f"case{i:04d}"
        truth, pred, spacing = make_case(rng, i)
        cases[cid] = (truth, pred, spacing)
        write_truth(os.path.join(truth_dir, cid + ".h5"), cid, truth, spacing)
        if i % 3 == 0:
            write_pred_h5(os.path.join(pred_dir, cid + ".h5"), cid, pred, spacing)
        elif i % 3 == 1:
            write_pred_nifti(os.path.join(pred_dir, cid + ".nii.gz"), pred, spacing, np.int16)
        else:
            write_pred_nifti(os.path.join(pred_dir, cid + ".nii"), pred, spacing, np.float32)

    r = run_scorer(["--truth", truth_dir, "--pred", pred_dir, "--out", out], "scorer_runs")
    if r is None:
        return
    ok("scorer_runs")
    with open(os.path.join(out, "scores.json")) as f:
        js = json.load(f)
    names = CLASSES[1:]
    if js.get("classes") != names or js.get("dataset") != "pytest" or js.get("reference") is not None:
        fail("json_header", f"classes {js.get('classes')}, dataset {js.get('dataset')}")
    else:
        ok("json_header")

    # every case and class against scipy
    bad = []
    sums = {n: np.zeros(3) for n in names}
    got_cases = {c["case"]: c for c in js.get("cases", [])}
    if sorted(got_cases) != sorted(cases):
        fail("cases_listed", f"{sorted(got_cases)} vs {sorted(cases)}")
        return
    seen_conventions = set()
    for cid, (truth, pred, spacing) in cases.items():
        c = got_cases[cid]
        for k, n in enumerate(names):
            e = expected(pred, truth, spacing, k + 1)
            g = (c["dsc"][n], c["hd95_mm"][n], c["hd95_vox"][n])
            if (pred == k + 1).sum() == 0:
                seen_conventions.add("pred empty")
            elif (truth == k + 1).sum() == 0:
                seen_conventions.add("truth empty")
            sums[n] += np.array(e)
            if not all(close(a, b) for a, b in zip(g, e)):
                bad.append(f"{cid}/{n}: got {g}, scipy {e}")
    if bad:
        fail("per_case_matches_scipy", "; ".join(bad[:4]))
    else:
        ok("per_case_matches_scipy")
    if seen_conventions != {"pred empty", "truth empty"}:
        fail("fixtures_cover_conventions", f"only {seen_conventions}")
    else:
        ok("fixtures_cover_conventions")

    # means per class and overall
    means = {n: sums[n] / len(cases) for n in names}
    bad = [n for n in names if not all(close(js["mean"][key][n], means[n][i])
                                       for i, key in enumerate(("dsc", "hd95_mm", "hd95_vox")))]
    overall = np.mean([means[n] for n in names], axis=0)
    if bad or not all(close(js[key], overall[i]) for i, key in enumerate(("mean_dsc", "mean_hd95_mm", "mean_hd95_vox"))):
        fail("means_match", f"classes {bad}, overall {js['mean_dsc']} vs {overall[0]}")
    else:
        ok("means_match")

    # CSV: one row per case and class, same numbers
    with open(os.path.join(out, "scores.csv")) as f:
        rows = f.read().splitlines()
    if rows[0] != "case,class,dsc,hd95_mm,hd95_vox" or len(rows) != 1 + len(cases) * len(names):
        fail("csv_rows", f"{len(rows)} lines, header {rows[0]!r}")
    else:
        cid, cls, d, hm, hv = rows[1].split(",")
        if not close(float(hm), got_cases[cid]["hd95_mm"][cls]):
            fail("csv_rows", f"first row {rows[1]}")
        else:
            ok("csv_rows")

    md = open(os.path.join(out, "scores.md")).read()
    if "| DSC (%) |" not in md or "DSC 1, HD95 0" not in md or r.stdout.strip() != md.strip():
        fail("markdown", "table or convention note missing, or stdout differs from scores.md")
    else:
        ok("markdown")

    # a subset of classes with a comparison row
    out2 = os.path.join(TMP, "out2")
    r = run_scorer(["--truth", truth_dir, "--pred", pred_dir, "--out", out2, "--classes", "4,2",
                    "--compare", "first run=" + os.path.join(out, "scores.json")], "classes_and_compare")
    if r is None:
        return
    js2 = json.load(open(os.path.join(out2, "scores.json")))
    c0 = js2["cases"][0]
    if js2["classes"] != ["tumour", "left kidney"] or set(c0["dsc"]) != {"tumour", "left kidney"}:
        fail("classes_and_compare", f"classes {js2['classes']}")
    elif not all(close(c0[m][k], got_cases[c0["case"]][m][k])
                 for m in ("dsc", "hd95_mm") for k in ("tumour", "left kidney")):
        # the subset is scored class by class, the full run in one pass
        fail("classes_and_compare", "subset scores differ from the full run")
    elif "| first run DSC (%%) | %.2f |" % (50 * (js["mean"]["dsc"]["tumour"] + js["mean"]["dsc"]["left kidney"])) \
            not in r.stdout:
        fail("classes_and_compare", "no comparison row with the first run's mean: " + r.stdout[:400])
    else:
        ok("classes_and_compare")


main()
sys.exit(1 if failures else 0)
