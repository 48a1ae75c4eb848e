//! Every way a spec can be wrong gives its own error, and the message names the layer and the
//! facts (shapes, values) needed to fix it.

use tinyconv_spec::{ModelSpec, PRESET_NAMES, Shape, SpecError, load, preset_text};

const MNIST: Shape = Shape::new(28, 28, 1);

/// A spec with `layers` (TOML) and a final flatten + dense appended.
fn with_head(layers: &str) -> String {
    format!(
        "name = \"t\"\n{layers}\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\n"
    )
}

fn parse_err(text: &str) -> SpecError {
    ModelSpec::parse(text, "t.toml").expect_err("parses")
}

fn resolve_err(text: &str, input: Shape, classes: usize) -> SpecError {
    ModelSpec::parse(text, "t.toml")
        .unwrap_or_else(|e| panic!("parse: {e}"))
        .resolve(input, classes)
        .expect_err("resolves")
}

fn has(message: &str, parts: &[&str]) {
    // Printed so that `--nocapture` shows every message the tests read.
    println!("{message}");
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
}

const RESIDUAL_HEAD: &str = "[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 3\n";

#[test]
fn unknown_layer_type_names_its_path_and_the_known_types() {
    let text = with_head(&format!(
        "{RESIDUAL_HEAD}[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"relu\"\n\
         [[layers]]\ntype = \"residual\"\n[[layers.main]]\ntype = \"relu\"\n[[layers.main]]\ntype = \"swish\"\n"
    ));
    let e = parse_err(&text);
    assert!(matches!(e, SpecError::UnknownLayer { .. }), "{e:?}");
    has(
        &e.to_string(),
        &[
            "layers[3].main[1]",
            "\"swish\"",
            "conv",
            "batch_norm",
            "global_avg_pool",
            "residual",
        ],
    );
}

#[test]
fn unknown_and_missing_fields() {
    let e = parse_err(&with_head(
        "[[layers]]\ntype = \"conv\"\nfliters = 4\nkernel = 3\n",
    ));
    has(&e.to_string(), &["layers[0]", "conv", "fliters", "filters"]);

    let e = parse_err(&with_head("[[layers]]\ntype = \"max_pool\"\n"));
    has(&e.to_string(), &["layers[0]", "kernel"]);

    let e = parse_err(&with_head("[[layers]]\ntype = \"relu\"\nmax = 6\n"));
    has(
        &e.to_string(),
        &["layers[0]", "relu takes no fields", "max"],
    );

    let e = parse_err(&with_head("[[layers]]\nfilters = 4\n"));
    assert!(matches!(e, SpecError::MissingType { .. }), "{e:?}");
    has(&e.to_string(), &["layers[0]", "no `type`", "conv"]);

    let e = parse_err("name = \"t\"\nlayer = []\n");
    has(&e.to_string(), &["t.toml", "layer"]);

    let e = parse_err("description = \"no name\"\n");
    has(&e.to_string(), &["t.toml", "name"]);
}

#[test]
fn bad_field_values() {
    let e = parse_err(&with_head(
        "[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 3\npadding = \"full\"\n",
    ));
    has(
        &e.to_string(),
        &["layers[0]", "\"same\"", "\"valid\"", "full"],
    );

    let e = parse_err(&with_head(
        "[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = [3, 3, 3]\n",
    ));
    has(&e.to_string(), &["layers[0]", "[height, width]"]);

    let e = parse_err(&with_head(
        "[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = -3\n",
    ));
    has(&e.to_string(), &["layers[0]", "non-negative"]);

    let e = resolve_err(
        &with_head("[[layers]]\ntype = \"dropout\"\nrate = 1.0\n"),
        MNIST,
        10,
    );
    has(&e.to_string(), &["layers[0]", "rate", "[0, 1)", "1"]);

    let e = resolve_err(
        &with_head(&format!(
            "{RESIDUAL_HEAD}[[layers]]\ntype = \"batch_norm\"\nepsilon = 0.0\n"
        )),
        MNIST,
        10,
    );
    has(&e.to_string(), &["layers[1]", "epsilon"]);
}

