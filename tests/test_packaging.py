"""EngramDB as a package another project installs: a wheel and an sdist that work.

Builds both with ``python -m build`` (what ``make dist`` runs), then installs
the wheel into fresh virtual environments, the way a user adds EngramDB to
their own project: the default install (no torch, no CUDA), and one with the
server, PostgreSQL and MCP extras. In each, ``engram --help`` runs, and the
README's example prints what the README shows. Slow (a few minutes: fresh
venvs install from the package index), so marked ``slow``; ``make test`` runs
it, ``make test-fast`` does not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

QUIET = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, env={**env, **QUIET}, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    assert "Deprecat" not in built.stdout + built.stderr, "the build warns about deprecations"
    wheels = list(out.glob("engramdb-*.whl"))
    sdists = list(out.glob("engramdb-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where / "bin"


def _readme_example() -> tuple[str, str]:
    """The README's first Python block and the output block right after it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```\s*```\n(.*?)```", text, re.S)
    assert match, "README lost its example"
    return match.group(1), match.group(2)


def test_the_wheel_carries_the_package_data_and_the_sdist_the_sources(dist):
    import tarfile
    import zipfile

    names = zipfile.ZipFile(dist["wheel"]).namelist()
    assert "engramdb/py.typed" in names
    assert any(n.startswith("engramdb/storage/sqlite/migrations/") for n in names)
    assert any(n.startswith("engramdb/storage/postgres/migrations/") for n in names)
    # The web inspector is served from the installed package (no CDN, no build step).
    for asset in ("index.html", "app.css", "app.js", "core.js", "memories.js", "review.js",
                  "operations.js", "favicon.svg"):
        assert f"engramdb/server/ui/{asset}" in names
    with tarfile.open(dist["sdist"]) as sdist:
        members = sdist.getnames()
    assert any(n.endswith("src/engramdb/__init__.py") for n in members)
    assert any(n.endswith("pyproject.toml") for n in members)


def test_the_default_install_runs_the_readme_without_torch(dist, tmp_path):
    bin_ = _fresh_venv(tmp_path / "venv")
    _run([str(bin_ / "pip"), "install", "--quiet", str(dist["wheel"])], cwd=tmp_path)
    installed = _run([str(bin_ / "pip"), "list", "--format=freeze"], cwd=tmp_path).stdout.lower()
    for heavy in ("torch==", "sentence-transformers==", "nvidia-"):
        assert heavy not in installed, f"the default install pulled {heavy.rstrip('=')}"
    helped = _run([str(bin_ / "engram"), "--help"], cwd=tmp_path)
    assert "engram init" in helped.stdout
    code, shown = _readme_example()
    work = tmp_path / "project"
    work.mkdir()
    ran = _run([str(bin_ / "python"), "-c", code], cwd=work)
    assert ran.stdout == shown


def test_the_door_extras_install_and_start(dist, tmp_path):
    bin_ = _fresh_venv(tmp_path / "venv")
    _run([str(bin_ / "pip"), "install", "--quiet", f"{dist['wheel']}[server,postgres,mcp]"],
         cwd=tmp_path)
    installed = _run([str(bin_ / "pip"), "list", "--format=freeze"], cwd=tmp_path).stdout.lower()
    assert "torch==" not in installed
    probe = ("import engramdb.server, engramdb.mcp, engramdb.client; "
             "from engramdb.storage.postgres import PostgresStorage; print('doors ok')")
    assert _run([str(bin_ / "python"), "-c", probe], cwd=tmp_path).stdout.strip() == "doors ok"
    for command in ("serve", "mcp"):
        assert "--port" in _run([str(bin_ / "engram"), command, "--help"], cwd=tmp_path).stdout
