//! The release: `taskbox --version` names the commit, and `scripts/package.sh` makes a
//! tarball whose checksum holds and whose binary works on its own, away from the source tree
//! (commands, hooks and Dockerfiles compiled in).

use std::path::Path;
use std::process::Command;

use crate::common::*;
use pretty_assertions::assert_eq;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_version_names_the_commit_and_the_package_works_on_its_own() {
    let head = run(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo()));
    let version = run(Command::new(BIN).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("taskbox {} (commit {})", env!("CARGO_PKG_VERSION"), head.trim())
    );

    let out = tempfile::tempdir().unwrap();
    let printed = run(Command::new(repo().join("scripts/package.sh"))
        .arg(out.path())
        .env("TASKBOX_BINARY", BIN)
        .current_dir(repo()));
    let name = format!(
        "taskbox-{}-{}-{}-linux",
        env!("CARGO_PKG_VERSION"),
        head.trim(),
        std::env::consts::ARCH
    );
    let tarball = format!("{name}.tar.gz");
    assert!(printed.ends_with(&format!("  {tarball}\n")), "{printed}");
    let checked = run(Command::new("sha256sum")
        .args(["-c", &format!("{tarball}.sha256")])
        .current_dir(out.path()));
    assert_eq!(checked, format!("{tarball}: OK\n"));

    let listing = run(Command::new("tar").args(["-tzf", &tarball]).current_dir(out.path()));
    for entry in [
        "bin/taskbox",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "docs/user-guide.md",
        "docs/developer-guide.md",
        "docs/security.md",
        "hooks/claude-code/settings.json",
        "commands/create-task.md",
        "docker-images/taskbox-base/Dockerfile",
    ] {
        assert!(
            listing.lines().any(|l| l == format!("{name}/{entry}")),
            "{entry} missing:\n{listing}"
        );
    }

    // Unpacked elsewhere, the binary installs its commands into a project with nothing from
    // the source tree around.
    run(Command::new("tar").args(["-xzf", &tarball]).current_dir(out.path()));
    let binary = out.path().join(&name).join("bin/taskbox");
    let project = tempfile::tempdir().unwrap();
    run(Command::new(&binary)
        .args(["install", "claude", "--project"])
        .arg(project.path())
        .current_dir(project.path())
        .env("TASKBOX_CONFIG", project.path().join("no-config.toml")));
    // Claude Code's front matter and placeholders differ; the instructions are the
    // compiled-in ones.
    let command = std::fs::read_to_string(project.path().join(".claude/commands/create-task.md")).unwrap();
    let source = std::fs::read_to_string(repo().join("commands/create-task.md")).unwrap();
    let body = source.splitn(3, "---\n").nth(2).unwrap();
    let fixed: Vec<&str> = body.lines().filter(|l| !l.is_empty() && !l.contains("{{")).collect();
    assert!(!fixed.is_empty());
    for line in fixed {
        assert!(command.contains(line), "{line:?} missing from\n{command}");
    }
    let dockerfile = run(Command::new(&binary).args(["images", "dockerfile", "base"]));
    assert_eq!(
        dockerfile,
        std::fs::read_to_string(repo().join("docker-images/taskbox-base/Dockerfile")).unwrap()
    );
}
