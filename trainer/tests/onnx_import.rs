//! The float ONNX importer on models exported by PyTorch (and, where committed, Keras via
//! tf2onnx): each imports; the FloatGraph's outputs match the framework's committed float
//! outputs; tract's reading of the original ONNX agrees with the framework too; quantized on
//! real MNIST, the runtime's int8 outputs equal tract's on the int8 ONNX export, and the int8
//! accuracy is within 0.2 pp of the framework's float accuracy. Error tests build small models
//! with the protobuf types; negative controls show the output check can fail.

use std::path::{Path, PathBuf};

use prost::Message;
use tinyconv::graph::Graph;
use tinyconv_trainer::data;
use tinyconv_trainer::fgraph::{FloatGraph, interpret, quantize};
use tinyconv_trainer::onnx_graph;
use tinyconv_trainer::onnx_import::{InputLayout, OnnxImportError, read_float_onnx};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType,
    tensor_shape_proto::{Dimension, dimension},
    type_proto,
};
use tract_onnx::prelude::*;

/// |ours - framework| allowed on a logit: the interpreter sums in f64, the framework in f32;
/// logits are at most ~30 here, so f32 rounding over a few thousand terms stays far below.
const FLOAT_TOLERANCE: f32 = 1e-4;
const PIXELS: usize = 784;
const CLASSES: usize = 10;

fn foreign(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/foreign")
        .join(name)
}

