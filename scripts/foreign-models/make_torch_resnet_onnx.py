#!/usr/bin/env python3
"""Make tests/data/foreign/torch_resnet.onnx: a small PyTorch MNIST CNN with batch norm, a
stride-2 conv, a depthwise conv, ReLU6, a residual add and global average pooling, exported as
float ONNX by torch.onnx.export, with PyTorch's float outputs for the first 16 test images and
its float accuracy on the 10,000 test images. Run ONCE, by hand, and commit the outputs; never
downloads anything (MNIST is read from the IDX files of --data). Same virtualenv as
make_torch_onnx.py:

    python3 -m venv /tmp/foreign-torch-venv
    /tmp/foreign-torch-venv/bin/pip install -r scripts/foreign-models/requirements-torch.txt
    /tmp/foreign-torch-venv/bin/python scripts/foreign-models/make_torch_resnet_onnx.py   # repo root

Writes (into --out, each via a temporary name):
  torch_resnet.onnx               float32 model, input "image" [1, 1, 28, 28] (NCHW), output
                                  "logits" [1, 10] (no softmax)
  torch_resnet.inputs.f32         the first 16 test images: float32(pixel) / float32(255),
                                  little-endian, 16 x 1 x 28 x 28
  torch_resnet.torch.outputs.f32  PyTorch's logits for them (eval mode), little-endian, 16 x 10
  torch_resnet.results.json       accuracy, versions, seed, ops, file sizes and SHA-256
(results.json, made by the other scripts, is left alone.)
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from torch import nn

from make_torch_onnx import read_idx

SEED = 20240611
EPOCHS = 1
BATCH = 128
SAVED = 16
NAME = "torch_resnet"


class ResNet(nn.Module):
    """conv 3x3x16 + BN + ReLU; conv 3x3x32 stride 2 + BN + ReLU; residual block (depthwise
    3x3 + BN + ReLU6, pointwise 1x1x32 + BN, + the block's input, ReLU); conv 3x3x32 stride 2
    + BN + ReLU; global average pool; flatten; dropout; linear 10."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32))
        self.c3 = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.c2(self.c1(x))              # 32 x 14 x 14
        x = torch.relu(self.pw(self.dw(x)) + x)
        x = self.c3(x)                       # 32 x 7 x 7
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


def write(path, blob):
    with open(path + ".tmp", "wb") as f:
        f.write(blob)
    os.replace(path + ".tmp", path)


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
    model = ResNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
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
        correct = int((logits.argmax(1) == ty).sum())
        saved_in = tx[:SAVED].contiguous()
        saved_out = torch.cat([model(saved_in[i:i + 1]) for i in range(SAVED)])
    print(f"{NAME}: PyTorch float test accuracy {acc * 100:.2f} % ({correct})")

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, NAME + ".onnx")
    torch.onnx.export(model, (tx[:1].contiguous(),), onnx_path + ".tmp", input_names=["image"],
                      output_names=["logits"], dynamo=True, external_data=False,
                      optimize=False)
    os.replace(onnx_path + ".tmp", onnx_path)
    write(os.path.join(args.out, NAME + ".inputs.f32"), saved_in.numpy().astype("<f4").tobytes())
    write(os.path.join(args.out, NAME + ".torch.outputs.f32"),
          saved_out.numpy().astype("<f4").tobytes())

    import onnx
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    ops = [n.op_type for n in m.graph.node]
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    files = {}
    for f in (NAME + ".onnx", NAME + ".inputs.f32", NAME + ".torch.outputs.f32"):
        with open(os.path.join(args.out, f), "rb") as fh:
            b = fh.read()
        files[f] = {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
    print(f"{NAME}.onnx: {files[NAME + '.onnx']['bytes']} bytes, opset {opset}, ops {ops}")
    results = {
        "command": f"/tmp/foreign-torch-venv/bin/python scripts/foreign-models/make_{NAME}_onnx.py",
        "requirements": "scripts/foreign-models/requirements-torch.txt",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnx": onnx.__version__, "numpy": np.__version__},
        "seed": SEED, "epochs": EPOCHS, "batch_size": BATCH, "optimizer": "Adam 2e-3",
        "train_seconds": round(train_s, 1),
        "torch_float_test_accuracy": acc, "torch_float_test_correct": correct,
        "exporter": "torch.onnx.export(dynamo=True, external_data=False, optimize=False)",
        "opset": opset, "onnx_ops": ops,
        "input": {"name": "image", "shape": [1, 1, 28, 28], "layout": "NCHW",
                  "value": "float32(pixel) / float32(255)"},
        "output": {"name": "logits", "shape": [1, 10]},
        "saved_images": SAVED, "files": files,
    }
    path = os.path.join(args.out, NAME + ".results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
