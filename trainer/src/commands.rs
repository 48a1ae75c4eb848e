//! The CLI's read-only commands on an exported model: `eval`, `predict`, `inspect`, `verify`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tinyconv::{Model, Op};

use crate::data::{self, IMAGE_SIDE};
use crate::evaluate::{Accuracy, run_runtime};
use crate::pipeline::REPORT_JSON;
use crate::referee::{ModelFiles, verify};

/// Reads a model file and validates it with the runtime's parser; a damaged file yields the
/// runtime's typed error, with the path.
pub fn read_model(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    Model::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// `tinyconv eval`: int8 accuracy of a model file on the test set, through the runtime.
pub fn eval(
    model_path: &Path,
    data_dir: Option<&Path>,
    kind: Option<tinyconv_datasets::Kind>,
) -> anyhow::Result<Accuracy> {
    let raw = std::fs::read(model_path)
        .with_context(|| format!("cannot read model file {}", model_path.display()))?;
    if tinyconv::graph::is_v2(&raw) {
        return crate::import::eval_graph(model_path, &raw, data_dir, kind);
    }
    let bytes = read_model(model_path)?;
    let model = Model::parse(&bytes)?;
    let dir = data::locate(data_dir)?;
    let mnist = data::load(&dir)?;
    let started = std::time::Instant::now();
    let outputs = run_runtime(&model, &mnist.test);
    let seconds = started.elapsed().as_secs_f64();
    let acc = Accuracy::new(&outputs.classes, &mnist.test.labels, model.classes());
    println!(
        "int8 accuracy (tinyconv runtime): {:.2}% ({}/{}) on the test set in {}, {:.0} images/s",
        acc.accuracy * 100.0,
        acc.correct,
        acc.total,
        dir.display(),
        acc.total as f64 / seconds
    );
    let digits: Vec<String> = (0..acc.per_class.len()).map(|c| c.to_string()).collect();
    report_accuracy(&acc, &digits, &model_path.with_file_name(REPORT_JSON))?;
    Ok(acc)
}

/// Prints `acc`'s accuracy per class (named by `classes`), and checks it against the int8
/// accuracy `report_path` (the report written with the model) states, when there is one: an
/// evaluation that does not reproduce its report is an error.
pub(crate) fn report_accuracy(
    acc: &Accuracy,
    classes: &[String],
    report_path: &Path,
) -> anyhow::Result<()> {
    let per_class: Vec<String> = acc
        .per_class
        .iter()
        .zip(classes)
        .map(|(a, name)| format!("{name}: {:.2}%", a * 100.0))
        .collect();
    println!("per class: {}", per_class.join("  "));
    let Ok(text) = std::fs::read_to_string(report_path) else {
        return Ok(());
    };
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", report_path.display()))?;
    if let Some(reported) = report["int8_accuracy"].as_f64() {
        let agrees = (reported - acc.accuracy).abs() < 1e-9;
        println!(
            "{} says int8 accuracy {:.2}%: {}",
            report_path.display(),
            reported * 100.0,
            if agrees { "agrees" } else { "DIFFERS" }
        );
        if !agrees {
            bail!(
                "{} disagrees with this evaluation ({:.4}% measured now)",
                report_path.display(),
                acc.accuracy * 100.0
            );
        }
    }
    Ok(())
}

/// The 28x28 input as the model sees it, in five shades of ASCII.
fn ascii_digit(pixels: &[u8]) -> String {
    ascii_image(pixels, IMAGE_SIDE)
}

/// A gray image `width` pixels wide as text, one character a pixel.
fn ascii_image(pixels: &[u8], width: usize) -> String {
    let mut s = String::new();
    for row in pixels.chunks(width.max(1)) {
        s.extend(
            row.iter()
                .map(|&p| [' ', '.', ':', '*', '#'][p as usize * 5 / 256]),
        );
        s.push('\n');
    }
    s
}

/// `tinyconv inspect`: validate a model file and print its layer table.
pub fn inspect(path: &Path) -> anyhow::Result<String> {
    let raw = std::fs::read(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    if tinyconv::graph::is_v2(&raw) {
        return crate::import::inspect_graph(path, &raw);
    }
    let bytes = read_model(path)?;
    let model = Model::parse(&bytes)?;
    let mut s = String::new();
    let iq = model.input_quant();
    s.push_str(&format!(
        "{}: tinyconv model v{}, {} bytes, CRC-32 ok\ninput {} u8 pixels -> int8 (scale {:.6e}, zero point {}; pixel scale {:.6e})\n\n",
        path.display(),
        tinyconv::format::VERSION,
        bytes.len(),
        model.input_shape(),
        iq.scale,
        iq.zero_point,
        model.pixel_scale()
    ));
    s.push_str(&format!(
        "{:<3} {:<22} {:<10} {:>11} {:>9} {:>10} {:>9}  {:<24} {}\n",
        "#",
        "op",
        "output",
        "params",
        "MACs",
        "bytes",
        "out zp",
        "out scale / weight scales",
        "multipliers (mantissa * 2^-shift)"
    ));
    let (mut params, mut macs, mut stored) = (0, 0, 0);
    for (i, l) in model.layers().enumerate() {
        let mut op = l.op.name().to_string();
        if l.op == Op::Conv2d {
            op = format!(
                "{op} {}x{} {}",
                l.kernel,
                l.kernel,
                if l.padding == tinyconv::Padding::Same {
                    "same"
                } else {
                    "valid"
                }
            );
        }
        if l.relu {
            op.push_str("+relu");
        }
        if l.fused_pool {
            op.push_str("+pool");
        }
        let scales = if l.has_weights() {
            let ws: Vec<f32> = (0..l.output.c).map(|c| l.weight_scale(c)).collect();
            let (lo, hi) = ws
                .iter()
                .fold((f32::MAX, 0f32), |(a, b), &w| (a.min(w), b.max(w)));
            let shifts: Vec<i32> = (0..l.output.c).map(|c| l.multiplier(c).shift).collect();
            format!(
                "{:.3e} / {lo:.2e}..{hi:.2e}   shifts {}..{}",
                l.output_quant.scale,
                shifts.iter().min().unwrap_or(&0),
                shifts.iter().max().unwrap_or(&0)
            )
        } else {
            format!("{:.3e}", l.output_quant.scale)
        };
        s.push_str(&format!(
            "{:<3} {:<22} {:<10} {:>11} {:>9} {:>10} {:>9}  {}\n",
            i,
            op,
            l.output.to_string(),
            l.params(),
            l.macs(),
            l.stored_bytes(),
            l.output_quant.zero_point,
            scales
        ));
        params += l.params();
        macs += l.macs();
        stored += l.stored_bytes();
    }
    s.push_str(&format!(
        "\ntotal: {params} params, {macs} MACs per image, {stored} bytes of parameters, {} classes, activation arena {} bytes ({} for every kernel at full speed)\n",
        model.classes(),
        model.arena_len(),
        model.arena_len_for(tinyconv::Mode::Speed)
    ));
    Ok(s)
}

/// MNIST-style preprocessing of an arbitrary image: grayscale; white digit on black (inverted
/// when the border is light); the ink's bounding box scaled so its longer side is 20 px,
/// keeping the aspect ratio; placed in a 28x28 frame with its centre of mass at the centre —
/// how LeCun et al. prepared MNIST.
pub fn mnist_like(image: &image::DynamicImage) -> Vec<u8> {
    use image::imageops::FilterType;
    let gray = image.to_luma8();
    let (w, h) = gray.dimensions();
    let border: Vec<u8> = (0..w)
        .flat_map(|x| [gray.get_pixel(x, 0)[0], gray.get_pixel(x, h - 1)[0]])
        .chain((0..h).flat_map(|y| [gray.get_pixel(0, y)[0], gray.get_pixel(w - 1, y)[0]]))
        .collect();
    let invert = border.iter().map(|&v| v as u32).sum::<u32>() / border.len() as u32 > 127;
    let ink = image::GrayImage::from_fn(w, h, |x, y| {
        let v = gray.get_pixel(x, y)[0];
        image::Luma([if invert { 255 - v } else { v }])
    });
    // Bounding box of the ink (pixels above a low threshold).
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in ink.enumerate_pixels() {
        if p[0] > 32 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let mut out = vec![0u8; IMAGE_SIDE * IMAGE_SIDE];
    if x1 < x0 {
        return out; // a blank image
    }
    let cropped = image::imageops::crop_imm(&ink, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let (cw, ch) = cropped.dimensions();
    let scale = 20.0 / cw.max(ch) as f32;
    let (nw, nh) = (
        ((cw as f32 * scale).round() as u32).max(1),
        ((ch as f32 * scale).round() as u32).max(1),
    );
    let small = image::imageops::resize(&cropped, nw, nh, FilterType::Triangle);
    // Centre of mass of the scaled digit.
    let (mut mx, mut my, mut mass) = (0f32, 0f32, 0f32);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p[0] as f32;
        mx += x as f32 * v;
        my += y as f32 * v;
        mass += v;
    }
    let (cx, cy) = if mass > 0.0 {
        (mx / mass, my / mass)
    } else {
        (nw as f32 / 2.0, nh as f32 / 2.0)
    };
    let off_x = (14.0 - cx).round() as i32;
    let off_y = (14.0 - cy).round() as i32;
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i32 + off_x, y as i32 + off_y);
        if (0..IMAGE_SIDE as i32).contains(&tx) && (0..IMAGE_SIDE as i32).contains(&ty) {
            out[ty as usize * IMAGE_SIDE + tx as usize] = p[0];
        }
    }
    out
}

fn open_image(path: &Path) -> anyhow::Result<image::DynamicImage> {
    image::open(path).with_context(|| format!("cannot read image {} (PNG or JPEG)", path.display()))
}

fn check_index(i: usize, len: usize) -> anyhow::Result<()> {
    if i >= len {
        bail!(
            "--index {i} is out of range: the test set has {len} images (0..{})",
            len.saturating_sub(1)
        );
    }
    Ok(())
}

/// `predict` with a version-2 model of any input shape. A user's image becomes the model's
/// input: MNIST-style (inverted, centred: [`mnist_like`]) for a 28x28x1 model, else resized
/// and converted to its height, width and channels (`tinyconv_datasets::convert_image`, as
/// `train --input` converts a dataset). `--index` reads the test set of `--data` (any kind),
/// whose class names label the outputs.
fn predict_v2(
    model_path: &Path,
    raw: &[u8],
    input: &PredictInput,
    data_dir: Option<&Path>,
    kind: Option<tinyconv_datasets::Kind>,
) -> anyhow::Result<String> {
    let graph = tinyconv::graph::Graph::parse(raw)
        .map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?;
    // Refuse a model that cannot take an image before reading any image.
    crate::import::pixel_graph(model_path, &graph)?;
    let shape = graph.input().shape;
    anyhow::ensure!(
        matches!(shape.c, 1 | 3),
        "{} takes {shape} inputs: images have 1 or 3 channels",
        model_path.display()
    );
    let (pixels, label, classes) = match input {
        PredictInput::Image(path) => {
            let img = open_image(path)?;
            let pixels = if (shape.h, shape.w, shape.c) == (IMAGE_SIDE, IMAGE_SIDE, 1) {
                mnist_like(&img)
            } else {
                tinyconv_datasets::convert_image(&img, (shape.h, shape.w, shape.c))
            };
            (pixels, None, None)
        }
        PredictInput::TestIndex(i) => {
            let classes = graph.output().shape.len();
            let dataset =
                crate::verify_graph::dataset_for(model_path, shape, classes, data_dir, kind)?;
            check_index(*i, dataset.test.len())?;
            let label = dataset.test.labels[*i] as usize;
            (
                dataset.test.image(*i).to_vec(),
                Some(label),
                Some(dataset.classes),
            )
        }
    };
    let classes = classes.as_deref();
    let (class, lines) = crate::import::predict_graph(&graph, &pixels, classes)?;
    let mut s = if shape.c == 1 {
        ascii_image(&pixels, shape.w)
    } else {
        String::new()
    };
    let name = |c| crate::import::class_label(c, classes);
    s.push_str(&format!("class {}", name(class)));
    if let Some(l) = label {
        let verdict = if l == class { "correct" } else { "wrong" };
        s.push_str(&format!(" (label {}: {verdict})", name(l)));
    }
    s.push('\n');
    s.push_str(&lines);
    Ok(s)
}

/// What `predict` classifies.
pub enum PredictInput {
    Image(PathBuf),
    TestIndex(usize),
}

/// `tinyconv predict`: class and probabilities for one image.
pub fn predict(
    model_path: &Path,
    input: &PredictInput,
    data_dir: Option<&Path>,
    kind: Option<tinyconv_datasets::Kind>,
) -> anyhow::Result<String> {
    let raw = std::fs::read(model_path)
        .with_context(|| format!("cannot read model file {}", model_path.display()))?;
    if tinyconv::graph::is_v2(&raw) {
        return predict_v2(model_path, &raw, input, data_dir, kind);
    }
    let (pixels, label) = match input {
        PredictInput::Image(path) => (mnist_like(&open_image(path)?), None),
        PredictInput::TestIndex(i) => {
            let mnist = data::load(&data::locate(data_dir)?)?;
            check_index(*i, mnist.test.len())?;
            (mnist.test.image(*i).to_vec(), Some(mnist.test.labels[*i]))
        }
    };
    let bytes = read_model(model_path)?;
    let model = Model::parse(&bytes)?;
    let mut arena = vec![0i8; model.arena_len()];
    let prediction = model.infer(&pixels, &mut arena)?;
    let mut probabilities = vec![0f32; model.classes()];
    prediction.probabilities(&mut probabilities)?;
    let mut s = ascii_digit(&pixels);
    s.push_str(&format!("class {}", prediction.class));
    if let Some(l) = label {
        s.push_str(&format!(
            " (label {l}: {})",
            if l as usize == prediction.class {
                "correct"
            } else {
                "wrong"
            }
        ));
    }
    s.push('\n');
    for (c, (&p, &q)) in probabilities.iter().zip(prediction.logits).enumerate() {
        s.push_str(&format!(
            "{c}: {:>6.2}%  logit {q:>4}  {}\n",
            p * 100.0,
            "#".repeat((p * 40.0).round() as usize)
        ));
    }
    Ok(s)
}

/// `tinyconv verify`: the referee table on the test set (optionally its first `limit` images),
/// and with `firmware` (a full-eval ELF) the firmware in QEMU against the runtime.
pub fn verify_command(
    model_path: &Path,
    data_dir: Option<&Path>,
    limit: Option<usize>,
    firmware: Option<&Path>,
) -> anyhow::Result<crate::referee::Verification> {
    let tcm = read_model(model_path)?;
    let files = ModelFiles::beside(model_path);
    // Before the slow part: a missing ONNX file or float model is named at once.
    files.check_exist()?;
    let device = burn::tensor::Device::flex();
    let cnn = crate::train::load_float_model(&files.float_weights, &device).with_context(|| {
        format!(
            "the float weights beside the model ({})",
            files.float_weights.display()
        )
    })?;
    let mnist = data::load(&data::locate(data_dir)?)?;
    let test = match limit {
        Some(n) => mnist.test.truncated(n.min(mnist.test.len())),
        None => mnist.test.clone(),
    };
    let mut verification = verify(&cnn, &files, &tcm, &test)?;
    if let Some(elf) = firmware {
        verification.firmware = Some(check_firmware(elf, &tcm, &mnist.test)?);
    }
    Ok(verification)
}

/// Runs a full-eval firmware in QEMU and compares its logits with the runtime's on the same
/// (first N) test images.
fn check_firmware(
    elf: &Path,
    tcm: &[u8],
    test: &data::Split,
) -> anyhow::Result<crate::firmware::FirmwareCheck> {
    // QEMU runs ~10 M instructions per image at a few hundred MIPS: allow plenty.
    let timeout = std::time::Duration::from_secs(120 + test.len() as u64 / 10);
    let (run, seconds) = crate::firmware::run(elf, timeout)?;
    anyhow::ensure!(
        run.images >= 1 && run.images <= test.len(),
        "the firmware evaluated {} images; the test set has {}",
        run.images,
        test.len()
    );
    let model = tinyconv::Model::parse(tcm)?;
    let runtime = crate::evaluate::run_runtime(&model, &test.truncated(run.images));
    let runtime_digest = crate::evaluate::logits_digest(&runtime.logits);
    Ok(crate::firmware::FirmwareCheck {
        elf: elf.to_path_buf(),
        accuracy: run.correct as f64 / run.images as f64,
        runtime_digest: format!("{runtime_digest:#010x}"),
        identical_to_runtime: runtime_digest == run.digest,
        run,
        seconds,
    })
}
