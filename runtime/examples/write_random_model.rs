//! Writes a model with pseudo-random weights: `write_random_model OUT.tcm [SEED] [tiny]`.
//! The seed architecture by default; `tiny` makes the same layers with 4/6/8/12 channels.
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: write_random_model OUT.tcm [SEED] [tiny]");
    let seed = args
        .next()
        .map_or(1, |s| s.parse().expect("SEED must be an integer"));
    let spec = match args.next().as_deref() {
        Some("tiny") => tinyconv::testing::network(seed, 4, 6, 8, 12),
        _ => tinyconv::testing::seed_network(seed),
    };
    let bytes = spec.to_bytes().expect("valid model");
    std::fs::write(&path, &bytes).expect("write the model");
    println!("wrote {path}: {} bytes", bytes.len());
}
