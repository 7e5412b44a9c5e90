# scorer: command line, a good run, and bad input (missing prediction, shape
# mismatch, truncated NIfTI, truth without its label dataset, malformed
# comparison file): each fails with one "scorer: error:" line naming the
# file or case, and leaves no scores.* (nor temporary files) in --out.
. tests/lib.sh
PY=/usr/bin/python3
S=$BIN/scorer
if [ ! -x "$S" ]; then fail scorer_built "$S is missing"; finish; fi
if ! $PY -c 'import h5py, nibabel, numpy' 2>/dev/null; then
  skip scorer_e2e "h5py, nibabel or numpy missing for /usr/bin/python3"; finish
fi
D=$(scratch e2e_scorer)

# Fixtures: truth/ (two fewsam.volume cases) and predictions in several
# broken variants.
$PY - "$D" <<'EOF'
import gzip, os, sys
import numpy as np, h5py, nibabel as nib
d = sys.argv[1]
classes = ["background", "organ", "lesion"]
def meta(f, schema, cid, spacing):
    f.attrs["schema"] = schema
    f.attrs["version"] = np.int64(1)
    f.attrs["dataset"] = "e2e"
    f.attrs["provenance"] = "tests/e2e/scorer.sh"
    f.attrs["case_id"] = cid
    f.attrs["spacing"] = np.asarray(spacing, np.float64)
    f.attrs["affine"] = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]).reshape(16)
    f.create_dataset("classes", data=np.array(classes, dtype=h5py.string_dtype()))
def truth(path, cid, lab, spacing, with_label=True):
    with h5py.File(path, "w") as f:
        meta(f, "fewsam.volume", cid, spacing)
        f.create_dataset("image", data=lab.astype(np.float32) / 2)
        if with_label:
            f.create_dataset("label", data=lab)
def pred(path, cid, lab, spacing):
    with h5py.File(path, "w") as f:
        meta(f, "fewsam.prediction", cid, spacing)
        f.create_dataset("label", data=lab)
def nifti(path, lab, spacing):
    data = lab.transpose(2, 1, 0)[::-1, ::-1, :].astype(np.int16)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), np.diag([spacing[0], spacing[1], spacing[2], 1.0])), path)
