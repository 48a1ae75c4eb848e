//! The self-test of a model format v2 `$TINYCONV_MODEL` (`src/graphmain.rs`): its inputs and
//! the outputs the HOST runtime computes for them.
//!
//! With `$TINYCONV_DATA` (a dataset directory of any kind `tinyconv_datasets` reads;
//! `$TINYCONV_DATA_KIND` forces one) and a model that takes raw pixels, test images spread
//! evenly over the test split, with their labels: converted to the model's input shape,
//! quantized here into its int8 input tensor as `Graph::infer_pixels` does, and the expected
//! outputs are `infer_pixels`'s own. Otherwise seeded random int8 inputs and `infer_int8`'s
//! outputs.

use std::fmt::Write as _;
use std::path::Path;

use tinyconv::graph::Graph;
use tinyconv::quant::{Multiplier, requantize};
use tinyconv::testing::SplitMix64;

use tinyconv_datasets::{Kind, Options};

use crate::fail;

/// The random inputs' seed (SplitMix64), fixed so that a build is reproducible.
pub const RANDOM_SEED: u64 = 0x7c0f_5eed;

/// Most self-test inputs by default; fewer when they would take more than [`DATA_BUDGET`].
pub const DEFAULT_INPUTS: usize = 200;

/// Flash the default self-test data may take (inputs and expected outputs).
pub const DATA_BUDGET: usize = 192 * 1024;

/// What the firmware embeds for its self-test.
pub struct SelfTest {
    /// Whole int8 input tensors, as bytes.
    pub inputs: Vec<u8>,
    /// The host runtime's output tensor for each, as bytes.
    pub expected: Vec<u8>,
    /// Each input's label (a dataset's), or empty.
    pub labels: Vec<u16>,
    /// Where the inputs come from, for the firmware's log.
    pub source: String,
    /// Inputs whose host output's top class is the label.
    pub host_correct: u64,
}

/// How many inputs: `$TINYCONV_SELFTEST_IMAGES` when set, else as many of
/// [`DEFAULT_INPUTS`] as fit in `budget` bytes (at least one).
pub fn input_count(explicit: Option<usize>, bytes_per_input: usize, budget: usize) -> usize {
    explicit.unwrap_or_else(|| (budget / bytes_per_input.max(1)).clamp(1, DEFAULT_INPUTS))
}

