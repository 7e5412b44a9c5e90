"""Synthesis streamed into the trainer, with real processes and sockets:
the trainer's parameters are the same bytes whether it synthesizes itself
(--synth) or takes the samples from 1 or 3 synthesizer processes
(--stream), when one of them is killed mid-run, and when one hangs
(SIGSTOP) and another joins late; a slow trainer keeps
its own and the synthesizers' memory flat (credit); malformed messages sent
to the trainer (test_wire --evil) and to a synthesizer (test_wire
--evil-trainer) are rejected and logged and both go on; synthesizers with
other settings are caught; resume refuses changed synthesis settings;
run/local cleans up after itself. The shard-level determinism of samples
across processes is tests/py/test_synth.py's overlapping_ranges_agree."""
import os
import signal
import struct
import subprocess
import time

from fstest import BIN, finish, need, need_shared, read_safetensors as read_st, run, scratch, test

h5py, np = need("h5py", "numpy")

W = need_shared("golden", "tiny.safetensors")
TEST_WIRE = os.path.join(os.path.dirname(os.path.abspath(BIN)), "tests", "test_wire")
base = os.path.abspath(scratch("synth_stream"))
# one thread per process: results are bit-exact for a given thread count,
# and the synthesizers are single-threaded by design
ENV = dict(os.environ, OMP_NUM_THREADS="1")
run("loader", "--data", "demo", "--cases", "3", "--out", os.path.join(base, "demo"), "--seed", "1", "--size", "64")
EX = os.path.join(base, "ex.h5")
run("exemplar-sampler", "--in", os.path.join(base, "demo"), "--out", EX, "--count", "6", "--strategy", "stratified",
    "--seed", "1")
COMMON = ["--weights", W, "--data", EX, "--batch", "2", "--seed", "3", "--lr", "0.01", "--log-every", "1000"]
FAST = ["--heartbeat-ms", "100", "--timeout-ms", "2000"]


def binp(stage):
    return os.path.join(BIN, stage)


def ep(name):
    return "ipc://" + os.path.join(base, name + ".sock")


def spawn(args, log, env=ENV):
    return subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)


def trainer(out, *args, log=None):
    return spawn([binp("trainer"), *COMMON, "--out", out, *args], log or out + ".log")


def synthesizer(endpoint, name, *args, seed=3):
    return spawn([binp("synthesizer"), "--exemplars", EX, "--seed", seed, "--connect", endpoint, "--name", name,
                  *FAST, *args], os.path.join(base, name + ".log"))


def wait(p, timeout=120):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"{p.args[0]} did not finish in {timeout} s")


