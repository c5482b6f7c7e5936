//! Rules for named volumes: the package caches taskbox shares between an owner's tasks, the
//! names and paths a task may ask for (`volumes` of create_task_sandbox), and the Docker names
//! that keep one data directory's and one owner's volumes apart from every other's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{DomainError as Error, DomainResult as Result};
use super::model::{Owner, TaskVolume, VolumeKind};

/// The most volumes a task may ask for.
pub const MAX_TASK_VOLUMES: usize = 16;

/// A package cache taskbox can mount, shared by an owner's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// Downloaded `.deb` files (`/var/cache/apt/archives`); apt runs as root.
    Apt,
    /// `~/.cache/pip`.
    Pip,
    /// `~/.npm`.
    Npm,
    /// `~/.cargo/registry` (the index and the downloaded crates).
    Cargo,
}

impl CacheKind {
    pub const ALL: [CacheKind; 4] = [Self::Apt, Self::Pip, Self::Npm, Self::Cargo];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apt => "apt",
            Self::Pip => "pip",
            Self::Npm => "npm",
            Self::Cargo => "cargo",
        }
    }

    /// Where the cache is mounted for a user whose home is `home`; apt's is the system's.
    pub fn path(self, home: &str) -> String {
        let home = home.trim_end_matches('/');
        match self {
            Self::Apt => "/var/cache/apt/archives".into(),
            Self::Pip => format!("{home}/.cache/pip"),
            Self::Npm => format!("{home}/.npm"),
            Self::Cargo => format!("{home}/.cargo/registry"),
        }
    }

    /// Whether the cache lives in the user's home (and is then the user's: one volume per uid,
    /// since files one uid writes there are not another's to change).
    pub fn in_home(self) -> bool {
        self != Self::Apt
    }
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CacheKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            Error::invalid(
                "caches.kinds",
                format!("'{s}' is not a cache taskbox knows; use \"apt\", \"pip\", \"npm\" or \"cargo\""),
            )
        })
    }
}

/// Docker's name for a volume of `owner` in the data directory tagged `home_tag` (a hash of its
/// path): `taskbox-<home_tag>.<owner>.<what>`. Owner names and volume names have no `.`, so
/// no two (owner, volume) pairs share a Docker name.
pub fn docker_volume_name(home_tag: &str, owner: &Owner, what: &str) -> String {
    format!("taskbox-{home_tag}.{owner}.{what}")
}

/// The `<what>` of a cache's Docker name: home caches are per uid.
pub fn cache_volume_suffix(kind: CacheKind, uid: u32) -> String {
    if kind.in_home() {
        format!("cache-{kind}-{uid}")
    } else {
        format!("cache-{kind}")
    }
}

/// The `<what>` of a named volume's Docker name.
pub fn named_volume_suffix(name: &str) -> String {
    format!("named-{name}")
}

/// A volume name a task asks for: like a task name, `[a-z0-9][a-z0-9-]{0,62}`.
pub fn validate_volume_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > 63 {
        Some(format!("it is {} characters long; the limit is 63", name.len()))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Some("it must start with a lowercase letter or a digit".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            .map(|bad| format!("'{bad}' is not allowed"))
    };
    match reason {
        Some(reason) => Err(Error::invalid(
            "volumes",
            format!("'{name}' is not a volume name: {reason}. Names match [a-z0-9][a-z0-9-]{{0,62}}, e.g. 'pgdata'"),
        )),
        None => Ok(()),
    }
}

/// Paths a volume may not be mounted at, on or under: the workspace, taskbox's own mounts, and
/// the system's directories (a volume there would hide the image's programs or the kernel's
/// views). A path above one of them (`/var`, `/`) is refused too.
const RESERVED_PATHS: &[&str] = &[
    "/workspace",
    "/.taskbox",
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr",
    "/boot",
    "/run",
    "/var/run",
    "/var/lib/dpkg",
];

