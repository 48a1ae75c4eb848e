#!/usr/bin/env python3
"""Make the foreign test models of tests/data/foreign/: two Keras MNIST CNNs, quantized to int8
by TensorFlow Lite's converter, and what TFLite's reference interpreter says about them.

Run ONCE, by hand, and commit the outputs; the tests only read the committed files (never run
this from a test, never download anything: MNIST is read from the IDX files of --data).

    python3 -m venv /tmp/foreign-venv
    /tmp/foreign-venv/bin/pip install -r scripts/foreign-models/requirements.txt
    /tmp/foreign-venv/bin/python scripts/foreign-models/make.py            # from the repo root

Writes, for each model M in (keras_cnn, keras_resnet):
  M.int8.tflite               full-integer model (int8 input and output, TFLITE_BUILTINS_INT8)
  M.inputs.i8                 the first 200 MNIST test images, quantized as described below
                              (200 x 784 int8, image-major, NHWC = row-major pixels)
  M.tflite-ref.outputs.i8     the int8 output tensor of those 200 images under tf.lite.Interpreter
                              with OpResolverType.BUILTIN_REF (200 x 10 int8)
  M.tflite-ref.classes.u8     the predicted class (first index of the largest int8 output) of
                              all 10,000 test images under the same interpreter (10,000 bytes)
and results.json (accuracies, quantization, versions, seeds, command).

Input quantization (the test must do exactly this): with (scale, zero_point) the interpreter's
input tensor quantization and `scale` taken as the float32 it is stored as,
    x = float32(pixel) / float32(255)                  (float32 division, pixel an integer 0..255)
    q = clip(round_half_even(x / float32(scale)) + zero_point, -128, 127)
all in IEEE float32 (numpy float32 arithmetic; np.round rounds half to even). In Rust:
    ((p as f32 / 255.0) / scale).round_ties_even() as i32 + zp, clamped to -128..=127.
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
EPOCHS = {"keras_cnn": 4, "keras_resnet": 5}
BATCH = 128
REPRESENTATIVE = 500  # training images for the converter's calibration (seeded sample)
SAVED = 200  # test images whose inputs and int8 outputs are written

os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        arr = np.frombuffer(data, dtype=np.uint8, offset=16)
        assert arr.size == count * rows * cols, path
        return arr.reshape(count, rows, cols)
    if magic == 2049:
        arr = np.frombuffer(data, dtype=np.uint8, offset=8)
        assert arr.size == count, path
        return arr
    raise ValueError(f"{path}: bad IDX magic {magic}")


def load_mnist(folder):
    names = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [n for n in names.values() if not os.path.exists(os.path.join(folder, n))]
    if missing:
        sys.exit(f"{folder}: missing {missing} (this script never downloads MNIST)")
    return {k: read_idx(os.path.join(folder, v)) for k, v in names.items()}


def to_float(pixels):
    """uint8 images (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]: float32(p) / float32(255)."""
    return (pixels.astype(np.float32) / np.float32(255.0))[..., None]


def quantize_input(pixels, scale, zero_point):
    """The documented input quantization (module docstring), in numpy float32."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    q = np.round(x / np.float32(scale)) + np.float32(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def build_cnn(batch_size=None):
    """(a) plain CNN: conv 3x3 + ReLU, max pool, conv 3x3 + ReLU, max pool, flatten, dense,
    softmax."""
    inp = keras.Input(shape=(28, 28, 1), batch_size=batch_size, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 14x14x16
    x = layers.Conv2D(32, 3, padding="valid", activation="relu", name="conv2")(x)  # 12x12x32
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 6x6x32
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(10, name="logits")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="keras_cnn")


def build_resnet(batch_size=None):
    """(b) small residual CNN: batch norm, a stride-2 conv, a depthwise separable block with a
    residual Add, average pooling over the whole map (AveragePooling2D, not
    GlobalAveragePooling2D, which converts to MEAN), dense, softmax."""
    inp = keras.Input(shape=(28, 28, 1), batch_size=batch_size, name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)  # 28x28x16
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="down")(x)
    x = layers.BatchNormalization(name="down_bn")(x)
    x = layers.ReLU(name="down_relu")(x)  # 14x14x32
    shortcut = x
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.ReLU(name="dw_relu")(y)
    y = layers.Conv2D(32, 1, use_bias=False, name="pw")(y)
    y = layers.BatchNormalization(name="pw_bn")(y)
    x = layers.Add(name="residual")([shortcut, y])
    x = layers.ReLU(name="residual_relu")(x)  # 14x14x32
    x = layers.Conv2D(64, 3, strides=2, padding="same", use_bias=False, name="down2")(x)
    x = layers.BatchNormalization(name="down2_bn")(x)
    x = layers.ReLU(name="down2_relu")(x)  # 7x7x64
    x = layers.AveragePooling2D(pool_size=(7, 7), name="avg")(x)  # 1x1x64
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(10, name="logits")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="keras_resnet")


