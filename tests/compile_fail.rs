//! Misuse that must not compile: the deliberate differences D1–D17 (defined in
//! `docs/asyncore.md`, "Deliberate differences"), but D13 and D16, which are
//! run-time refusals (`tests/misuse.rs`, `tests/chat.rs`), and a few more a user
//! would hit. One case per file in `tests/ui/`; `tests/ui/README.md` maps each
//! D-item to its case and the error it produces.
//!
//! Re-bless the expected `.stderr` files after a toolchain or message change with
//! `TRYBUILD=overwrite cargo test --test compile_fail`, then read every diff.

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
