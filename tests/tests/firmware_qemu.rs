//! The firmware in QEMU: builds `firmware/` for the Cortex-M4F (`cargo build --release` in
//! that directory, so its `.cargo/config.toml` applies), boots it on QEMU's netduinoplus2
//! (STM32F405) with semihosting, and checks it against the host runtime:
//!
//! * self-test mode: exit code 0, `RESULT ... correct == images`, every logit matching;
//! * full-eval mode on the first `$TINYCONV_FIRMWARE_EVAL_IMAGES` (default: all 10,000) MNIST
//!   test images streamed through semihosting: the same accuracy and FNV-1a digest of all logits
//!   as the host;
//! * kernel-check mode: the Cortex-M4 DSP kernels against the scalar reference kernels on random
//!   shapes and data, on the real instructions, then the self-test;
//! * that the DSP kernels really ran (the runtime's dispatch counters) and the self-test's
//!   instruction ceiling; and the negative control: a firmware built with the portable kernels
//!   (`TINYCONV_PORTABLE=1`) fails both the self-test and the kernel check (exit code 5);
//! * a corrupt model: the typed parse error and exit code 2;
//! * the real-hardware build (`--features board-rtt`) compiles (it is not run).
//!
//! The model is `$TINYCONV_MODEL`, else `models/mnist-cnn.tcm`, else (until a trained model
//! exists) the seed network with random weights written to `target/`. qemu-system-arm must be
//! installed: without it these tests fail and say how to install it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tinyconv_tests::{build_firmware, repo};
use tinyconv_trainer::firmware::{QEMU, QemuOutput};

const PIXELS: usize = 28 * 28;

fn require_qemu() {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{QEMU} is not installed, and the firmware tests need it: install it with \
         `apt-get install qemu-system-arm` (Debian/Ubuntu; `brew install qemu` on macOS)"
    );
}

/// Where the workspace's build output goes (`$CARGO_TARGET_DIR` or `target/`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("target"),
    }
}

/// The model the firmware embeds: see the module docs.
fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TINYCONV_MODEL").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_absolute() {
            p
        } else {
            repo().join("firmware").join(p)
        };
    }
    let shipped = repo().join("models").join("mnist-cnn.tcm");
    if shipped.is_file() {
        return shipped;
    }
    let dir = target_dir().join("firmware-qemu-test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("random-seed1.tcm");
    let bytes = tinyconv::testing::seed_network(1)
        .to_bytes()
        .expect("seed network");
    // Rewrite only on change: the firmware build reruns when the model file changes.
    if std::fs::read(&path).ok() != Some(bytes.clone()) {
        std::fs::write(&path, &bytes).unwrap();
    }
    eprintln!(
        "note: {} does not exist; testing with the random seed network {}",
        shipped.display(),
        path.display()
    );
    path
}

/// Boots `elf` in QEMU (the trainer's runner, as `tinyconv verify --firmware` uses it).
fn run_qemu(elf: &Path, timeout: Duration) -> QemuOutput {
    let run = tinyconv_trainer::firmware::run_qemu(elf, timeout)
        .unwrap_or_else(|e| panic!("{}: {e}", elf.display()));
    eprintln!(
        "{} ran in {:.1}s (exit code {:?})",
        elf.display(),
        run.seconds,
        run.code
    );
    run
}

