//! The task images shipped with taskbox: their Dockerfiles are compiled into the binary and
//! built through the runtime, with progress reported line by line.

use super::{ContainerRuntime, Result, RuntimeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDef {
    pub name: &'static str,
    pub dockerfile: &'static str,
    /// A built-in image this one starts `FROM`.
    pub parent: Option<&'static str>,
}

pub const BASE_IMAGE: &str = "taskbox-base";

pub const BUILTIN_IMAGES: &[ImageDef] = &[
    ImageDef {
        name: BASE_IMAGE,
        dockerfile: include_str!("../../docker-images/taskbox-base/Dockerfile"),
        parent: None,
    },
    ImageDef {
        name: "taskbox-developer",
        dockerfile: include_str!("../../docker-images/taskbox-developer/Dockerfile"),
        parent: Some(BASE_IMAGE),
    },
];

pub fn builtin(name: &str) -> Option<&'static ImageDef> {
    let name = name.strip_suffix(":latest").unwrap_or(name);
    BUILTIN_IMAGES.iter().find(|def| def.name == name)
}

/// A build context holding just the Dockerfile.
pub fn build_context(dockerfile: &str) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .and_then(|_| builder.into_inner())
        .map_err(|e| RuntimeError::Api(format!("cannot make the build context: {e}")))
}

/// Builds a built-in image (and the built-in image it starts from, when that is missing).
pub async fn build(
    runtime: &dyn ContainerRuntime,
    def: &ImageDef,
    progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
) -> Result<()> {
    if let Some(parent) = def.parent.and_then(builtin)
        && !runtime.image_exists(parent.name).await?
    {
        Box::pin(build(runtime, parent, progress)).await?;
    }
    progress(&format!("building image {}", def.name));
    runtime.build_image(def.name, build_context(def.dockerfile)?, progress).await
}

/// Makes sure `image` exists: a built-in image is built when missing; any other image must
/// already be there (nothing is pulled implicitly).
pub async fn ensure(runtime: &dyn ContainerRuntime, image: &str, progress: &(dyn for<'a> Fn(&'a str) + Send + Sync)) -> Result<()> {
    if runtime.image_exists(image).await? {
        return Ok(());
    }
    match builtin(image) {
        Some(def) => build(runtime, def, progress).await,
        None => Err(RuntimeError::NotFound {
            what: format!(
                "image {image} (only taskbox-base and taskbox-developer are built automatically; pull or build it first)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_a_tar_with_the_dockerfile() {
        let tar_bytes = build_context("FROM scratch\n").unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("Dockerfile"));
        let mut content = String::new();
        std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
        assert_eq!(content, "FROM scratch\n");
    }

    #[test]
    fn builtins_resolve_with_or_without_tag() {
        assert_eq!(builtin("taskbox-base:latest").map(|d| d.name), Some("taskbox-base"));
        assert_eq!(builtin("taskbox-developer").and_then(|d| d.parent), Some("taskbox-base"));
        assert!(builtin("ubuntu").is_none());
    }
}
