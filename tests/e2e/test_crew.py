"""The code-review crew on sample code with known problems: real bandit and ruff runs, and the
review pipeline end to end."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from pathlib import Path

import pytest

from agentctl.crew.reviewers import ComplexityReviewer, LintReviewer, Reporter, SecurityReviewer
from agentctl.model.errors import NonRetryableError
from tests.conftest import run_cli, write_roster

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bandit") is None, reason="the crew extra (bandit) is not installed"
)

# The README's sample: the crew's findings on it are what the README shows.
BAD = (Path(__file__).resolve().parents[2] / "examples" / "code" / "vulnerable.py").read_text()
CLEAN = 'def greet(name: str) -> str:\n    return f"hello, {name}"\n'


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "bad.py").write_text(BAD)
    monkeypatch.chdir(tmp_path)  # reviewers read paths inside their working directory
    return tmp_path


def review(agent, task: dict) -> dict:
    return asyncio.run(agent.process(task, {}))


def test_security_reviewer_finds_eval_shell_and_password_and_blocks(code: Path) -> None:
    result = review(SecurityReviewer(), {"path": "code"})
    by_test = {f["test_id"]: f for f in result["findings"]}
    assert by_test["B602"]["severity"] == "high" and by_test["B602"]["line"] == 9
    assert by_test["B307"]["severity"] == "medium" and by_test["B307"]["line"] == 13
    assert by_test["B105"]["line"] == 5 and "hunter2" in by_test["B105"]["issue"]
    assert all(f["file"] == "code/bad.py" and f["recommendation"] for f in result["findings"])
    assert result["findings"][0]["severity"] == "high"  # worst first
    assert result["verdict"] == "block" and result["passed"] is False
    assert SecurityReviewer().expertise == [
        "authentication", "authorization", "injection", "encryption", "compliance", "owasp",
    ]  # fmt: skip


def test_security_reviewer_flags_medium_and_passes_clean_code(code: Path) -> None:
    medium = review(SecurityReviewer(), {"code": "def f(s):\n    return eval(s)\n"})
    assert medium["verdict"] == "flag" and medium["findings"][0]["file"] == "snippet.py"
    assert review(SecurityReviewer(), {"content": CLEAN})["verdict"] == "pass"


def test_lint_reviewer_flags_the_unused_import(code: Path) -> None:
    result = review(LintReviewer(), {"path": "code/bad.py"})
    assert result["verdict"] == "flag"
    unused = [f for f in result["findings"] if f["code"] == "F401"]
    assert unused and unused[0]["line"] == 2 and "os" in unused[0]["message"]
    assert review(LintReviewer(), {"code": CLEAN})["verdict"] == "pass"


def test_complexity_reviewer_flags_the_nested_function_over_its_limit(code: Path) -> None:
    strict = review(ComplexityReviewer(max_complexity=10), {"path": "code"})
    assert strict["verdict"] == "flag"
    assert [(f["function"], f["complexity"]) for f in strict["findings"]] == [("nested", 11)]
    assert review(ComplexityReviewer(max_complexity=11), {"path": "code"})["verdict"] == "pass"


def test_complexity_reviewer_does_not_count_code_it_could_not_parse_as_functions() -> None:
    # Given code that is not Python at all (a reviewer reads what a person pasted)
    result = review(ComplexityReviewer(), {"content": "<b>bold</b> import os"})

    # Then its summary says it could not check it, not that functions are too complex
    assert result["verdict"] == "flag" and result["findings"]
    assert "function(s) over" not in result["summary"]
    assert "could not check" in result["summary"]


def test_reviewers_refuse_paths_outside_their_directory(code: Path) -> None:
    for path in ("..", "/etc", "code/../../x"):
        with pytest.raises(NonRetryableError, match="outside"):
            review(LintReviewer(), {"path": path})
    (code / "code" / "link").symlink_to("/etc")
    with pytest.raises(NonRetryableError, match="outside"):
        review(SecurityReviewer(), {"path": "code/link"})


def test_symlinks_inside_the_folder_never_lead_the_scanners_outside(code: Path) -> None:
    # Given a secret outside the agent's directory, reached by symlinks inside the folder
    outside = code / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text('password = "s3cr3t-outside"\nimport os\n')
    folder = code / "agent" / "code"
    folder.mkdir(parents=True)
    (folder / "bad.py").write_text(BAD)
    (folder / "linked.py").symlink_to(outside / "secret.py")
    (folder / "linked_dir").symlink_to(outside)
    (folder / "inside.py").symlink_to("bad.py")
    os.mkfifo(folder / "pipe.py")
    # When the crew, working in code/agent, reviews the folder
    os.chdir(code / "agent")
    results = [review(agent, {"path": "code"})
               for agent in (SecurityReviewer(), LintReviewer(), ComplexityReviewer())]
    # Then nothing outside is read, and each reviewer says what it left out
    for result in results:
        assert "s3cr3t-outside" not in json.dumps(result)
        skipped = {f["file"]: f for f in result["findings"] if f.get("code") == "skipped"}
        assert set(skipped) == {"code/linked.py", "code/linked_dir", "code/pipe.py"}
        assert "outside" in skipped["code/linked.py"]["message"]
        assert result["verdict"] != "pass"
    security = results[0]
    assert {f["file"] for f in security["findings"] if f.get("test_id") == "B602"} == {
        "code/bad.py", "code/inside.py"}  # a link that stays inside is reviewed
    assert not any(f["file"].startswith("code/linked") for f in results[1]["findings"]
                   if f.get("code") != "skipped")


def test_a_single_file_symlinked_outside_is_refused(code: Path) -> None:
    (code / "secret.py").write_text('password = "s3cr3t"\n')
    os.makedirs(code / "sub" / "code")
    (code / "sub" / "code" / "a.py").symlink_to(code / "secret.py")
    os.chdir(code / "sub")
    with pytest.raises(NonRetryableError, match="outside"):
        review(SecurityReviewer(), {"path": "code/a.py"})


def test_reporter_writes_the_report_worst_verdict_first(code: Path, monkeypatch) -> None:
    monkeypatch.setenv("AGENTCTL_WORKSPACE", str(code / "ws"))
    results = {
        "lint_reviewer": review(LintReviewer(), {"path": "code"}),
        "security_reviewer": review(SecurityReviewer(), {"path": "code"}),
    }
    context = {"results": results, "message": {"thread_id": "01RUN"}}
    report = asyncio.run(Reporter().process({}, context))
    assert report["verdict"] == "block"
    path = Path(report["report_path"])
    assert path == code / "ws" / "reports" / "01RUN.md"
    text = path.read_text()
    assert text == report["report"] and "**Verdict: BLOCK**" in text
    assert text.index("## security_reviewer: block") < text.index("## lint_reviewer: flag")
    assert "B602" in text and "F401" in text and oct(path.stat().st_mode)[-3:] in ("600", "644")


def test_the_review_pipeline_end_to_end(tmp_path: Path, supervised) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "bad.py").write_text(BAD)
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "ok.py").write_text(CLEAN)
    write_roster(tmp_path, """\
        - name: security_reviewer
          python: agentctl.crew.reviewers:SecurityReviewer
        - name: lint_reviewer
          python: agentctl.crew.reviewers:LintReviewer
        - name: complexity_reviewer
          python: agentctl.crew.reviewers:ComplexityReviewer
          options: {max_complexity: 5}
        - name: reporter
          python: agentctl.crew.reviewers:Reporter
    """)
    with open(tmp_path / "agents.yaml", "a") as roster:
        roster.write(
            "pipelines:\n  review:\n"
            "    stages: [[security_reviewer, lint_reviewer, complexity_reviewer]]\n"
            "    finally: reporter\n"
        )
    supervised(tmp_path).wait_ready(["security_reviewer", "lint_reviewer", "reporter"])

    blocked = run_cli("send", "pipeline:review", "@code", "--wait", "--json",
                      "--timeout-s", "120", cwd=tmp_path)  # fmt: skip
    assert blocked.returncode == 1, blocked.stderr
    outcome = json.loads(blocked.stdout)
    assert (outcome["outcome"], outcome["verdict"]) == ("blocked", "block")
    verdicts = {agent: stage["results"][agent]["verdict"]
                for stage in outcome["stages"] for agent in stage["agents"]}  # fmt: skip
    assert verdicts == {"security_reviewer": "block", "lint_reviewer": "flag",
                        "complexity_reviewer": "flag", "reporter": "block"}  # fmt: skip
    report = Path(outcome["stages"][-1]["results"]["reporter"]["report_path"])
    assert report.parent == tmp_path / "workspace" / "reports" and "B307" in report.read_text()

    clean = run_cli("send", "pipeline:review", "@clean", "--wait", "--timeout-s", "120",
                    cwd=tmp_path)  # fmt: skip
    assert clean.returncode == 0, clean.stderr
    assert "done, verdict pass" in clean.stdout and "report:" in clean.stdout
    assert os.path.isdir(tmp_path / "workspace" / "reports")
