//! How a crate [`Error`] reaches an MCP client. A tool reports it as a tool result
//! (`isError: true`), so the agent reads it and acts; prompts and resources have no such
//! result and answer with a JSON-RPC error instead.

use rmcp::ErrorData as McpError;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

use crate::error::Error;

/// The tool error an MCP client sees: a readable message, and the same message as
/// structured content, so agents can branch on `error.kind`.
pub(crate) fn tool_error(error: &Error) -> CallToolResult {
    let message = error.to_string();
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.clone())]);
    result.structured_content = Some(serde_json::json!({
        "error": { "kind": error.kind(), "message": message }
    }));
    result
}

/// Lets a tool return `crate::error::Result<CallToolResult>`: its errors become tool errors,
/// never protocol errors.
impl IntoCallToolResult for Error {
    fn into_call_tool_result(self) -> Result<CallToolResponse, McpError> {
        Ok(tool_error(&self).into())
    }
}

/// For prompts and resources: what names nothing is not found, what the caller can fix is
/// an invalid parameter, and what failed on the server's side is an internal error.
impl From<Error> for McpError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            // Every `uri` complaint of a resource read means the URI names nothing taskbox has.
            Error::TaskNotFound { .. }
            | Error::ExecutionNotFound { .. }
            | Error::InvalidArgument { field: "uri", .. } => Self::resource_not_found(message, None),
            Error::NoCurrentTask
            | Error::InvalidName { .. }
            | Error::NameTaken { .. }
            | Error::InvalidArgument { .. }
            | Error::WrongStatus { .. }
            | Error::Lifecycle(_)
            | Error::HookDenied { .. }
            | Error::TooManyExecutions { .. }
            | Error::QuotaExceeded { .. } => Self::invalid_params(message, None),
            Error::Runtime(_)
            | Error::Registry(_)
            | Error::Store(_)
            | Error::Workspace(_)
            | Error::Cancelled
            | Error::Internal(_)
            | Error::InContainer { .. }
            | Error::Config(_)
            | Error::Transport(_)
            | Error::ShuttingDown
            | Error::EgressProxy(_)
            | Error::RegistryRebuilding => Self::internal_error(message, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryError;
    use crate::store::StoreError;
    use pretty_assertions::assert_eq;
    use rmcp::model::ErrorCode;

    fn code(error: Error) -> ErrorCode {
        McpError::from(error).code
    }

    #[test]
    fn missing_things_are_not_found_and_failures_are_internal() {
        let not_found = ErrorCode::RESOURCE_NOT_FOUND;
        assert_eq!(code(Error::TaskNotFound { task: "x".into() }), not_found);
        assert_eq!(code(Error::invalid("uri", "task 'x' has no plan.md yet")), not_found);
        assert_eq!(
            code(Error::invalid("arguments", "needs `query`")),
            ErrorCode::INVALID_PARAMS
        );
        assert_eq!(code(Error::NoCurrentTask), ErrorCode::INVALID_PARAMS);
        // A registry or store failure is the server's, never "resource not found".
        assert_eq!(
            code(Error::Registry(RegistryError::Open("disk full".into()))),
            ErrorCode::INTERNAL_ERROR
        );
        let io = std::io::Error::other("EIO");
        assert_eq!(
            code(Error::Store(StoreError::Io {
                path: "/x".into(),
                source: io
            })),
            ErrorCode::INTERNAL_ERROR
        );
    }

    #[test]
    fn the_message_is_the_errors_own() {
        let error = McpError::from(Error::TaskNotFound { task: "x".into() });
        assert!(
            error.message.starts_with("no task named or with id 'x'"),
            "{}",
            error.message
        );
        assert_eq!(error.data, None);
    }

    #[test]
    fn a_tool_error_carries_its_kind() {
        let result = tool_error(&Error::NoCurrentTask);
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["error"]["kind"], "no_current_task");
        assert_eq!(structured["error"]["message"], Error::NoCurrentTask.to_string());
    }
}
