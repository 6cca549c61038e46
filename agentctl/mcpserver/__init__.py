"""`agentctl mcp`: the workspace served to MCP clients (issue 16)."""
