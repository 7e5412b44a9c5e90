"""What encoder_torch.py and train_torch.py share to run on a GPU: the math
modes (the counterparts of fewsam's fs_nn_cuda_set_math), synchronised
timing, device memory and the matmul rate of the card in a mode.

Math modes:
  fp32  exact float32 products: TF32 off for matmuls and cuDNN convolutions
  tf32  float32 storage, TF32 tensor-core products (matmul and cuDNN)
  bf16  float32 master weights, torch.autocast(dtype=bfloat16) around the
        forward pass and the loss (TF32 off for what autocast leaves fp32)
Only fp32 runs on the CPU (tf32 is CUDA's; CPU autocast casts other ops
than CUDA's, layer_norm for one, so bf16 there would test another path)."""
import contextlib
import time
import warnings

import torch

MODES = ("fp32", "tf32", "bf16")


def parse_modes(text, device, error):
    """'fp32,tf32' -> ['fp32', 'tf32']; error(msg) for an unknown mode or
    tf32/bf16 off CUDA."""
    modes = [m for m in text.split(",") if m]
    if not modes:
        error("--dtype: no mode given")
    for m in modes:
        if m not in MODES:
            error(f"--dtype: unknown mode '{m}' (fp32, tf32 or bf16)")
        if m != "fp32" and device != "cuda":
            error(f"--dtype {m} needs --device cuda")
    return modes


def set_mode(mode, device):
    """Sets the TF32 switches for mode and returns the context to run the
    forward pass (and loss) in: autocast for bf16, else a null context."""
    if device == "cuda":
        tf32 = mode == "tf32"
        with warnings.catch_warnings():  # newer torch prefers the spelling below; this one still works
            warnings.simplefilter("ignore")
            try:
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
            except (AttributeError, RuntimeError):
                torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
                torch.backends.cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
    if mode == "bf16":
        return lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def clock(device):
    """Seconds, after every queued kernel has finished."""
    sync(device)
    return time.perf_counter()


def reset_peak(device):
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device):
    """torch's most allocated device memory since reset_peak (tensors and the
    cuBLAS workspace it allocates; not the cache it keeps), or None."""
    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 1048576.0, 1)
    return None


def device_name(device):
    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


def matmul_tflops(mode, device, n, reps=3):
    """TFLOP/s of an n^3 torch.mm in mode (bf16: operands already bfloat16,
    the card's bf16 rate), best of reps after a warm-up, synchronised."""
    g = torch.Generator(device="cpu").manual_seed(7)
    a = (torch.rand(n, n, generator=g) * 2 - 1).to(device)
    b = (torch.rand(n, n, generator=g) * 2 - 1).to(device)
    if mode == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    best = float("inf")
    for r in range(reps + 1):
        t0 = clock(device)
        c = torch.mm(a, b)
        t = clock(device) - t0
        if r > 0:
            best = min(best, t)
    del a, b, c
    if device == "cuda":
        torch.cuda.empty_cache()
    return round(2.0 * n ** 3 / best / 1e12, 3)
