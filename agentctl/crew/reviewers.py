"""The review agents. Each takes code (inline, or `{"path": ...}` inside its working
directory) and answers with findings and a graduated verdict."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from agentctl.crew.scanners import relative, run_bandit, run_ruff
from agentctl.crew.source import Source, source_of
from agentctl.model.agent import BaseAgent
from agentctl.model.verdict import Verdict

# What to do about the findings bandit reports most; others point at bandit's page.
_ADVICE = {
    "B102": "Do not exec() strings built from input; use structured code paths instead",
    "B105": "Read secrets from the environment or a secret store, not from the source",
    "B106": "Read secrets from the environment or a secret store, not from the source",
    "B107": "Read secrets from the environment or a secret store, not from the source",
    "B301": "Do not unpickle untrusted data; use JSON or a schema-checked format",
    "B307": "Use ast.literal_eval or structured parsing instead of eval()",
    "B311": "Use the secrets module for anything security-related",
    "B324": "Use SHA-256 or better; for passwords, a password hash (argon2, scrypt)",
    "B404": "Check how subprocess is used: pass argument lists, never shell=True",
    "B506": "Use yaml.safe_load",
    "B602": "Pass an argument list and drop shell=True; never build commands from input",
    "B603": "Make sure the program and its arguments cannot come from untrusted input",
    "B605": "Use subprocess with an argument list instead of os.system",
    "B608": "Use query parameters instead of building SQL from strings",
}


class SecurityReviewer(BaseAgent):
    """The seed's SecurityReviewer, made real with bandit: BLOCK on high severity findings,
    FLAG on medium, PASS otherwise."""

    def __init__(self) -> None:
        super().__init__(
            name="security_reviewer",
            role="Threat modeling and vulnerability assessment",
            expertise=["authentication", "authorization", "injection", "encryption",
                       "compliance", "owasp"],
        )  # fmt: skip

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Scan the code with bandit."""
        with source_of(task, Path.cwd()) as source:
            raw = run_bandit(source.paths)
        root = source.root
        findings = _skipped_findings(source, severity="medium") + [
            {
                "severity": r.get("issue_severity", "").lower(),
                "confidence": r.get("issue_confidence", "").lower(),
                "file": relative(str(r.get("filename", "")), root),
                "line": r.get("line_number"),
                "test_id": r.get("test_id"),
                "issue": r.get("issue_text"),
                "recommendation": _ADVICE.get(str(r.get("test_id")), r.get("more_info")),
            }
            for r in raw
        ]
        findings.sort(key=lambda f: (-_rank(f["severity"]), f["file"], f["line"] or 0))
        severities = {f["severity"] for f in findings}
        verdict = (
            Verdict.BLOCK if "high" in severities
            else Verdict.FLAG if "medium" in severities
            else Verdict.PASS
        )  # fmt: skip
        return {
            "agent": self.name,
            "verdict": verdict.value,
            "passed": verdict is Verdict.PASS,
            "findings": findings,
            "summary": _count(findings, "severity") or "no findings",
        }


class LintReviewer(BaseAgent):
    """ruff on the same input: FLAG when it finds problems."""

    def __init__(self) -> None:
        super().__init__(name="lint_reviewer", role="Style and correctness lint",
                         expertise=["lint", "style", "python", "quality"])  # fmt: skip

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Run ruff's default rules."""
        with source_of(task, Path.cwd()) as source:
            findings = [_ruff_finding(d, source.root) for d in run_ruff(source.paths)]
        findings += _skipped_findings(source)
        verdict = Verdict.FLAG if findings else Verdict.PASS
        return {
            "agent": self.name,
            "verdict": verdict.value,
            "findings": findings,
            "summary": f"{len(findings)} problem(s)" if findings else "clean",
        }