/// A mount path a task asks for: absolute, normalised (no `.`, `..`, `//` or trailing `/`),
/// plain characters only, and clear of `RESERVED_PATHS`.
pub fn validate_volume_path(path: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::invalid(
            "volumes",
            format!("path '{path}' {why}; pass an absolute path such as /data or /home/agent/.m2"),
        ))
    };
    if !path.starts_with('/') {
        return bad("is not absolute".into());
    }
    if path.len() > 255 {
        return bad("is longer than 255 characters".into());
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@')))
    {
        return bad(format!(
            "has '{}', which is not allowed (letters, digits and / . _ - + @ are)",
            c.escape_default()
        ));
    }
    if path == "/" {
        return bad("is the root of the container".into());
    }
    if path.ends_with('/') || path.split('/').skip(1).any(|part| matches!(part, "" | "." | "..")) {
        return bad("is not normalised (no '.', '..', '//' or trailing '/')".into());
    }
    for reserved in RESERVED_PATHS {
        if is_at_or_under(path, reserved) {
            return bad(format!("is at or under {reserved}, which a volume may not cover"));
        }
        if is_at_or_under(reserved, path) {
            return bad(format!("would cover {reserved}"));
        }
    }
    Ok(())
}

/// Whether `path` is `dir` or lies under it (both normalised, absolute).
pub fn is_at_or_under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a volume at `a` and one at `b` would share a mount point or nest in each other: a
/// task's own volume then displaces a cache there.
pub fn overlap(a: &str, b: &str) -> bool {
    is_at_or_under(a, b) || is_at_or_under(b, a)
}

/// One `{name, path}` of create_task_sandbox's `volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    pub name: String,
    pub path: String,
}

