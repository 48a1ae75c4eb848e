#!/usr/bin/env python3
"""Make tests/data/foreign/keras_{cnn,resnet}_f32.onnx: two small Keras MNIST CNNs converted to
float ONNX by tf2onnx (NHWC input, as Keras has it), with Keras's float logits for the first 16
test images and its float accuracy on the 10,000 test images. Run ONCE, by hand, and commit
the outputs; never downloads anything (MNIST is read from the IDX files of --data).

    python3 -m venv /tmp/foreign-tf-venv
    /tmp/foreign-tf-venv/bin/pip install -r scripts/foreign-models/requirements-tf2onnx.txt
    /tmp/foreign-tf-venv/bin/python scripts/foreign-models/make_keras_onnx.py   # repo root

Models (each ends in a Softmax layer, which the ONNX file keeps; the committed outputs are the
logits before it, which the importer's graph outputs):
  keras_cnn_f32     conv 3x3x8 SAME + ReLU, max pool 2, conv 3x3x16 VALID + ReLU, max pool 2,
                    flatten (NHWC order), dense 10, softmax
  keras_resnet_f32  conv 3x3x16 SAME + BN + ReLU; conv 3x3x32 stride 2 + BN + ReLU; residual
                    block (depthwise 3x3 + BN + ReLU6, conv 1x1x32 + BN, Add, ReLU); conv 3x3x32
                    stride 2 + BN + ReLU; global average pool; dense 10; softmax
Writes, for each model M (each via a temporary name): M.onnx; M.inputs.f32 (16 x 28 x 28 x 1,
float32(pixel) / float32(255), little-endian); M.keras.outputs.f32 (16 x 10 logits);
M.results.json (accuracy, versions, seed, ops, sizes and SHA-256).
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np

import gzip
import struct


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

SEED = 20240611
EPOCHS = {"keras_cnn_f32": 1, "keras_resnet_f32": 2}
BATCH = 128
SAVED = 16


def write(path, blob):
    with open(path + ".tmp", "wb") as f:
        f.write(blob)
    os.replace(path + ".tmp", path)


def build(name, keras):
    L = keras.layers
    x = inp = keras.Input((28, 28, 1), name="image")
    if name == "keras_cnn_f32":
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(16, 3, activation="relu")(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Flatten()(x)
    else:
        def cbr(x, n, stride=1):
            x = L.Conv2D(n, 3, strides=stride, padding="same")(x)
            return L.ReLU()(L.BatchNormalization(momentum=0.9)(x))
        x = cbr(x, 16)
        x = cbr(x, 32, 2)
        y = L.DepthwiseConv2D(3, padding="same")(x)
        y = L.ReLU(6.0)(L.BatchNormalization(momentum=0.9)(y))
        y = L.BatchNormalization(momentum=0.9)(L.Conv2D(32, 1)(y))
        x = L.ReLU()(L.Add()([x, y]))
        x = cbr(x, 32, 2)
        x = L.GlobalAveragePooling2D()(x)
    logits = L.Dense(10, name="logits")(x)
    probs = L.Softmax(name="probs")(logits)
    return keras.Model(inp, probs), keras.Model(inp, logits)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "mnist"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "foreign"))
    ap.add_argument("--models", default="keras_cnn_f32,keras_resnet_f32")
    args = ap.parse_args()
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    missing = [n for n in names if not os.path.exists(os.path.join(args.data, n))]
    if missing:
        sys.exit(f"{args.data}: missing {missing} (this script never downloads MNIST)")
    train_x, train_y, test_x, test_y = (read_idx(os.path.join(args.data, n)) for n in names)
    to_float = lambda p: (p.astype(np.float32) / np.float32(255.0))[..., None]  # noqa: E731
    xs, tx = to_float(train_x), to_float(test_x)

    import tensorflow as tf
    import keras
    import onnx
    import tf2onnx

    os.makedirs(args.out, exist_ok=True)
    ap_names = args.models.split(",")
    for name in ap_names:
        keras.utils.set_random_seed(SEED)
        tf.config.experimental.enable_op_determinism()
        model, logits_model = build(name, keras)
        model.compile(optimizer=keras.optimizers.Adam(2e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        t0 = time.time()
        model.fit(xs, train_y, batch_size=BATCH, epochs=EPOCHS[name], verbose=2)
        train_s = time.time() - t0
        logits = logits_model.predict(tx, batch_size=1000, verbose=0)
        correct = int((logits.argmax(1) == test_y).sum())
        acc = correct / len(test_y)
        saved_in = np.ascontiguousarray(tx[:SAVED])
        saved_out = np.concatenate([logits_model(saved_in[i:i + 1], training=False).numpy()
                                    for i in range(SAVED)])
        print(f"{name}: Keras float test accuracy {acc * 100:.2f} % ({correct})")

        spec = (tf.TensorSpec((1, 28, 28, 1), tf.float32, name="image"),)
        fn = tf.function(lambda x: {"probs": model(x, training=False)})
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
        path = os.path.join(args.out, name + ".onnx")
        write(path, proto.SerializeToString())
        write(os.path.join(args.out, name + ".inputs.f32"), saved_in.astype("<f4").tobytes())
        write(os.path.join(args.out, name + ".keras.outputs.f32"), saved_out.astype("<f4").tobytes())
        m = onnx.load(path)
        onnx.checker.check_model(m)
        ops = [n.op_type for n in m.graph.node]
        opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
        files = {}
        for f in (name + ".onnx", name + ".inputs.f32", name + ".keras.outputs.f32"):
            with open(os.path.join(args.out, f), "rb") as fh:
                b = fh.read()
            files[f] = {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        print(f"{name}.onnx: {files[name + '.onnx']['bytes']} bytes, opset {opset}, ops {ops}")
        results = {
            "command": "/tmp/foreign-tf-venv/bin/python scripts/foreign-models/make_keras_onnx.py",
            "requirements": "scripts/foreign-models/requirements-tf2onnx.txt",
            "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                         "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
                         "onnx": onnx.__version__, "numpy": np.__version__},
            "seed": SEED, "epochs": EPOCHS[name], "batch_norm_momentum": 0.9, "batch_size": BATCH, "optimizer": "Adam 2e-3",
            "train_seconds": round(train_s, 1),
            "keras_float_test_accuracy": acc, "keras_float_test_correct": correct,
            "exporter": "tf2onnx.convert.from_function(opset=17)",
            "opset": opset, "onnx_ops": ops,
            "input": {"name": "image", "shape": [1, 28, 28, 1], "layout": "NHWC",
                      "value": "float32(pixel) / float32(255)"},
            "output": {"onnx": "softmax probabilities", "committed": "logits before the Softmax"},
            "saved_images": SAVED, "files": files,
        }
        rpath = os.path.join(args.out, name + ".results.json")
        with open(rpath + ".tmp", "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(rpath + ".tmp", rpath)


if __name__ == "__main__":
    main()
