//! The four MLPerf Tiny reference models, read by this crate, against `manifest.json` beside
//! them: every operator (name, version, inputs, outputs, options) and every tensor (name,
//! shape, type, constness, quantization) as TensorFlow's own tooling listed them when the
//! golden data was made — an independent reading of the same files.

use std::path::PathBuf;

use serde_json::Value;
use tinyconv_tflite::{Activation, BuiltinOp, Error, Model, Options, Padding, TensorType};

const MODELS: [&str; 4] = ["ic", "kws", "ad", "vww"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/mlperf-tiny")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.int8.tflite"))).expect("model file")
}

fn padding(p: Padding) -> &'static str {
    match p {
        Padding::Same => "SAME",
        Padding::Valid => "VALID",
    }
}

fn activation(a: Activation) -> &'static str {
    match a {
        Activation::None => "NONE",
        Activation::Relu => "RELU",
        Activation::ReluN1To1 => "RELU_N1_TO_1",
        Activation::Relu6 => "RELU6",
        Activation::Tanh => "TANH",
        Activation::SignBit => "SIGN_BIT",
        Activation::Other(_) => "?",
    }
}

/// The options as the manifest spells them (schema field names).
fn options_json(o: &Options) -> Value {
    use serde_json::json;
    match o {
        Options::None => json!({}),
        Options::Conv2d {
            padding: p,
            stride_w,
            stride_h,
            activation: a,
            dilation_w,
            dilation_h,
        } => json!({
            "padding": padding(*p), "stride_w": stride_w, "stride_h": stride_h,
            "fused_activation_function": activation(*a),
            "dilation_w_factor": dilation_w, "dilation_h_factor": dilation_h,
        }),
        Options::DepthwiseConv2d {
            padding: p,
            stride_w,
            stride_h,
            depth_multiplier,
            activation: a,
            dilation_w,
            dilation_h,
        } => json!({
            "padding": padding(*p), "stride_w": stride_w, "stride_h": stride_h,
            "depth_multiplier": depth_multiplier, "fused_activation_function": activation(*a),
            "dilation_w_factor": dilation_w, "dilation_h_factor": dilation_h,
        }),
        Options::Pool2d {
            padding: p,
            stride_w,
            stride_h,
            filter_w,
            filter_h,
            activation: a,
        } => json!({
            "padding": padding(*p), "stride_w": stride_w, "stride_h": stride_h,
            "filter_width": filter_w, "filter_height": filter_h,
            "fused_activation_function": activation(*a),
        }),
        Options::FullyConnected {
            activation: a,
            weights_format,
            keep_num_dims,
            asymmetric_quantize_inputs,
        } => json!({
            "fused_activation_function": activation(*a),
            "weights_format": if *weights_format == 0 { "DEFAULT" } else { "SHUFFLED4x16INT8" },
            "keep_num_dims": keep_num_dims, "asymmetric_quantize_inputs": asymmetric_quantize_inputs,
        }),
        Options::Softmax { beta } => json!({ "beta": beta }),
        Options::Add {
            activation: a,
            pot_scale_int16,
        } => json!({
            "fused_activation_function": activation(*a), "pot_scale_int16": pot_scale_int16,
        }),
        Options::Reshape { new_shape } => json!({ "new_shape": new_shape }),
        Options::Other(tag) => json!({ "tag": tag }),
    }
}

/// Every field of `ours` equals the manifest's; the manifest may list more (e.g.
/// `quantized_bias_type` at its schema default), which are reported for the test to check.
fn assert_subset(what: &str, ours: &Value, theirs: &Value) {
    for (k, v) in ours.as_object().expect("object") {
        let t = &theirs[k];
        let equal = match (v.as_f64(), t.as_f64()) {
            (Some(a), Some(b)) => (a as f32) == (b as f32),
            _ => v == t,
        };
        assert!(equal, "{what}: {k} is {v}, the manifest says {t}");
    }
}

