//! Which image a new task may start from (docs/security.md, "Images"). Checkpoint images hold a
//! task's files, so they start only through `from_checkpoint` or `restore_checkpoint` of a
//! checkpoint the owner can see, never by name. Owners other than the local one (HTTP tenants)
//! start only images named on `images.allowed`, by name: an image id, or a name Docker could take
//! for an id prefix, would reach any image on the host, another owner's checkpoints included.

use crate::domain::Owner;
use crate::error::{Error, Result};

/// The repository of checkpoint images (`taskbox-checkpoint:<checkpoint id>`).
pub const CHECKPOINT_REPOSITORY: &str = "taskbox-checkpoint";

pub fn check_image(owner: &Owner, image: &str, allowed: &[String]) -> Result<()> {
    let name = without_latest(image);
    let repository = name.split([':', '@']).next().unwrap_or(name);
    if repository == CHECKPOINT_REPOSITORY || repository.ends_with(&format!("/{CHECKPOINT_REPOSITORY}")) {
        return Err(Error::invalid(
            "image",
            "checkpoint images start only from their checkpoint: pass `from_checkpoint: \"<task>:<n>\"` \
             (list_checkpoints shows them) instead of `image`",
        ));
    }
    if owner.is_local() {
        return Ok(());
    }
    let looks_like_id =
        name.starts_with("sha256:") || (!name.is_empty() && name.chars().all(|c| c.is_ascii_hexdigit()));
    if looks_like_id || !allowed.iter().any(|a| without_latest(a) == name) {
        return Err(Error::invalid(
            "image",
            format!(
                "'{image}' is not an image this server lets you start; use one of: {} (by name; the operator \
                 lists them in images.allowed)",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

fn without_latest(image: &str) -> &str {
    image.strip_suffix(":latest").unwrap_or(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["taskbox-base".into(), "taskbox-developer:latest".into()]
    }

    #[test]
    fn checkpoint_images_never_start_by_name() {
        for owner in [Owner::local(), Owner::new("bob").unwrap()] {
            for image in [
                "taskbox-checkpoint:c-1",
                "taskbox-checkpoint",
                "localhost/taskbox-checkpoint:x",
            ] {
                let err = check_image(&owner, image, &allowed()).unwrap_err();
                assert_eq!(err.kind(), "invalid_argument", "{image}");
                assert!(err.to_string().contains("from_checkpoint"), "{err}");
            }
        }
    }

    #[test]
    fn tenants_start_only_allowed_images_by_name() {
        let bob = Owner::new("bob").unwrap();
        for ok in ["taskbox-base", "taskbox-base:latest", "taskbox-developer"] {
            check_image(&bob, ok, &allowed()).unwrap();
        }
        for refused in [
            "debian",
            "4f2a9c",
            "sha256:4f2a9c0b",
            "deadbeef",
            "taskbox-base:other",
            "",
        ] {
            let err = check_image(&bob, refused, &allowed()).unwrap_err();
            assert_eq!(err.kind(), "invalid_argument", "{refused}");
            assert!(err.to_string().contains("taskbox-base"), "{err}");
        }
        // The local owner runs the machine's Docker anyway.
        check_image(&Owner::local(), "debian", &allowed()).unwrap();
    }
}
