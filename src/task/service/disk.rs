//! What a task takes on disk, for `get_task_status` (docs/security.md, "Disk"): its workspace,
//! its files in the data directory, its container's writable layer and its checkpoints'
//! image layers. The workspace is walked from the host without following links
//! (`workspace::walk`), so the agent cannot make the count read outside it.

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use crate::domain::Task;

/// Bytes per part; a part that could not be measured is `null`, with why in `errors`.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct DiskUse {
    /// The workspace mounted at /workspace (allocated blocks).
    pub workspace_bytes: Option<u64>,
    /// tasks/<id>/ in the data directory: events, outputs, plans, the task's own repository.
    pub task_files_bytes: Option<u64>,
    /// What the container wrote outside /workspace (its writable layer).
    pub container_layer_bytes: Option<u64>,
    /// The layers the task's checkpoints added, one image each (the base image is shared and
    /// not counted).
    pub checkpoint_images_bytes: Option<u64>,
    pub checkpoint_images: usize,
    pub errors: Vec<String>,
}

impl TaskService {
    pub(super) async fn disk_use(&self, task: &Task) -> DiskUse {
        let mut disk = DiskUse::default();
        let workspace = task.workspace.clone();
        let task_dir = self.store.task_dir(&task.id);
        let walks = tokio::task::spawn_blocking(move || {
            (
                crate::workspace::walk::disk_usage(&workspace),
                crate::workspace::walk::disk_usage(&task_dir),
            )
        });
        let layer = async {
            match &task.container_id {
                Some(id) => self.runtime.container_layer_bytes(id).await.map_err(|e| e.to_string()),
                None => Ok(None),
            }
        };
        let images = self.checkpoint_layers(&task.id);
        let (walks, layer, images) = tokio::join!(walks, layer, images);
        match walks {
            Ok((workspace, files)) => {
                disk.workspace_bytes = record(workspace, "workspace", &mut disk.errors);
                disk.task_files_bytes = record(files, "task files", &mut disk.errors);
            }
            Err(e) => disk.errors.push(format!("the disk walk failed: {e}")),
        }
        match layer {
            Ok(bytes) => disk.container_layer_bytes = bytes,
            Err(e) => disk.errors.push(format!("container layer: {e}")),
        }
        match images {
            Ok((count, bytes)) => {
                disk.checkpoint_images = count;
                disk.checkpoint_images_bytes = Some(bytes);
            }
            Err(e) => disk.errors.push(format!("checkpoint images: {e}")),
        }
        disk
    }

    /// How many of the task's checkpoints still have an image, and the bytes their own
    /// layers hold.
    async fn checkpoint_layers(&self, task_id: &str) -> Result<(usize, u64), String> {
        let checkpoints = self.registry.list_checkpoints(task_id).map_err(|e| e.to_string())?;
        let (mut count, mut bytes) = (0, 0);
        for image in checkpoints.iter().filter_map(|c| c.image_id.as_deref()) {
            if let Some(size) = self.runtime.image_layer_bytes(image).await.map_err(|e| e.to_string())? {
                count += 1;
                bytes += size;
            }
        }
        Ok((count, bytes))
    }
}

fn record(measured: std::io::Result<u64>, part: &str, errors: &mut Vec<String>) -> Option<u64> {
    measured.map_err(|e| errors.push(format!("{part}: {e}"))).ok()
}
