"""Every Python example in docs/integrations.md runs as printed and prints what the text says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
_SECTION = re.compile(r"^## (.+)$", re.M)
_BLOCK = re.compile(r"```python\n(.*?)```\n\nprints (?:the [^`]*?)?`([^`]*)`", re.S)
NEEDS = {"LangGraph": "langgraph.graph", "CrewAI": "crewai.memory.unified_memory",
         "Microsoft Agent Framework": "agent_framework", "AutoGen": "autogen_core.memory",
         "OpenAI Agents SDK": "agents"}
EXTRA = {"LangGraph": "langgraph", "CrewAI": "crewai", "Microsoft Agent Framework":
         "agent-framework", "AutoGen": "autogen", "OpenAI Agents SDK": "openai-agents"}


def sections() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    heads = list(_SECTION.finditer(text))
    out = []
    for i, h in enumerate(heads):
        body = text[h.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        out += [(h.group(1), code, printed) for code, printed in _BLOCK.findall(body)]
    return out


def test_every_framework_section_has_a_runnable_example() -> None:
    assert {name for name, _, _ in sections()} == set(NEEDS)


@pytest.mark.parametrize(("framework", "code", "printed"), sections(),
                         ids=[s[0] for s in sections()])
def test_example_runs_as_printed(framework: str, code: str, printed: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(NEEDS[framework], reason=f"{framework} is not installed: pip install "
                        f"'engramdb[{EXTRA[framework]}]'")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"docs/integrations.md ({framework})", "exec"), {"__name__": "doc"})
    # The example's own print is the last line (CrewAI also draws its event panels on stdout).
    assert out.getvalue().strip().splitlines()[-1] == printed
