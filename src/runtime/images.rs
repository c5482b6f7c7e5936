//! The task images shipped with taskbox: their Dockerfiles are compiled into the binary and
//! built through the runtime, with progress reported line by line.

use std::collections::HashMap;

use super::{ContainerRuntime, ImageInfo, Result, RuntimeError};

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

/// Label holding a hash of the Dockerfile a built-in image was built from, so an image built
/// by an older taskbox is rebuilt instead of silently used.
pub const LABEL_DOCKERFILE_HASH: &str = "taskbox.dockerfile-hash";

fn dockerfile_hash(dockerfile: &str) -> String {
    format!("{:016x}", super::stable_hash(dockerfile.as_bytes()))
}

/// The labels a built-in image is built with.
pub fn labels(def: &ImageDef) -> HashMap<String, String> {
    HashMap::from([
        ("taskbox.image".to_string(), def.name.to_string()),
        (LABEL_DOCKERFILE_HASH.to_string(), dockerfile_hash(def.dockerfile)),
    ])
}

fn is_current(def: &ImageDef, info: Option<&ImageInfo>) -> bool {
    info.and_then(|i| i.labels.get(LABEL_DOCKERFILE_HASH)) == Some(&dockerfile_hash(def.dockerfile))
}

/// Builds a built-in image, first building the built-in image it starts from when that is
/// missing or stale.
pub async fn build(
    runtime: &dyn ContainerRuntime,
    def: &ImageDef,
    progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
) -> Result<()> {
    if let Some(parent) = def.parent.and_then(builtin)
        && !is_current(parent, runtime.image_info(parent.name).await?.as_ref())
    {
        Box::pin(build(runtime, parent, progress)).await?;
    }
    progress(&format!("building image {}", def.name));
    runtime
        .build_image(def.name, build_context(def.dockerfile)?, labels(def), progress)
        .await
}

/// Whether `image`, as `info` describes it, is what `ensure` would start a task from without
/// building: present, and current when it is a built-in image. The warm pool fills only from
/// such images (a build is left to a creation, which reports its progress).
pub fn is_ready(image: &str, info: Option<&ImageInfo>) -> bool {
    match builtin(image) {
        Some(def) => is_current(def, info),
        None => info.is_some(),
    }
}

/// Builds a built-in image unless it is present and current; returns whether it built.
pub async fn build_if_needed(
    runtime: &dyn ContainerRuntime,
    def: &ImageDef,
    progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
) -> Result<bool> {
    if is_current(def, runtime.image_info(def.name).await?.as_ref()) {
        return Ok(false);
    }
    build(runtime, def, progress).await?;
    Ok(true)
}

/// Makes sure `image` exists and returns its details: a built-in image is built when missing
/// or stale; any other image must already be there (nothing is pulled implicitly).
pub async fn ensure(
    runtime: &dyn ContainerRuntime,
    image: &str,
    progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
) -> Result<ImageInfo> {
    let info = runtime.image_info(image).await?;
    match (builtin(image), info) {
        (Some(def), info) if !is_current(def, info.as_ref()) => {
            build(runtime, def, progress).await?;
            runtime.image_info(image).await?.ok_or_else(|| RuntimeError::NotFound {
                what: format!("image {image} right after building it"),
            })
        }
        (_, Some(info)) => Ok(info),
        (_, None) => Err(RuntimeError::NotFound {
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
    fn hash_is_stable_and_tracks_the_dockerfile() {
        assert_eq!(dockerfile_hash(""), "cbf29ce484222325");
        assert_ne!(dockerfile_hash("FROM a\n"), dockerfile_hash("FROM b\n"));
        let def = &BUILTIN_IMAGES[0];
        let current = ImageInfo {
            labels: labels(def),
            ..Default::default()
        };
        assert!(is_current(def, Some(&current)));
        let old = ImageInfo::default();
        assert!(!is_current(def, Some(&old)));
        assert!(!is_current(def, None));
    }

    #[test]
    fn builtins_resolve_with_or_without_tag() {
        assert_eq!(builtin("taskbox-base:latest").map(|d| d.name), Some("taskbox-base"));
        assert_eq!(
            builtin("taskbox-developer").and_then(|d| d.parent),
            Some("taskbox-base")
        );
        assert!(builtin("ubuntu").is_none());
    }
}
