//! Load a dataset and print what was found, or convert it to an image folder:
//!
//! ```sh
//! cargo run --release -p tinyconv-datasets --example load -- DIR [--data-kind K] \
//!     [--input HxWxC] [--val-split F] [--seed N] [--write-folder OUT [--limit N]]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tinyconv_datasets::{Options, load, write_image_folder};

fn parse_input(s: &str) -> Result<(usize, usize, usize), String> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| {
            d.parse()
                .map_err(|_| format!("--input {s}: expected HxWxC, e.g. 32x32x3"))
        })
        .collect::<Result<_, _>>()?;
    match dims[..] {
        [h, w, c] => Ok((h, w, c)),
        _ => Err(format!("--input {s}: expected HxWxC, e.g. 32x32x3")),
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut options, mut out, mut limit) = (None, Options::default(), None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--data-kind" => options.kind = Some(value()?.parse()?),
            "--input" => options.input = Some(parse_input(&value()?)?),
            "--val-split" => {
                options.val_split = Some(value()?.parse().map_err(|e| format!("--val-split: {e}"))?)
            }
            "--seed" => options.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--write-folder" => out = Some(PathBuf::from(value()?)),
            "--limit" => limit = Some(value()?.parse().map_err(|e| format!("--limit: {e}"))?),
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    let dir = dir.ok_or("usage: load DIR [--data-kind K] [--input HxWxC] [--val-split F] [--seed N] [--write-folder OUT [--limit N]]")?;
    let start = Instant::now();
    let d = load(&dir, &options).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} ({}): {}x{}x{}, {} classes, loaded in {secs:.2} s",
        d.name,
        d.kind,
        d.height,
        d.width,
        d.channels,
        d.classes.len()
    );
    let shown: Vec<_> = d.classes.iter().take(10).cloned().collect();
    println!(
        "  classes: {}{}",
        shown.join(", "),
        if d.classes.len() > 10 { ", ..." } else { "" }
    );
    for (name, split) in [("train", &d.train), ("test", &d.test)] {
        println!(
            "  {name}: {} ({:?})",
            split.fingerprint(),
            &split.histogram()[..d.classes.len().min(10)]
        );
    }
    if let Some(out) = out {
        write_image_folder(&d, &out, limit).map_err(|e| e.to_string())?;
        println!("  wrote {}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