def convert(model, builder, rep_images):
    """Full-integer quantization at batch 1: the trained weights in the same model built with a
    fixed input shape [1, 28, 28, 1] (the importer takes batch 1 and no unknown dimension)."""
    fixed = builder(batch_size=1)
    fixed.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for img in rep_images:
            yield [img[None, ...]]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def run_reference(tflite_bytes, test_x):
    interp = tf.lite.Interpreter(
        model_content=tflite_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
        num_threads=1,
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8, (inp, out)
    assert list(inp["shape"]) == [1, 28, 28, 1], inp["shape"]
    scale, zp = inp["quantization"]
    q = quantize_input(test_x, scale, zp)
    outputs = np.empty((len(test_x), int(np.prod(out["shape"]))), dtype=np.int8)
    for i in range(len(test_x)):
        interp.set_tensor(inp["index"], q[i].reshape(1, 28, 28, 1))
        interp.invoke()
        outputs[i] = interp.get_tensor(out["index"]).reshape(-1)
    ops = [d["op_name"] for d in interp._get_ops_details()]
    return q, outputs, (float(scale), int(zp)), out["quantization"], ops


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "mnist"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "foreign"))
    ap.add_argument("--only", choices=sorted(EPOCHS), action="append")
    args = ap.parse_args()

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)

    data = load_mnist(args.data)
    train_x, train_y = to_float(data["train_x"]), data["train_y"].astype(np.int64)
    test_x, test_y = to_float(data["test_x"]), data["test_y"].astype(np.int64)
    rng = np.random.default_rng(SEED)
    rep_idx = np.sort(rng.choice(len(train_x), REPRESENTATIVE, replace=False))
    os.makedirs(args.out, exist_ok=True)

    results_path = os.path.join(args.out, "results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)
    results["generator"] = {
        "script": "scripts/foreign-models/make.py",
        "command": "/tmp/foreign-venv/bin/python scripts/foreign-models/make.py"
        + "".join(f" --only {m}" for m in (args.only or [])),
        "requirements": "scripts/foreign-models/requirements.txt",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "platform": platform.platform(),
        "seed": SEED,
        "batch_size": BATCH,
        "representative_images": f"{REPRESENTATIVE} training images, rng = "
        f"numpy.random.default_rng({SEED}).choice(60000, {REPRESENTATIVE}, replace=False), sorted",
        "input_quantization": "q = clip(round_half_even(float32(pixel) / float32(255) / "
        "float32(scale)) + zero_point, -128, 127), all float32",
        "reference_interpreter": "tf.lite.Interpreter, OpResolverType.BUILTIN_REF, num_threads=1",
        "class_rule": "first index of the largest int8 output value (numpy argmax)",
        "mnist": os.path.relpath(os.path.abspath(args.data), root),
    }
    results.setdefault("models", {})

    builders = {"keras_cnn": build_cnn, "keras_resnet": build_resnet}
    for name in args.only or sorted(builders):
        keras.utils.set_random_seed(SEED)
        model = builders[name]()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.summary()
        t0 = time.time()
        hist = model.fit(
            train_x, train_y, batch_size=BATCH, epochs=EPOCHS[name], shuffle=True, verbose=2
        )
        train_s = time.time() - t0
        probs = model.predict(test_x, batch_size=500, verbose=0)
        float_acc = float(np.mean(np.argmax(probs, axis=1) == test_y))
        print(f"{name}: Keras float test accuracy {float_acc * 100:.2f} %")

        tfl = convert(model, builders[name], train_x[rep_idx])
        t0 = time.time()
        q, outputs, in_q, out_q, ops = run_reference(tfl, data["test_x"])
        ref_s = time.time() - t0
        classes = np.argmax(outputs, axis=1).astype(np.uint8)
        int8_acc = float(np.mean(classes == test_y))
        correct = int(np.sum(classes == test_y))
        print(f"{name}: TFLite int8 (BUILTIN_REF) test accuracy {int8_acc * 100:.2f} % "
              f"({correct}/10000), {len(tfl)} bytes, ops {ops}")

        files = {
            f"{name}.int8.tflite": tfl,
            f"{name}.inputs.i8": q[:SAVED].tobytes(),
            f"{name}.tflite-ref.outputs.i8": outputs[:SAVED].tobytes(),
            f"{name}.tflite-ref.classes.u8": classes.tobytes(),
        }
        for fname, blob in files.items():
            tmp = os.path.join(args.out, fname + ".tmp")
            with open(tmp, "wb") as f:
                f.write(blob)
            os.replace(tmp, os.path.join(args.out, fname))

        params = int(sum(np.prod(w.shape) for w in model.weights))
        results["models"][name] = {
            "epochs": EPOCHS[name],
            "train_seconds": round(train_s, 1),
            "train_accuracy_last_epoch": round(float(hist.history["accuracy"][-1]), 6),
            "keras_float_test_accuracy": float_acc,
            "tflite_int8_test_accuracy": int8_acc,
            "tflite_int8_test_correct": correct,
            "tflite_reference_seconds": round(ref_s, 1),
            "test_images": int(len(test_y)),
            "float_params": params,
            "tflite_ops": ops,
            "input": {"shape": [1, 28, 28, 1], "scale": in_q[0], "zero_point": in_q[1]},
            "output": {"classes": int(outputs.shape[1]), "scale": float(out_q[0]),
                       "zero_point": int(out_q[1])},
            "saved_images": SAVED,
            "files": {f: {"bytes": len(b), "sha256": sha256(b)} for f, b in files.items()},
        }
        tmp = results_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, results_path)


if __name__ == "__main__":
    main()
