#!/usr/bin/env python3
"""Make tests/data/foreign/torch_cnn.qdq.onnx: the committed float PyTorch CNN (torch_cnn.onnx)
quantized to int8 by onnxruntime's `quantize_static` in the QDQ format (QuantizeLinear /
DequantizeLinear pairs around float ops), as people ship int8 ONNX models, with what
onnxruntime computes for it. For the int8 ONNX importer: trainer/tests/qdq_import.rs imports it
and compares the runtime with these outputs.
Run ONCE, by hand, and commit the outputs; never downloads anything (MNIST is read from the IDX
files of --data).

    python3 -m venv /tmp/qdq-venv
    /tmp/qdq-venv/bin/pip install -r scripts/foreign-models/requirements-qdq.txt
    /tmp/qdq-venv/bin/python scripts/foreign-models/make_qdq_onnx.py   # repo root

Writes (tests/data/foreign/):
  torch_cnn.qdq.onnx              int8 weights (per channel) and int8 activations (per tensor),
                                  QDQ format; input "image" float32 [1, 1, 28, 28], output
                                  "logits" float32 [1, 10] (dequantized)
  torch_cnn.qdq.ort.outputs.f32   onnxruntime's logits for torch_cnn.inputs.f32 (the first 16
                                  test images), little-endian, 16 x 10
  torch_cnn.qdq.ort.classes.u8    onnxruntime's class (first index of the largest logit) for
                                  each of the 10,000 test images
  torch_cnn.qdq.results.json      accuracies (float model and int8), calibration, versions, hashes
"""

import argparse
import gzip
import hashlib
import json
import os
import platform
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

SEED = 20240611
CALIBRATION = 500


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


def as_input(images):
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28], float32(pixel) / float32(255)."""
    return (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]


class Reader(CalibrationDataReader):
    def __init__(self, images):
        self.batches = iter([{"image": as_input(images[i : i + 1])} for i in range(len(images))])

    def get_next(self):
        return next(self.batches, None)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def logits(sess, images):
    return np.concatenate(
        [sess.run(None, {"image": as_input(images[i : i + 1])})[0] for i in range(len(images))]
    )


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--out", default="tests/data/foreign")
    args = ap.parse_args()

    train = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    test = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz"))
    chosen = np.sort(np.random.default_rng(SEED).choice(len(train), CALIBRATION, replace=False))

    source = os.path.join(args.out, "torch_cnn.onnx")
    target = os.path.join(args.out, "torch_cnn.qdq.onnx")
    tmp = target + ".tmp"
    quantize_static(
        source,
        tmp,
        Reader(train[chosen]),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    onnx.checker.check_model(onnx.load(tmp))
    os.replace(tmp, target)

    inputs = np.fromfile(os.path.join(args.out, "torch_cnn.inputs.f32"), dtype="<f4")
    inputs = inputs.reshape(-1, 1, 28, 28)
    assert np.array_equal(inputs, as_input(test[: len(inputs)])), "torch_cnn.inputs.f32 changed"
    q = session(target)
    saved = np.concatenate([q.run(None, {"image": inputs[i : i + 1]})[0] for i in range(len(inputs))])
    outputs = os.path.join(args.out, "torch_cnn.qdq.ort.outputs.f32")
    saved.astype("<f4").tofile(outputs)

    int8_classes = logits(q, test).argmax(axis=1).astype(np.uint8)
    float_classes = logits(session(source), test).argmax(axis=1)
    classes = os.path.join(args.out, "torch_cnn.qdq.ort.classes.u8")
    int8_classes.tofile(classes)

    model = onnx.load(target)
    results = {
        "command": " ".join([sys.executable] + sys.argv),
        "source": "torch_cnn.onnx",
        "quantizer": "onnxruntime.quantization.quantize_static(quant_format=QDQ, per_channel=True, "
        "activation_type=QInt8, weight_type=QInt8, calibrate_method=MinMax)",
        "calibration": f"{CALIBRATION} training images, numpy.random.default_rng({SEED}).choice(60000, "
        f"{CALIBRATION}, replace=False), sorted, as float32 pixel / 255, one per batch",
        "session": "onnxruntime CPUExecutionProvider, default graph optimizations, one thread; its "
        "optimized graph keeps DequantizeLinear -> Conv -> QuantizeLinear (no QLinearConv fusion for "
        "this model), so the convolutions run in float on dequantized values",
        "class_rule": "first index of the largest output (numpy argmax)",
        "ops": [n.op_type for n in model.graph.node],
        "accuracy": {
            "float (torch_cnn.onnx, onnxruntime)": float((float_classes == labels).mean()),
            "int8 (torch_cnn.qdq.onnx, onnxruntime)": float((int8_classes == labels).mean()),
        },
        "files": {
            os.path.basename(p): {"bytes": os.path.getsize(p), "sha256": sha256(p)}
            for p in [target, outputs, classes]
        },
        "versions": {
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },
    }
    with open(os.path.join(args.out, "torch_cnn.qdq.results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(results["accuracy"], indent=2))


if __name__ == "__main__":
    main()
