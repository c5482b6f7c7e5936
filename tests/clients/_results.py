"""Shared by the Python test clients: a tool result's structured content, or exit on a tool
error."""


def structured(result):
    if result.is_error:
        text = " ".join(c.text for c in result.content if hasattr(c, "text"))
        raise SystemExit(f"tool error: {text}")
    return result.structured_content
