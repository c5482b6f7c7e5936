//! Builds the in-container process supervisor (`supervisor/supervise.c`) as a static
//! executable, so it runs in any Linux image whatever its C library; the server embeds it
//! (`runtime::supervisor`) and bind-mounts it read-only into task containers.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "supervisor/supervise.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("supervise");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .arg(source)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "building {source} with `{compiler} -static` failed ({s}); install a C compiler and a static C library (Debian: gcc libc6-dev) or set CC"
        ),
        Err(e) => panic!("cannot run the C compiler `{compiler}` ({e}); install gcc or set CC"),
    }
}
