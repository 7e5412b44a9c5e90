"""The synthesis benchmark's reference: the same pipeline as common/data/synth.c
(default settings: class-mask objects, 1-3 per sample, ELSNet-style
transforms) written with numpy and scipy.ndimage, as one would in Python:

  background: an exemplar slice; flips, rotation +-15 deg, scale 0.9-1.1
    about the centre with ndimage.affine_transform (order 1 for the image,
    order 0 for the labels, constant 0 outside); gaussian_filter (sigma 0-1,
    mode 'nearest', truncate 3); contrast 0.8-1.2 about the mean,
    brightness +-0.1, gamma 0.8-1.25 (log-uniform), Gaussian noise (sigma
    0-0.03), clipped to [0, 1];
  objects: a class uniform over the classes, a class mask of an exemplar
    slice (found once with ndimage.find_objects), flips, rotation +-15 deg,
    scale 0.75-1.25 about the mask's box centre, the same intensity chain on
    the object's patch (with a margin for the blur), pasted where it fits;
  prompts per class on the final label map: the argmax of
    distance_transform_edt over the class's box grown by one pixel, and the
    tight box.

Random draws come from numpy's generator seeded with (seed, index), so the
values differ from fewsam's (this is a timing reference, not a bit-exact
twin). Times in CPU seconds of the process (one thread), as bench_synth.
Prints one JSON object like bench_synth's.
"""
import argparse
import json
import math
import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

OBJ = dict(flip_h=0.5, flip_v=0.0, rotate=15.0, scale=(0.75, 1.25), brightness=0.1, contrast=(0.8, 1.2),
           gamma=(0.8, 1.25), blur=(0.0, 1.0), noise=(0.0, 0.03))
BG = dict(OBJ, scale=(0.9, 1.1))


def draw(rng, t):
    return dict(flip_h=rng.random() < t["flip_h"], flip_v=rng.random() < t["flip_v"],
                angle=rng.uniform(-t["rotate"], t["rotate"]), scale=rng.uniform(*t["scale"]),
                brightness=rng.uniform(-t["brightness"], t["brightness"]), contrast=rng.uniform(*t["contrast"]),
                gamma=math.exp(rng.uniform(math.log(t["gamma"][0]), math.log(t["gamma"][1]))),
                blur=rng.uniform(*t["blur"]), noise=rng.uniform(*t["noise"]))


def inverse_rc(p):
    """Destination (row, col) offsets -> source offsets: F (1/s) R(-angle)."""
    th = math.radians(p["angle"])
    c, s = math.cos(th), math.sin(th)
    fx, fy = (-1.0 if p["flip_h"] else 1.0), (-1.0 if p["flip_v"] else 1.0)
    a_xy = np.array([[fx * c, fx * s], [-fy * s, fy * c]]) / p["scale"]  # (x, y) convention
    return np.array([[a_xy[1, 1], a_xy[1, 0]], [a_xy[0, 1], a_xy[0, 0]]])  # (row, col)


def intensity(x, pivot, p, rng):
    if p["blur"] >= 0.05:
        x = ndimage.gaussian_filter(x, p["blur"], mode="nearest", truncate=3.0)
    x = np.clip(p["contrast"] * (x - pivot) + pivot + p["brightness"], 0, 1)
    x = x ** p["gamma"]
    if p["noise"] > 0:
        x = x + rng.normal(0, p["noise"], x.shape).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32)


