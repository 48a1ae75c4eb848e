//! The int8 ONNX importer (QDQ form) on a model quantized by onnxruntime's `quantize_static`
//! (`tests/data/foreign/torch_cnn.qdq.onnx`, made by `scripts/foreign-models/make_qdq_onnx.py`):
//! the int8 graph carries the file's own integers and parameters, read back independently from
//! the protobuf here; on all 10,000 MNIST test images the runtime equals tract on the int8 twin
//! on every value, nearly always equals the model itself (tract running the QDQ file, which
//! equals onnxruntime: `tests/tests/qdq_reference.rs`), and its accuracy is within 0.2 pp of
//! onnxruntime's committed int8 classes. Negative controls show each comparison can fail;
//! error tests edit the committed model.

use std::path::{Path, PathBuf};

use prost::Message;
use tinyconv::graph::{Graph, OpSpec};
use tinyconv_trainer::onnx_import::{OnnxImportError, read_float_onnx, read_onnx};
use tinyconv_trainer::verify_graph::{FloatReference, SourceInt8, check};
use tract_onnx::pb::{ModelProto, TensorProto, tensor_proto::DataType};

fn foreign(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/foreign")
        .join(name)
}

fn f32_file(name: &str) -> Vec<f32> {
    std::fs::read(foreign(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn qdq_bytes() -> Vec<u8> {
    std::fs::read(foreign("torch_cnn.qdq.onnx")).unwrap()
}

fn mnist_test() -> tinyconv_datasets::Split {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
    tinyconv_datasets::load(&dir, &Default::default())
        .expect("real MNIST in ../shared/data/mnist")
        .test
}

/// An initializer of the committed file, decoded here from its raw bytes (not by the importer).
fn initializer(model: &ModelProto, name: &str) -> TensorProto {
    model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"))
        .clone()
}

// ONNX stores a tensor either as raw little-endian bytes or in a typed field (int8 and int32
// in `int32_data`, float in `float_data`).
fn raw_i8(t: &TensorProto) -> Vec<i8> {
    assert_eq!(t.data_type, DataType::Int8 as i32, "{}", t.name);
    match t.raw_data.is_empty() {
        false => t.raw_data.iter().map(|&b| b as i8).collect(),
        true => t.int32_data.iter().map(|&v| v as i8).collect(),
    }
}

fn raw_i32(t: &TensorProto) -> Vec<i32> {
    match t.raw_data.is_empty() {
        false => (t.raw_data.chunks_exact(4))
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        true => t.int32_data.clone(),
    }
}

fn raw_f32(t: &TensorProto) -> Vec<f32> {
    match t.raw_data.is_empty() {
        false => (t.raw_data.chunks_exact(4))
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        true => t.float_data.clone(),
    }
}

#[test]
fn the_int8_graph_carries_the_files_own_integers_and_parameters() {
    let bytes = qdq_bytes();
    let model = ModelProto::decode(&bytes[..]).unwrap();
    let imported = read_onnx(&bytes).unwrap();
    let spec = imported.quantized.expect("an int8 model");
    for line in imported.report.lines() {
        println!("{line}");
    }
    let [conv1, _, conv2, _, _, fc] = &spec.ops[..] else {
        panic!("{:?}", spec.ops);
    };
    let (OpSpec::Conv2d { params: p1, .. }, OpSpec::Conv2d { params: p2, .. }) = (conv1, conv2)
    else {
        panic!("conv, conv");
    };
    let OpSpec::Dense { params: p3, .. } = fc else {
        panic!("dense");
    };
    // conv1 OIHW [8, 1, 3, 3] is OHWI already (one input channel).
    assert_eq!(
        p1.weights,
        raw_i8(&initializer(&model, "conv1.weight_quantized"))
    );
    // conv2 OIHW [16, 8, 3, 3] -> OHWI.
    let w2 = raw_i8(&initializer(&model, "conv2.weight_quantized"));
    let ohwi: Vec<i8> = (0..16 * 3 * 3 * 8)
        .map(|i| {
            let (o, ky, kx, c) = (i / 72, i / 24 % 3, i / 8 % 3, i % 8);
            w2[((o * 8 + c) * 3 + ky) * 3 + kx]
        })
        .collect();
    assert_eq!(p2.weights, ohwi);
    // fc [10, 576] reads the NCHW flatten of [16, 6, 6]; the runtime's dense reads NHWC.
    let w3 = raw_i8(&initializer(&model, "fc.weight_quantized"));
    let nhwc: Vec<i8> = (0..10 * 576)
        .map(|i| {
            let (o, y, x, c) = (i / 576, i / 96 % 6, i / 16 % 6, i % 16);
            w3[o * 576 + (c * 6 + y) * 6 + x]
        })
        .collect();
    assert_eq!(p3.weights, nhwc);
    for (p, layer) in [(p1, "conv1"), (p2, "conv2"), (p3, "fc")] {
        assert_eq!(
            p.bias,
            raw_i32(&initializer(&model, &format!("{layer}.bias_quantized"))),
            "{layer}"
        );
        assert_eq!(
            p.weight_scales,
            raw_f32(&initializer(&model, &format!("{layer}.weight_scale"))),
            "{layer}"
        );
    }
    let stated = |scale: &str, zp: &str| {
        (
            raw_f32(&initializer(&model, scale))[0],
            raw_i8(&initializer(&model, zp))[0],
        )
    };
    let q = |t: usize| {
        (
            spec.tensors[t].quant.scale,
            spec.tensors[t].quant.zero_point,
        )
    };
    assert_eq!(q(spec.input), stated("image_scale", "image_zero_point"));
    assert_eq!(q(spec.output), stated("logits_scale", "logits_zero_point"));
    let OpSpec::Conv2d { output: c1, .. } = conv1 else {
        unreachable!()
    };
    assert_eq!(q(*c1), stated("relu_scale", "relu_zero_point"));
    // The float reader still refuses it, naming its first quantized node.
    let err = read_float_onnx(&bytes).unwrap_err();
    assert!(
        matches!(&err, OnnxImportError::Node { index: 0, op, .. } if op == "DequantizeLinear"),
        "{err:?}"
    );
}

/// onnxruntime's classes of the 10,000 test images (committed in `file`) and their accuracy.
fn onnxruntime_accuracy(test: &tinyconv_datasets::Split, file: &str) -> (Vec<u8>, f64) {
    let classes = std::fs::read(foreign(file)).unwrap();
    assert_eq!(classes.len(), test.len());
    let right = (classes.iter().zip(&test.labels))
        .filter(|(c, l)| **c as u16 == **l)
        .count();
    (classes, right as f64 / test.len() as f64)
}

/// Float QDQ arithmetic and the integer convolution part only where a value lands within f32
/// rounding of a half: rare, and by one code where it reaches the output.
fn assert_nearly_all_identical(codes: &SourceInt8) {
    assert!(
        codes.identical_values * 1000 >= codes.values * 999,
        "{} of {} identical",
        codes.identical_values,
        codes.values
    );
    assert!(codes.max_difference <= 2, "{}", codes.max_difference);
}

#[test]
fn the_import_equals_tract_and_the_model_itself_and_keeps_onnxruntimes_accuracy() {
    let bytes = qdq_bytes();
    let imported = read_onnx(&bytes).unwrap();
    let mut spec = imported.quantized.clone().unwrap();
    spec.pixel_scale = Some(1.0 / 255.0);
    let tcm = spec.to_bytes().unwrap();
    let graph = Graph::parse(&tcm).unwrap();
    let test = mnist_test();
    let source = FloatReference::imported(
        &foreign("torch_cnn.qdq.onnx"),
        bytes.clone(),
        &imported.report,
        1.0 / 255.0,
    )
    .with_output(Some(graph.output().quant));
    let v = check(&graph, &test, Some(&source)).unwrap();
    println!("{v}");
    let twin = v.tract_int8.as_ref().unwrap();
    assert_eq!(
        twin.form, "multipliers",
        "the file's scales are not powers of two"
    );
    assert_eq!(twin.values, 100_000);
    assert_eq!(
        twin.differing_values, 0,
        "runtime vs tract on the int8 twin"
    );
    let s = v.float.as_ref().unwrap();
    let codes = s.int8_values.as_ref().unwrap();
    assert_nearly_all_identical(codes);
    let (classes, ort_accuracy) = onnxruntime_accuracy(&test, "torch_cnn.qdq.ort.classes.u8");
    println!(
        "int8 accuracy: runtime {:.2} %, onnxruntime {:.2} % ({:+.2} pp); tract on the source {:.2} %",
        v.int8_accuracy * 100.0,
        ort_accuracy * 100.0,
        (v.int8_accuracy - ort_accuracy) * 100.0,
        s.accuracy * 100.0
    );
    assert!((v.int8_accuracy - ort_accuracy).abs() <= 0.002);
    assert_eq!(
        s.accuracy, ort_accuracy,
        "tract on the QDQ file = onnxruntime"
    );
    // The runtime's classes against onnxruntime's own.
    let mut arena = vec![0i8; graph.arena_len()];
    let agree = (0..test.len())
        .filter(|&i| {
            let out = graph.infer_pixels(test.image(i), &mut arena).unwrap();
            tinyconv_trainer::evaluate::argmax(out) == classes[i] as usize
        })
        .count();
    println!("runtime = onnxruntime on {agree}/10000 classes");
    assert!(agree * 1000 >= test.len() * 999, "{agree}");

    // Negative control: against the model with one channel's weight scale 5 % larger (what a
    // misread scale would compute), the comparison with the source fails.
    let mut model = ModelProto::decode(&bytes[..]).unwrap();
    let init = (model.graph.as_mut().unwrap().initializer.iter_mut())
        .find(|t| t.name == "conv2.weight_scale")
        .unwrap();
    let mut scales = raw_f32(init);
    scales[0] *= 1.05;
    init.raw_data.clear();
    init.float_data = scales;
    let altered = FloatReference::imported(
        &foreign("torch_cnn.qdq.onnx"),
        model.encode_to_vec(),
        &imported.report,
        1.0 / 255.0,
    )
    .with_output(Some(graph.output().quant));
    let control = check(&graph, &test.truncated(500), Some(&altered)).unwrap();
    let c = control.float.unwrap().int8_values.unwrap();
    println!(
        "control: {} of {} values identical",
        c.identical_values, c.values
    );
    assert!(c.identical_values * 100 < c.values * 90, "{c:?}");
}

/// The Keras residual net quantized by onnxruntime (after its quant_pre_process folded the
/// batch norms): depthwise, stride 2, ReLU6, a residual add of two scales, a global average
/// pool that requantizes, a final softmax (dropped: the runtime outputs the logits). The runtime
/// equals tract's twin on every value; against the model itself its classes agree on nearly
/// every image and its accuracy is within 0.2 pp of onnxruntime's.
#[test]
fn a_residual_int8_model_with_its_own_pool_and_add_scales_imports() {
    let path = foreign("keras_resnet.qdq.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let imported = read_onnx(&bytes).unwrap();
    assert!(imported.report.dropped_softmax);
    let mut spec = imported.quantized.clone().unwrap();
    spec.pixel_scale = Some(1.0 / 255.0);
    let names: Vec<&str> = imported.graph.ops.iter().map(|o| o.name()).collect();
    println!("{names:?}");
    for want in ["depthwise_conv2d", "add", "avg_pool", "dense"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let requantizing_pool = spec.ops.iter().any(|o| {
        matches!(o, OpSpec::AvgPool { input, output, .. }
            if spec.tensors[*input].quant != spec.tensors[*output].quant)
    });
    assert!(requantizing_pool, "the global pool has its own scale");
    let graph_bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&graph_bytes).unwrap();
    let test = mnist_test();
    let source = FloatReference::imported(&path, bytes.clone(), &imported.report, 1.0 / 255.0)
        .int8_source(graph.output().quant);
    let v = check(&graph, &test, Some(&source)).unwrap();
    println!("{v}");
    let twin = v.tract_int8.as_ref().unwrap();
    assert_eq!(
        twin.differing_values, 0,
        "runtime vs tract on the int8 twin"
    );
    let s = v.float.as_ref().unwrap();
    // The source cut before its softmax: its int8 logits against the runtime's.
    let codes = s.int8_values.as_ref().unwrap();
    assert_nearly_all_identical(codes);
    assert!(s.agreeing * 1000 >= test.len() * 999, "{}", s.agreeing);
    // onnxruntime's own logits of the 16 saved inputs, as codes, against the runtime's.
    let inputs = f32_file("keras_resnet_f32.inputs.f32");
    let ort = f32_file("keras_resnet.qdq.ort.logits.f32");
    let q = graph.output().quant;
    let mut arena = vec![0i8; graph.arena_len()];
    let mut same = 0;
    for (x, theirs) in inputs.chunks_exact(784).zip(ort.chunks_exact(10)) {
        let pixels: Vec<u8> = x.iter().map(|&v| (v * 255.0).round() as u8).collect();
        let ours = graph.infer_pixels(&pixels, &mut arena).unwrap();
        for (&o, &t) in ours.iter().zip(theirs) {
            let code = (t as f64 / q.scale as f64).round_ties_even() as i32 + q.zero_point as i32;
            same += usize::from(code == o as i32);
        }
    }
    println!("runtime = onnxruntime on {same} of 160 saved logits");
    assert!(same >= 155, "{same}");
    let (_, ort) = onnxruntime_accuracy(&test, "keras_resnet.qdq.ort.classes.u8");
    println!(
        "int8 accuracy: runtime {:.2} %, onnxruntime {:.2} % ({:+.2} pp)",
        v.int8_accuracy * 100.0,
        ort * 100.0,
        (v.int8_accuracy - ort) * 100.0
    );
    assert!((v.int8_accuracy - ort).abs() <= 0.002);
    assert_eq!(s.accuracy, ort, "tract on the QDQ file = onnxruntime");
}

fn edited(f: impl FnOnce(&mut ModelProto)) -> Vec<u8> {
    let mut model = ModelProto::decode(&qdq_bytes()[..]).unwrap();
    f(&mut model);
    model.encode_to_vec()
}

#[test]
fn int8_models_that_do_not_import_are_refused_naming_the_node() {
    // A dynamically quantized node.
    let bytes = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
        conv.op_type = "ConvInteger".into();
    });
    let err = read_onnx(&bytes).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, OnnxImportError::Node { index: 8, op, problem, .. }
            if op == "ConvInteger" && problem.contains("QuantFormat.QDQ")),
        "{err:?}"
    );
    // uint8 activations.
    let bytes = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let zp = (g.initializer.iter_mut())
            .find(|t| t.name == "image_zero_point")
            .unwrap();
        zp.data_type = DataType::Uint8 as i32;
        zp.raw_data.clear();
        zp.int32_data = vec![0];
    });
    let err = read_onnx(&bytes).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, OnnxImportError::Node { index: 6, op, problem, .. }
            if op == "QuantizeLinear" && problem.contains("QuantType.QInt8")),
        "{err:?}"
    );
    // A float op inside: the Gemm's output goes out unquantized (its Q/DQ pair removed).
    let bytes = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        g.node.retain(|n| {
            !(n.input.first().is_some_and(|i| {
                i == "logits_QuantizeLinear_Input" || i == "logits_QuantizeLinear_Output"
            }))
        });
        g.output[0].name = "logits_QuantizeLinear_Input".into();
    });
    let err = read_onnx(&bytes).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, OnnxImportError::Node { op, problem, .. }
            if op == "Gemm" && problem.contains("float op inside an int8 model")),
        "{err:?}"
    );
    // A constant Mul between a conv and its QuantizeLinear: folding it would change the file's
    // integers.
    let bytes = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(TensorProto {
            name: "two".into(),
            dims: vec![1, 8, 1, 1],
            data_type: DataType::Float as i32,
            float_data: vec![2.0; 8],
            ..Default::default()
        });
        let q = (g.node.iter_mut())
            .position(|n| n.name == "relu_QuantizeLinear")
            .unwrap();
        g.node[q].input[0] = "relu_doubled".into();
        g.node.insert(
            q,
            tract_onnx::pb::NodeProto {
                op_type: "Mul".into(),
                name: "doubling".into(),
                input: vec!["relu".into(), "two".into()],
                output: vec!["relu_doubled".into()],
                ..Default::default()
            },
        );
    });
    let err = read_onnx(&bytes).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, OnnxImportError::Quantized { problem }
            if problem.contains("would change the quantized model's integers")),
        "{err:?}"
    );
    // Weights with a non-zero zero point (asymmetric int8 weights).
    let bytes = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let zp = (g.initializer.iter_mut())
            .find(|t| t.name == "conv2.weight_zero_point")
            .unwrap();
        let mut zps = raw_i8(zp);
        zps[3] = 5;
        zp.raw_data.clear();
        zp.int32_data = zps.iter().map(|&z| z as i32).collect();
    });
    let err = read_onnx(&bytes).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, OnnxImportError::Node { op, problem, .. }
            if op == "DequantizeLinear" && problem.contains("symmetric")),
        "{err:?}"
    );
}