/// Prints a run's output without the per-image lines.
fn print_summary(out: &str) {
    eprintln!(
        "{}",
        out.lines()
            .filter(|l| !l.starts_with("img "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The numbers of the `RESULT` line.
#[derive(Debug)]
struct Result_ {
    images: u64,
    correct: u64,
    instructions: u64,
    macs: u64,
    flash: u64,
    ram: u64,
    stack: u64,
}

fn result_line(out: &str) -> Result_ {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in the firmware output:\n{out}"));
    let field = |name: &str| -> u64 {
        let prefix = format!("{name}=");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("RESULT line has no numeric {name}: {line}"))
    };
    let r = Result_ {
        images: field("images"),
        correct: field("correct"),
        instructions: field("instructions"),
        macs: field("macs"),
        flash: field("flash"),
        ram: field("ram"),
        stack: field("stack"),
    };
    let expected = format!(
        "RESULT images={} correct={} instructions={} macs={} flash={} ram={} stack={}",
        r.images, r.correct, r.instructions, r.macs, r.flash, r.ram, r.stack
    );
    assert_eq!(line, expected, "RESULT line not in the documented form");
    r
}

fn check_figures(r: &Result_, model: &tinyconv::Model<'_>) {
    let macs: u64 = model.layers().map(|l| l.macs() as u64).sum();
    assert_eq!(r.macs, macs, "MACs per inference");
    // SMLAD, the densest instruction, does two MACs.
    assert!(
        2 * r.instructions > macs,
        "fewer instructions than MACs / 2: {r:?}"
    );
    assert!(
        r.flash > model.bytes().len() as u64 && r.flash <= 1024 * 1024,
        "flash: {r:?}"
    );
    assert!(
        r.ram >= model.arena_len() as u64 && r.ram <= 128 * 1024,
        "ram: {r:?}"
    );
    assert!(r.stack > 0 && r.stack + r.ram <= 128 * 1024, "stack: {r:?}");
}

/// Layers whose shape has a blocked (DSP) kernel.
fn blocked_layers(model: &tinyconv::Model<'_>) -> u64 {
    model
        .layers()
        .filter(|l| {
            l.as_conv()
                .is_some_and(|c| tinyconv::kernels::blocked::plan_of(&c).is_some())
        })
        .count() as u64
}

/// The self-test's dispatch-counter line: every call of a layer with a blocked kernel ran the
/// DSP kernels, none fell back to the portable ones.
fn check_kernels_ran(out: &str, model: &tinyconv::Model<'_>, images: u64) {
    let layers = blocked_layers(model);
    let expected = format!(
        "kernels: {} layer calls on the DSP kernels ({layers} layers with a blocked kernel x \
         {images} images), 0 fell back to the portable kernels",
        layers * images
    );
    assert!(
        out.contains(&expected),
        "expected `{expected}` (the DSP kernels ran) in:\n{out}"
    );
}

/// The self-test's instruction ceiling: the committed model must have one (firmware/build.rs
/// `CEILINGS`) and stay within it; another model may have none.
fn check_ceiling(out: &str, path: &Path) {
    let line = out
        .lines()
        .find(|l| l.starts_with("ceiling: "))
        .unwrap_or_else(|| panic!("no ceiling line:\n{out}"));
    let shipped = repo().join("models").join("mnist-cnn.tcm");
    if path == shipped || line.contains("within the ceiling") {
        assert!(
            line.contains("within the ceiling of ") && line.contains("committed + 2%"),
            "the committed model's instruction ceiling: {line}"
        );
    } else {
        assert!(line.starts_with("ceiling: none for this model"), "{line}");
    }
}

// ---- MNIST, read on the host ----

fn mnist_dir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("TINYCONV_DATA").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(d));
    }
    candidates.push(repo().join("data").join("mnist"));
    candidates.push(repo().join("..").join("shared").join("data").join("mnist"));
    candidates
        .iter()
        .find(|d| idx_path(d, "t10k-images-idx3-ubyte").is_some())
        .cloned()
        .unwrap_or_else(|| {
            panic!("MNIST test files not found in {candidates:?}; set TINYCONV_DATA")
        })
}

fn idx_path(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// An IDX file's items (after the header), raw or gzip: `(count, bytes)`.
fn read_idx(dir: &Path, name: &str, magic: u32) -> (usize, Vec<u8>) {
    let path =
        idx_path(dir, name).unwrap_or_else(|| panic!("{name} not found in {}", dir.display()));
    let file = std::fs::File::open(&path).unwrap();
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    }
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(be32(0), magic, "{}: IDX magic", path.display());
    let header = if magic == 2051 { 16 } else { 8 };
    let count = be32(4) as usize;
    (count, bytes[header..].to_vec())
}

