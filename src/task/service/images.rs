//! Image builds and the health report behind `taskbox images build` and `taskbox doctor`.

use super::TaskService;
use crate::error::{Error, Result};
use crate::runtime::images::{self, BUILTIN_IMAGES};

/// What `taskbox doctor` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorReport {
    /// `None` when Docker answers; else why it does not.
    pub docker_error: Option<String>,
    /// Built-in image → present.
    pub images: Vec<(&'static str, bool)>,
}

impl TaskService {
    /// Builds the named built-in images in order. Images present and built from this binary's
    /// Dockerfiles are kept unless `force`. Returns, per image, whether it was built.
    pub async fn build_images(
        &self,
        names: &[&str],
        force: bool,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<Vec<(&'static str, bool)>> {
        self.runtime.ping().await?;
        let mut built = Vec::new();
        for name in names {
            let def = images::builtin(name).ok_or_else(|| {
                Error::invalid(
                    "image",
                    format!("'{name}' is not a built-in image (taskbox-base, taskbox-developer)"),
                )
            })?;
            let did_build = if force {
                images::build(self.runtime.as_ref(), def, progress).await?;
                true
            } else {
                images::build_if_needed(self.runtime.as_ref(), def, progress).await?
            };
            built.push((def.name, did_build));
        }
        Ok(built)
    }

    pub async fn doctor(&self) -> Result<DoctorReport> {
        if let Err(e) = self.runtime.ping().await {
            return Ok(DoctorReport {
                docker_error: Some(e.to_string()),
                images: Vec::new(),
            });
        }
        let mut report = DoctorReport {
            docker_error: None,
            images: Vec::new(),
        };
        for def in BUILTIN_IMAGES {
            report
                .images
                .push((def.name, self.runtime.image_info(def.name).await?.is_some()));
        }
        Ok(report)
    }
}
