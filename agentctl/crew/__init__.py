"""The bundled code-review crew: security (bandit), lint (ruff), complexity (ruff's C901) and a
reporter that joins their reviews into one Markdown report. The scanners are the `crew` extra."""