def text(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(pred, timeout=30, what="a condition"):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def listening(log):
    return lambda: os.path.exists(log) and "from synthesizers at" in text(log)


def steps_done(out):
    p = os.path.join(out, "train.jsonl")
    return sum(1 for _ in open(p)) if os.path.exists(p) else 0


def same_parameters(a, b):
    ma, ta = read_st(os.path.join(a, "checkpoint.safetensors"))
    mb, tb = read_st(os.path.join(b, "checkpoint.safetensors"))
    assert sorted(ta) == sorted(tb) and len(ta) > 3
    differ = [k for k in ta if ta[k] != tb[k]]
    assert not differ, f"{len(differ)} tensors differ between {a} and {b}, e.g. {differ[0]}"
    assert ma == mb, {k: (ma.get(k), mb.get(k)) for k in set(ma) | set(mb) if ma.get(k) != mb.get(k)}


def reference(iters, *args):
    """The in-process run every streamed run must equal."""
    out = os.path.join(base, f"ref_{iters}{'_'.join(args)}")
    if not os.path.exists(os.path.join(out, "checkpoint.safetensors")):
        assert wait(trainer(out, "--iters", iters, "--synth", *args)) == 0, text(out + ".log")
    return out


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@test
def one_and_three_synthesizers_equal_in_process():
    ref = reference(40)
    meta, _ = read_st(os.path.join(ref, "checkpoint.safetensors"))
    assert meta["samples"].startswith("synthesis: seed=3 "), meta["samples"]
    # one synthesizer, started by hand
    one = os.path.join(base, "one")
    e = ep("one")
    t = trainer(one, "--iters", 40, "--stream", e, "--heartbeat-ms", "100", "--peer-timeout-ms", "1000")
    s = synthesizer(e, "solo")
    assert wait(t) == 0, text(one + ".log")
    assert wait(s, 10) == 0, text(os.path.join(base, "solo.log"))
    assert "the trainer said bye" in text(os.path.join(base, "solo.log"))
    same_parameters(ref, one)
    # three, started by run/local
    three = os.path.join(base, "three")
    sock = os.path.join(base, "three.sock")
    p = subprocess.run(["run/local", "train", "--synthesizers", "3", "--socket", sock, "--logs",
                        os.path.join(base, "three_logs"), "--", binp("trainer"), *COMMON, "--out", three,
                        "--iters", "40"], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "synthesizers: 3 joined" in p.stderr, p.stderr[-2000:]
    made = [int(text(os.path.join(base, "three_logs", f"synthesizer-{k}.log")).split("made ")[1].split()[0])
            for k in (1, 2, 3)]
    assert sum(made) >= 80, made
    assert not os.path.exists(sock) and not os.path.exists(sock + ".lock")
    same_parameters(ref, three)


@test
def sigkill_of_a_synthesizer_changes_nothing():
    ref = reference(60)
    out = os.path.join(base, "killed")
    e = ep("killed")
    t = trainer(out, "--iters", 60, "--stream", e, "--heartbeat-ms", "100", "--peer-timeout-ms", "1000",
                "--debug-sleep-ms", "15", "--credit", "8")
    ss = [synthesizer(e, f"k{k}") for k in range(3)]
    wait_for(lambda: steps_done(out) >= 15, what="15 steps")
    ss[0].send_signal(signal.SIGKILL)
    assert wait(t) == 0, text(out + ".log")
    for s in ss[1:]:
        assert wait(s, 10) == 0
    assert ss[0].wait() == -signal.SIGKILL
    log = text(out + ".log")
    dropped = int(log.split(" joined, ")[1].split()[0])
    assert dropped >= 1, log[-1500:]
    same_parameters(ref, out)


@test
def hung_synthesizer_is_dropped_and_a_late_one_used():
    """SIGSTOP one of two synthesizers mid-run: the trainer drops it after the
    peer timeout and asks its outstanding indices of the other; a third
    started later joins and makes samples. The parameters equal the
    in-process run's."""
    ref = reference(60)
    out = os.path.join(base, "hung")
    e = ep("hung")
    t = trainer(out, "--iters", 60, "--stream", e, "--heartbeat-ms", "100", "--peer-timeout-ms", "1000",
                "--debug-sleep-ms", "15", "--credit", "8")
    ss = [synthesizer(e, f"h{k}") for k in range(2)]
    try:
        wait_for(lambda: steps_done(out) >= 10, what="10 steps")
        ss[0].send_signal(signal.SIGSTOP)
        wait_for(lambda: steps_done(out) >= 25, what="25 steps after the stop")
        late = synthesizer(e, "late")
        assert wait(t) == 0, text(out + ".log")
        assert wait(late, 10) == 0 and wait(ss[1], 10) == 0
    finally:
        ss[0].send_signal(signal.SIGCONT)
        ss[0].kill()
        ss[0].wait()
    log = text(out + ".log")
    dropped = int(log.split(" joined, ")[1].split()[0])
    joined = int(log.split("synthesizers: ")[1].split()[0])
    assert dropped >= 1 and joined == 3, log[-1500:]
    made_late = int(text(os.path.join(base, "late.log")).split("made ")[1].split()[0])
    assert made_late > 0, text(os.path.join(base, "late.log"))[-500:]
    same_parameters(ref, out)


@test
def slow_trainer_keeps_memory_flat():
    # 256x256 samples (320 KB each) for a trainer sleeping 25 ms a step: with
    # credit 8, at most 8 are requested or buffered; without, the two
    # synthesizers would run hundreds of samples (tens of MB) ahead
    out = os.path.join(base, "slow")
    e = ep("slow")
    iters, warm = 120, 20
    t = trainer(out, "--iters", iters, "--stream", e, "--credit", "8", "--debug-sleep-ms", "25", "--size", "256")
    ss = [synthesizer(e, f"m{k}", "--size", "256", "--capacity", "4") for k in range(2)]
    procs = [t] + ss
    base_kb, peak = [0] * 3, [0] * 3
    while t.poll() is None:
        done = steps_done(out)
        for k, p in enumerate(procs):
            r = rss_kb(p.pid)
            if done >= warm and not base_kb[k]:
                base_kb[k] = r
            elif done > warm and r > peak[k]:
                peak[k] = r
        time.sleep(0.02)
    assert t.wait() == 0, text(out + ".log")
    for s in ss:
        assert wait(s, 10) == 0
    log = text(out + ".log")
    held = int(log.split("at most ")[1].split()[0])
    made = [int(text(os.path.join(base, f"m{k}.log")).split("made ")[1].split()[0]) for k in range(2)]
    print(f"  slow_trainer_keeps_memory_flat: RSS kB at step {warm} -> peak after: trainer {base_kb[0]} -> "
          f"{peak[0]}, synthesizers {base_kb[1]} -> {peak[1]}, {base_kb[2]} -> {peak[2]}; held at most {held} "
          f"(credit 8); made {made}", file=__import__("sys").stderr)
    assert held <= 8, held
    assert sum(made) >= iters * 2, made
    if "asan" in BIN:  # ASan's quarantine holds freed memory: RSS grows by design
        return "skip: RSS under AddressSanitizer (credit bound checked: held " + str(held) + ")"
    for k in range(3):
        assert base_kb[k] > 0, (k, base_kb)
        assert peak[k] - base_kb[k] < 4096, f"process {k} grew from {base_kb[k]} to {peak[k]} kB"


@test
def trainer_rejects_malformed_messages_and_completes():
    if not os.access(TEST_WIRE, os.X_OK):
        return "skip: no " + TEST_WIRE
    ref = reference(20)
    out = os.path.join(base, "evil")
    e = ep("evil")
    log = out + ".log"
    t = trainer(out, "--iters", 20, "--stream", e, "--max-message-mb", "1", "--heartbeat-ms", "50",
                "--peer-timeout-ms", "1000")
    wait_for(listening(log), what="the trainer to listen")
    expect = os.path.join(base, "evil.expect")
    ev = subprocess.run([TEST_WIRE, "--evil", e, expect], env=ENV, capture_output=True, timeout=60)
    assert ev.returncode == 0, ev.stderr[-500:]
    assert t.poll() is None, "the trainer died: " + text(log)[-1500:]
    s = synthesizer(e, "good")
    assert wait(t) == 0, text(log)[-1500:]
    assert wait(s, 10) == 0
    got = text(log)
    lines = [line for line in text(expect).splitlines() if line]
    assert len(lines) >= 40, len(lines)
    missing = [line for line in lines if line not in got]
    assert not missing, f"the trainer's log lacks {missing[:3]}"
    rejected = int(got.split("duplicates dropped, ")[1].split()[0])
    assert rejected >= 44, rejected
    same_parameters(ref, out)


@test
def synthesizer_rejects_malformed_messages_and_serves():
    if not os.access(TEST_WIRE, os.X_OK):
        return "skip: no " + TEST_WIRE
    e = ep("evil_trainer")
    expect, sample = os.path.join(base, "evil_trainer.expect"), os.path.join(base, "evil_trainer.sample")
    ev = subprocess.Popen([TEST_WIRE, "--evil-trainer", e, expect, sample], env=ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    s = synthesizer(e, "victim", seed=5)
    _, everr = ev.communicate(timeout=60)
    assert ev.returncode == 0, everr[-500:]
    assert wait(s, 20) == 0, text(os.path.join(base, "victim.log"))
    got = text(os.path.join(base, "victim.log"))
    lines = [line for line in text(expect).splitlines() if line]
    assert len(lines) == 16, lines
    missing = [line for line in lines if line not in got]
    assert not missing, f"the synthesizer's log lacks {missing[:3]}"
    assert "16 invalid messages from the trainer rejected" in got, got[-800:]
    # what it served for index 7 is the offline synthesizer's sample 7
    shard = os.path.join(base, "seven.h5")
    run("synthesizer", "--exemplars", EX, "--out", shard, "--count", "1", "--first-index", "7", "--seed", "5")
    raw = open(sample, "rb").read()
    h, w = struct.unpack("<II", raw[:8])
    with h5py.File(shard, "r") as f:
        img, lab = f["image"][0], f["label"][0]
    assert (h, w) == img.shape
    assert raw[8:8 + 4 * h * w] == img.astype("<f4").tobytes()
    assert raw[8 + 4 * h * w:] == lab.astype(np.uint8).tobytes()


@test
def synthesizers_with_other_settings_are_caught():
    out = os.path.join(base, "mismatch")
    sock = os.path.join(base, "mismatch.sock")
    p = subprocess.run(["run/local", "train", "--synthesizers", "1", "--socket", sock, "--synth-args", "--rotate 5",
                        "--logs", os.path.join(base, "mismatch_logs"), "--", binp("trainer"), *COMMON, "--out", out,
                        "--iters", "10"], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1000:]  # the same settings on both sides: fine
    # a synthesizer started by hand with another rotation range
    e = ep("mismatch2")
    t = trainer(out + "2", "--iters", 10, "--stream", e, "--rotate", "5")
    s = synthesizer(e, "other", "--rotate", "6")
    assert wait(t) == 1
    assert wait(s, 10) == 0  # the dying trainer said bye
    assert "differs from the one this trainer makes" in text(out + "2.log"), text(out + "2.log")[-800:]
    assert not os.path.exists(sock)


@test
def resume_checks_synthesis_settings_and_any_source_resumes():
    ref = reference(12)
    out = os.path.join(base, "resume")
    assert wait(trainer(out, "--iters", 12, "--synth", "--stop-at", 5)) == 0
    rc = wait(trainer(out, "--iters", 12, "--synth", "--resume", "--rotate", "3", log=out + ".bad.log"))
    assert rc == 1 and "the samples" in text(out + ".bad.log"), text(out + ".bad.log")
    rc = wait(trainer(out, "--iters", 12, "--resume", log=out + ".bad2.log"))
    assert rc == 1 and "the samples" in text(out + ".bad2.log"), text(out + ".bad2.log")
    # the remaining steps from synthesizers: samples 10.. only, same result
    e = ep("resume")
    t = trainer(out, "--iters", 12, "--stream", e, "--resume", log=out + ".stream.log")
    s = synthesizer(e, "resumer")
    assert wait(t) == 0, text(out + ".stream.log")
    assert wait(s, 10) == 0
    assert "samples 10..23 from synthesizers" in text(out + ".stream.log")
    same_parameters(ref, out)


@test
def curve_encrypted_stream():
    keygen = binp("curve-keygen")
    if not os.access(keygen, os.X_OK):
        return "skip: no curve-keygen"
    keys = os.path.join(base, "keys")
    run("curve-keygen", "--out", keys)
    ref = reference(8)
    out = os.path.join(base, "curve")
    e = ep("curve")
    t = trainer(out, "--iters", 8, "--stream", e, "--curve-secret-key", os.path.join(keys, "curve.key"))
    s = synthesizer(e, "secret", "--curve-server-key", os.path.join(keys, "curve.pub"))
    assert wait(t) == 0, text(out + ".log")
    assert wait(s, 10) == 0
    same_parameters(ref, out)


@test
def run_local_stops_everything_on_sigterm():
    out = os.path.join(base, "term")
    sock = os.path.join(base, "term.sock")
    p = subprocess.Popen(["run/local", "train", "--synthesizers", "2", "--socket", sock, "--logs",
                          os.path.join(base, "term_logs"), "--", binp("trainer"), *COMMON, "--out", out,
                          "--iters", "1000", "--debug-sleep-ms", "50"], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    wait_for(lambda: steps_done(out) >= 3, what="3 steps")
    kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) >= 3, kids  # the trainer and two synthesizers
    assert os.path.exists(sock)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode != 0
    assert "interrupted" in err, err[-500:]
    for k in kids:
        assert not os.path.exists(f"/proc/{k}") or "zombie" in text(f"/proc/{k}/status").lower(), k
    assert not os.path.exists(sock) and not os.path.exists(sock + ".lock")
    # a stale socket (a killed run's) does not stop the next run
    open(sock, "w").close()
    p = subprocess.run(["run/local", "train", "--synthesizers", "1", "--socket", sock, "--", binp("trainer"),
                        *COMMON, "--out", out, "--iters", "4"], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1000:]
    assert not os.path.exists(sock)


@test
def options_and_errors():
    rc, out, _ = run("trainer", "--help")
    for o in ("--synth", "--stream", "--credit", "--heartbeat-ms", "--peer-timeout-ms", "--curve-secret-key",
              "--stream-verify", "--debug-sleep-ms", "--rotate", "--bg-noise", "--no-transforms"):
        assert o in out, o
    rc, out, _ = run("synthesizer", "--help")
    for o in ("--connect", "--name", "--heartbeat-ms", "--curve-server-key", "--capacity"):
        assert o in out, o
    o = os.path.join(base, "bad")
    rc, _, err = run("trainer", *COMMON, "--out", o, "--rotate", "5", check=False)
    assert rc == 2 and "--synth or --stream" in err, err
    rc, _, err = run("trainer", *COMMON, "--out", o, "--synth", "--stream", ep("x"), check=False)
    assert rc == 2 and "exclude" in err, err
    rc, _, err = run("trainer", *COMMON, "--out", o, "--synth", "--prompts", "object", check=False)
    assert rc == 2 and "class masks" in err, err
    rc, _, err = run("trainer", *COMMON, "--out", o, "--synth", "--curve-secret-key", "x", check=False)
    assert rc == 2 and "--stream" in err, err
    rc, _, err = run("synthesizer", "--exemplars", EX, "--connect", ep("x"), "--count", "3", check=False)
    assert rc == 2 and "--connect" in err, err
    rc, _, err = run("trainer", *COMMON, "--out", o, "--stream", "bogus://nowhere", "--iters", "2", check=False)
    assert rc == 1 and "bogus://nowhere" in err, err
    assert not os.path.exists(os.path.join(o, "checkpoint.safetensors"))
    rc, _, err = subprocess.run(["run/local", "train", "--synthesizers", "x", "--", "t"], capture_output=True,
                                text=True).returncode, None, None
    assert rc == 2


finish()