class Synth:
    def __init__(self, path, seed=0, min_pixels=16):
        with h5py.File(path, "r") as f:
            self.image = f["image"][:]
            self.label = f["label"][:]
        self.seed = seed
        n, self.h, self.w = self.image.shape
        self.cands = {}  # class -> [(slice, slices)]
        for k in range(n):
            for c, sl in enumerate(ndimage.find_objects(self.label[k]), start=1):
                if sl is not None and (self.label[k][sl] == c).sum() >= min_pixels:
                    self.cands.setdefault(c, []).append((k, sl))
        self.classes = sorted(self.cands)

    def sample(self, index):
        rng = np.random.default_rng([self.seed, index])
        H, W = self.h, self.w
        b = int(rng.integers(len(self.image)))
        p = draw(rng, BG)
        a = inverse_rc(p)
        c = np.array([(H - 1) / 2, (W - 1) / 2])
        off = c - a @ c
        img = ndimage.affine_transform(self.image[b], a, off, order=1, mode="constant", cval=0.0)
        lab = ndimage.affine_transform(self.label[b], a, off, order=0, mode="constant", cval=0)
        img = intensity(img, img.mean(), p, rng)
        for _ in range(int(rng.integers(1, 4))):
            cls = self.classes[int(rng.integers(len(self.classes)))]
            k, sl = self.cands[cls][int(rng.integers(len(self.cands[cls])))]
            p = draw(rng, OBJ)
            a = inverse_rc(p)
            fwd = np.linalg.inv(a)
            hh, hw = (sl[0].stop - sl[0].start) / 2, (sl[1].stop - sl[1].start) / 2
            eh = abs(fwd[0, 0]) * hh + abs(fwd[0, 1]) * hw
            ew = abs(fwd[1, 0]) * hh + abs(fwd[1, 1]) * hw
            bh, bw = max(1, math.ceil(2 * eh - 1e-6)), max(1, math.ceil(2 * ew - 1e-6))
            ty = int(rng.random() * (H - bh + 1)) if bh <= H else -int(rng.random() * (bh - H + 1))
            tx = int(rng.random() * (W - bw + 1)) if bw <= W else -int(rng.random() * (bw - W + 1))
            mg = int(3 * p["blur"] + 0.5)
            y0, x0 = max(ty - mg, 0), max(tx - mg, 0)
            y1, x1 = min(ty + bh + mg, H), min(tx + bw + mg, W)
            if y1 <= y0 or x1 <= x0:
                continue
            cs = np.array([(sl[0].start + sl[0].stop - 1) / 2, (sl[1].start + sl[1].stop - 1) / 2])
            cd = np.array([ty + (bh - 1) / 2, tx + (bw - 1) / 2])
            off = cs - a @ cd + a @ np.array([y0, x0])
            src_mask = np.zeros((H, W), np.uint8)
            src_mask[sl] = self.label[k][sl] == cls
            m = ndimage.affine_transform(src_mask, a, off, output_shape=(y1 - y0, x1 - x0), order=0,
                                         mode="constant", cval=0).astype(bool)
            if not m.any():
                continue
            patch = ndimage.affine_transform(self.image[k], a, off, output_shape=(y1 - y0, x1 - x0), order=1,
                                             mode="constant", cval=0.0)
            patch = intensity(patch, patch[m].mean(), p, rng)
            img[y0:y1, x0:x1][m] = patch[m]
            lab[y0:y1, x0:x1][m] = cls
        prompts = []
        for cls, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            ry0, ry1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, H)
            rx0, rx1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, W)
            m = lab[ry0:ry1, rx0:rx1] == cls
            d = ndimage.distance_transform_edt(m)
            y, x = np.unravel_index(np.argmax(d), d.shape)
            ys, xs = np.nonzero(m)
            prompts.append((cls, (x + rx0, y + ry0), (xs.min() + rx0, ys.min() + ry0, xs.max() + rx0, ys.max() + ry0)))
        return img, lab, prompts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exemplars", required=True)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = Synth(a.exemplars, a.seed)
    for i in range(3):
        s.sample(1000000 + i)
    best, best_wall, objects = 1e30, 1e30, 0
    for _ in range(a.reps):
        objects = 0
        t0, w0 = time.process_time(), time.perf_counter()
        for i in range(a.samples):
            objects += len(s.sample(i)[2])
        best = min(best, time.process_time() - t0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    print(json.dumps({"size": s.h, "samples": a.samples, "seconds": round(best, 6), "wall_seconds": round(best_wall, 6),
                      "samples_per_s": round(a.samples / best, 2), "ms_per_sample": round(1000 * best / a.samples, 4),
                      "threads": 1, "objects_per_sample": round(objects / a.samples, 3),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