/// `count` test images of the dataset in `data` (any kind `tinyconv_datasets` reads: IDX, an
/// image folder, CIFAR; `kind` forces one), spread evenly over the test split so that a split
/// stored class by class gives every class, converted to the model's input shape as `eval` and
/// `verify` convert them, quantized into the model's int8 input tensor as `Graph::infer_pixels`
/// does, with their labels and the host runtime's outputs. `fail`s unless the model takes raw
/// pixels and has one output per class of the dataset. `explicit` images when given (an error
/// when the split holds fewer), else `default` or the whole split when it holds fewer.
pub fn dataset(
    graph: &Graph<'_>,
    model: &Path,
    data: &Path,
    kind: Option<Kind>,
    explicit: Option<usize>,
    default: usize,
) -> SelfTest {
    let input = graph.input();
    let Some(pixel_scale) = graph.pixel_scale() else {
        fail(&format!(
            "TINYCONV_DATA={} is set, but {} takes its int8 input tensor ({}), not raw pixels, \
             so images cannot be fed to it. Unset TINYCONV_DATA (or set it empty) to run the \
             self-test on seeded random inputs, or import the model with \
             `--input-range 0..1|0..255` so that it takes pixels",
            data.display(),
            model.display(),
            input.shape
        ))
    };
    let (h, w, c) = (input.shape.h, input.shape.w, input.shape.c);
    if !matches!(c, 1 | 3) {
        fail(&format!(
            "TINYCONV_DATA={} holds images, but {} takes {} (channels must be 1 or 3 for \
             images). Unset TINYCONV_DATA (or set it empty) to run the self-test on seeded \
             random inputs",
            data.display(),
            model.display(),
            input.shape
        ));
    }
    let options = Options {
        kind,
        input: Some((h, w, c)),
        ..Options::default()
    };
    let dataset = tinyconv_datasets::load(data, &options).unwrap_or_else(|e| {
        fail(&format!(
            "TINYCONV_DATA={}: {e}\n(set TINYCONV_DATA_KIND=idx|folder|cifar10|cifar100 to \
             force the kind, or TINYCONV_DATA= to use seeded random inputs)",
            data.display()
        ))
    });
    let outputs = graph.output().shape.len();
    if dataset.classes.len() != outputs {
        fail(&format!(
            "{} has {outputs} outputs but the {} dataset in {} has {} classes: give \
             TINYCONV_DATA the dataset the model was trained for",
            model.display(),
            dataset.kind,
            data.display(),
            dataset.classes.len()
        ));
    }
    let test = &dataset.test;
    let count = explicit.unwrap_or(default.min(test.len()));
    if count == 0 || count > test.len() {
        fail(&format!(
            "TINYCONV_DATA={}: {count} self-test images asked for (TINYCONV_SELFTEST_IMAGES), \
             its test split holds {}",
            data.display(),
            test.len()
        ));
    }

    // Graph::infer_pixels's table: q = clamp(rne(p * pixel_scale / input_scale) + z_in).
    let m = Multiplier::from_scale(pixel_scale / input.quant.scale)
        .unwrap_or_else(|| fail("the model's pixel multiplier is out of range"));
    let zp = input.quant.zero_point as i32;
    let table: Vec<i8> = (0..256)
        .map(|p| requantize(p, m, zp, i8::MIN as i32, i8::MAX as i32))
        .collect();

    let mut arena = vec![0i8; graph.arena_len()];
    let (mut inputs, mut expected, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut host_correct = 0;
    for k in 0..count {
        let i = spread(k, count, test.len());
        let (pixels, label) = (test.image(i), test.labels[i]);
        let quantized: Vec<i8> = pixels.iter().map(|&p| table[p as usize]).collect();
        let output = graph
            .infer_pixels(pixels, &mut arena)
            .unwrap_or_else(|e| fail(&format!("host inference failed: {e}")))
            .to_vec();
        // The firmware runs the int8 path on the quantized image: it must be the pixel path.
        let via_int8 = graph
            .infer_int8(&quantized, &mut arena)
            .unwrap_or_else(|e| fail(&format!("host inference failed: {e}")));
        if via_int8 != &output[..] {
            fail(
                "the pixel quantization in firmware/build/graph_selftest.rs differs from Graph::infer_pixels's",
            );
        }
        if top_class(&output) == label as usize {
            host_correct += 1;
        }
        inputs.extend(quantized.iter().map(|&q| q as u8));
        expected.extend(output.iter().map(|&v| v as u8));
        labels.push(label);
    }
    let converted = if dataset.shape() == (h, w, c) {
        String::new()
    } else {
        format!(" converted to {h}x{w}x{c} as eval and verify convert them,")
    };
    SelfTest {
        inputs,
        expected,
        labels,
        source: format!(
            "test images of the {} dataset {} ({} of {}, evenly spread),{converted} quantized at \
             build time as Graph::infer_pixels does, with labels; expected outputs: the host \
             runtime's",
            dataset.kind,
            data.display(),
            count,
            test.len()
        ),
        host_correct,
    }
}

/// The test image the `k`-th of `count` self-test inputs takes from a split of `len`: evenly
/// spaced, starting with the first, all of them when `count == len`.
pub fn spread(k: usize, count: usize, len: usize) -> usize {
    k * len / count
}

/// `count` seeded random int8 inputs and the host runtime's outputs.
pub fn random(graph: &Graph<'_>, count: usize) -> SelfTest {
    let n = graph.input().shape.len();
    let inputs = SplitMix64(RANDOM_SEED).bytes(n * count);
    let mut arena = vec![0i8; graph.arena_len()];
    let mut expected = Vec::new();
    for x in inputs.chunks_exact(n) {
        let x: Vec<i8> = x.iter().map(|&b| b as i8).collect();
        let y = graph
            .infer_int8(&x, &mut arena)
            .unwrap_or_else(|e| fail(&format!("host inference failed: {e}")));
        expected.extend(y.iter().map(|&v| v as u8));
    }
    SelfTest {
        inputs,
        expected,
        labels: Vec::new(),
        source: format!(
            "seeded random int8 inputs (SplitMix64 seed {RANDOM_SEED:#x}); expected outputs: the \
             host runtime's"
        ),
        host_correct: 0,
    }
}

/// The index of the largest value, the first of equals (as the firmware's).
fn top_class(output: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in output.iter().enumerate() {
        if v > output[best] {
            best = i;
        }
    }
    best
}

/// Writes the files `src/graphmain.rs` embeds into `out`.
pub fn write(out: &Path, name: &str, test: &SelfTest) {
    let write = |file: &str, bytes: &[u8]| {
        let path = out.join(file);
        // Rewrite only on change, so that an unchanged self-test does not rebuild the firmware.
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            std::fs::write(&path, bytes)
                .unwrap_or_else(|e| fail(&format!("write {}: {e}", path.display())));
        }
    };
    write("graph_selftest_inputs.i8", &test.inputs);
    write("graph_selftest_expected.i8", &test.expected);
    let mut src = String::new();
    writeln!(
        src,
        "// Generated by firmware/build.rs (build/graph_selftest.rs)."
    )
    .unwrap();
    writeln!(
        src,
        "/// The model's name in the RESULT line: its file's stem."
    )
    .unwrap();
    writeln!(src, "const NAME: &str = {name:?};").unwrap();
    writeln!(src, "/// Where the inputs and expected outputs come from.").unwrap();
    writeln!(src, "const SOURCE: &str = {:?};", test.source).unwrap();
    writeln!(
        src,
        "/// Inputs the host runtime classified as their label."
    )
    .unwrap();
    writeln!(src, "const HOST_CORRECT: u64 = {};", test.host_correct).unwrap();
    writeln!(src, "/// Each input's label, or none.").unwrap();
    writeln!(
        src,
        "static LABELS: [u16; {}] = {:?};",
        test.labels.len(),
        test.labels
    )
    .unwrap();
    write("graph_selftest.rs", src.as_bytes());
}