#[test]
fn kernel_larger_than_the_padded_input() {
    // 28 → valid 5x5 → 24 → pool 4 → 6 → valid 7x7: 6 < 7.
    let text = with_head(
        "[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 5\n\
         [[layers]]\ntype = \"max_pool\"\nkernel = 4\n\
         [[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = [7, 1]\npadding = [0, 0, 0, 0]\n",
    );
    let e = resolve_err(&text, MNIST, 10);
    assert!(matches!(e, SpecError::KernelTooLarge { .. }), "{e:?}");
    has(
        &e.to_string(),
        &["layers[2]", "7x1", "6x6x4", "padded to 6x6"],
    );
    // The same layer fits with one row of padding on each side: 6 + 2 = 8 >= 7.
    let fits = text.replace("padding = [0, 0, 0, 0]", "padding = [1, 0, 1, 0]");
    ModelSpec::parse(&fits, "t")
        .unwrap()
        .resolve(MNIST, 10)
        .unwrap();
}

#[test]
fn padding_as_large_as_the_window() {
    let e = resolve_err(
        &with_head("[[layers]]\ntype = \"max_pool\"\nkernel = 2\npadding = 2\n"),
        MNIST,
        10,
    );
    has(&e.to_string(), &["layers[0]", "[2, 2, 2, 2]", "2x2"]);
}

#[test]
fn dense_on_a_map() {
    let text = format!("name = \"t\"\n{RESIDUAL_HEAD}[[layers]]\ntype = \"dense\"\n");
    let e = resolve_err(&text, MNIST, 10);
    assert!(matches!(e, SpecError::DenseNotFlat { .. }), "{e:?}");
    has(
        &e.to_string(),
        &[
            "layers[1]",
            "26x26x4",
            "add a flatten or global_avg_pool before it",
        ],
    );
}

#[test]
fn residual_branches_of_different_shapes() {
    let text = with_head(&format!(
        "{RESIDUAL_HEAD}[[layers]]\ntype = \"residual\"\n\
         [[layers.main]]\ntype = \"conv\"\nfilters = 8\nkernel = 3\nstride = 2\npadding = \"same\"\n\
         [[layers.shortcut]]\ntype = \"conv\"\nfilters = 8\nkernel = 1\n"
    ));
    let e = resolve_err(&text, MNIST, 10);
    assert!(matches!(e, SpecError::ResidualMismatch { .. }), "{e:?}");
    // Main: 26 → ceil(26/2) = 13; shortcut: 1x1 stride 1 keeps 26.
    has(
        &e.to_string(),
        &[
            "layers[1]",
            "layers[1].main[0]",
            "13x13x8",
            "layers[1].shortcut[0]",
            "26x26x8",
        ],
    );
    // Identity shortcut: the block's input (26x26x4) against the main branch's 13x13x8.
    let identity = text.replace(
        "[[layers.shortcut]]\ntype = \"conv\"\nfilters = 8\nkernel = 1\n",
        "",
    );
    let e = resolve_err(&identity, MNIST, 10);
    has(&e.to_string(), &["identity", "26x26x4", "13x13x8"]);
    // An empty main branch.
    let e = resolve_err(
        &with_head("[[layers]]\ntype = \"residual\"\nmain = []\n"),
        MNIST,
        10,
    );
    has(&e.to_string(), &["layers[0]", "`main` branch is empty"]);
}

#[test]
fn depthwise_with_a_channel_changing_filter_count() {
    let text = with_head(&format!(
        "{RESIDUAL_HEAD}[[layers]]\ntype = \"conv\"\ndepthwise = true\nfilters = 8\nkernel = 3\n"
    ));
    let e = resolve_err(&text, MNIST, 10);
    assert!(matches!(e, SpecError::DepthwiseFilters { .. }), "{e:?}");
    has(&e.to_string(), &["layers[1]", "filters = 8", "(4)"]);
    // filters equal to the channels is accepted.
    let ok = text.replace("filters = 8", "filters = 4");
    ModelSpec::parse(&ok, "t")
        .unwrap()
        .resolve(MNIST, 10)
        .unwrap();
    // A plain conv must have filters.
    let e = resolve_err(
        &with_head("[[layers]]\ntype = \"conv\"\nkernel = 3\n"),
        MNIST,
        10,
    );
    has(&e.to_string(), &["layers[0]", "filters"]);
}

