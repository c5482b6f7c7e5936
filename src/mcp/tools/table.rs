//! The tool table (`crate::domain::Tool`) against the router: the same tools, each once.

pub use crate::domain::Tool;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::mcp::TaskboxServer;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_table_lists_exactly_the_routers_tools() {
        let routed: BTreeSet<String> = TaskboxServer::tool_router()
            .list_all()
            .into_iter()
            .map(|tool| tool.name.to_string())
            .collect();
        let table: BTreeSet<String> = Tool::ALL.iter().map(|tool| tool.as_str().to_string()).collect();
        assert_eq!(routed, table);
        assert_eq!(table.len(), Tool::ALL.len(), "a tool is listed twice");
        assert_eq!(Tool::from_name("task_diff"), Some(Tool::TaskDiff));
        assert_eq!(Tool::from_name("nope"), None);
    }
}
