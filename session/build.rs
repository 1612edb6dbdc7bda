//! Declares the `fuzzing` cfg (set by cargo-fuzz) so `#[cfg(fuzzing)]` passes the unexpected_cfgs lint.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
}