class ComplexityReviewer(BaseAgent):
    """Cyclomatic complexity per function (ruff's mccabe rule, C901): FLAG above the limit."""

    def __init__(self, max_complexity: int = 10) -> None:
        super().__init__(name="complexity_reviewer", role="Keeps functions simple",
                         expertise=["complexity", "maintainability", "refactoring"])  # fmt: skip
        self.max_complexity = int(max_complexity)

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Report every function over the limit with its complexity."""
        setting = f"lint.mccabe.max-complexity = {self.max_complexity}"
        with source_of(task, Path.cwd()) as source:
            raw = run_ruff(source.paths, select=["C901"], config=(setting,))
        findings = _skipped_findings(source)
        for d in raw:
            finding = _ruff_finding(d, source.root)
            match = re.search(r"`(?P<name>[^`]+)` is too complex \((?P<score>\d+) > \d+\)",
                              str(d.get("message", "")))  # fmt: skip
            if match:
                finding["function"] = match["name"]
                finding["complexity"] = int(match["score"])
            findings.append(finding)
        verdict = Verdict.FLAG if findings else Verdict.PASS
        # A syntax error or a skipped file is a finding too, but not a complex function.
        over = sum(1 for f in findings if "complexity" in f)
        unchecked = len(findings) - over
        parts = [f"{over} function(s) over {self.max_complexity}"] if over else []
        if unchecked:
            parts.append(f"{unchecked} place(s) it could not check (syntax errors, files skipped)")
        return {
            "agent": self.name,
            "verdict": verdict.value,
            "max_complexity": self.max_complexity,
            "findings": findings,
            "summary": "; ".join(parts) or f"every function at or under {self.max_complexity}",
        }


class Reporter(BaseAgent):
    """Joins the reviews of a run into one Markdown report, worst verdict first; writes it
    into the workspace (`reports/<run>.md`) and returns it."""

    def __init__(self) -> None:
        super().__init__(name="reporter", role="Writes the review report",
                         expertise=["report", "summary"])  # fmt: skip

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Write the report."""
        reviews = {
            agent: result
            for agent, result in (context.get("results") or {}).items()
            if isinstance(result, dict) and "findings" in result
        }
        verdicts = {agent: _verdict(r) for agent, r in reviews.items()}
        worst = Verdict.worst(list(verdicts.values()))
        run = str((context.get("message") or {}).get("thread_id") or "review")
        markdown = _markdown(run, worst, reviews, verdicts)
        path = _report_dir() / f"{_safe(run)}.md"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(markdown, encoding="utf-8")
        os.replace(tmp, path)
        return {
            "agent": self.name,
            "verdict": worst.value,
            "report_path": str(path),
            "report": markdown,
            "summary": f"{worst.value}: " + ", ".join(
                f"{agent} {v.value}" for agent, v in sorted(
                    verdicts.items(), key=lambda kv: -kv[1].severity)
            ),
        }  # fmt: skip


def _markdown(
    run: str, worst: Verdict, reviews: dict[str, Any], verdicts: dict[str, Verdict]
) -> str:
    lines = [f"# Review {run}", "", f"**Verdict: {worst.value.upper()}**", ""]
    for agent in sorted(reviews, key=lambda a: -verdicts[a].severity):
        review = reviews[agent]
        lines += [f"## {agent}: {verdicts[agent].value}", "", str(review.get("summary", "")), ""]
        findings = review.get("findings") or []
        if findings:
            lines += ["| where | what | severity | advice |", "|---|---|---|---|"]
            for f in findings:
                where = f"{f.get('file')}:{f.get('line')}"
                what = f.get("issue") or f.get("message") or ""
                if f.get("test_id") or f.get("code"):
                    what = f"{f.get('test_id') or f.get('code')} {what}"
                advice = f.get("recommendation") or ""
                lines.append(
                    f"| {_cell(where)} | {_cell(what)} | {_cell(f.get('severity', ''))} "
                    f"| {_cell(advice)} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def _ruff_finding(d: dict[str, Any], root: Path) -> dict[str, Any]:
    location = d.get("location") or {}
    return {
        "file": relative(str(d.get("filename", "")), root),
        "line": location.get("row"),
        "code": d.get("code"),
        "message": d.get("message"),
        "recommendation": ((d.get("fix") or {}).get("message")) or d.get("url"),
    }


def _skipped_findings(source: Source, **extra: str) -> list[dict[str, Any]]:
    # A file the crew would not read is a finding: a review never passes over it in silence.
    return [
        {"file": rel, "line": None, "code": "skipped", "issue": reason, "message": reason,
         "recommendation": "Review only code inside the folder; copy the file in if it belongs",
         **extra}
        for rel, reason in source.skipped
    ]  # fmt: skip


def _verdict(review: dict[str, Any]) -> Verdict:
    try:
        return Verdict(str(review.get("verdict", "pass")).lower())
    except ValueError:
        return Verdict.FLAG


def _rank(severity: str) -> int:
    return {"low": 1, "medium": 2, "high": 3}.get(severity, 0)


def _count(findings: list[dict[str, Any]], key: str) -> str:
    counts: dict[str, int] = {}
    for f in findings:
        counts[str(f.get(key))] = counts.get(str(f.get(key)), 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -_rank(kv[0])))


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "_", name)[:100] or "review"


def _report_dir() -> Path:
    # Reports belong in the workspace (agentctl sets AGENTCTL_WORKSPACE for its workers).
    workspace = os.environ.get("AGENTCTL_WORKSPACE")
    return (Path(workspace) if workspace else Path.cwd() / "workspace") / "reports"
