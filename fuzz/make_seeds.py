#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

Usage: fuzz/make_seeds.py ATTNFLOW_CLI   (the built CLI, e.g. build/attnflow)

Seeds are small valid inputs of each parser (so the fuzzer starts deep inside them) plus the
malformed inputs found by hand. The CLI provides the default configs and real checkpoints;
.npy and model files are written here byte by byte to their documented formats. Crash inputs
found later are added to the same directories by hand (named crash-<what>), never regenerated.
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(dict_text, payload, version=1):
    header = dict_text
    pre = 10 if version == 1 else 12
    while (pre + len(header) + 1) % 64:
        header += " "
    header += "\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header)) + header.encode() + payload


def npy_seeds():
    f8 = struct.pack("<6d", 1.0, -2.0, 0.5, 3.0, 1e-300, 7.0)
    put("npy", "f8_2x3", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", f8))
    put("npy", "f4_4", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", struct.pack("<4f", 1, 2, 3, 4)))
    put("npy", "v2_scalar", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", f8[:8], 2))
    put("npy", "empty_0x3", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }", b""))
    put("npy", "ensemble_2x1x3", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1, 3), }", f8))
    # malformed npy headers, huge shapes, garbage bytes
    put("npy", "neg_shape", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-2, 3), }", f8))
    put("npy", "nested_shape", npy("{'descr': '<f8', 'fortran_order': False, 'shape': ((2, 3), 3), }", f8))
    put("npy", "huge_dim", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2305843009213693952), }", f8))
    put("npy", "digits29", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (12345678901234567890123456789, 3), }", f8))
    put("npy", "garbage_header", b"\x93NUMPY\x01\x00\x10\x00" + bytes(range(250, 256)) + b"\x00\x01{'shape': (" + f8)
    put("npy", "fortran", npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", f8))
    put("npy", "complex", npy("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }", f8))


def fnv1a_64(data):
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % (1 << 64)
    return h


def model_body():
    d = 2
    b = b"ATFMODEL" + struct.pack("<III", 1, d, 2)
    # attention: softmax, beta 1, step 0.5, sinkhorn (0, 1e-9, 100), heads 1, dk 1, dv 1
    b += struct.pack("<II", 1, 0) + struct.pack("<dd", 1.0, 0.5) + struct.pack("<idi", 0, 1e-9, 100)
    b += struct.pack("<III", 1, 1, 1)
    b += struct.pack("<%dd" % (2 * d + d + d), *([0.5] * (2 * d + d + d)))  # q, k, v (1 x d), w (d x 1)
    # mlp: hidden 1: w1 (1 x d), b1 (1), w2 (d x 1), b2 (d)
    b += struct.pack("<II", 2, 1) + struct.pack("<%dd" % (d + 1 + d + d), *([0.25] * (d + 1 + d + d)))
    return b


def model_seeds():
    body = model_body()
    put("model", "valid", b"\x00" + body + struct.pack("<Q", fnv1a_64(body)))
    put("model", "body_checksum_added", b"\x01" + body)
    big = b"ATFMODEL" + struct.pack("<III", 1, 2, 1) + struct.pack("<II", 1, 0) + struct.pack("<dd", 1, 1)
    big += struct.pack("<idi", 0, 1e-9, 100) + struct.pack("<III", 65536, 65536, 1)
    put("model", "huge_heads_dk", b"\x01" + big)  # heads * dk far beyond the file


def config_seeds(cli):
    for cmd in ("run", "icl", "largeprompt", "fit"):
        text = subprocess.run([cli, cmd, "--print-default-config"], check=True, capture_output=True, text=True).stdout
        put("config", "default_" + cmd, text)
    for name in sorted(os.listdir(os.path.join(ROOT, "experiments"))):
        if name.endswith(".toml"):
            with open(os.path.join(ROOT, "experiments", name), "rb") as f:
                put("config", "experiment_" + name[:-5], f.read())
    # section names holding values, absurd sizes, huge strings
    for i, text in enumerate([
            "model = 3\n", 'measure = "x"\n', "model = []\n", "train = 1\n", "task = 1\n",
            "experiment = 1\n", "[sweep]\nmodel = [1, 2]\n", "model=3\n[model]\n",
            "[measure]\nsystems = 1e11\n", "[measure]\nn = 1e13\n",
            "[integrate]\nt_end = 1e15\n[output]\nsnapshots = true\n", "[observe]\nevery = 1e-12\n",
            "[train]\nprompt = 1000000000\n", "[train]\nbatch = 1e13\n", "[model]\nheads = 1e9\n",
            "[model]\nbeta = 1e308\n", "[measure]\nn = 1e300\n", "[sweep]\nmodel.beta = [1, 4]\nmeasure.n = [8]\n",
            "[a.b.c]\nd = 1\n", 'model.kind = "' + "x" * 300 + '"\n']):
        put("config", "issue14_%02d" % i, text)


def checkpoint_seeds(cli):
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = os.path.join(tmp, "run.toml")
        with open(run_cfg, "w") as f:
            f.write("[measure]\nn = 4\nsystems = 2\n[integrate]\nt_end = 2.0\n[observe]\nevery = 1.0\n"
                    "[output]\nsnapshots = false\ncheckpoint_every = 1\n")
        env = dict(os.environ, ATTNFLOW_STOP_AFTER_CHECKPOINTS="1")
        subprocess.run([cli, "run", run_cfg, "--out", os.path.join(tmp, "r"), "--quiet"], env=env,
                       capture_output=True)
        icl_cfg = os.path.join(tmp, "icl.toml")
        with open(icl_cfg, "w") as f:
            f.write("[data]\nd = 2\n[train]\nprompt = 4\nsteps = 4\nbatch = 2\ncheckpoint_every = 1\n"
                    "[eval]\nprompts = 0\n")
        subprocess.run([cli, "icl", icl_cfg, "--out", os.path.join(tmp, "i"), "--quiet"], env=env,
                       capture_output=True)
        # ot: 6 + 5 points on a line, a checkpoint after the first iteration.
        for name, values in (("x", [0.0, 0.1, 0.3, 0.5, 0.8, 1.0]), ("y", [0.2, 0.4, 0.5, 0.9, 1.1])):
            with open(os.path.join(tmp, name + ".npy"), "wb") as f:
                f.write(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (%d, 1), }" % len(values),
                            struct.pack("<%dd" % len(values), *values)))
        subprocess.run([cli, "ot", "--x", os.path.join(tmp, "x.npy"), "--y", os.path.join(tmp, "y.npy"),
                        "--eps", "0.1", "--checkpoint-every", "0", "--out", os.path.join(tmp, "o"), "--quiet"],
                       env=env, capture_output=True)
        for kind, sub in (("run", "r"), ("icl", "i"), ("ot", "o")):
            path = os.path.join(tmp, sub, "checkpoint.bin")
            if not os.path.exists(path):
                sys.exit("make_seeds: no checkpoint from `attnflow %s` at %s" % (kind, path))
            with open(path, "rb") as f:
                put("checkpoint", kind, f.read())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cli = os.path.abspath(sys.argv[1])
    npy_seeds()
    model_seeds()
    config_seeds(cli)
    checkpoint_seeds(cli)


if __name__ == "__main__":
    main()