/// FNV-1a (32 bits) — the firmware's digest of all logits.
fn fnv1a(hash: u32, bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes
        .into_iter()
        .fold(hash, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

// ---- the tests ----

/// Builds and runs the self-test firmware with `features`; checks it against the host and
/// returns its RESULT figures and the arena it reports.
fn self_test(
    name: &str,
    features: &[&str],
    model: &tinyconv::Model<'_>,
    path: &Path,
) -> (Result_, usize) {
    let elf = build_firmware(
        name,
        features,
        &[("TINYCONV_MODEL", path.to_str().unwrap())],
    );
    let run = run_qemu(&elf, Duration::from_secs(20 * 60));
    let out = &run.stdout;
    print_summary(out);
    assert_eq!(run.code, Some(0), "self-test failed:\n{out}");
    let r = result_line(out);
    assert!(r.images >= 100, "only {} self-test images", r.images);
    assert_eq!(r.correct, r.images, "firmware and host disagree:\n{out}");
    let per_image = out.lines().filter(|l| l.starts_with("img ")).count() as u64;
    assert_eq!(per_image, r.images, "one result line per image");
    assert!(!out.contains("logits=DIFF"), "a logit differs:\n{out}");
    assert!(out.contains(" 0 mismatches"), "{out}");
    assert!(out.contains("calibration: "), "no calibration line");
    check_figures(&r, model);
    check_kernels_ran(out, model, r.images);
    check_ceiling(out, path);
    let arena: usize = out
        .split(", arena ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no arena figure:\n{out}"));
    let plans = format!(
        "(plans: memory {}, speed {})",
        model.arena_len_for(tinyconv::Mode::Memory),
        model.arena_len_for(tinyconv::Mode::Speed)
    );
    assert!(
        out.contains(&plans),
        "the firmware's plans differ from the host's {plans}"
    );
    (r, arena)
}

/// Both arena plans on the target: the default (smallest) and `speed-plan`, each bit-exact
/// with the host; the speed plan takes more RAM and fewer instructions.
#[test]
fn self_test_matches_host_in_qemu() {
    require_qemu();
    let model_path = model_path();
    let bytes = std::fs::read(&model_path).unwrap();
    let model = tinyconv::Model::parse(&bytes).expect("the test model parses on the host");
    let (memory, arena) = self_test("selftest", &[], &model, &model_path);
    assert_eq!(arena, model.arena_len_for(tinyconv::Mode::Memory));
    let (speed, speed_arena) = self_test("selftest-speed", &["speed-plan"], &model, &model_path);
    assert_eq!(speed_arena, model.arena_len_for(tinyconv::Mode::Speed));
    println!(
        "memory plan: arena {arena} B, {} instructions; speed plan: arena {speed_arena} B, {} instructions",
        memory.instructions, speed.instructions
    );
    if speed_arena > arena {
        assert!(speed.ram > memory.ram, "{memory:?} vs {speed:?}");
        assert!(
            speed.instructions < memory.instructions,
            "the speed plan is not faster: {memory:?} vs {speed:?}"
        );
    }
}

#[test]
fn full_eval_matches_host_in_qemu() {
    require_qemu();
    let limit: usize = std::env::var("TINYCONV_FIRMWARE_EVAL_IMAGES")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .expect("TINYCONV_FIRMWARE_EVAL_IMAGES is a number")
        })
        .unwrap_or(10_000);
    let model_path = model_path();
    let elf = build_firmware(
        "full-eval",
        &["full-eval"],
        &[
            ("TINYCONV_MODEL", model_path.to_str().unwrap()),
            ("TINYCONV_EVAL_LIMIT", &limit.to_string()),
        ],
    );
    // QEMU runs on its own thread while the host computes what it must print.
    let timeout = Duration::from_secs(120 + limit as u64);
    let qemu = std::thread::spawn(move || run_qemu(&elf, timeout));

    let bytes = std::fs::read(&model_path).unwrap();
    let model = tinyconv::Model::parse(&bytes).expect("the test model parses on the host");
    let dir = mnist_dir();
    let (count, images) = read_idx(&dir, "t10k-images-idx3-ubyte", 2051);
    let (_, labels) = read_idx(&dir, "t10k-labels-idx1-ubyte", 2049);
    let n = limit.min(count);
    let mut arena = vec![0i8; model.arena_len()];
    let (mut correct, mut digest) = (0u64, 0x811c_9dc5u32);
    for (pixels, &label) in images.chunks_exact(PIXELS).zip(&labels).take(n) {
        let p = model.infer(pixels, &mut arena).unwrap();
        digest = fnv1a(digest, p.logits.iter().map(|&v| v as u8));
        correct += (p.class == label as usize) as u64;
    }

    let run = qemu.join().unwrap();
    let out = &run.stdout;
    eprintln!("{out}");
    assert_eq!(run.code, Some(0), "full evaluation failed:\n{out}");
    let r = result_line(out);
    assert_eq!(r.images, n as u64, "images evaluated");
    assert_eq!(
        r.correct, correct,
        "firmware accuracy differs from the host's"
    );
    let expected = format!("digest fnv1a32={digest:#010x} over {n} images");
    assert!(
        out.contains(&expected),
        "expected `{expected}` (the host's digest) in:\n{out}"
    );
    check_figures(&r, &model);
}