#[test]
fn every_operator_and_tensor_matches_the_manifest() {
    let manifest = manifest();
    let mut checked = (0, 0, 0);
    for name in MODELS {
        let m = &manifest["models"][name];
        let model = Model::parse(&model_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.version, 3);
        let g = &model.graph;
        let ops = m["ops"].as_array().unwrap();
        assert_eq!(g.operators.len(), ops.len(), "{name}: operator count");
        for (op, expected) in g.operators.iter().zip(ops) {
            let what = format!("{name} op {}", expected["index"]);
            assert_eq!(op.code.name(), expected["op"].as_str().unwrap(), "{what}");
            assert_eq!(
                op.version as i64,
                expected["version"].as_i64().unwrap(),
                "{what}"
            );
            let inputs: Vec<i64> = op
                .inputs
                .iter()
                .map(|i| i.map_or(-1, |v| v as i64))
                .collect();
            assert_eq!(
                serde_json::json!(inputs),
                expected["inputs"],
                "{what} inputs"
            );
            assert_eq!(
                serde_json::json!(op.outputs),
                expected["outputs"],
                "{what} outputs"
            );
            let ours = options_json(&op.options);
            assert_subset(&what, &ours, &expected["options"]);
            // Nothing the manifest names is left unread, except the bias-type field that
            // TensorFlow lists at its default ("FLOAT32": not set) and ignores for int8.
            for (k, v) in expected["options"].as_object().unwrap() {
                assert!(
                    ours.get(k).is_some() || (k == "quantized_bias_type" && v == "FLOAT32"),
                    "{what}: option {k} = {v} not read"
                );
            }
            if let Some(shape) = expected.get("shape_input_value") {
                let t = &g.tensors[op.inputs[1].unwrap()];
                let data = t.data.as_ref().expect("reshape's shape is a constant");
                let values: Vec<i32> = data
                    .chunks(4)
                    .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                assert_eq!(serde_json::json!(values), *shape, "{what} shape input");
            }
            checked.0 += 1;
        }
        let tensors = m["tensors"].as_array().unwrap();
        assert_eq!(g.tensors.len(), tensors.len(), "{name}: tensor count");
        for (t, expected) in g.tensors.iter().zip(tensors) {
            let what = format!("{name} tensor {} ({})", expected["index"], t.name);
            assert_eq!(t.name, expected["name"].as_str().unwrap(), "{what}");
            assert_eq!(
                serde_json::json!(t.shape),
                expected["shape"],
                "{what} shape"
            );
            assert_eq!(
                t.dtype.name(),
                expected["dtype"].as_str().unwrap(),
                "{what} dtype"
            );
            assert_eq!(
                t.data.is_some(),
                expected["const"].as_bool().unwrap(),
                "{what} const"
            );
            if let Some(data) = &t.data
                && let Some(size) = t.dtype.size()
            {
                assert_eq!(data.len(), t.elements().unwrap() * size, "{what} bytes");
            }
            match (
                &t.quantization,
                expected.get("scale"),
                expected.get("per_channel"),
            ) {
                (Some(q), Some(scale), None) => {
                    assert_eq!(q.scale, [scale.as_f64().unwrap() as f32], "{what} scale");
                    assert_eq!(
                        q.zero_point,
                        [expected["zero_point"].as_i64().unwrap()],
                        "{what}"
                    );
                }
                (Some(q), None, Some(pc)) => {
                    assert_eq!(
                        q.scale.len() as u64,
                        pc["channels"].as_u64().unwrap(),
                        "{what}"
                    );
                    assert_eq!(
                        q.dimension as u64,
                        pc["quantized_dimension"].as_u64().unwrap()
                    );
                    let all_zero = q.zero_point.iter().all(|&z| z == 0);
                    assert_eq!(
                        all_zero,
                        pc["zero_points_all_zero"].as_bool().unwrap(),
                        "{what}"
                    );
                }
                (None, None, None) => {}
                (q, s, p) => {
                    panic!("{what}: quantization {q:?}, manifest scale {s:?} per-channel {p:?}")
                }
            }
            checked.1 += 1;
        }
        for (key, ours) in [("input", &g.inputs), ("output", &g.outputs)] {
            assert_eq!(ours.len(), 1, "{name}: one {key}");
            let t = &g.tensors[ours[0]];
            assert_eq!(
                ours[0] as u64,
                m[key]["index"].as_u64().unwrap(),
                "{name} {key}"
            );
            assert_eq!(t.dtype, TensorType::Int8, "{name} {key}");
        }
        checked.2 += 1;
    }
    println!(
        "{} models: {} operators, {} tensors as the manifest lists them",
        checked.2, checked.0, checked.1
    );
    assert_eq!(checked.2, 4);
}

/// The operators tinyconv's importer will map, by name, in the four models.
#[test]
fn the_mlperf_models_use_the_tinyml_op_set() {
    let mut seen = std::collections::BTreeSet::new();
    for name in MODELS {
        let model = Model::parse(&model_bytes(name)).unwrap();
        seen.extend(model.graph.operators.iter().map(|op| op.code.name()));
        assert!(
            model
                .graph
                .operators
                .iter()
                .all(|op| !matches!(op.code, BuiltinOp::Other(_)))
        );
    }
    let expected = [
        "ADD",
        "AVERAGE_POOL_2D",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "RESHAPE",
        "SOFTMAX",
    ];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
}

/// Every prefix of a real model is refused with a typed error, never a panic; and so is every
/// other file than a model.
#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = model_bytes("kws");
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for len in 0..bytes.len() {
        let e = Model::parse(&bytes[..len]).expect_err("a truncated model must not parse");
        let kind = format!("{e:?}");
        *errors
            .entry(kind.split([' ', '{', '(']).next().unwrap().to_string())
            .or_default() += 1;
    }
    println!("{} truncations: {errors:?}", bytes.len());
    assert!(errors.contains_key("OutOfBounds"));
    assert_eq!(
        Model::parse(b"not a model at all"),
        Err(Error::NotTflite { found: *b"a mo" })
    );
}

/// Random damage (bytes overwritten, bounded) never panics: the reader checks every offset.
#[test]
fn random_damage_never_panics() {
    let original = model_bytes("ad");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut parsed, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut bytes = original.clone();
        // Most of the file is weight data; aim most damage at the structure (the first and
        // last few kilobytes hold the root table, vtables and offsets).
        for _ in 0..1 + next() % 4 {
            let span = if next() % 4 == 0 { bytes.len() } else { 4096 };
            let at = next() as usize % span;
            let at = if next() % 2 == 0 {
                at
            } else {
                bytes.len() - 1 - at
            };
            bytes[at] = next() as u8;
        }
        match Model::parse(&bytes) {
            Ok(_) => parsed += 1,
            Err(_) => refused += 1,
        }
    }
    println!("3000 damaged models: {parsed} still parse, {refused} refused");
    assert!(
        refused > 0 && parsed > 0,
        "the damage reaches both outcomes"
    );
}
