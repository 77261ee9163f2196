//! Client fingerprints of AI agents and MCP servers.
//!
//! The list is matched case-insensitively as substrings of the user agent. It is
//! documented here and in `lineage detectors`, and extended from config
//! (`[detectors.long_lived] extra_user_agents = ["my-agent/"]`).

/// (substring, what it identifies), matched case-insensitively.
pub const AI_USER_AGENTS: &[(&str, &str)] = &[
    ("claude-code", "Anthropic Claude Code"),
    ("claude-cli", "Anthropic Claude Code (older builds)"),
    ("anthropic-", "Anthropic SDKs"),
    ("cursor/", "Cursor"),
    ("githubcopilot", "GitHub Copilot"),
    ("copilot-", "GitHub Copilot agents"),
    ("windsurf", "Windsurf"),
    ("codeium", "Codeium"),
    ("cline/", "Cline"),
    ("aider/", "aider"),
    ("langchain", "LangChain"),
    ("langgraph", "LangGraph"),
    ("llama-index", "LlamaIndex"),
    ("llama_index", "LlamaIndex"),
    ("openai-agents", "OpenAI Agents SDK"),
    ("mcp-server-", "an MCP server (mcp-server-<name>)"),
    ("-mcp/", "an MCP server (<name>-mcp/<version>)"),
    ("modelcontextprotocol", "the MCP SDK"),
];

/// What the user agent says about an AI client, if anything.
pub fn ai_client(user_agent: &str, extra: &[String]) -> Option<String> {
    let ua = user_agent.to_ascii_lowercase();
    AI_USER_AGENTS
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map(|(_, what)| (*what).to_owned())
        .or_else(|| {
            extra
                .iter()
                .find(|n| ua.contains(&n.to_ascii_lowercase()))
                .map(|n| format!("configured fingerprint `{n}`"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_clients_are_recognised() {
        assert!(ai_client("aws-cli/2.17 md/prompt#off claude-code/1.0.43", &[]).is_some());
        assert!(ai_client("Boto3/1.35 mcp-server-aws/0.4.1", &[]).is_some());
        assert!(ai_client("Botocore/1.34 Cursor/0.42.3", &[]).is_some());
        assert!(ai_client("aws-cli/2.15.0 github-actions", &[]).is_none());
        assert!(ai_client("my-bot/1", &["MY-BOT/".into()]).is_some());
    }
}
