"""`python -m agentctl` is the `agentctl` command."""

from agentctl.cli import main

main()
