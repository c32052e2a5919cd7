//! Builds the verbs/RDMA-CM shim when the `rdma` feature is on (see `src/rdma.rs`).

fn main() {
    #[cfg(feature = "rdma")]
    {
        println!("cargo:rerun-if-changed=csrc/verbs_shim.c");
        cc::Build::new().file("csrc/verbs_shim.c").warnings(true).extra_warnings(true).compile("srp_verbs_shim");
        println!("cargo:rustc-link-lib=rdmacm");
        println!("cargo:rustc-link-lib=ibverbs");
    }
}