fn f32s(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn mnist() -> data::Mnist {
    data::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist"))
        .expect("real MNIST in ../shared/data/mnist")
}

/// The committed models: (name, ONNX input layout, the framework's float test accuracy).
struct Model {
    name: &'static str,
    layout: InputLayout,
    accuracy: f64,
}

fn accuracy_from(json_file: &str, pointer: &str) -> f64 {
    let text = std::fs::read_to_string(foreign(json_file)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.pointer(pointer)
        .and_then(|a| a.as_f64())
        .unwrap_or_else(|| panic!("{json_file}: no {pointer}"))
}

fn models() -> Vec<Model> {
    let mut m = vec![
        Model {
            name: "torch_cnn",
            layout: InputLayout::Nchw,
            accuracy: accuracy_from(
                "results.json",
                "/onnx_models/torch_cnn/torch_float_test_accuracy",
            ),
        },
        Model {
            name: "torch_resnet",
            layout: InputLayout::Nchw,
            accuracy: accuracy_from("torch_resnet.results.json", "/torch_float_test_accuracy"),
        },
    ];
    // Keras via tf2onnx (NHWC input, a final Softmax in the file).
    for name in ["keras_cnn_f32", "keras_resnet_f32"] {
        m.push(Model {
            name,
            layout: InputLayout::Nhwc,
            accuracy: accuracy_from(
                &format!("{name}.results.json"),
                "/keras_float_test_accuracy",
            ),
        });
    }
    m
}

/// The committed inputs (NCHW or NHWC as the model takes them) and framework outputs.
fn committed(name: &str) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let x = f32s(&foreign(&format!("{name}.inputs.f32")));
    let framework = if name.starts_with("keras") {
        "keras"
    } else {
        "torch"
    };
    let y = f32s(&foreign(&format!("{name}.{framework}.outputs.f32")));
    assert_eq!(
        x.len() / PIXELS,
        y.len() / CLASSES,
        "{name}: inputs vs outputs"
    );
    (
        x.chunks(PIXELS).map(<[f32]>::to_vec).collect(),
        y.chunks(CLASSES).map(<[f32]>::to_vec).collect(),
    )
}

/// One 28x28x1 image is the same bytes in NCHW and NHWC.
fn float_logits(graph: &FloatGraph, input: &[f32]) -> Vec<f32> {
    let all = interpret::run(graph, input).expect("the interpreter runs the imported graph");
    all[graph.output].clone()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[impl PartialOrd + Copy]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn worst_float_diff(graph: &FloatGraph, name: &str) -> f32 {
    let (xs, ys) = committed(name);
    xs.iter()
        .zip(&ys)
        .map(|(x, y)| max_diff(&float_logits(graph, x), y))
        .fold(0.0, f32::max)
}

#[test]
fn committed_models_import_and_match_the_framework() {
    for m in models() {
        let bytes = std::fs::read(foreign(&format!("{}.onnx", m.name))).unwrap();
        let imported = read_float_onnx(&bytes).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        let r = &imported.report;
        assert_eq!(r.input_layout, m.layout, "{}", m.name);
        assert_eq!(imported.graph.tensors[imported.graph.input].len(), PIXELS);
        assert_eq!(imported.graph.tensors[imported.graph.output].len(), CLASSES);
        let worst = worst_float_diff(&imported.graph, m.name);
        println!(
            "{}: {} ONNX nodes -> {} float ops {:?}; folded: {:?}; worst |logit - framework| {worst:e}",
            m.name,
            r.nodes.len(),
            imported.graph.ops.len(),
            imported
                .graph
                .ops
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>(),
            r.folded
        );
        assert!(
            worst <= FLOAT_TOLERANCE,
            "{}: {worst} > {FLOAT_TOLERANCE}",
            m.name
        );
    }
}

#[test]
fn the_residual_model_folds_batch_norm_and_maps_every_op() {
    let bytes = std::fs::read(foreign("torch_resnet.onnx")).unwrap();
    let imported = read_float_onnx(&bytes).unwrap();
    let names: Vec<&str> = imported.graph.ops.iter().map(|o| o.name()).collect();
    for want in ["conv2d", "depthwise_conv2d", "add", "avg_pool", "dense"] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    let bn_nodes = imported
        .report
        .nodes
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .count();
    assert!(
        bn_nodes >= 5,
        "the export keeps the batch norms as nodes ({bn_nodes})"
    );
    assert_eq!(
        imported
            .report
            .folded
            .iter()
            .filter(|f| f.starts_with("BatchNormalization"))
            .count(),
        bn_nodes
    );
}

#[test]
fn the_keras_residual_model_folds_mul_add_and_its_softmax() {
    let bytes = std::fs::read(foreign("keras_resnet_f32.onnx")).unwrap();
    let imported = read_float_onnx(&bytes).unwrap();
    let names: Vec<&str> = imported.graph.ops.iter().map(|o| o.name()).collect();
    for want in ["conv2d", "depthwise_conv2d", "add", "avg_pool", "dense"] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    let r = &imported.report;
    assert_eq!(r.input_layout, InputLayout::Nhwc);
    assert_eq!(r.input_shape, [1, 28, 28, 1]);
    assert!(r.dropped_softmax);
    let folds = |op: &str| r.folded.iter().filter(|f| f.starts_with(op)).count();
    assert!(folds("Mul") >= 5 && folds("Add") >= 5, "{:?}", r.folded);
}

/// The input of the Softmax that writes the graph's output, if one does.
fn softmax_input(onnx: &[u8]) -> Option<String> {
    let model = ModelProto::decode(onnx).unwrap();
    let g = model.graph.unwrap();
    let out = &g.output[0].name;
    g.node
        .iter()
        .find(|n| n.op_type == "Softmax" && n.output.first() == Some(out))
        .map(|n| n.input[0].clone())
}

/// tract's own reading of the original file, as an independent check of the framework's
/// committed outputs (and so of what the importer is held to).
#[test]
fn tract_on_the_original_onnx_agrees_with_the_framework() {
    for m in models() {
        let path = foreign(&format!("{}.onnx", m.name));
        let mut model = tract_onnx::onnx().model_for_path(&path).unwrap();
        // The Keras files end in a Softmax; the committed outputs are the logits before it.
        if let Some(logits) = softmax_input(&std::fs::read(&path).unwrap()) {
            model.select_outputs_by_name([logits.as_str()]).unwrap();
        }
        let shape: [usize; 4] = match m.layout {
            InputLayout::Nhwc => [1, 28, 28, 1],
            _ => [1, 1, 28, 28],
        };
        let plan = model
            .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let (xs, ys) = committed(m.name);
        let mut worst = 0.0f32;
        for (x, y) in xs.iter().zip(&ys) {
            let t: Tensor = tract_ndarray::Array4::from_shape_vec(shape, x.clone())
                .unwrap()
                .into();
            let out = plan.run(tvec!(t.into())).unwrap();
            let v: Vec<f32> = out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            worst = worst.max(max_diff(&v, y));
        }
        println!("{}: tract vs framework worst {worst:e}", m.name);
        assert!(worst <= FLOAT_TOLERANCE, "{}: {worst}", m.name);
    }
}

/// Quantized on 500 real training images, the runtime and tract (on the int8 ONNX export) give
/// identical int8 logits on 1,000 test images, and the int8 accuracy over all 10,000 is within
/// 0.2 pp of the framework's float accuracy.
#[test]
fn quantized_imports_are_bit_exact_with_tract_and_keep_the_accuracy() {
    let mnist = mnist();
    for m in models() {
        let bytes = std::fs::read(foreign(&format!("{}.onnx", m.name))).unwrap();
        let mut graph = read_float_onnx(&bytes).unwrap().graph;
        graph.pixel_scale = Some(1.0 / 255.0);
        let calibration: Vec<Vec<f32>> = (0..500)
            .map(|i| {
                mnist
                    .train
                    .image(i * 120)
                    .iter()
                    .map(|&p| p as f32 / 255.0)
                    .collect()
            })
            .collect();
        let tcm = quantize::to_tcm(&graph, &calibration, &quantize::Options::default())
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
        let q = Graph::parse(&tcm).expect("the runtime parses the quantized import");
        let onnx = onnx_graph::int8_onnx(&q).expect("the int8 graph exports");
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let mut arena = vec![0i8; q.arena_len()];
        let (mut differ, mut correct) = (0usize, 0usize);
        for i in 0..mnist.test.len() {
            let pixels = mnist.test.image(i);
            let ours = q.infer_pixels(pixels, &mut arena).unwrap().to_vec();
            if i < 1000 {
                let x: Vec<i8> = pixels.iter().map(|&p| (p as i32 - 128) as i8).collect();
                let t: Tensor = tract_ndarray::Array4::from_shape_vec((1, 28, 28, 1), x)
                    .unwrap()
                    .into();
                let out = plan.run(tvec!(t.into())).unwrap();
                let theirs: Vec<i8> = out[0]
                    .to_plain_array_view::<i8>()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect();
                differ += usize::from(ours != theirs);
            }
            correct += usize::from(argmax(&ours) == mnist.test.labels[i] as usize);
        }
        let int8 = correct as f64 / mnist.test.len() as f64;
        println!(
            "{}: runtime vs tract int8: {differ}/1000 images differ; int8 accuracy {:.2} % vs framework float {:.2} % ({:+.2} pp)",
            m.name,
            int8 * 100.0,
            m.accuracy * 100.0,
            (int8 - m.accuracy) * 100.0
        );
        assert_eq!(differ, 0, "{}", m.name);
        assert!((int8 - m.accuracy).abs() <= 0.002, "{}", m.name);
    }
}

/// Negative control: the same model with its first BatchNormalization node removed (its
/// output rewired to its input: what skipping the fold computes) fails the output check.
#[test]
fn skipping_a_batch_norm_breaks_the_output_match() {
    let bytes = std::fs::read(foreign("torch_resnet.onnx")).unwrap();
    let mut model = ModelProto::decode(&bytes[..]).unwrap();
    let g = model.graph.as_mut().unwrap();
    let at = g
        .node
        .iter()
        .position(|n| n.op_type == "BatchNormalization")
        .unwrap();
    let bn = g.node.remove(at);
    for n in &mut g.node {
        for i in &mut n.input {
            if *i == bn.output[0] {
                *i = bn.input[0].clone();
            }
        }
    }
    let imported = read_float_onnx(&model.encode_to_vec()).expect("still imports");
    let worst = worst_float_diff(&imported.graph, "torch_resnet");
    println!("without one batch norm: worst {worst:e}");
    assert!(worst > 100.0 * FLOAT_TOLERANCE, "{worst}");
}

/// Negative control: the plain CNN's Gemm weight columns must be permuted from NCHW to NHWC
/// flatten order; fed the image transposed as if that were not needed, on a model whose conv
/// sees a transposed image, the check fails. Here: the same model with Flatten reading NHWC.
#[test]
fn an_unpermuted_flatten_breaks_the_output_match() {
    let bytes = std::fs::read(foreign("torch_cnn.onnx")).unwrap();
    let mut model = ModelProto::decode(&bytes[..]).unwrap();
    let g = model.graph.as_mut().unwrap();
    // Put an NCHW -> NHWC Transpose before the flatten: the importer then keeps NHWC order
    // and does not permute, which is wrong for the Gemm's NCHW-ordered weights.
    let at = g
        .node
        .iter()
        .position(|n| n.op_type == "Reshape" || n.op_type == "Flatten")
        .unwrap();
    let src = g.node[at].input[0].clone();
    g.node[at].input[0] = "nhwc_view".into();
    g.node.insert(
        at,
        node(
            "Transpose",
            "to_nhwc",
            &[src.as_str()],
            "nhwc_view",
            vec![ints("perm", &[0, 2, 3, 1])],
        ),
    );
    let imported = read_float_onnx(&model.encode_to_vec()).expect("still imports");
    assert!(
        !imported
            .report
            .folded
            .iter()
            .any(|f| f.contains("permuted"))
    );
    let worst = worst_float_diff(&imported.graph, "torch_cnn");
    println!("flatten in NHWC order: worst {worst:e}");
    assert!(worst > 100.0 * FLOAT_TOLERANCE, "{worst}");
    // And the original does permute.
    let original = read_float_onnx(&bytes).unwrap();
    assert!(
        original
            .report
            .folded
            .iter()
            .any(|f| f.contains("permuted"))
    );
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn weights(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect(),
        ..Default::default()
    }
}

enum D {
    V(i64),
    P(&'static str),
}

fn value_info(name: &str, dims: &[D]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                D::V(v) => dimension::Value::DimValue(*v),
                                D::P(p) => dimension::Value::DimParam(p.to_string()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// input [dims] -> Conv 3x3 (1 channel, pad 1) -> `op` -> output. One output channel: a
/// 4-D NCHW output is then the same values as NHWC, which the importer can output.
fn small_model(input: Vec<D>, op: &str) -> Vec<u8> {
    let graph = GraphProto {
        node: vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                "c",
                vec![ints("pads", &[1, 1, 1, 1])],
            ),
            node(op, "the_node", &["c"], "y", vec![]),
        ],
        initializer: vec![weights("w", &[1, 1, 3, 3]), weights("b", &[1])],
        input: vec![value_info("x", &input)],
        output: vec![value_info("y", &[])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn an_unsupported_op_is_refused_naming_the_node_and_op() {
    let bytes = small_model(vec![D::V(1), D::V(1), D::V(5), D::V(5)], "LeakyRelu");
    let err = read_float_onnx(&bytes).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(&err, OnnxImportError::Node { index: 1, name, op, .. } if name == "the_node" && op == "LeakyRelu"),
        "{err:?}"
    );
    assert!(
        msg.contains("node 1 `the_node` (LeakyRelu)") && msg.contains("GlobalAveragePool"),
        "{msg}"
    );
    // Control: the same model with a supported op imports.
    let ok = read_float_onnx(&small_model(
        vec![D::V(1), D::V(1), D::V(5), D::V(5)],
        "Relu",
    ))
    .unwrap();
    assert_eq!(ok.graph.ops.len(), 1, "Relu fused into the conv");
}

/// A real int8 ONNX model (the committed PyTorch CNN quantized by onnxruntime's
/// quantize_static, QDQ format) is refused at its first quantized node with a message that says
/// it is an int8 model and what to import instead; its float original imports (the control).
#[test]
fn a_dynamic_spatial_dim_is_refused_and_a_dynamic_batch_is_fixed_to_one() {
    let err = read_float_onnx(&small_model(
        vec![D::P("N"), D::V(1), D::P("height"), D::V(5)],
        "Relu",
    ))
    .unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, OnnxImportError::Input { name, problem } if name == "x" && problem.contains("dim 2 is dynamic")),
        "{err:?}"
    );
    let ok = read_float_onnx(&small_model(
        vec![D::P("N"), D::V(1), D::V(5), D::V(5)],
        "Relu",
    ))
    .unwrap();
    assert!(ok.report.dynamic_batch);
    assert_eq!(ok.report.input_shape, [1, 1, 5, 5]);
}

#[test]
fn a_softmax_inside_the_graph_and_an_old_opset_are_refused() {
    // Softmax then Relu: the Softmax is not the last op.
    let mut model =
        ModelProto::decode(&small_model(vec![D::V(1), D::V(1), D::V(5), D::V(5)], "Relu")[..])
            .unwrap();
    let g = model.graph.as_mut().unwrap();
    g.node
        .insert(1, node("Flatten", "flat", &["c"], "f", vec![]));
    g.node.insert(2, node("Softmax", "sm", &["f"], "s", vec![]));
    g.node[3].input[0] = "s".into();
    let err = read_float_onnx(&model.encode_to_vec()).unwrap_err();
    assert!(
        matches!(&err, OnnxImportError::Node { index: 2 | 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Softmax"), "{err}");
    model.opset_import[0].version = 11;
    let err = read_float_onnx(&model.encode_to_vec()).unwrap_err();
    assert_eq!(err, OnnxImportError::Opset { found: Some(11) });
}
