"""The .pth reader against PyTorch itself: state dicts written by torch.save
(dtypes, transposed and sliced views sharing storages, parameters, wrapped
dicts, pickle protocols 2 and 4) are converted to f32 safetensors by
`build/tests/test_checkpoint --convert` and compared bit for bit with what
torch holds. The safetensors output is read by a parser of its own here."""
import collections
import json
import os
import struct
import subprocess
import zipfile

from fstest import BIN, SHARED, finish, need, scratch, test

(np,) = need("numpy")
try:
    import torch
except ImportError as e:  # the tests that need torch skip; the others run
    torch = None
    TORCH_MISSING = str(e)

HELPER = os.path.join(os.path.dirname(BIN.rstrip("/")) or ".", "tests", "test_checkpoint")


def read_safetensors(path):
    """{name: float32 array} and the metadata of a safetensors file of F32 tensors."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0, f"header length {n} not a multiple of 8"
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        a = np.frombuffer(data[8 + n + b:8 + n + end], dtype="<f4")
        out[name] = a.reshape(e["shape"])
    return out, meta, list(header)


def convert(src, dst, ok=True):
    p = subprocess.run([HELPER, "--convert", src, dst], capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, f"convert exited {p.returncode}: {p.stderr.strip()}"
    return p


def same_bits(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def compare(path, expected, where):
    """Converts path and checks names, order, shapes and every value against expected (name -> tensor)."""
    out = os.path.join(where, os.path.basename(path) + ".safetensors")
    convert(path, out)
    got, _, order = read_safetensors(out)
    assert order == list(expected), f"names {order} != {list(expected)}"
    for name, t in expected.items():
        want = t.detach().float().numpy()
        assert same_bits(got[name], want), f"{name}: {got[name].ravel()[:4]} vs {want.ravel()[:4]}"


def sample_state_dict():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(4, 5, generator=g)
    big = torch.randn(300, 70, generator=g)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["f64"] = torch.randn(3, generator=g, dtype=torch.float64) * 1e10
    sd["i64"] = torch.arange(-3, 3)
    sd["i32"] = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    sd["i16"] = torch.tensor([-300, 7], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 5], dtype=torch.int8)
    sd["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["transposed"] = base.t()                 # non-contiguous
    sd["row0"] = base[0]                        # views into base's storage
    sd["row1"] = base[1]
    sd["col2"] = base[:, 2]
    sd["block"] = base[1:3, 1:4]
    sd["big_t"] = big.t()
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)  # stride 0
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    return sd


def storages_in(path):
    return [n for n in zipfile.ZipFile(path).namelist() if "/data/" in n]


@test
def tiny_pth_deflated_matches_safetensors():
    """tiny.pth re-zipped with deflate (torch stores; other tools may compress)."""
    d = scratch("pth_deflated")
    src = os.path.join(SHARED, "golden", "tiny.pth")
    if not os.path.exists(src):
        return "skip: no golden/tiny.pth"
    deflated = os.path.join(d, "tiny_deflated.pth")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    out = os.path.join(d, "tiny.safetensors")
    convert(deflated, out)
    got, _, _ = read_safetensors(out)
    ref, meta, _ = read_safetensors(os.path.join(SHARED, "golden", "tiny.safetensors"))
    assert meta.get("img_size") == "64"
    assert sorted(got) == sorted(ref), "different names"
    for k in ref:
        assert same_bits(got[k], ref[k]), k


def torch_round_trip(protocol):
    if torch is None:
        return f"skip: {TORCH_MISSING}"
    d = scratch(f"pth_torch_p{protocol}")
    sd = sample_state_dict()
    mixed = collections.OrderedDict(sd)
    mixed["epoch"] = 3                   # non-tensor values are skipped
    mixed["note"] = "hello"
    mixed["lr"] = 1e-4
    path = os.path.join(d, "sd.pth")
    torch.save(mixed, path, pickle_protocol=protocol)
    assert len(storages_in(path)) < len(sd), "views were not saved as shared storages"
    compare(path, sd, d)


@test
def torch_dtypes_views_protocol2():
    return torch_round_trip(2)


@test
def torch_dtypes_views_protocol4():
    return torch_round_trip(4)


@test
def torch_wrapped_state_dict():
    if torch is None:
        return f"skip: {TORCH_MISSING}"
    d = scratch("pth_torch_wrapped")
    sd = sample_state_dict()
    for key in ("model", "state_dict"):
        path = os.path.join(d, f"{key}.pth")
        torch.save({key: sd, "optimizer": {"state": {0: {"step": 3}}, "param_groups": [{"lr": 0.1}]},
                    "epoch": 9}, path)
        compare(path, sd, d)


@test
def torch_module_state_dict():
    """A real module's state_dict: an OrderedDict with _metadata (BUILD), int64 buffers."""
    if torch is None:
        return f"skip: {TORCH_MISSING}"
    d = scratch("pth_torch_module")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.LayerNorm(2),
                            torch.nn.Linear(2, 5))
    path = os.path.join(d, "module.pth")
    torch.save(m.state_dict(), path)
    compare(path, m.state_dict(), d)


@test
def torch_refused_files():
    if torch is None:
        return f"skip: {TORCH_MISSING}"
    d = scratch("pth_torch_refused")
    out = os.path.join(d, "out.safetensors")
    cases = [
        ({"w": torch.zeros(2), "c": collections.Counter("ab")}, {}, "global 'collections.Counter' is not allowed"),
        ({"w": torch.zeros(2), "s": {1, 2}}, {"pickle_protocol": 4}, "unsupported pickle opcode 0x8f"),
        ({"w": torch.zeros(2)}, {"_use_new_zipfile_serialization": False}, "legacy"),
    ]
    for i, (obj, kw, msg) in enumerate(cases):
        path = os.path.join(d, f"bad{i}.pth")
        torch.save(obj, path, **kw)
        p = convert(path, out, ok=False)
        assert p.returncode == 1, f"case {i}: exit {p.returncode}"
        assert msg in p.stderr and path in p.stderr, f"case {i}: {p.stderr.strip()}"
        assert not os.path.exists(out), "output written"


finish()
