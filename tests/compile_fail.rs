//! Misuse that must not compile: the deliberate differences D1–D17 (defined in
//! `docs/asyncore.md`, "Deliberate differences"), but D13 and D16, which are
//! run-time refusals (`tests/misuse.rs`, `tests/chat.rs`), and a few more a user
//! would hit. One case per file in `tests/ui/`; `tests/ui/README.md` maps each
//! D-item to its case and the error it produces.
//!
//! Cases whose file name contains `tls` run only with the `tls` feature.
//!
//! Re-bless the expected `.stderr` files after a toolchain or message change with
//! `TRYBUILD=overwrite cargo test --all-features --test compile_fail`, then read
//! every diff.

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    let mut paths: Vec<_> = std::fs::read_dir("tests/ui")
        .expect("tests/ui")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    paths.sort();
    for path in paths {
        // The TLS cases need the `tls` feature to name what they misuse.
        let tls = path.file_name().is_some_and(|n| n.to_string_lossy().contains("tls"));
        if !tls || cfg!(feature = "tls") {
            cases.compile_fail(path);
        }
    }
}
