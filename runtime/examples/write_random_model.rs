//! Writes the seed network with pseudo-random weights: `write_random_model OUT.tcm [SEED]`.
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: write_random_model OUT.tcm [SEED]");
    let seed = args.next().map_or(1, |s| s.parse().expect("SEED must be an integer"));
    let bytes = tinyconv::testing::seed_network(seed).to_bytes().expect("valid model");
    std::fs::write(&path, &bytes).expect("write the model");
    println!("wrote {path}: {} bytes", bytes.len());
}
