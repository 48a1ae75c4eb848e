//! Generates burn code from the committed float ONNX export with burn-import, so that
//! `tests/burn_import.rs` can check a second, independent reading of `mnist-cnn.onnx`.

use std::path::Path;

fn main() {
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mnist-cnn.onnx");
    println!("cargo:rerun-if-changed={}", onnx.display());
    println!("cargo:rerun-if-changed=build.rs");
    #[allow(deprecated)] // burn-import's ModelGen is burn-onnx's, re-exported.
    burn_import::onnx::ModelGen::new()
        .input(onnx.to_str().expect("the repository path is UTF-8"))
        .out_dir("burn_import/")
        .run_from_script();
}
