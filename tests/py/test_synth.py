"""synthesizer (offline mode): separate processes agree byte for byte on
overlapping index ranges, prompts match the labels (scipy's distance
transform for the point), the preview is a valid PNG of the expected size,
and bad input fails cleanly."""
import os
import shutil
import struct
import zlib

from fstest import error_lines, finish, need, run, scratch, test

h5py, np = need("h5py", "numpy")

base = scratch("synth_py")
data = os.path.join(base, "data")
ex = os.path.join(base, "ex.h5")
run("loader", "--data", "demo", "--cases", "2", "--out", data, "--seed", "1")
run("exemplar-sampler", "--in", data, "--out", ex, "--count", "6", "--strategy", "stratified", "--seed", "1")


@test
def overlapping_ranges_agree():
    a, b = os.path.join(base, "a.h5"), os.path.join(base, "b.h5")
    run("synthesizer", "--exemplars", ex, "--out", a, "--count", "100", "--seed", "5", "--threads", "1")
    run("synthesizer", "--exemplars", ex, "--out", b, "--count", "100", "--first-index", "50", "--seed", "5",
        "--threads", "2")
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa.attrs["schema"] in ("fewsam.slices", b"fewsam.slices")
        assert fa["image"].shape == (100, 128, 128) and fa["image"].dtype == np.float32
        assert np.array_equal(fa["sample_index"][:], np.arange(100))
        assert np.array_equal(fb["sample_index"][:], np.arange(50, 150))
        assert fa["image"][50:].tobytes() == fb["image"][:50].tobytes()
        assert fa["label"][50:].tobytes() == fb["label"][:50].tobytes()
        assert not np.array_equal(fa["image"][:50], fa["image"][50:])
        sa, sb = fa["prompt_sample"][:], fb["prompt_sample"][:]
        ka, kb = sa >= 50, sb < 50
        assert ka.sum() == kb.sum() > 0
        assert np.array_equal(sa[ka] - 50, sb[kb])
        for name in ("prompt_class", "prompt_point", "prompt_box"):
            assert fa[name][:][ka].tobytes() == fb[name][:][kb].tobytes(), name
        assert int(fa.attrs["synth_seed"]) == 5 and int(fb.attrs["synth_first_index"]) == 50
    # another seed: other samples
    c = os.path.join(base, "c.h5")
    run("synthesizer", "--exemplars", ex, "--out", c, "--count", "5", "--seed", "6")
    with h5py.File(a, "r") as fa, h5py.File(c, "r") as fc:
        assert fa["image"][:5].tobytes() != fc["image"][:5].tobytes()


@test
def prompts_match_labels():
    a = os.path.join(base, "a.h5")
    try:
        from scipy import ndimage
    except ImportError:
        ndimage = None
    with h5py.File(a, "r") as f:
        lab, ps, pc, pp, pb = (f[k][:] for k in ("label", "prompt_sample", "prompt_class", "prompt_point", "prompt_box"))
        img = f["image"][:]
    assert img.min() >= 0 and img.max() <= 1
    for i in range(20):
        rows = np.nonzero(ps == i)[0]
        present = [c for c in range(1, 256) if (lab[i] == c).any()]
        assert list(pc[rows]) == present, (i, list(pc[rows]), present)
        for r in rows:
            m = lab[i] == pc[r]
            ys, xs = np.nonzero(m)
            assert list(pb[r]) == [xs.min(), ys.min(), xs.max(), ys.max()]
            x, y = int(pp[r][0]), int(pp[r][1])
            assert m[y, x]
            if ndimage is not None:
                d = ndimage.distance_transform_edt(m)
                assert np.unravel_index(np.argmax(d), d.shape) == (y, x)


