#!/usr/bin/env python3
"""Make tests/data/foreign/torch_cnn.qdq.onnx and keras_resnet.qdq.onnx: the committed float
PyTorch CNN (torch_cnn.onnx) and Keras residual net (keras_resnet_f32.onnx: depthwise, stride
2, ReLU6, a residual add, global average pooling, a final softmax) quantized to int8 by
onnxruntime's `quantize_static` in the QDQ format (QuantizeLinear / DequantizeLinear pairs
around float ops), as people ship int8 ONNX models, with what onnxruntime computes for them.
The Keras model first goes through onnxruntime's `quant_pre_process`, which folds its batch
norms (Mul/Add) into the convolutions. For the int8 ONNX importer: trainer/tests/qdq_import.rs
imports them and compares the runtime with these outputs.
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
  keras_resnet.qdq.*              the same for keras_resnet_f32.onnx (input "image" float32
                                  [1, 28, 28, 1], NHWC; output "probs", the softmax), outputs for
                                  keras_resnet_f32.inputs.f32, and keras_resnet.qdq.ort.logits.f32:
                                  onnxruntime's dequantized int8 logits before the softmax
  *.qop.*                         the same two models in QuantFormat.QOperator (QLinearConv,
                                  com.microsoft QGemm, QLinearAdd, ...), run by onnxruntime's
                                  integer kernels (no logits file)
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
from onnxruntime.quantization.shape_inference import quant_pre_process

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


def as_input(images, layout="nchw"):
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] (nchw) or [N, 28, 28, 1] (nhwc),
    float32(pixel) / float32(255)."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x[:, None, :, :] if layout == "nchw" else x[:, :, :, None]


class Reader(CalibrationDataReader):
    def __init__(self, images, name="image", layout="nchw"):
        self.batches = iter(
            [{name: as_input(images[i : i + 1], layout)} for i in range(len(images))]
        )

    def get_next(self):
        return next(self.batches, None)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def outputs_of(sess, images, name, layout):
    return np.concatenate(
        [
            sess.run(None, {name: as_input(images[i : i + 1], layout)})[0]
            for i in range(len(images))
        ]
    )


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# (source float model, prefix of what is written, its input layout, whether onnxruntime's
# quant_pre_process runs first: it folds Keras' batch-norm Mul/Add into the convolutions, which
# an int8 model needs; inputs file, source of the inputs file).
MODELS = [
    ("torch_cnn.onnx", "torch_cnn", "nchw", False, "torch_cnn.inputs.f32"),
    ("keras_resnet_f32.onnx", "keras_resnet", "nhwc", True, "keras_resnet_f32.inputs.f32"),
]


SESSION = {
    "qdq": "onnxruntime CPUExecutionProvider, default graph optimizations, one thread; its "
    "optimized graph keeps DequantizeLinear -> Conv -> QuantizeLinear (no QLinearConv fusion for "
    "this model), so the convolutions run in float on dequantized values",
    "qop": "onnxruntime CPUExecutionProvider, default graph optimizations, one thread; the "
    "QOperator ops (QLinearConv, com.microsoft QGemm, QLinearAdd, QLinearGlobalAveragePool, "
    "QLinearSoftmax) run onnxruntime's integer kernels",
}


def make(
    args, train, test, labels, chosen, kind, source_name, prefix, layout, pre_process, inputs_name
):
    source = os.path.join(args.out, source_name)
    input_name = onnx.load(source).graph.input[0].name
    target = os.path.join(args.out, f"{prefix}.{kind}.onnx")
    tmp = target + ".tmp"
    to_quantize = source
    if pre_process:
        to_quantize = os.path.join(args.out, f"{prefix}.pre.onnx.tmp")
        quant_pre_process(source, to_quantize, skip_symbolic_shape=True)
    quantize_static(
        to_quantize,
        tmp,
        Reader(train[chosen], input_name, layout),
        quant_format=QuantFormat.QDQ if kind == "qdq" else QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    if pre_process:
        os.remove(to_quantize)
    onnx.checker.check_model(onnx.load(tmp))
    os.replace(tmp, target)

    inputs = np.fromfile(os.path.join(args.out, inputs_name), dtype="<f4")
    shape = (-1, 1, 28, 28) if layout == "nchw" else (-1, 28, 28, 1)
    inputs = inputs.reshape(shape)
    assert np.array_equal(inputs, as_input(test[: len(inputs)], layout)), f"{inputs_name} changed"
    q = session(target)
    saved = np.concatenate(
        [q.run(None, {input_name: inputs[i : i + 1]})[0] for i in range(len(inputs))]
    )
    outputs = os.path.join(args.out, f"{prefix}.{kind}.ort.outputs.f32")
    saved.astype("<f4").tofile(outputs)
    written = [target, outputs]
    # A model ending in Softmax: also the (dequantized int8) logits before it, which an importer
    # that drops the final softmax outputs.
    last = onnx.load(target).graph.node
    softmax = [n for n in last if n.op_type == "Softmax"]
    if softmax and softmax[-1].output[0] in [i for n in last[-2:] for i in n.input]:
        cut = onnx.load(target)
        cut.graph.output[0].name = softmax[-1].input[0]
        qc = session(cut.SerializeToString())
        logits_saved = np.concatenate(
            [qc.run(None, {input_name: inputs[i : i + 1]})[0] for i in range(len(inputs))]
        )
        logits_file = os.path.join(args.out, f"{prefix}.{kind}.ort.logits.f32")
        logits_saved.astype("<f4").tofile(logits_file)
        written.append(logits_file)

    int8_classes = outputs_of(q, test, input_name, layout).argmax(axis=1).astype(np.uint8)
    float_classes = outputs_of(session(source), test, input_name, layout).argmax(axis=1)
    classes = os.path.join(args.out, f"{prefix}.{kind}.ort.classes.u8")
    int8_classes.tofile(classes)

    model = onnx.load(target)
    results = {
        "command": " ".join([sys.executable] + sys.argv),
        "source": source_name,
        "quantizer": f"onnxruntime.quantization.quantize_static(quant_format="
        f"{'QDQ' if kind == 'qdq' else 'QOperator'}, per_channel=True, "
        "activation_type=QInt8, weight_type=QInt8, calibrate_method=MinMax)",
        "calibration": f"{CALIBRATION} training images, numpy.random.default_rng({SEED}).choice(60000, "
        f"{CALIBRATION}, replace=False), sorted, as float32 pixel / 255, one per batch",
        "session": SESSION[kind],
        "class_rule": "first index of the largest output (numpy argmax)",
        "ops": [n.op_type for n in model.graph.node],
        "accuracy": {
            f"float ({source_name}, onnxruntime)": float((float_classes == labels).mean()),
            f"int8 ({prefix}.{kind}.onnx, onnxruntime)": float((int8_classes == labels).mean()),
        },
        "files": {
            os.path.basename(p): {"bytes": os.path.getsize(p), "sha256": sha256(p)}
            for p in written + [classes]
        },
        "versions": {
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },
    }
    if pre_process:
        results["pre_process"] = (
            "onnxruntime.quantization.shape_inference.quant_pre_process(skip_symbolic_shape=True)"
        )
    with open(os.path.join(args.out, f"{prefix}.{kind}.results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    print(prefix, json.dumps(results["accuracy"], indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--out", default="tests/data/foreign")
    args = ap.parse_args()

    train = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    test = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz"))
    chosen = np.sort(np.random.default_rng(SEED).choice(len(train), CALIBRATION, replace=False))
    for kind in ["qdq", "qop"]:
        for m in MODELS:
            make(args, train, test, labels, chosen, kind, *m)


if __name__ == "__main__":
    main()
