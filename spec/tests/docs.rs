//! The examples of `docs/model-spec.md` parse and resolve as the text says.

use tinyconv_spec::{ModelSpec, Op, Pads, Shape};

/// The ```toml blocks of the doc that are whole specs (they start with `name =`).
fn examples() -> Vec<ModelSpec> {
    let doc = include_str!("../../docs/model-spec.md");
    doc.split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.starts_with("name ="))
        .map(|block| ModelSpec::parse(block, "docs/model-spec.md").unwrap())
        .collect()
}

#[test]
fn the_doc_examples_resolve_as_described() {
    let examples = examples();
    let names: Vec<&str> = examples.iter().map(|s| s.name.as_str()).collect();
    // The format sketch parses too (it has no output layer, so it does not resolve).
    assert_eq!(names, ["my-cnn", "small-cnn", "tiny-resnet"]);

    // "On 28x28x1 with 10 classes: 28x28x8, pool 14x14x8, conv stride 2 7x7x16 (pads 0, 0,
    // 1, 1), flatten 784, dense 64, dense 10."
    let r = examples[1].resolve(Shape::new(28, 28, 1), 10).unwrap();
    let conv2 = r
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv { .. }))
        .nth(1)
        .unwrap();
    assert_eq!(conv2.output, Shape::new(7, 7, 16));
    let Op::Conv { pads, .. } = conv2.op else {
        unreachable!()
    };
    assert_eq!(
        pads,
        Pads {
            top: 0,
            left: 0,
            bottom: 1,
            right: 1
        }
    );
    let flat = r.nodes.iter().find(|n| n.op == Op::Flatten).unwrap();
    assert_eq!(flat.output, Shape::new(1, 1, 784));
    assert_eq!(r.nodes.last().unwrap().output, Shape::new(1, 1, 10));

    let r = examples[2].resolve(Shape::new(32, 32, 3), 10).unwrap();
    let adds: Vec<_> = r.nodes.iter().filter(|n| n.op == Op::Add).collect();
    assert_eq!(adds.len(), 2);
    assert!(adds.iter().all(|a| a.output == Shape::new(16, 16, 32)));
    // The identity block's add reads its main branch's end and the block's input.
    let second = adds[1];
    let block_input = r
        .nodes
        .iter()
        .position(|n| std::ptr::eq(n, adds[0]))
        .unwrap();
    assert_eq!(second.inputs[1], block_input);
}