def png_info(path):
    """(width, height, colour type) from the IHDR chunk, after checking the
    signature, every chunk's CRC and that the image data inflates to the
    expected size."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks, idat = 8, [], b""
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", raw[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind}"
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
        pos += 12 + n
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert depth == 8
    ch = {0: 1, 2: 3}[colour]
    assert len(zlib.decompress(idat)) == h * (1 + w * ch)
    return w, h, colour


@test
def preview_is_a_png_grid():
    out = os.path.join(base, "p.h5")
    png = os.path.join(base, "grid.png")
    run("synthesizer", "--exemplars", ex, "--preview", "6", "--preview-out", png, "--seed", "5")
    w, h, colour = png_info(png)
    tile = 128 * 2  # 128-pixel samples are drawn twice as large
    assert (w, h, colour) == (3 * (tile + 4) + 4, 2 * (tile + 4) + 4, 2), (w, h, colour)
    # with --out, the default name sits beside the shard
    run("synthesizer", "--exemplars", ex, "--out", out, "--count", "2", "--preview", "4", "--size", "300")
    w, h, _ = png_info(os.path.join(base, "p_preview.png"))
    assert (w, h) == (2 * 304 + 4, 2 * 304 + 4)


@test
def options_end_to_end():
    out = os.path.join(base, "o.h5")
    run("synthesizer", "--exemplars", ex, "--out", out, "--count", "8", "--backgrounds", os.path.join(data, "train"),
        "--size", "96", "--cut", "region", "--connectivity", "4", "--prompts", "object", "--objects", "2,4",
        "--feather", "1", "--partial", "--scale", "0.5,1.5", "--bg-rotate", "5", "--noise", "0.01", "--no-balance")
    with h5py.File(out, "r") as f:
        assert f["image"].shape == (8, 96, 96)
        assert f.attrs["synth_prompts"] in ("object", b"object")
        s = f.attrs["synth_settings"]
        s = s.decode() if isinstance(s, bytes) else s
        assert "cut=region" in s and "object.scale=0.5,1.5" in s, s
    # identity transforms with backgrounds from the exemplars reproduce exemplar pixels outside the objects
    ident = os.path.join(base, "i.h5")
    run("synthesizer", "--exemplars", ex, "--out", ident, "--count", "4", "--no-transforms", "--objects", "0")
    with h5py.File(ident, "r") as f, h5py.File(ex, "r") as e:
        eimg = e["image"][:]
        for k in range(4):
            assert any(np.array_equal(f["image"][k], eimg[j]) for j in range(len(eimg)))


@test
def bad_input():
    out = os.path.join(base, "bad.h5")
    rc, _, err = run("synthesizer", "--exemplars", os.path.join(base, "missing.h5"), "--out", out, "--count", "3",
                     check=False)
    assert rc == 1 and "missing.h5" in err and len(error_lines(err)) == 1, (rc, err)
    assert not os.path.exists(out)
    empty = os.path.join(base, "empty.h5")
    shutil.copy(ex, empty)
    with h5py.File(empty, "r+") as f:
        f["label"][...] = 0
    rc, _, err = run("synthesizer", "--exemplars", empty, "--out", out, "--count", "3", check=False)
    assert rc == 1 and "empty.h5" in err and "no labelled object" in err, (rc, err)
    assert not os.path.exists(out)
    assert not [n for n in os.listdir(base) if ".tmp." in n], os.listdir(base)
    rc, _, err = run("synthesizer", "--exemplars", ex, "--out", out, "--count", "3", "--bogus", check=False)
    assert rc == 2 and "--help" in err, (rc, err)
    rc, _, err = run("synthesizer", "--exemplars", ex, "--out", out, "--count", "3", "--scale", "2,1", check=False)
    assert rc == 2 and "object.scale" in err, (rc, err)
    rc, _, err = run("synthesizer", "--exemplars", ex, "--out", out, check=False)
    assert rc == 2 and "--count" in err, (rc, err)
    rc, out_text, _ = run("synthesizer", "--help", check=False)
    assert rc == 0 and "usage: synthesizer" in out_text
    assert not os.path.exists(out)


finish()
