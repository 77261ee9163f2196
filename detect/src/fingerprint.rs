//! Client fingerprints of AI agents and MCP servers.
//!
//! The list is matched case-insensitively as substrings of the user agent. It is
//! documented here and in `lineage detectors`, and extended from config
//! (`[detectors.long_lived] extra_user_agents = ["my-agent/"]`).

use aho_corasick::AhoCorasick;

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
    // One pass over the user agent for every built-in needle (ASCII case-insensitive);
    // the first needle of the table that occurs wins, as the table is ordered.
    static NEEDLES: std::sync::LazyLock<AhoCorasick> = std::sync::LazyLock::new(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(AI_USER_AGENTS.iter().map(|(needle, _)| needle))
            .expect("the built-in user-agent needles compile")
    });
    NEEDLES
        .find_overlapping_iter(user_agent)
        .map(|m| m.pattern().as_usize())
        .min()
        .map(|i| AI_USER_AGENTS[i].1.to_owned())
        .or_else(|| {
            let ua = user_agent.to_ascii_lowercase();
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

    /// The table's first needle that occurs, as a plain lowercase scan finds it.
    fn first_needle(user_agent: &str) -> Option<String> {
        let ua = user_agent.to_ascii_lowercase();
        AI_USER_AGENTS
            .iter()
            .find(|(needle, _)| ua.contains(needle))
            .map(|(_, what)| (*what).to_owned())
    }

    #[test]
    fn the_first_needle_in_table_order_wins() {
        // Both "mcp-server-" (later) and "claude-code" (earlier) occur.
        let ua = "mcp-server-git/1 Claude-Code/1.0";
        assert_eq!(ai_client(ua, &[]), first_needle(ua));
        assert_eq!(ai_client(ua, &[]).as_deref(), Some("Anthropic Claude Code"));
    }

    proptest::proptest! {
        #[test]
        fn one_pass_matches_the_plain_scan(
            prefix in "[ -~]{0,12}",
            pick in proptest::option::of(0..AI_USER_AGENTS.len()),
            suffix in "[ -~]{0,12}",
            upper in proptest::bool::ANY,
        ) {
            let middle = pick.map(|i| AI_USER_AGENTS[i].0).unwrap_or("");
            let mut ua = format!("{prefix}{middle}{suffix}");
            if upper {
                ua = ua.to_ascii_uppercase();
            }
            proptest::prop_assert_eq!(ai_client(&ua, &[]), first_needle(&ua));
        }
    }
}
