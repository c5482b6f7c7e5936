//! `taskbox shell TASK`: an interactive shell in a task's container, as the agent's user. The
//! service checks the task and says what to run (`ShellSession`); `docker exec -it` runs it,
//! which gives it a real PTY, passes window resizes and sends Ctrl-C to the foreground job.
//! The command's environment goes in a 0600 file (`--env-file`): on the command line other
//! local users could read it, and as the docker CLI's own environment a task's variables
//! (say `DOCKER_HOST`) would steer the CLI. docs/cli.md.

use std::io::{IsTerminal, Write};
use std::process::Command;

use anyhow::Context;

use crate::task::TaskService;

pub async fn run(service: &TaskService, task_id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
        "taskbox shell needs a terminal; in a script use `taskbox exec TASK -- CMD`"
    );
    let session = service.shell_session(task_id).await?;
    let mut env_file = tempfile::Builder::new()
        .prefix("taskbox-shell-env")
        .tempfile()
        .context("cannot write the shell's environment file")?;
    for var in &session.env {
        // --env-file reads one variable per line: a value with a newline cannot pass.
        if var.contains('\n') {
            let name = var.split('=').next().unwrap_or_default();
            eprintln!("taskbox: {name} is left out of the shell (its value has a newline)");
            continue;
        }
        writeln!(env_file, "{var}")?;
    }
    env_file.flush()?;
    let mut docker = Command::new("docker");
    docker
        .args(["exec", "-it", "-w", &session.workdir])
        .arg("--env-file")
        .arg(env_file.path());
    if let Some(user) = &session.user {
        docker.args(["-u", user]);
    }
    docker.arg(&session.container).args(&session.argv);
    let status = docker
        .status()
        .context("cannot run `docker exec` (is the docker CLI installed?)")?;
    drop(env_file);
    // The shell's exit status is the command's, as `exec` passes its own through.
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => anyhow::bail!("docker exec ended by a signal"),
    }
}
