//! `tinyconv`: train an MNIST CNN with burn on the CPU, quantize it to int8 and run it on a
//! microcontroller.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, TrainArgs, VerifyArgs};
use tinyconv_trainer::{commands, data, model, pipeline, plots, train};

/// File names written into the output directory by `train`.
const CURVES_PNG: &str = "training_curves.png";
const CONFUSION_PNG: &str = "confusion_float.png";

/// `train` of a spec model or on a dataset other than MNIST-style IDX for the seed.
fn run_train_spec(args: &TrainArgs) -> anyhow::Result<()> {
    let config = args.config();
    // --data, else $TINYCONV_DATA, else the MNIST default directories (as for the seed).
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => data::locate(None)?,
    };
    let options = tinyconv_datasets::Options {
        kind: args.data_kind,
        input: args.input,
        val_split: args.val_split,
        seed: args.seed,
    };
    let dataset = tinyconv_datasets::load(&dir, &options)
        .with_context(|| format!("loading the dataset in {}", dir.display()))?;
    println!(
        "dataset {} ({}) from {}: {}x{}x{}, {} classes, {} training and {} test images",
        dataset.name,
        dataset.kind,
        dir.display(),
        dataset.height,
        dataset.width,
        dataset.channels,
        dataset.classes.len(),
        dataset.train.len(),
        dataset.test.len()
    );
    let augment = if args.augment {
        tinyconv_datasets::Augment {
            crop_padding: 4,
            hflip: true,
        }
    } else {
        tinyconv_datasets::Augment::default()
    };
    tinyconv_trainer::spec_pipeline::train_spec(&config, &args.model, &dataset, augment)?;
    Ok(())
}

fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    if args.wants_spec_path() {
        return run_train_spec(args);
    }
    let config = args.config();
    let dir = data::locate(args.data.as_deref())?;
    // Before loading and training for minutes: an output directory that cannot exist.
    std::fs::create_dir_all(&config.out_dir).with_context(|| {
        format!(
            "cannot create the output directory {}",
            config.out_dir.display()
        )
    })?;
    let mnist =
        data::load(&dir).with_context(|| format!("loading MNIST from {}", dir.display()))?;
    println!(
        "MNIST from {}: {} training, {} test images",
        dir.display(),
        mnist.train.len(),
        mnist.test.len()
    );
    if let Some(n) = config.limit.filter(|&n| n < mnist.train.len()) {
        println!("training on the first {n} training images (--limit)");
    }

    // The summary does not depend on the weights: a network whose weights are never drawn.
    println!(
        "\n{}",
        model::Cnn::lazy(&burn::tensor::Device::flex()).summary()
    );

    let outcome = train::train(&config, &mnist).context("training failed")?;

    if !outcome.phase_seconds.is_empty() {
        let n = outcome.phase_seconds.len() as f64;
        let total = outcome.phase_total();
        println!(
            "time per epoch (mean of {} epoch(s)): {:.1}s",
            outcome.phase_seconds.len(),
            total.total() / n
        );
        println!("  where it went (total): {total}");
    }

    let out = &config.out_dir;
    let curves = out.join(CURVES_PNG);
    plots::training_curves(&outcome.history, &curves)?;
    let last = outcome.history.last().map(|m| m.epoch).unwrap_or(0);
    let cm = out.join(CONFUSION_PNG);
    plots::confusion_matrix(
        &outcome.confusion,
        &mnist.class_names(),
        &format!("float model after epoch {last}, MNIST test set"),
        &cm,
    )?;
    println!(
        "wrote {}, {}, {}, {} and {}",
        out.join(train::FLOAT_MODEL).display(),
        out.join(train::METRICS_CSV).display(),
        curves.display(),
        cm.display(),
        train::checkpoint_dir(out).display()
    );

    pipeline::after_training(&outcome, &config, &mnist)
}

fn run_verify(a: &VerifyArgs) -> anyhow::Result<()> {
    let raw = std::fs::read(&a.model)
        .with_context(|| format!("cannot read model file {}", a.model.display()))?;
    if tinyconv::graph::is_v2(&raw) {
        anyhow::ensure!(
            a.firmware.is_none(),
            "--firmware checks the seed's v1 models; for {} run the firmware with \
             TINYCONV_MODEL set to it (docs/firmware.md)",
            a.model.display()
        );
        let v = tinyconv_trainer::verify_graph::verify_command(
            &a.model,
            &raw,
            a.data.as_deref(),
            a.data_kind,
            a.limit.map(|n| n as usize),
            a.source.as_deref(),
        )?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("{v}");
        }
        return v.ensure_identical();
    }
    anyhow::ensure!(
        a.source.is_none() && a.data_kind.is_none(),
        "--source and --data-kind are for v2 models; {} is the seed's v1 model",
        a.model.display()
    );
    let v = commands::verify_command(
        &a.model,
        a.data.as_deref(),
        a.limit.map(|n| n as usize),
        a.firmware.as_deref(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", v.table());
    }
    let problems = v.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "cross-check failed: {}",
        problems.join("; ")
    );
    Ok(())
}

/// The error and its causes on one line, like `{:#}`, but without a cause whose text its
/// parent already printed (many error types include their source in their own message).
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Train(args) => run_train(args),
        Command::Eval(a) => commands::eval(&a.model, a.data.as_deref(), a.data_kind).map(|_| ()),
        Command::Predict(a) => {
            let input = match (&a.image, a.index) {
                (Some(path), _) => commands::PredictInput::Image(path.clone()),
                (None, Some(i)) => commands::PredictInput::TestIndex(i),
                (None, None) => unreachable!("clap requires IMAGE or --index"),
            };
            commands::predict(&a.model, &input, a.data.as_deref(), a.data_kind)
                .map(|s| print!("{s}"))
        }
        Command::Inspect(a) => commands::inspect(&a.file).map(|s| print!("{s}")),
        Command::Verify(a) => run_verify(a),
        Command::Import(a) => {
            let report = a
                .report
                .clone()
                .unwrap_or_else(|| tinyconv_trainer::import::default_report_path(&a.out));
            let options = tinyconv_trainer::import::ImportOptions {
                input_range: a.input_range,
                data: a.data.clone(),
                data_kind: a.data_kind,
                calibration_images: a.calibration_images as usize,
                check_limit: a.check_limit.map(|n| n as usize),
                wide_dense: a.wide_dense,
            };
            tinyconv_trainer::import::import_model(&a.model, &a.out, &report, &options).map(|s| {
                println!("{s}");
                println!("  report: {}", report.display());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
