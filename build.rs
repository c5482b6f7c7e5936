//! Builds the in-container process supervisor (`supervisor/supervise.c`) as a static
//! executable, so it runs in any Linux image whatever its C library; the server embeds it
//! (`runtime::supervisor`) and bind-mounts it read-only into task containers. Also names the
//! commit the binary is built from (`TASKBOX_COMMIT`, for `taskbox --version`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    build_supervisor();
    name_commit();
}

/// `TASKBOX_COMMIT`: the env var of that name when set (a build from a release tarball, which
/// has no .git), else `git rev-parse --short=12 HEAD`, else `unknown`. (No `-dirty`: build.rs
/// reruns when HEAD moves, not on every edit, so it could not be kept true.)
fn name_commit() {
    println!("cargo:rerun-if-env-changed=TASKBOX_COMMIT");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Rebuilt when HEAD moves: HEAD itself, the branch it names, and packed refs.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = PathBuf::from(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        println!("cargo:rerun-if-changed={}", dir.join("packed-refs").display());
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--git-common-dir"])
                .map(PathBuf::from)
                .unwrap_or(dir);
            println!("cargo:rerun-if-changed={}", common.join(branch).display());
        }
    }
    let commit = std::env::var("TASKBOX_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    println!(
        "cargo:rustc-env=TASKBOX_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}

fn build_supervisor() {
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
