//! The command line of `tinyconv`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use tinyconv_trainer::train::TrainConfig;

/// tinyconv: train an MNIST CNN on the CPU, quantize it to int8 and run it on a
/// microcontroller.
#[derive(Debug, Parser)]
#[command(name = "tinyconv", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the float CNN on MNIST, checkpointing after every epoch, then quantize and export
    /// it.
    Train(TrainArgs),
    /// Int8 accuracy of a model file on the MNIST test set, through the tinyconv runtime (the
    /// code the MCU runs); checks it against the report.json beside the model.
    Eval(EvalArgs),
    /// Classify one image: your own (PNG/JPEG, any size or colour; converted to the model's
    /// input: for 28x28x1 models an MNIST-style digit) or a test image by index.
    Predict(PredictArgs),
    /// Validate a model file and print its layer table (shapes, params, MACs, bytes, scales).
    Inspect(InspectArgs),
    /// Cross-check every engine on the test set: burn (float), tract (float ONNX), the
    /// tinyconv runtime (int8) and tract (int8 QLinearConv ONNX).
    Verify(VerifyArgs),
    /// Import a model trained elsewhere (an int8 TensorFlow Lite flatbuffer, or a float ONNX
    /// model calibrated on --data) as a .tcm, with a JSON report; nothing is written when it
    /// fails.
    Import(ImportArgs),
}

/// Flags of `tinyconv import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The model to import: an int8 .tflite file or a float .onnx file.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// The .tcm to write.
    #[arg(long, value_name = "FILE.tcm")]
    pub out: PathBuf,
    /// Where to write the JSON report (default: beside --out, FILE.import.json).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The range of the source model's float input, 0..1 (pixel/255) or 0..255. A TFLite
    /// model then also takes raw u8 pixels (`eval`, `Graph::infer_pixels`); a float ONNX model
    /// is fed its dataset's images so (default 0..1).
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub input_range: Option<tinyconv_trainer::import::InputRange>,
    /// Float ONNX: the dataset to calibrate on (its training images) and to check the int8
    /// model on (its test images): any kind `train` reads (docs/datasets.md).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The layout of --data (idx, folder, cifar10, cifar100) instead of detecting it.
    #[arg(long, value_name = "KIND")]
    pub data_kind: Option<tinyconv_datasets::Kind>,
    /// Float ONNX: training images to calibrate on, spread evenly over the training split.
    #[arg(long, value_name = "N", default_value_t = tinyconv_trainer::import::DEFAULT_CALIBRATION_IMAGES as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub calibration_images: u64,
    /// Float ONNX: check on the first N test images only (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub check_limit: Option<u64>,
    /// Store dense layers whose rows are a multiple of 8 and inputs of 4 as int16 weights (the
    /// wide layout, docs/model-format.md): twice their flash, no widened input in the arena,
    /// fewer Cortex-M4 instructions.
    #[arg(long)]
    pub wide_dense: bool,
}

/// Flags of `tinyconv eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model file (.tcm).
    #[arg(long, value_name = "FILE", default_value = "models/mnist-cnn.tcm")]
    pub model: PathBuf,
    /// The dataset (as for `train`): MNIST IDX files for the seed's v1 models; any dataset
    /// kind for v2 models (docs/datasets.md), its images converted to the model's input.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The layout of --data (idx, folder, cifar10, cifar100) instead of detecting it.
    #[arg(long, value_name = "KIND")]
    pub data_kind: Option<tinyconv_datasets::Kind>,
}

/// Flags of `tinyconv predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model file (.tcm).
    #[arg(long, value_name = "FILE", default_value = "models/mnist-cnn.tcm")]
    pub model: PathBuf,
    /// An image file (PNG or JPEG): a dark digit on a light background or the other way round.
    #[arg(
        value_name = "IMAGE",
        required_unless_present = "index",
        conflicts_with = "index"
    )]
    pub image: Option<PathBuf>,
    /// Classify test image number N instead (0-based) and show its label.
    #[arg(long, value_name = "N")]
    pub index: Option<usize>,
    /// The dataset for --index: MNIST IDX files for v1 models, any dataset kind for v2.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The layout of --data (idx, folder, cifar10, cifar100) instead of detecting it (v2).
    #[arg(long, value_name = "KIND")]
    pub data_kind: Option<tinyconv_datasets::Kind>,
}

