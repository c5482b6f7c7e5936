//! In-process harness: `TaskService` on the fake runtime (the `test-support` feature), wrapped
//! in `TaskboxServer` and driven by rmcp's client over an in-memory duplex stream. No Docker,
//! no child process: for tool-level logic (arguments, errors, what a reply holds).

use std::path::Path;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use taskbox::config::Config;
use taskbox::mcp::TaskboxServer;
use taskbox::runtime::fake::FakeRuntime;
use taskbox::task::TaskService;

use super::Client;

/// A fake runtime that already has the base image, so creation needs no build.
pub fn fake_runtime() -> Arc<FakeRuntime> {
    Arc::new(FakeRuntime::with_image("taskbox-base"))
}

/// Serves one MCP session of a service with its data in `home` on `runtime`, and connects a
/// client named `client_name` to it.
pub async fn connect_in_process(home: &Path, runtime: Arc<FakeRuntime>, client_name: &str) -> Client {
    let mut config = Config {
        home: Some(home.to_path_buf()),
        ..Config::default()
    };
    // The test process runs inside taskbox's own repository: keep tasks out of it.
    config.workspace.allowed_repo_roots = vec![home.to_path_buf()];
    let service = Arc::new(TaskService::open(config, runtime).unwrap());
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let server = TaskboxServer::new(service).serve(server_io).await.unwrap();
        let _ = server.waiting().await;
    });
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1.0.0"));
    info.serve(client_io).await.unwrap()
}