#[test]
fn batch_norm_only_right_after_a_conv_or_dense() {
    let e = resolve_err(
        &with_head(&format!(
            "{RESIDUAL_HEAD}[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"batch_norm\"\n"
        )),
        MNIST,
        10,
    );
    assert!(matches!(e, SpecError::BatchNormPlacement { .. }), "{e:?}");
    has(
        &e.to_string(),
        &["layers[2]", "relu (layers[1])", "conv or dense"],
    );
    let e = resolve_err(&with_head("[[layers]]\ntype = \"batch_norm\"\n"), MNIST, 10);
    has(&e.to_string(), &["layers[0]", "the input"]);
    let e = resolve_err(
        &with_head(&format!(
            "{RESIDUAL_HEAD}[[layers]]\ntype = \"residual\"\n[[layers.main]]\ntype = \"batch_norm\"\n"
        )),
        MNIST,
        10,
    );
    has(
        &e.to_string(),
        &["layers[1].main[0]", "start of the residual branch"],
    );
    // After a dense: accepted.
    let text = "name = \"t\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 8\n\
                [[layers]]\ntype = \"batch_norm\"\n[[layers]]\ntype = \"dense\"\n";
    ModelSpec::parse(text, "t")
        .unwrap()
        .resolve(MNIST, 10)
        .unwrap();
}

#[test]
fn empty_model_and_a_last_layer_that_is_not_dense() {
    let e = resolve_err("name = \"t\"\n", MNIST, 10);
    assert!(matches!(e, SpecError::EmptyModel), "{e:?}");
    has(&e.to_string(), &["no layers", "dense"]);

    let text = "name = \"t\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 8\n\
                [[layers]]\ntype = \"relu\"\n";
    let e = resolve_err(text, MNIST, 10);
    assert!(matches!(e, SpecError::LastNotDense { .. }), "{e:?}");
    has(
        &e.to_string(),
        &[
            "layers[2]",
            "\"relu\"",
            "must be `dense`",
            "class logits",
            "10",
        ],
    );
}

#[test]
fn dense_units() {
    let text =
        "name = \"t\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 8\n";
    let e = resolve_err(text, MNIST, 10);
    assert!(matches!(e, SpecError::OutputUnits { .. }), "{e:?}");
    has(&e.to_string(), &["layers[1]", "units = 8", "10 classes"]);
    // units equal to the classes is accepted.
    ModelSpec::parse(text, "t")
        .unwrap()
        .resolve(MNIST, 8)
        .unwrap();

    let text = "name = \"t\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\n\
                [[layers]]\ntype = \"dense\"\n";
    let e = resolve_err(text, MNIST, 10);
    assert!(matches!(e, SpecError::MissingUnits { .. }), "{e:?}");
    has(&e.to_string(), &["layers[1]", "last dense layer"]);
}

#[test]
fn conv_strides_other_than_1_or_2() {
    let e = resolve_err(
        &with_head("[[layers]]\ntype = \"conv\"\nfilters = 4\nkernel = 3\nstride = [1, 3]\n"),
        MNIST,
        10,
    );
    assert!(matches!(e, SpecError::Stride { .. }), "{e:?}");
    has(&e.to_string(), &["layers[0]", "[1, 3]", "1 or 2"]);
    // A pool's stride defaults to its kernel and may be larger than 2.
    let pool = with_head("[[layers]]\ntype = \"max_pool\"\nkernel = 4\n");
    let r = ModelSpec::parse(&pool, "t")
        .unwrap()
        .resolve(MNIST, 10)
        .unwrap();
    assert_eq!(r.nodes[1].output, Shape::new(7, 7, 1));
}