/// Flags of `tinyconv inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model file (.tcm).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Flags of `tinyconv verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model file (.tcm). For the seed's v1 model, mnist-cnn.onnx, mnist-cnn.int8.onnx and
    /// model_float.bpk are read from the same directory. For a v2 model the float reference is
    /// --source, else the original ONNX named by FILE.import.json, else FILE.onnx (written by
    /// `train`).
    #[arg(long, value_name = "FILE", default_value = "models/mnist-cnn.tcm")]
    pub model: PathBuf,
    /// The dataset: MNIST IDX files for v1 models; any dataset kind for v2 models.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The layout of --data (idx, folder, cifar10, cifar100) instead of detecting it (v2).
    #[arg(long, value_name = "KIND")]
    pub data_kind: Option<tinyconv_datasets::Kind>,
    /// v2 models: the float ONNX model to compare with (an imported model's original).
    #[arg(long, value_name = "FILE.onnx")]
    pub source: Option<PathBuf>,
    /// Only the first N test images.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print the result as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
    /// Also run this firmware ELF (a full-eval build: `cd firmware && cargo build --release
    /// --features full-eval`, with TINYCONV_MODEL set to the same model) in qemu-system-arm
    /// and check that its int8 logits are the runtime's.
    #[arg(long, value_name = "ELF")]
    pub firmware: Option<PathBuf>,
}

/// Flags of `tinyconv train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Directory holding the four MNIST IDX files (raw or .gz). Without it: $TINYCONV_DATA;
    /// without either: data/mnist, then ../shared/data/mnist. A directory named by the flag or
    /// the variable that lacks the files is an error, never replaced by a default. MNIST is
    /// never downloaded.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Number of epochs (a resumed run continues up to this total).
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,

    /// Images per optimizer step.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,

    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_name = "RATE", value_parser = positive_f64)]
    pub lr: f64,

    /// Seed of all randomness: initial weights, shuffling, dropout. Same seed, same run.
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub seed: u64,

    /// Train on the first N training images only (validation still uses the whole test set).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Output directory: checkpoint/, metrics.csv, plots, model files.
    #[arg(long = "out", default_value = "models", value_name = "DIR")]
    pub out: PathBuf,

    /// Continue from the last finished epoch in OUT/checkpoint; the result equals an
    /// uninterrupted run with the same settings. Without it, training starts over.
    #[arg(long)]
    pub resume: bool,

    /// Training images used to calibrate int8 quantization after training.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub calibration: usize,

    /// Do not draw progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// The architecture: a preset (seed, lenet5, resnet8, dscnn) or a model spec file
    /// (FILE.toml, docs/model-spec.md). `seed` on MNIST-style IDX data trains today's network
    /// with its dedicated fast path and writes the v1 model `mnist-cnn.tcm`; every other
    /// model or dataset goes through the spec path and writes `<model>-<dataset>.*`.
    #[arg(long, default_value = "seed", value_name = "NAME|FILE.toml")]
    pub model: String,

    /// The dataset layout of --data (idx, folder, cifar10, cifar100), instead of detecting it
    /// from the directory's contents (docs/datasets.md).
    #[arg(long, value_name = "KIND")]
    pub data_kind: Option<tinyconv_datasets::Kind>,

    /// Resize and convert every image to HxWxC (C = 1 or 3), e.g. 32x32x3.
    #[arg(long, value_name = "HxWxC", value_parser = parse_input_shape)]
    pub input: Option<(usize, usize, usize)>,

    /// For an image folder without test/: hold out this fraction of each class as the test set.
    #[arg(long, value_name = "F")]
    pub val_split: Option<f32>,

    /// CIFAR-style augmentation of the training images: random crops of the image padded by
    /// 4 pixels and random horizontal flips, seeded by --seed.
    #[arg(long)]
    pub augment: bool,
}