/// The optimized kernels (on the Cortex-M4: SMLAD/SXTB16 inline assembly) against the scalar
/// references on the target's real instructions, random shapes, zero points and data; then
/// the self-test on a few images.
#[test]
fn dsp_kernels_match_reference_in_qemu() {
    require_qemu();
    let model_path = model_path();
    let elf = build_firmware(
        "kernel-check",
        &["kernel-check"],
        &[
            ("TINYCONV_MODEL", model_path.to_str().unwrap()),
            ("TINYCONV_SELFTEST_IMAGES", "200"),
        ],
    );
    let run = run_qemu(&elf, Duration::from_secs(20 * 60));
    let out = &run.stdout;
    print_summary(out);
    assert_eq!(run.code, Some(0), "kernel check failed:\n{out}");
    assert!(!out.contains("MISMATCH"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("kernel-check: "))
        .unwrap_or_else(|| panic!("no kernel-check summary:\n{out}"));
    assert!(line.ends_with(", 0 mismatches"), "{line}");
    assert!(
        line.contains("400 on the blocked DSP kernels") && line.contains(" 0 fell back"),
        "every case must reach the DSP kernels (the runtime's dispatch counters): {line}"
    );
    let r = result_line(out);
    assert_eq!(
        r.correct, r.images,
        "self-test after the kernel check:\n{out}"
    );
    let bytes = std::fs::read(&model_path).unwrap();
    let model = tinyconv::Model::parse(&bytes).expect("the test model parses on the host");
    check_kernels_ran(out, &model, r.images);
    check_ceiling(out, &model_path);
}

/// The negative control: with the portable kernels (`TINYCONV_PORTABLE=1`, see
/// runtime/build.rs) the logits are the same, so only the dispatch counters and the instruction
/// ceiling can tell, and both must fail the self-test and the kernel check (exit code 5).
/// Built in a target directory of its own: `TINYCONV_PORTABLE` changes the runtime's cfg, and
/// building it in `target/` would rebuild the runtime there twice (for this and the next
/// ordinary build).
#[test]
fn portable_kernels_fail_the_self_test() {
    require_qemu();
    let model_path = model_path();
    let bytes = std::fs::read(&model_path).unwrap();
    let model = tinyconv::Model::parse(&bytes).expect("the test model parses on the host");
    let target = target_dir().join("firmware-portable");
    let shipped = model_path == repo().join("models").join("mnist-cnn.tcm");
    for (name, features) in [
        ("portable-selftest", &[][..]),
        ("portable-kernel-check", &["kernel-check"][..]),
    ] {
        let elf = build_firmware(
            name,
            features,
            &[
                ("TINYCONV_MODEL", model_path.to_str().unwrap()),
                ("TINYCONV_PORTABLE", "1"),
                ("TINYCONV_SELFTEST_IMAGES", "20"),
                ("CARGO_TARGET_DIR", target.to_str().unwrap()),
            ],
        );
        let run = run_qemu(&elf, Duration::from_secs(10 * 60));
        let out = &run.stdout;
        print_summary(out);
        assert_eq!(
            run.code,
            Some(5),
            "a firmware on the portable kernels must fail with exit code 5:\n{out}"
        );
        // Same logits: the portable kernels are bit-exact, only slower.
        let r = result_line(out);
        assert_eq!(r.correct, r.images, "{out}");
        let calls = blocked_layers(&model) * r.images;
        let expected = format!(
            "kernels: 0 layer calls on the DSP kernels ({} layers with a blocked kernel x {} \
             images), {calls} fell back to the portable kernels",
            blocked_layers(&model),
            r.images
        );
        assert!(out.contains(&expected), "expected `{expected}` in:\n{out}");
        assert!(
            out.contains(&format!(
                "error: {calls} of {calls} layer calls with a blocked kernel did not run the DSP \
                 kernels (this runtime was built without its DSP kernels: TINYCONV_PORTABLE=1"
            )),
            "{out}"
        );
        if shipped {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("error: the slowest inference took ")
                        && l.contains(", over the ceiling of ")),
                "the committed model's ceiling must catch the portable kernels:\n{out}"
            );
        }
        if features.contains(&"kernel-check") {
            let line = out
                .lines()
                .find(|l| l.starts_with("kernel-check: "))
                .unwrap_or_else(|| panic!("no kernel-check summary:\n{out}"));
            assert!(
                line.contains("; 0 on the blocked DSP kernels")
                    && line.contains("400 fell back to portable code")
                    && line.ends_with(", 0 mismatches"),
                "{line}"
            );
            assert!(out.contains("FELL BACK case "), "{out}");
        }
    }
}

