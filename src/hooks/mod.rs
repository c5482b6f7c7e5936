//! Hooks around taskbox (DESIGN.md §8). So far: the Claude Code PreToolUse hook that keeps an
//! agent inside its sandbox; the hook manager and built-in hooks come next.

pub mod claude_code;