/// `HxWxC` as three sizes.
pub fn parse_input_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<&str> = s.split('x').collect();
    let bad = || format!("expected HxWxC (e.g. 32x32x3), got {s:?}");
    let [h, w, c] = parts[..] else {
        return Err(bad());
    };
    let n = |p: &str| p.trim().parse::<usize>().map_err(|_| bad());
    let (h, w, c) = (n(h)?, n(w)?, n(c)?);
    if h == 0 || w == 0 || !matches!(c, 1 | 3) {
        return Err(format!(
            "{s:?}: height and width must be at least 1 and C 1 or 3"
        ));
    }
    Ok((h, w, c))
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a positive number, got {v}")),
        Err(e) => Err(e.to_string()),
    }
}

impl TrainArgs {
    /// Whether these flags ask for anything beyond today's seed network on IDX data: then
    /// the spec path trains.
    pub fn wants_spec_path(&self) -> bool {
        self.model != "seed"
            || self
                .data_kind
                .is_some_and(|k| k != tinyconv_datasets::Kind::Idx)
            || self.input.is_some()
            || self.val_split.is_some()
            || self.augment
    }

    /// The training settings these flags ask for.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            lr: self.lr,
            seed: self.seed,
            limit: self.limit.map(|n| n as usize),
            out_dir: self.out.clone(),
            resume: self.resume,
            calibration: self.calibration,
            progress: !self.no_progress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_recipe() {
        let cli = Cli::try_parse_from(["tinyconv", "train"]).unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        let c = args.config();
        assert_eq!(c, TrainConfig::default());
        // The Keras tutorial's recipe, as literals: a changed default must fail here, not
        // just move both sides of the comparison above.
        assert_eq!(
            c,
            TrainConfig {
                epochs: 10,
                batch_size: 1000,
                lr: 1e-3,
                seed: 42,
                limit: None,
                out_dir: PathBuf::from("models"),
                resume: false,
                calibration: 2000,
                progress: true,
            }
        );
        assert_eq!(args.data, None);
        // Keras' Adam epsilon (burn's default is 1e-5).
        assert_eq!(tinyconv_trainer::train::ADAM_EPSILON, 1e-7);
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["tinyconv", "train", "--lr", "0"][..],
            &["tinyconv", "train", "--lr", "-1"],
            &["tinyconv", "train", "--lr", "nan"],
            &["tinyconv", "train", "--epochs", "0"],
            &["tinyconv", "train", "--batch-size", "0"],
            &["tinyconv", "train", "--limit", "0"],
            &["tinyconv", "train", "--seed", "x"],
            &["tinyconv", "train", "--input", "32x32"],
            &["tinyconv", "train", "--input", "32x32x2"],
            &["tinyconv", "train", "--input", "0x32x3"],
            &["tinyconv", "train", "--data-kind", "png"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let line = "tinyconv train --limit 1000 --batch-size 100 --epochs 2 --resume --out o \
                    --data d --calibration 50";
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        let Command::Train(a) = cli.command else {
            panic!("not train")
        };
        let c = a.config();
        assert_eq!(
            (c.limit, c.batch_size, c.epochs, c.resume, c.calibration),
            (Some(1000), 100, 2, true, 50)
        );
        assert_eq!(a.data, Some(PathBuf::from("d")));
        assert!(!a.wants_spec_path());
        let line = "tinyconv train --model resnet8 --input 32x32x3 --augment --data-kind folder";
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        let Command::Train(a) = cli.command else {
            panic!("not train")
        };
        assert_eq!(a.input, Some((32, 32, 3)));
        assert_eq!(a.data_kind, Some(tinyconv_datasets::Kind::ImageFolder));
        assert!(a.augment && a.wants_spec_path());
    }
}
