//! Self-test: the embedded MNIST test images against the host runtime's logits.

use tinyconv::Model;

use crate::clock::Calibration;
use crate::console::code;
use crate::firmware::{PIXELS, Stats, report};

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
    report(model, &stats, cal);
    if mismatches == 0 {
        code::OK
    } else {
        code::MISMATCH
    }
}

/// The expected logits as `i8` for printing.
fn bytemuck_i8(bytes: &[u8]) -> heapless::Vec<i8, 64> {
    bytes.iter().take(64).map(|&b| b as i8).collect()
}