/// Checks the task's own volumes and names them in Docker for `owner`: each name and path
/// valid, at most `MAX_TASK_VOLUMES`, no two at one path or of one name, none at a path
/// `taken` already holds (the volumes a fork keeps from its source).
pub fn named_volumes(
    requests: &[VolumeRequest],
    taken: &[TaskVolume],
    home_tag: &str,
    owner: &Owner,
) -> Result<Vec<TaskVolume>> {
    if requests.len() > MAX_TASK_VOLUMES {
        return Err(Error::invalid(
            "volumes",
            format!(
                "{} volumes asked for; a task may have at most {MAX_TASK_VOLUMES}",
                requests.len()
            ),
        ));
    }
    let mut volumes: Vec<TaskVolume> = Vec::new();
    for request in requests {
        validate_volume_name(&request.name)?;
        validate_volume_path(&request.path)?;
        let clash = volumes
            .iter()
            .chain(taken.iter().filter(|t| t.kind == VolumeKind::Named));
        for other in clash {
            if other.path == request.path {
                return Err(Error::invalid(
                    "volumes",
                    format!(
                        "two volumes at {}: '{}' and '{}'; give each its own path",
                        request.path, other.name, request.name
                    ),
                ));
            }
            if other.name == request.name {
                return Err(Error::invalid(
                    "volumes",
                    format!("volume '{}' is named twice; mount each volume once", request.name),
                ));
            }
        }
        volumes.push(TaskVolume {
            kind: VolumeKind::Named,
            name: request.name.clone(),
            volume: docker_volume_name(home_tag, owner, &named_volume_suffix(&request.name)),
            path: request.path.clone(),
        });
    }
    Ok(volumes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_the_task_name_pattern() {
        for good in ["pgdata", "m2", "0", "a-b", &"a".repeat(63)] {
            assert!(validate_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Data", "a_b", "a.b", "a/b", "../x", &"a".repeat(64)] {
            let err = validate_volume_name(bad).unwrap_err().to_string();
            assert!(err.contains("[a-z0-9][a-z0-9-]"), "{bad}: {err}");
        }
    }

    #[test]
    fn paths_must_be_absolute_normalised_and_clear_of_the_system() {
        for good in [
            "/data",
            "/home/agent/.m2",
            "/var/lib/postgresql/data",
            "/opt/cache",
            "/srv/a+b@1",
        ] {
            assert!(validate_volume_path(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("data", "not absolute"),
            ("/", "root"),
            ("/data/", "normalised"),
            ("/a//b", "normalised"),
            ("/a/../etc", "normalised"),
            ("/a/./b", "normalised"),
            ("/workspace", "/workspace"),
            ("/workspace/x", "/workspace"),
            ("/.taskbox/run", "/.taskbox"),
            ("/etc", "/etc"),
            ("/proc/self", "/proc"),
            ("/usr/local/bin", "/usr"),
            ("/var", "cover /var/run"),
            ("/a b", "not allowed"),
            ("/a:b", "not allowed"),
            ("/a,b", "not allowed"),
        ] {
            let err = validate_volume_path(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        // Neighbours of reserved paths are fine.
        assert!(validate_volume_path("/workspaces").is_ok());
        assert!(validate_volume_path("/etcetera").is_ok());
    }

    #[test]
    fn docker_names_keep_owners_and_homes_apart() {
        let alice = Owner::new("alice").unwrap();
        let alice_x = Owner::new("alice-x").unwrap();
        let a = docker_volume_name("1234abcd", &alice, &named_volume_suffix("x-data"));
        let b = docker_volume_name("1234abcd", &alice_x, &named_volume_suffix("data"));
        assert_ne!(a, b);
        assert_eq!(a, "taskbox-1234abcd.alice.named-x-data");
        assert_eq!(cache_volume_suffix(CacheKind::Pip, 1000), "cache-pip-1000");
        assert_eq!(cache_volume_suffix(CacheKind::Apt, 1000), "cache-apt");
        // A task's own volume never takes a cache's name.
        assert_ne!(
            named_volume_suffix("cache-pip-1000"),
            cache_volume_suffix(CacheKind::Pip, 1000)
        );
    }

    #[test]
    fn a_tasks_volumes_are_checked_together() {
        let owner = Owner::local();
        let request = |name: &str, path: &str| VolumeRequest {
            name: name.into(),
            path: path.into(),
        };
        let made = named_volumes(&[request("a", "/a"), request("b", "/b")], &[], "t", &owner).unwrap();
        assert_eq!(made[1].volume, "taskbox-t.local.named-b");
        for (requests, why) in [
            (vec![request("a", "/a"), request("b", "/a")], "two volumes at /a"),
            (vec![request("a", "/a"), request("a", "/b")], "named twice"),
            (vec![request("A", "/a")], "not a volume name"),
            (vec![request("a", "/etc/x")], "/etc"),
            (
                (0..17).map(|i| request(&format!("v{i}"), &format!("/v{i}"))).collect(),
                "at most 16",
            ),
        ] {
            let err = named_volumes(&requests, &[], "t", &owner).unwrap_err().to_string();
            assert!(err.contains(why), "{requests:?}: {err}");
        }
        // A fork keeps its source's volumes: a new one may not take their paths.
        let err = named_volumes(&[request("c", "/a")], &made, "t", &owner)
            .unwrap_err()
            .to_string();
        assert!(err.contains("two volumes at /a"), "{err}");
    }

    #[test]
    fn caches_live_where_their_tools_look() {
        assert_eq!(CacheKind::Pip.path("/home/agent"), "/home/agent/.cache/pip");
        assert_eq!(CacheKind::Npm.path("/root/"), "/root/.npm");
        assert_eq!(CacheKind::Cargo.path("/home/a"), "/home/a/.cargo/registry");
        assert_eq!(CacheKind::Apt.path("/home/a"), "/var/cache/apt/archives");
        assert_eq!("npm".parse::<CacheKind>().unwrap(), CacheKind::Npm);
        assert!("go".parse::<CacheKind>().unwrap_err().to_string().contains("\"cargo\""));
    }
}
