"""Print the mutation score of each mutated module from mutmut's results in mutants/.

    python tools/mutation_score.py [MODULE_PREFIX ...]

Run after `mutmut run` (`make mutate` does). The score is killed / checked: a mutant that no
fast test reaches ("no tests") counts against it like a survivor, since nothing would catch
that change either. Mutants not checked yet (a narrowed or interrupted run) are left out.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py), grouped the way the score needs them.
CAUGHT = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 37: "typed"}
MISSED = {0: "survived", 5: "no tests", 33: "no tests"}


def module_counts(mutants_dir: Path) -> dict[str, Counter[str]]:
    """Per module (dotted name), how many mutants ended how."""
    counts: dict[str, Counter[str]] = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        relative = meta.relative_to(mutants_dir).with_suffix("").with_suffix("")
        module = ".".join(relative.parts)
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"].values()
        counter = counts.setdefault(module, Counter())
        for code in exit_codes:
            if code is None:
                counter["not checked"] += 1
            else:
                counter[CAUGHT.get(code) or MISSED.get(code) or "suspicious"] += 1
    return counts


def main(argv: list[str]) -> int:
    """Print one line per module: its score and how its mutants ended."""
    prefixes = argv or [""]
    counts = module_counts(Path("mutants"))
    if not counts:
        print("no results in mutants/: run `make mutate` first", file=sys.stderr)
        return 1
    total: Counter[str] = Counter()
    for module, counter in counts.items():
        if not any(module.startswith(prefix) for prefix in prefixes):
            continue
        total += counter
        print(_line(module, counter))
    print(_line("all of the above", total))
    return 0


def _line(name: str, counter: Counter[str]) -> str:
    checked = sum(n for status, n in counter.items() if status != "not checked")
    caught = sum(counter[status] for status in set(CAUGHT.values()))
    score = f"{100 * caught / checked:5.1f} %" if checked else "    - "
    details = ", ".join(f"{n} {status}" for status, n in sorted(counter.items()))
    return f"{name:40} {score}  ({details})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