#[test]
fn zero_sizes() {
    for (layer, what) in [
        ("type = \"conv\"\nfilters = 0\nkernel = 3", "filters"),
        (
            "type = \"conv\"\nfilters = 4\nkernel = [3, 0]",
            "kernel 3x0",
        ),
        (
            "type = \"conv\"\nfilters = 4\nkernel = 3\nstride = 0",
            "stride",
        ),
        ("type = \"avg_pool\"\nkernel = 2\nstride = [0, 2]", "stride"),
    ] {
        let e = resolve_err(&with_head(&format!("[[layers]]\n{layer}\n")), MNIST, 10);
        assert!(matches!(e, SpecError::ZeroSize { .. }), "{layer}: {e:?}");
        has(&e.to_string(), &["layers[0]", what, "is 0"]);
    }
    let text = "name = \"t\"\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 0\n\
                [[layers]]\ntype = \"dense\"\n";
    let e = resolve_err(text, MNIST, 10);
    has(&e.to_string(), &["layers[1]", "units is 0"]);
    let e = resolve_err(&with_head(""), Shape::new(28, 0, 1), 10);
    has(&e.to_string(), &["input", "width is 0"]);
}

#[test]
fn class_counts() {
    let text = with_head("");
    for classes in [0, 1001] {
        let e = resolve_err(&text, MNIST, classes);
        assert!(matches!(e, SpecError::Classes { .. }), "{e:?}");
        has(
            &e.to_string(),
            &[&format!("{classes} classes"), "1 to 1000"],
        );
    }
    for classes in [1, 2, 1000] {
        let spec = ModelSpec::parse(&text, "t").unwrap();
        assert_eq!(spec.resolve(MNIST, classes).unwrap().classes, classes);
    }
}

#[test]
fn huge_sizes_are_an_error_not_an_overflow() {
    let text = with_head(&format!(
        "[[layers]]\ntype = \"conv\"\nfilters = {}\nkernel = 1\n",
        i64::MAX
    ));
    let e = resolve_err(&text, Shape::new(1 << 20, 1 << 20, 1 << 20), 10);
    assert!(matches!(e, SpecError::TooLarge { .. }), "{e:?}");
}

#[test]
fn load_takes_a_preset_or_an_existing_path() {
    for name in PRESET_NAMES {
        assert_eq!(load(name).unwrap().name, name);
    }
    let e = load("resnet9").unwrap_err();
    assert!(matches!(e, SpecError::UnknownPreset { .. }), "{e:?}");
    has(
        &e.to_string(),
        &["resnet9", "seed", "lenet5", "resnet8", "dscnn"],
    );

    let dir = std::env::temp_dir().join(format!("tinyconv-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    let e = load(missing.to_str().unwrap()).unwrap_err();
    assert!(matches!(e, SpecError::FileNotFound { .. }), "{e:?}");
    has(
        &e.to_string(),
        &[missing.to_str().unwrap(), "does not exist"],
    );
    // A path named like a preset is still a path.
    let e = load("./seed.toml").unwrap_err();
    has(&e.to_string(), &["./seed.toml", "does not exist"]);

    let file = dir.join("mine.toml");
    let text = preset_text("lenet5")
        .unwrap()
        .replace("name = \"lenet5\"", "name = \"mine\"");
    std::fs::write(&file, text).unwrap();
    let spec = load(file.to_str().unwrap()).unwrap();
    assert_eq!(spec.name, "mine");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\n[[layers]]\ntype = \"conv2d\"\n").unwrap();
    let e = load(bad.to_str().unwrap()).unwrap_err();
    has(&e.to_string(), &["layers[0]", "conv2d"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn integer_rates_are_read_as_numbers() {
    let text = with_head("[[layers]]\ntype = \"dropout\"\nrate = 0\n");
    let r = ModelSpec::parse(&text, "t")
        .unwrap()
        .resolve(MNIST, 10)
        .unwrap();
    assert_eq!(r.nodes[1].op, tinyconv_spec::Op::Dropout { rate: 0.0 });
}

#[test]
fn model_names_must_be_usable_in_file_names() {
    for name in ["", "a/b", "my model", "..", "-x"] {
        let e = parse_err(&format!("name = {name:?}\n"));
        has(&e.to_string(), &["name", "letters, digits"]);
    }
    for name in ["seed", "my-cnn_2", "v1.2"] {
        assert_eq!(
            ModelSpec::parse(&format!("name = {name:?}\n"), "t")
                .unwrap()
                .name,
            name
        );
    }
}
