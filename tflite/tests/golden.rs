//! The proof of the importer: the four MLPerf Tiny int8 reference models, imported into
//! tinyconv v2 graphs, written, parsed back and run by the runtime, give every byte of Arm
//! CMSIS-NN's outputs (as TFLite Micro calls it) on all 16 golden inputs, and every operator's
//! output tensor on inputs 0–3. The TF reference interpreter's outputs for `ad` (one rounding in
//! FULLY_CONNECTED instead of two) must differ, which shows the comparison can fail. And what
//! the importer cannot map it refuses by operator index and name.

use std::path::PathBuf;

use serde_json::Value;
use tinyconv::graph::{Graph, GraphSpec, OpSpec};
use tinyconv_tflite::{
    Activation, BuiltinOp, ImportError, Model, Options, TensorType, import, to_graph,
};

const MODELS: [&str; 4] = ["ic", "kws", "ad", "vww"];
const INPUTS: usize = 16;
const LAYER_INPUTS: usize = 4;

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/models/mlperf-tiny"
    ))
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

fn model(name: &str) -> Model {
    let bytes = std::fs::read(dir().join(format!("{name}.int8.tflite"))).expect("model file");
    Model::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn golden(name: &str, what: &str) -> Vec<i8> {
    let path = dir().join("golden").join(format!("{name}.{what}.i8"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.into_iter().map(|b| b as i8).collect()
}

fn op_output(op: &OpSpec) -> usize {
    match *op {
        OpSpec::Conv2d { output, .. }
        | OpSpec::Dense { output, .. }
        | OpSpec::MaxPool { output, .. }
        | OpSpec::AvgPool { output, .. }
        | OpSpec::Add { output, .. }
        | OpSpec::Softmax { output, .. }
        | OpSpec::Reshape { output, .. } => output,
    }
}

/// The manifest's shape as the importer maps it: (h, w, c).
fn hwc(shape: &Value) -> (usize, usize, usize) {
    let d: Vec<usize> = shape
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    match d[..] {
        [1, h, w, c] => (h, w, c),
        [1, w, c] => (1, w, c),
        [1, c] | [c] => (1, 1, c),
        _ => panic!("shape {d:?}"),
    }
}

/// A mismatch between two int8 tensors, as one line: first differing index, the two values
/// there, and how many bytes differ.
fn compare(expected: &[i8], actual: &[i8]) -> Option<String> {
    if expected.len() != actual.len() {
        return Some(format!(
            "length {} expected, {} actual",
            expected.len(),
            actual.len()
        ));
    }
    let first = expected.iter().zip(actual).position(|(e, a)| e != a)?;
    let count = expected.iter().zip(actual).filter(|(e, a)| e != a).count();
    Some(format!(
        "first differing index {first}: expected {}, actual {}; {count} of {} bytes differ",
        expected[first],
        actual[first],
        expected.len()
    ))
}

/// The imported, written and parsed-back model's bytes.
fn tcm(name: &str) -> (GraphSpec, tinyconv_tflite::ImportReport, Vec<u8>) {
    let imported = import(&model(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let bytes = imported
        .spec
        .to_bytes()
        .unwrap_or_else(|e| panic!("{name}: to_bytes: {e}"));
    (imported.spec, imported.report, bytes)
}

#[test]
fn the_four_models_import_with_the_manifest_ops_and_shapes() {
    let manifest = manifest();
    let expected_ops = [("ic", 16), ("kws", 13), ("ad", 10), ("vww", 31)];
    for (name, count) in expected_ops {
        let m = &manifest["models"][name];
        let imported = import(&model(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (spec, report) = (&imported.spec, &imported.report);
        assert_eq!(spec.ops.len(), count, "{name}: op count");
        assert!(report.dropped.is_empty(), "{name}: {:?}", report.dropped);
        assert_eq!(report.source_op, (0..count).collect::<Vec<_>>(), "{name}");
        assert_eq!(spec.pixel_scale, None);
        assert_eq!(spec.rule, tinyconv::graph::Rule::Tflite);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), count, "{name}: manifest layers");
        for (l, (op, layer)) in spec.ops.iter().zip(layers).enumerate() {
            let t = &spec.tensors[op_output(op)];
            let (h, w, c) = hwc(&layer["shape"]);
            let what = format!("{name} op {l} ({})", layer["op"]);
            assert_eq!((t.shape.h, t.shape.w, t.shape.c), (h, w, c), "{what}");
            assert_eq!(
                t.shape.len() as u64,
                layer["length"].as_u64().unwrap(),
                "{what}"
            );
            assert_eq!(
                t.quant.scale,
                layer["scale"].as_f64().unwrap() as f32,
                "{what}"
            );
            assert_eq!(
                t.quant.zero_point as i64,
                layer["zero_point"].as_i64().unwrap(),
                "{what}"
            );
            let kind = match op {
                OpSpec::Conv2d {
                    depthwise: false, ..
                } => "CONV_2D",
                OpSpec::Conv2d {
                    depthwise: true, ..
                } => "DEPTHWISE_CONV_2D",
                OpSpec::Dense { .. } => "FULLY_CONNECTED",
                OpSpec::MaxPool { .. } => "MAX_POOL_2D",
                OpSpec::AvgPool { .. } => "AVERAGE_POOL_2D",
                OpSpec::Add { .. } => "ADD",
                OpSpec::Softmax { .. } => "SOFTMAX",
                OpSpec::Reshape { .. } => "RESHAPE",
            };
            assert_eq!(kind, layer["op"].as_str().unwrap(), "{what}");
        }
        for (key, index) in [("input", spec.input), ("output", spec.output)] {
            let t = &spec.tensors[index];
            let e = &m[key];
            assert_eq!(
                (t.shape.h, t.shape.w, t.shape.c),
                hwc(&e["shape"]),
                "{name} {key}"
            );
            assert_eq!(t.quant.scale, e["scale"].as_f64().unwrap() as f32);
            assert_eq!(t.quant.zero_point as i64, e["zero_point"].as_i64().unwrap());
        }
        assert_eq!(spec.output, op_output(spec.ops.last().unwrap()), "{name}");
        println!(
            "{name}: {} ops {:?}, {} activation tensors",
            spec.ops.len(),
            report.op_counts,
            spec.tensors.len()
        );
    }
}

/// tinyconv's kernels take weights in -127..=127; the importer refuses -128. None of the four
/// models has one (this scans every int8 constant, not only what the importer reads).
#[test]
fn no_mlperf_weight_is_minus_128() {
    for name in MODELS {
        let m = model(name);
        for (i, t) in m.graph.tensors.iter().enumerate() {
            if let (Some(data), TensorType::Int8) = (&t.data, t.dtype) {
                let n = data.iter().filter(|&&b| b as i8 == -128).count();
                assert_eq!(
                    n, 0,
                    "{name} tensor {i} ({}) has {n} weights of -128",
                    t.name
                );
            }
        }
    }
}

#[test]
fn outputs_equal_cmsis_nn_on_all_16_inputs() {
    let mut failures = Vec::new();
    for name in MODELS {
        let (spec, _, bytes) = tcm(name);
        let graph = Graph::parse(&bytes).unwrap_or_else(|e| panic!("{name}: parse: {e}"));
        let mut arena = vec![0; graph.arena_len()];
        let inputs = golden(name, "inputs");
        let expected = golden(name, "outputs.cmsis-nn");
        let (n_in, n_out) = (
            spec.tensors[spec.input].shape.len(),
            spec.tensors[spec.output].shape.len(),
        );
        assert_eq!(inputs.len(), INPUTS * n_in, "{name}: inputs file");
        assert_eq!(expected.len(), INPUTS * n_out, "{name}: outputs file");
        for k in 0..INPUTS {
            let input = &inputs[k * n_in..(k + 1) * n_in];
            let out = graph
                .infer_int8(input, &mut arena)
                .unwrap_or_else(|e| panic!("{name} input {k}: {e}"));
            if let Some(m) = compare(&expected[k * n_out..(k + 1) * n_out], out) {
                failures.push(format!("{name} input {k} output: {m}"));
            }
        }
        println!("{name}: 16 outputs compared");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_layer_equals_cmsis_nn_on_inputs_0_to_3() {
    let manifest = manifest();
    let mut failures = Vec::new();
    for name in MODELS {
        let m = &manifest["models"][name];
        let layers = m["layers"].as_array().unwrap();
        let block = m["layers_block_bytes"].as_u64().unwrap() as usize;
        let (spec, report, bytes) = tcm(name);
        let graph = Graph::parse(&bytes).unwrap_or_else(|e| panic!("{name}: parse: {e}"));
        let mut arena = vec![0; graph.arena_len()];
        let inputs = golden(name, "inputs");
        let golden_layers = golden(name, "layers.cmsis-nn");
        assert_eq!(
            golden_layers.len(),
            LAYER_INPUTS * block,
            "{name}: layers file"
        );
        let n_in = spec.tensors[spec.input].shape.len();
        for k in 0..LAYER_INPUTS {
            let input = &inputs[k * n_in..(k + 1) * n_in];
            let mut seen: Vec<(usize, Vec<i8>)> = Vec::new();
            graph
                .infer_observed(input, &mut arena, &mut |op: usize, out: &[i8]| {
                    seen.push((op, out.to_vec()))
                })
                .unwrap_or_else(|e| panic!("{name} input {k}: {e}"));
            assert_eq!(
                seen.iter().map(|s| s.0).collect::<Vec<_>>(),
                (0..spec.ops.len()).collect::<Vec<_>>(),
                "{name} input {k}: the observer sees every op once, in order"
            );
            for (op, out) in &seen {
                let l = report.source_op[*op];
                let layer = &layers[l];
                let at = k * block + layer["offset"].as_u64().unwrap() as usize;
                let len = layer["length"].as_u64().unwrap() as usize;
                if let Some(msg) = compare(&golden_layers[at..at + len], out) {
                    failures.push(format!(
                        "{name} input {k} layer {l} ({}): {msg}",
                        layer["op"].as_str().unwrap()
                    ));
                }
            }
        }
        println!("{name}: {} layers x 4 inputs compared", spec.ops.len());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The TF reference interpreter rounds FULLY_CONNECTED once where CMSIS-NN rounds twice; on
/// `ad` (ten FC layers) the runtime must therefore differ from it, or the comparison above
/// could not fail.
#[test]
fn ad_differs_from_the_tflite_reference() {
    let (spec, _, bytes) = tcm("ad");
    let graph = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0; graph.arena_len()];
    let inputs = golden("ad", "inputs");
    let reference = golden("ad", "outputs.tflite-ref");
    let (n_in, n_out) = (
        spec.tensors[spec.input].shape.len(),
        spec.tensors[spec.output].shape.len(),
    );
    let (mut bytes_differing, mut inputs_differing) = (0, 0);
    for k in 0..INPUTS {
        let out = graph
            .infer_int8(&inputs[k * n_in..(k + 1) * n_in], &mut arena)
            .unwrap();
        let n = reference[k * n_out..(k + 1) * n_out]
            .iter()
            .zip(out)
            .filter(|(e, a)| e != a)
            .count();
        bytes_differing += n;
        inputs_differing += (n > 0) as usize;
    }
    println!("ad: {bytes_differing} bytes on {inputs_differing} inputs differ from tflite-ref");
    assert!(inputs_differing > 0);
}

/// A float model around the int8 graph (QUANTIZE first, DEQUANTIZE last) imports to the same
/// graph, with both ops reported as dropped; op L of the graph is then operator L + 1.
#[test]
fn quantize_first_and_dequantize_last_are_dropped() {
    use tinyconv_tflite::{Operator, Tensor};
    let plain = import(&model("ad")).unwrap();
    let mut m = model("ad");
    let g = &mut m.graph;
    let (input, output) = (g.inputs[0], g.outputs[0]);
    let float = |name: &str, like: &Tensor| Tensor {
        name: name.into(),
        shape: like.shape.clone(),
        dtype: TensorType::Float32,
        quantization: None,
        data: None,
    };
    let (fin, fout) = (g.tensors.len(), g.tensors.len() + 1);
    let t_in = float("float_input", &g.tensors[input]);
    let t_out = float("float_output", &g.tensors[output]);
    g.tensors.extend([t_in, t_out]);
    let op = |code, i, o| Operator {
        code,
        version: 1,
        custom_code: String::new(),
        inputs: vec![Some(i)],
        outputs: vec![o],
        options: Options::None,
    };
    g.operators.insert(0, op(BuiltinOp::Quantize, fin, input));
    g.operators.push(op(BuiltinOp::Dequantize, output, fout));
    g.inputs = vec![fin];
    g.outputs = vec![fout];
    let wrapped = import(&m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrapped.spec, plain.spec);
    assert_eq!(wrapped.report.source_op, (1..=10).collect::<Vec<_>>());
    let dropped: Vec<_> = wrapped
        .report
        .dropped
        .iter()
        .map(|d| (d.index, d.op.as_str()))
        .collect();
    assert_eq!(dropped, [(0, "QUANTIZE"), (11, "DEQUANTIZE")]);
    for d in &wrapped.report.dropped {
        println!("dropped operator {} ({}): {}", d.index, d.op, d.reason);
    }

    // A DEQUANTIZE that is not last is refused.
    let mut m2 = m.clone();
    m2.graph.operators.swap(10, 11);
    let msg = refusal(&m2);
    assert_mentions(&msg, &["operator 10", "DEQUANTIZE", "last"]);
}

/// The layer comparison sees a wrong padding split: kws's first conv (49x10 input, 10x4
/// kernel, stride 2, SAME) pads 4 rows above and 5 below; swapping them changes layer 0.
#[test]
fn a_wrong_padding_split_is_caught_by_the_layer_comparison() {
    let manifest = manifest();
    let m = &manifest["models"]["kws"];
    let layer = &m["layers"][0];
    let (len, block) = (
        layer["length"].as_u64().unwrap() as usize,
        m["layers_block_bytes"].as_u64().unwrap() as usize,
    );
    let mut spec = to_graph(&model("kws")).unwrap();
    let OpSpec::Conv2d { window, .. } = &mut spec.ops[0] else {
        panic!("kws op 0 is a conv")
    };
    assert_eq!((window.pads.top, window.pads.bottom), (4, 5));
    assert_eq!((window.pads.left, window.pads.right), (1, 1));
    (window.pads.top, window.pads.bottom) = (5, 4);
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0; graph.arena_len()];
    let inputs = golden("kws", "inputs");
    let golden_layers = golden("kws", "layers.cmsis-nn");
    let n_in = spec.tensors[spec.input].shape.len();
    let k = 3;
    let mut first = None;
    graph
        .infer_observed(
            &inputs[k * n_in..(k + 1) * n_in],
            &mut arena,
            &mut |op: usize, out: &[i8]| {
                if op == 0 {
                    first = Some(out.to_vec())
                }
            },
        )
        .unwrap();
    let msg = compare(&golden_layers[k * block..k * block + len], &first.unwrap());
    println!("kws input 3 layer 0 with the pads swapped: {msg:?}");
    assert!(msg.is_some());
}

fn refusal(model: &Model) -> String {
    match to_graph(model) {
        Ok(_) => panic!("the damaged model was imported"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for p in parts {
        assert!(message.contains(p), "{message:?} does not mention {p:?}");
    }
}

#[test]
fn an_unsupported_op_is_refused_by_index_and_name() {
    let mut m = model("kws");
    m.graph.operators[3].code = BuiltinOp::Logistic;
    let e = to_graph(&m).unwrap_err();
    assert_eq!(
        e,
        ImportError::UnsupportedOp {
            index: 3,
            op: "LOGISTIC".into()
        }
    );
    let msg = e.to_string();
    println!("{msg}");
    assert_mentions(&msg, &["operator 3", "LOGISTIC", "CONV_2D", "SOFTMAX"]);

    let mut m = model("ic");
    m.graph.operators[5].code = BuiltinOp::Custom;
    assert_mentions(&refusal(&m), &["operator 5", "CUSTOM", "not supported"]);

    // A QUANTIZE inside the graph is not dropped.
    let mut m = model("ad");
    m.graph.operators[4].code = BuiltinOp::Quantize;
    let msg = refusal(&m);
    println!("{msg}");
    assert_mentions(&msg, &["operator 4", "QUANTIZE", "first"]);
}

#[test]
fn damaged_models_are_refused_with_what_is_wrong() {
    // A depthwise multiplier of 2.
    let mut m = model("kws");
    let i = m
        .graph
        .operators
        .iter()
        .position(|o| o.code == BuiltinOp::DepthwiseConv2d)
        .unwrap();
    if let Options::DepthwiseConv2d {
        depth_multiplier, ..
    } = &mut m.graph.operators[i].options
    {
        *depth_multiplier = 2;
    }
    let msg = refusal(&m);
    println!("{msg}");
    assert_mentions(
        &msg,
        &[
            &format!("operator {i}"),
            "DEPTHWISE_CONV_2D",
            "multiplier 2",
        ],
    );

    // A dilation of 2.
    let mut m = model("ic");
    if let Options::Conv2d { dilation_h, .. } = &mut m.graph.operators[0].options {
        *dilation_h = 2;
    }
    let msg = refusal(&m);
    println!("{msg}");
    assert_mentions(&msg, &["operator 0", "CONV_2D", "dilation 2x1"]);

    // A weight of -128.
    let mut m = model("ad");
    let w = m.graph.operators[2].inputs[1].unwrap();
    m.graph.tensors[w].data.as_mut().unwrap()[17] = 0x80;
    let e = to_graph(&m).unwrap_err();
    assert!(
        matches!(
            e,
            ImportError::WeightMinus128 {
                index: 2,
                first: 17,
                count: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    println!("{msg}");
    assert_mentions(
        &msg,
        &["operator 2", "FULLY_CONNECTED", "-128", "-127..=127"],
    );

    // An int16 activation.
    let mut m = model("kws");
    let t = m.graph.operators[2].outputs[0];
    m.graph.tensors[t].dtype = TensorType::Int16;
    let msg = refusal(&m);
    println!("{msg}");
    assert_mentions(
        &msg,
        &["operator 2", &format!("tensor {t}"), "int16", "int8"],
    );

    // A batch of 2.
    let mut m = model("vww");
    let t = m.graph.operators[0].outputs[0];
    m.graph.tensors[t].shape[0] = 2;
    assert_mentions(&refusal(&m), &["operator 0", "batch"]);

    // An unknown dimension.
    let mut m = model("vww");
    m.graph.tensors[t].shape[1] = -1;
    assert_mentions(&refusal(&m), &["operator 0", "unknown"]);

    // A fused TANH.
    let mut m = model("ic");
    if let Options::Conv2d { activation, .. } = &mut m.graph.operators[1].options {
        *activation = Activation::Tanh;
    }
    assert_mentions(&refusal(&m), &["operator 1", "TANH"]);

    // A stride the output shape does not agree with.
    let mut m = model("ic");
    if let Options::Conv2d { stride_w, .. } = &mut m.graph.operators[0].options {
        *stride_w = 2;
    }
    let msg = refusal(&m);
    println!("{msg}");
    assert_mentions(&msg, &["operator 0", "CONV_2D", "stride 1x2", "SAME"]);

    // Pool input and output quantized differently.
    let mut m = model("kws");
    let i = m
        .graph
        .operators
        .iter()
        .position(|o| o.code == BuiltinOp::AveragePool2d)
        .unwrap();
    let t = m.graph.operators[i].outputs[0];
    m.graph.tensors[t].quantization.as_mut().unwrap().zero_point[0] += 1;
    assert_mentions(
        &refusal(&m),
        &[&format!("operator {i}"), "AVERAGE_POOL_2D", "equal"],
    );

    // A softmax output that is not 1/256, -128.
    let mut m = model("kws");
    let t = m.graph.operators.last().unwrap().outputs[0];
    m.graph.tensors[t].quantization.as_mut().unwrap().scale[0] = 0.5;
    assert_mentions(&refusal(&m), &["SOFTMAX", "1/256"]);
}
