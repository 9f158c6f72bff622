//! `warren-cni`: the CNI plugin binary; everything is in [`warren::cni`].
fn main() {
    std::process::exit(warren::cni::main());
}