sp = (0.8, 0.8, 3.0)
lab = np.zeros((6, 10, 12), np.uint8)
lab[1:4, 2:7, 3:9] = 1
lab[2:3, 4:6, 4:6] = 2
for sub in ("truth", "truth_nolabel", "good", "missing", "shape", "trunc"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
for cid in ("case0001", "case0002"):
    truth(os.path.join(d, "truth", cid + ".h5"), cid, lab, sp)
    truth(os.path.join(d, "truth_nolabel", cid + ".h5"), cid, lab, sp, with_label=(cid == "case0001"))
    pred(os.path.join(d, "good", cid + ".h5"), cid, np.roll(lab, 1, axis=2), sp)
    pred(os.path.join(d, "shape", cid + ".h5"), cid, lab if cid == "case0001" else lab[:, :, :11].copy(), sp)
pred(os.path.join(d, "missing", "case0001.h5"), "case0001", lab, sp)
pred(os.path.join(d, "missing", "case0003.h5"), "case0003", lab, sp)
pred(os.path.join(d, "trunc", "case0001.h5"), "case0001", lab, sp)
p = os.path.join(d, "trunc", "case0002.nii.gz")
nifti(p, lab, sp)
raw = gzip.decompress(open(p, "rb").read())
open(p, "wb").write(gzip.compress(raw[: len(raw) - 200]))   # a valid gzip of a truncated image
open(os.path.join(d, "bad.json"), "w").write('{"mean": {"dsc": {"organ": 0.5}}, "mean_dsc": ')
EOF
[ $? -eq 0 ] || { fail scorer_fixtures "python fixture script failed"; finish; }

# no_output NAME OUTDIR: nothing named scores.* (nor its temporaries) in OUTDIR.
no_output() { [ -z "$(ls -A "$2" 2>/dev/null | grep -i scores)" ]; }

# bad_run NAME PATTERN OUTDIR ARGS...: non-zero exit, exactly one error line,
# matching PATTERN, and no tables left behind.
bad_run() {
  local n=$1 pat=$2 out=$3; shift 3
  local err rc lines
  err=$("$S" "$@" --out "$out" 2>&1 >/dev/null); rc=$?
  lines=$(grep -c '^scorer: error: ' <<<"$err")
  if [ $rc -eq 0 ]; then fail "$n" "exit 0, expected an error"; return; fi
  if [ "$lines" -ne 1 ]; then fail "$n" "expected one 'scorer: error:' line, got $lines: $err"; return; fi
  if ! grep '^scorer: error: ' <<<"$err" | grep -qE -- "$pat"; then fail "$n" "error does not match '$pat': $err"; return; fi
  if ! no_output "$n" "$out"; then fail "$n" "scores files left in $out: $(ls -A "$out")"; return; fi
  pass "$n"
}

# --help and usage errors
if "$S" --help | grep -q -- '--truth DIR'; then pass scorer_help; else fail scorer_help "no usage on stdout"; fi
"$S" --no-such-option >/dev/null 2>"$D/err"; rc=$?
if [ $rc -eq 2 ] && grep -q -- "--no-such-option" "$D/err"; then pass scorer_unknown_option_exit_2
else fail scorer_unknown_option_exit_2 "exit $rc: $(cat "$D/err")"; fi
"$S" --truth "$D/truth" --out "$D/o" >/dev/null 2>&1; rc=$?
if [ $rc -eq 2 ]; then pass scorer_missing_required_exit_2; else fail scorer_missing_required_exit_2 "exit $rc"; fi

# a good run
out="$D/out_good"
if "$S" --truth "$D/truth" --pred "$D/good" --out "$out" >"$D/stdout" 2>"$D/stderr" &&
   [ -s "$out/scores.json" ] && [ -s "$out/scores.csv" ] && [ -s "$out/scores.md" ] &&
   grep -q '| DSC (%) |' "$D/stdout"; then
  pass scorer_good_run
else
  fail scorer_good_run "$(tail -3 "$D/stderr")"
fi
if [ -z "$(ls -A "$out" | grep tmp)" ]; then pass scorer_no_temporaries; else fail scorer_no_temporaries "$(ls -A "$out")"; fi

# bad input
mkdir -p "$D/o1" "$D/o2" "$D/o3" "$D/o4" "$D/o5"
bad_run scorer_missing_prediction "case0002.*$D/missing" "$D/o1" --truth "$D/truth" --pred "$D/missing"
bad_run scorer_shape_mismatch "shape/case0002\.h5.*\[6,10,11\].*truth/case0002\.h5.*\[6,10,12\]" "$D/o2" \
  --truth "$D/truth" --pred "$D/shape"
bad_run scorer_truncated_nifti "trunc/case0002\.nii\.gz" "$D/o3" --truth "$D/truth" --pred "$D/trunc"
bad_run scorer_truth_without_label "truth_nolabel/case0002\.h5.*label" "$D/o4" --truth "$D/truth_nolabel" \
  --pred "$D/good"
bad_run scorer_bad_compare_json "bad\.json" "$D/o5" --truth "$D/truth" --pred "$D/good" \
  --compare "old=$D/bad.json"
bad_run scorer_truth_not_a_dir "no-such-dir" "$D/o5" --truth "$D/no-such-dir" --pred "$D/good"

# predictions that match no test case are a warning, not an error
err=$("$S" --truth "$D/truth" --pred "$D/missing" --out "$D/o1" 2>&1 >/dev/null)
if grep -q "case0003" <<<"$err" && grep -q "warn\|matches no test case" <<<"$err"; then pass scorer_warns_extra_prediction
else fail scorer_warns_extra_prediction "$err"; fi
finish
