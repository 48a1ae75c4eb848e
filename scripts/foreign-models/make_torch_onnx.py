#!/usr/bin/env python3
"""Make tests/data/foreign/torch_cnn.onnx: a small PyTorch MNIST CNN exported as float ONNX by
torch.onnx.export, with PyTorch's float outputs for the first 16 test images. For the future
ONNX importer (no test reads it yet). Run ONCE, by hand, and commit the outputs; never
downloads anything (MNIST is read from the IDX files of --data).

    python3 -m venv /tmp/foreign-torch-venv
    /tmp/foreign-torch-venv/bin/pip install -r scripts/foreign-models/requirements-torch.txt
    /tmp/foreign-torch-venv/bin/python scripts/foreign-models/make_torch_onnx.py   # repo root

Writes:
  torch_cnn.onnx                 float32 model, input "image" [1, 1, 28, 28] (NCHW), output
                                 "logits" [1, 10] (no softmax)
  torch_cnn.inputs.f32           the first 16 test images as the model's input: float32(pixel) /
                                 float32(255), little-endian, 16 x 1 x 28 x 28
  torch_cnn.torch.outputs.f32    PyTorch's logits for them (eval mode), little-endian, 16 x 10
and adds "onnx_models" -> "torch_cnn" to results.json (float test accuracy, versions, seed).
"""

import argparse
import gzip
import hashlib
import json
import os
import platform
import struct
import sys
import time

SEED = 20240611
EPOCHS = 2
BATCH = 128
SAVED = 16

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8)
    raise ValueError(f"{path}: bad IDX magic {magic}")


class Cnn(nn.Module):
    """conv 3x3x8 (pad 1) + ReLU, max pool 2, conv 3x3x16 + ReLU, max pool 2, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 6 * 6, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))  # 8x14x14
        x = self.pool(torch.relu(self.conv2(x)))  # 16x6x6
        return self.fc(torch.flatten(x, 1))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "mnist"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "foreign"))
    args = ap.parse_args()

    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    missing = [n for n in names if not os.path.exists(os.path.join(args.data, n))]
    if missing:
        sys.exit(f"{args.data}: missing {missing} (this script never downloads MNIST)")
    train_x, train_y, test_x, test_y = (read_idx(os.path.join(args.data, n)) for n in names)

    def to_float(p):
        return torch.from_numpy((p.astype(np.float32) / np.float32(255.0))[:, None, :, :])

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    xs, ys = to_float(train_x), torch.from_numpy(train_y.astype(np.int64))
    tx, ty = to_float(test_x), torch.from_numpy(test_y.astype(np.int64))
    model = Cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xs), generator=gen)
        total = 0.0
        for i in range(0, len(xs), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(xs):.4f}")
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(tx[i:i + 1000]) for i in range(0, len(tx), 1000)])
        acc = float((logits.argmax(1) == ty).float().mean())
        saved_in = tx[:SAVED].contiguous()
        saved_out = torch.cat([model(saved_in[i:i + 1]) for i in range(SAVED)])
    print(f"torch_cnn: PyTorch float test accuracy {acc * 100:.2f} %")

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "torch_cnn.onnx")
    example = (tx[:1].contiguous(),)
    try:
        torch.onnx.export(model, example, onnx_path + ".tmp", input_names=["image"],
                          output_names=["logits"], dynamo=True, external_data=False)
        exporter = "torch.onnx.export(dynamo=True, external_data=False)"
    except TypeError:
        torch.onnx.export(model, example, onnx_path + ".tmp", input_names=["image"],
                          output_names=["logits"])
        exporter = "torch.onnx.export"
    os.replace(onnx_path + ".tmp", onnx_path)
    files = {
        "torch_cnn.inputs.f32": saved_in.numpy().astype("<f4").tobytes(),
        "torch_cnn.torch.outputs.f32": saved_out.numpy().astype("<f4").tobytes(),
    }
    for fname, blob in files.items():
        with open(os.path.join(args.out, fname + ".tmp"), "wb") as f:
            f.write(blob)
        os.replace(os.path.join(args.out, fname + ".tmp"), os.path.join(args.out, fname))
    with open(onnx_path, "rb") as f:
        files["torch_cnn.onnx"] = f.read()

    import onnx
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    ops = [n.op_type for n in m.graph.node]
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    print(f"torch_cnn.onnx: {len(files['torch_cnn.onnx'])} bytes, opset {opset}, ops {ops}")

    results_path = os.path.join(args.out, "results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)
    results.setdefault("onnx_models", {})["torch_cnn"] = {
        "command": "/tmp/foreign-torch-venv/bin/python scripts/foreign-models/make_torch_onnx.py",
        "requirements": "scripts/foreign-models/requirements-torch.txt",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnx": onnx.__version__, "numpy": np.__version__},
        "seed": SEED,
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "optimizer": "Adam 1e-3",
        "train_seconds": round(train_s, 1),
        "torch_float_test_accuracy": acc,
        "exporter": exporter,
        "opset": opset,
        "onnx_ops": ops,
        "input": {"name": "image", "shape": [1, 1, 28, 28], "layout": "NCHW",
                  "value": "float32(pixel) / float32(255)"},
        "output": {"name": "logits", "shape": [1, 10]},
        "saved_images": SAVED,
        "files": {f: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                  for f, b in files.items()},
    }
    with open(results_path + ".tmp", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(results_path + ".tmp", results_path)


if __name__ == "__main__":
    main()
