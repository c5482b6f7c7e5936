//! The errors of the domain types: a rejected name or value. They carry no crate type, so the
//! domain module stays at the bottom of the import graph (docs/architecture.md, "Module map");
//! `crate::Error` converts them into the same tool errors as before.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid task name '{name}': {reason}")]
    InvalidName { name: String, reason: String },

    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
}

impl DomainError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

pub type DomainResult<T> = std::result::Result<T, DomainError>;