/// The real-hardware variant (RTT output for probe-rs) must keep building; it is not run.
#[test]
fn board_rtt_build_compiles() {
    let model_path = model_path();
    let elf = build_firmware(
        "board-rtt",
        &["board-rtt"],
        &[("TINYCONV_MODEL", model_path.to_str().unwrap())],
    );
    let bytes = std::fs::read(&elf).unwrap();
    assert!(bytes.starts_with(b"\x7fELF"), "not an ELF file");
    // probe-rs finds the RTT control block by this symbol.
    assert!(
        bytes.windows(11).any(|w| w == b"_SEGGER_RTT"),
        "no RTT control block in the board build"
    );
}

#[test]
fn corrupt_model_is_rejected_at_boot() {
    require_qemu();
    let mut bytes = std::fs::read(model_path()).unwrap();
    // Flip a byte of the weights: the header stays readable, the checksum no longer matches.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    let dir = target_dir().join("firmware-qemu-test");
    std::fs::create_dir_all(&dir).unwrap();
    let corrupt = dir.join("corrupt.tcm");
    if std::fs::read(&corrupt).ok() != Some(bytes.clone()) {
        std::fs::write(&corrupt, &bytes).unwrap();
    }
    let elf = build_firmware(
        "corrupt",
        &[],
        &[("TINYCONV_MODEL", corrupt.to_str().unwrap())],
    );
    let run = run_qemu(&elf, Duration::from_secs(120));
    eprintln!("{}", run.stdout);
    assert_eq!(
        run.code,
        Some(2),
        "a corrupt model must exit with code 2:\n{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("error: the embedded model is invalid: model file checksum mismatch"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("ChecksumMismatch"),
        "the typed error: {}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("RESULT"),
        "no RESULT for an invalid model"
    );
}
