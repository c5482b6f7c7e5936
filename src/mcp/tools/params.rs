//! Parameter types several tools share, so each description is written once. Each is one
//! field, not a struct merged in with `#[serde(flatten)]`: flattening would drop the list of
//! fields from serde's "unknown field `x`, expected one of …", which agents read.

use schemars::JsonSchema;
use serde::Deserialize;

/// Task name or id; omit to use this session's current task.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(inline)]
pub struct TaskRef(Option<String>);

impl From<TaskRef> for Option<String> {
    fn from(task: TaskRef) -> Self {
        task.0
    }
}

/// Page size (default 50, at most 500).
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(inline)]
pub struct Limit(Option<u32>);

impl Limit {
    pub fn get(self) -> u32 {
        self.0.unwrap_or(50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        #[serde(default)]
        task: TaskRef,
        #[serde(default)]
        limit: Limit,
    }

    #[test]
    fn shared_fields_read_like_plain_options_and_unknown_fields_are_named() {
        let p: Params = serde_json::from_value(json!({ "task": "fix", "limit": 7 })).unwrap();
        assert_eq!((Option::from(p.task), p.limit.get()), (Some("fix".to_string()), 7));
        let p: Params = serde_json::from_value(json!({ "task": null })).unwrap();
        assert_eq!((Option::<String>::from(p.task), p.limit.get()), (None, 50));
        let err = serde_json::from_value::<Params>(json!({ "tsak": "fix" })).unwrap_err();
        assert_eq!(err.to_string(), "unknown field `tsak`, expected `task` or `limit`");
    }
}
