//! The README's example is the crate documentation's, which `cargo test`
//! compiles: if the API changes, this test says the README must follow.

#[test]
fn readme_example_is_the_crate_docs_example() {
    let readme = include_str!("../README.md");
    let lib = include_str!("../src/lib.rs");
    let in_readme = first_block(readme.lines(), "```rust");
    let docs = lib.lines().filter_map(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l));
    let in_docs = first_block(docs, "```no_run");
    assert!(!in_docs.is_empty(), "src/lib.rs has a ```no_run example");
    assert_eq!(in_readme, in_docs, "README.md's example differs from the one in src/lib.rs");
}

/// The lines of the first fenced block that opens with `fence`.
fn first_block<'a>(lines: impl Iterator<Item = &'a str>, fence: &str) -> Vec<&'a str> {
    lines.skip_while(|l| l.trim_end() != fence).skip(1).take_while(|l| l.trim_end() != "```").collect()
}
