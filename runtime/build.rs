//! Chooses the kernels at compile time. Stable Rust does not expose ARM's `dsp` target feature to
//! `cfg(target_feature = ...)` (it is unstable), so the Armv7E-M targets (Cortex-M4/M7, which all
//! have the DSP extension) are recognised by name and get `cfg(tinyconv_dsp)`: the SMLAD/SXTB16
//! kernels in `kernels::dsp`. Every other target (the host, thumbv6m, thumbv7m) uses the portable
//! kernels. `TINYCONV_PORTABLE=1` forces the portable kernels everywhere (for comparisons).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinyconv_dsp)");
    println!("cargo::rerun-if-env-changed=TINYCONV_PORTABLE");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let forced_portable = std::env::var("TINYCONV_PORTABLE").is_ok_and(|v| v == "1");
    if target.starts_with("thumbv7em-") && !forced_portable {
        println!("cargo::rustc-cfg=tinyconv_dsp");
    }
}
