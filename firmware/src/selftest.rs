//! Self-test: the embedded MNIST test images against the host runtime's logits, and two checks
//! that the fast kernels really ran (the portable kernels compute the same logits):
//!
//! * every call of a layer whose shape has a blocked kernel ran it on the DSP instructions
//!   (the runtime's dispatch counters, [`tinyconv::kernels::dispatch_counts`]);
//! * no inference took more instructions than the model's ceiling (`build.rs`: the committed
//!   figure of its architecture and arena plan plus a margin, or `$TINYCONV_MAX_INSTRUCTIONS`).

use tinyconv::Model;
use tinyconv::kernels::{blocked, dispatch_counts, reset_dispatch_counts};

use crate::clock::Calibration;
use crate::console::code;
use crate::firmware::{PIXELS, PORTABLE_HINT, Stats, UNIT, report};

mod data {
    include!(concat!(env!("OUT_DIR"), "/selftest.rs"));
}

/// Decodes build.rs's zero-run-length coding; `None` if the data does not make `PIXELS` pixels.
fn decode(rle: &[u8], pixels: &mut [u8; PIXELS]) -> Option<()> {
    let (mut i, mut o) = (0, 0);
    while i < rle.len() {
        if rle[i] != 0 {
            *pixels.get_mut(o)? = rle[i];
            o += 1;
            i += 1;
        } else {
            let run = *rle.get(i + 1)? as usize;
            pixels.get_mut(o..o + run)?.fill(0);
            o += run;
            i += 2;
        }
    }
    (o == PIXELS).then_some(())
}

/// Returns the exit code: 0 when every class and every logit matches the host's.
pub fn run(model: &Model<'_>, arena: &mut [i8], cal: &Calibration) -> i32 {
    if data::IMAGES == 0 {
        println!("error: no self-test images were embedded (see the build warnings)");
        return code::MISMATCH;
    }
    if model.classes() != data::CLASSES {
        println!(
            "error: the model has {} classes but the self-test data {}: rebuild",
            model.classes(),
            data::CLASSES
        );
        return code::MISMATCH;
    }
    println!(
        "self-test: {} MNIST test images against the host runtime's logits",
        data::IMAGES
    );
    let mut stats = Stats::new();
    let mut labelled = 0;
    // The slowest inference: (instructions, image).
    let mut slowest = (0, 0);
    reset_dispatch_counts();
    let mut pixels = [0u8; PIXELS];
    for i in 0..data::IMAGES {
        let rle = &data::RLE[data::OFFSETS[i] as usize..data::OFFSETS[i + 1] as usize];
        if decode(rle, &mut pixels).is_none() {
            println!("error: embedded image {i} is corrupt");
            return code::MISMATCH;
        }
        let before = stats.infer_ticks;
        let prediction = stats.infer(model, &pixels, arena);
        let instructions = cal.instructions(stats.infer_ticks - before);
        if instructions > slowest.0 {
            slowest = (instructions, i);
        }
        let expected = &data::HOST_LOGITS[i * data::CLASSES..(i + 1) * data::CLASSES];
        let label = data::LABELS[i] as usize;
        let host_class = data::HOST_CLASSES[i] as usize;
        let class_ok = prediction.class == host_class;
        let differing = prediction
            .logits
            .iter()
            .zip(expected)
            .filter(|&(&a, &b)| a as u8 != b)
            .count();
        if class_ok && differing == 0 {
            stats.correct += 1;
        }
        if prediction.class == label {
            labelled += 1;
        }
        println!(
            "img {i:>4} label={label} class={} host={host_class} logits={} instructions={instructions}",
            prediction.class,
            if differing == 0 { "ok" } else { "DIFF" }
        );
        if differing != 0 {
            println!("  firmware logits {:?}", prediction.logits);
            println!("  host logits     {:?}", bytemuck_i8(expected));
        }
    }
    let mismatches = stats.images - stats.correct;
    println!(
        "self-test: {}/{} images match the host (class and all {} logits); {} mismatches; \
         accuracy against labels {}/{}",
        stats.correct,
        stats.images,
        data::CLASSES,
        mismatches,
        labelled,
        stats.images
    );
    let fast = kernels_ran(model, stats.images) & within_ceiling(slowest);
    report(model, &stats, cal);
    if mismatches != 0 {
        code::MISMATCH
    } else if !fast {
        code::PERFORMANCE
    } else {
        code::OK
    }
}

/// Checks the dispatch counters: every call of a layer that has a blocked kernel ran it on the
/// DSP instructions. Prints the counts; false (and why) if any call fell back. Out of line,
/// like [`within_ceiling`]: inlined, their line buffers grew `run`'s frame (the stack
/// high-water) by 176 bytes.
#[inline(never)]
fn kernels_ran(model: &Model<'_>, images: u64) -> bool {
    let ran = dispatch_counts();
    if cfg!(tinyconv_no_dsp_target) {
        println!(
            "kernels: this core has no DSP extension: {} layer calls on the portable kernels, by design",
            ran.portable + ran.fallback
        );
        return ran.dsp == 0;
    }
    let layers = model
        .layers()
        .filter(|l| l.as_conv().is_some_and(|c| blocked::plan_of(&c).is_some()))
        .count() as u64;
    let expected = layers * images;
    println!(
        "kernels: {} layer calls on the DSP kernels ({layers} layers with a blocked kernel x {images} images), {} fell back to the portable kernels, {} portable by design",
        ran.dsp, ran.fallback, ran.portable
    );
    let ok = ran.fallback == 0 && ran.dsp as u64 == expected;
    if !ok {
        println!(
            "error: {} of {expected} layer calls with a blocked kernel did not run the DSP kernels{PORTABLE_HINT}",
            expected.saturating_sub(ran.dsp as u64)
        );
    }
    ok
}

/// Checks the slowest inference against the model's ceiling (see build.rs); prints the verdict.
#[inline(never)]
fn within_ceiling((instructions, image): (u64, usize)) -> bool {
    let Some(max) = data::MAX_INSTRUCTIONS else {
        println!(
            "ceiling: none for this model ({}); the slowest inference took {instructions} {UNIT} (image {image})",
            data::CEILING_SOURCE
        );
        return true;
    };
    let ok = instructions <= max;
    if ok {
        println!(
            "ceiling: the slowest inference took {instructions} {UNIT} (image {image}), within the ceiling of {max} ({})",
            data::CEILING_SOURCE
        );
    } else {
        println!(
            "error: the slowest inference took {instructions} {UNIT} (image {image}), over the ceiling of {max} ({}){PORTABLE_HINT}",
            data::CEILING_SOURCE
        );
    }
    ok
}

/// The expected logits as `i8` for printing.
fn bytemuck_i8(bytes: &[u8]) -> heapless::Vec<i8, 64> {
    bytes.iter().take(64).map(|&b| b as i8).collect()
}