/// The same two models quantized by onnxruntime in QOperator form (`*.qop.onnx`: QLinearConv,
/// com.microsoft QGemm, QLinearAdd, QLinearGlobalAveragePool and QLinearSoftmax, int8 MaxPool
/// and Reshape) import, through their QDQ form, into the int8 graph their QDQ files give: the
/// two formats of one calibration carry the same scales, zero points and int8 weights. The
/// runtime equals tract on the twin and nearly always the source; the CNN's accuracy is within
/// 0.2 pp of onnxruntime's QOperator run.
#[test]
fn qoperator_models_import_as_their_qdq_twins() {
    let test = mnist_test();
    for (qop, qdq) in [
        ("torch_cnn.qop.onnx", "torch_cnn.qdq.onnx"),
        ("keras_resnet.qop.onnx", "keras_resnet.qdq.onnx"),
    ] {
        let bytes = std::fs::read(foreign(qop)).unwrap();
        let imported = read_onnx(&bytes).unwrap_or_else(|e| panic!("{qop}: {e}"));
        for line in imported.report.lines() {
            println!("{line}");
        }
        let ours = imported.quantized.clone().unwrap();
        let twin = read_onnx(&std::fs::read(foreign(qdq)).unwrap())
            .unwrap()
            .quantized
            .unwrap();
        assert_eq!(ours.tensors, twin.tensors, "{qop}: tensors");
        let (mut bias_values, mut bias_differ) = (0, 0);
        for (a, b) in ours.ops.iter().zip(&twin.ops) {
            match (a, b) {
                (
                    OpSpec::Conv2d { params: p, .. } | OpSpec::Dense { params: p, .. },
                    OpSpec::Conv2d { params: q, .. } | OpSpec::Dense { params: q, .. },
                ) => {
                    assert_eq!(p.weights, q.weights, "{qop}");
                    assert_eq!(p.weight_scales, q.weight_scales, "{qop}");
                    bias_values += p.bias.len();
                    bias_differ += p.bias.iter().zip(&q.bias).filter(|(x, y)| x != y).count();
                }
                _ => assert_eq!(a, b, "{qop}"),
            }
        }
        println!("{qop}: {bias_differ} of {bias_values} biases differ from the QDQ file's");
        let mut spec = ours;
        spec.pixel_scale = Some(1.0 / 255.0);
        let tcm = spec.to_bytes().unwrap();
        let graph = Graph::parse(&tcm).unwrap();
        let source = FloatReference::imported(&foreign(qop), bytes, &imported.report, 1.0 / 255.0)
            .int8_source(graph.output().quant);
        assert!(source.as_qdq);
        let v = check(&graph, &test, Some(&source)).unwrap();
        println!("{v}");
        assert_eq!(v.tract_int8.as_ref().unwrap().differing_values, 0, "{qop}");
        let codes = v.float.as_ref().unwrap().int8_values.as_ref().unwrap();
        assert_nearly_all_identical(codes);
        let (_, ort) = onnxruntime_accuracy(&test, &qop.replace(".onnx", ".ort.classes.u8"));
        println!(
            "{qop}: int8 accuracy: runtime {:.2} %, onnxruntime (QOperator kernels) {:.2} %",
            v.int8_accuracy * 100.0,
            ort * 100.0
        );
        if qop.starts_with("torch") {
            assert!((v.int8_accuracy - ort).abs() <= 0.002, "{qop}");
        }
    }
}
