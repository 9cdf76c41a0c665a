//! Gives libchronica.so an soname on Linux so installed programs bind to
//! the ABI series (`libchronica.so.0.<minor>` while the major version is 0,
//! since 0.x minors may break the ABI; `libchronica.so.<major>` after).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let series = if major == "0" { format!("0.{minor}") } else { major };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libchronica.so.{series}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
