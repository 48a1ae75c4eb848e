//! Crash safety of `tinyconv train`: a run killed mid-epoch, and crashed between the writes of
//! a checkpoint, then resumed, ends with the same files as a run never interrupted.
//!
//! The kill is a real SIGKILL from outside; the crashes between writes use the
//! `TINYCONV_TEST_ABORT_AFTER` hook (see `trainer/src/crash_hook.rs`), since a kill from
//! outside cannot be aimed between two file writes.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SIGKILL: i32 = 9;
const SIGABRT: i32 = 6;
const EPOCHS: usize = 3;

fn mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist")
}

/// `tinyconv train` on 600 real MNIST images, 3 epochs, into `out`.
fn train(out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tinyconv"));
    c.args(["train", "--data"])
        .arg(mnist())
        .args([
            "--limit",
            "600",
            "--batch-size",
            "100",
            "--epochs",
            &EPOCHS.to_string(),
            "--calibration",
            "100",
            "--no-progress",
            "--out",
        ])
        .arg(out)
        // An aborted process may dump core into its working directory: not the repository.
        .current_dir(out.parent().unwrap())
        .env_remove("TINYCONV_TEST_ABORT_AFTER");
    if resume {
        c.arg("--resume");
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn state(out: &Path) -> serde_json::Value {
    let p = out.join("checkpoint/state.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn state_epoch(out: &Path) -> usize {
    state(out)["epoch"].as_u64().unwrap() as usize
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// metrics.csv without its last column (seconds, which differ between runs).
fn metrics_without_timings(out: &Path) -> String {
    std::fs::read_to_string(out.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect()
}

/// Resume with the crash hook at `point`: the process must abort there.
fn resume_and_abort_after(out: &Path, point: &str) -> Output {
    let o = train(out, true)
        .env("TINYCONV_TEST_ABORT_AFTER", point)
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(SIGABRT), "{point}: {}", text(&o));
    assert!(
        text(&o).contains(&format!("TINYCONV_TEST_ABORT_AFTER={point}: aborting")),
        "{}",
        text(&o)
    );
    o
}

#[test]
fn killed_and_crashed_runs_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    let o = train(&a, false).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // SIGKILL mid-epoch: as soon as epoch 1's checkpoint is complete, epoch 2 is training
    // (an epoch takes seconds; the poll sees state.json within milliseconds of its rename).
    let log = std::fs::File::create(tmp.path().join("killed.log")).unwrap();
    let mut child = train(&b, false)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let state_path = b.join("checkpoint/state.json");
    let started = Instant::now();
    while !state_path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");
    let k = state_epoch(&b);
    assert!(
        k < EPOCHS && !b.join("model_float.bpk").exists(),
        "the kill came too late: the checkpoint is at epoch {k} of {EPOCHS}"
    );

    // Crashes between the checkpoint's writes: the new epoch's records may exist, but
    // state.json still names epoch k until it is itself replaced, and each resume starts from
    // the last complete checkpoint.
    let next = k + 1;
    let model_next = format!("model-epoch{next:03}.bpk");
    let optim_next = format!("optimizer-epoch{next:03}.bpk");
    let ckpt = b.join("checkpoint");

    let o = resume_and_abort_after(&b, "checkpoint-weights");
    assert!(
        text(&o).contains(&format!("after epoch {k}\n")),
        "{}",
        text(&o)
    );
    assert_eq!(state_epoch(&b), k);
    assert!(names(&ckpt).contains(&model_next), "{:?}", names(&ckpt));
    assert!(!names(&ckpt).contains(&optim_next), "{:?}", names(&ckpt));

    let o = resume_and_abort_after(&b, "checkpoint-optimizer");
    assert!(
        text(&o).contains(&format!("after epoch {k}\n")),
        "{}",
        text(&o)
    );
    assert_eq!(state_epoch(&b), k);
    let n = names(&ckpt);
    assert!(n.contains(&model_next) && n.contains(&optim_next), "{n:?}");

    resume_and_abort_after(&b, "checkpoint-state");
    assert_eq!(state_epoch(&b), next);
    assert_eq!(state(&b)["model_file"], model_next.as_str());
    // The metrics row of the new epoch was not yet written: the resume restores it from the
    // checkpoint.
    assert_eq!(
        std::fs::read_to_string(b.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + k
    );

    let o = train(&b, true).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("after epoch {next}\n")),
        "{}",
        text(&o)
    );

    // The same results, to the bit.
    for f in [
        "model_float.bpk",
        "mnist-cnn.tcm",
        "mnist-cnn.onnx",
        "mnist-cnn.int8.onnx",
    ] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs from the uninterrupted run's");
    }
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&b));
    assert_eq!(
        metrics_without_timings(&b).lines().count(),
        1 + EPOCHS,
        "{}",
        metrics_without_timings(&b)
    );
    // One complete checkpoint, and no temporary file anywhere.
    assert_eq!(
        names(&ckpt),
        [
            format!("model-epoch{EPOCHS:03}.bpk"),
            format!("optimizer-epoch{EPOCHS:03}.bpk"),
            "state.json".to_string()
        ]
    );
    for dir in [&a, &b, &ckpt] {
        for n in names(dir) {
            assert!(!n.ends_with(".tmp"), "left behind {}/{n}", dir.display());
        }
    }
}
