//! The `warren` binary: clap parsing and dispatch live in [`warren::cli`].
fn main() {
    std::process::exit(warren::cli::main());
}
