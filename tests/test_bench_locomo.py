"""``engram bench locomo`` on a tiny conversation in the LoCoMo format."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from engramdb.cli import cli

TURNS = [
    ("Ana", "Guess what, I adopted a grey kitten from the shelter today!"),
    ("Ben", "No way! What did you call it?"),
    ("Ana", "Pixel. She already sleeps on my keyboard."),
    ("Ben", "Ha, fitting. I spent the weekend repairing my bike."),
    ("Ana", "Did you fix the brakes in the end?"),
    ("Ben", "Yes, new pads and a new cable."),
]
LATER = [
    ("Ben", "I signed up for a half marathon in October."),
    ("Ana", "Impressive! Are you training every day?"),
    ("Ben", "Four runs a week, mostly by the river."),
    ("Ana", "Pixel knocked my coffee over this morning."),
]


def _conversation(folder: Path) -> Path:
    conv: dict[str, object] = {"speaker_a": "Ana", "speaker_b": "Ben"}
    for n, (when, turns) in enumerate((("1:56 pm on 8 May, 2023", TURNS),
                                       ("10:02 am on 20 June, 2023", LATER)), start=1):
        conv[f"session_{n}_date_time"] = when
        conv[f"session_{n}"] = [{"speaker": s, "dia_id": f"D{n}:{i}", "text": t}
                                for i, (s, t) in enumerate(turns, start=1)]
    qa = [
        {"question": "What is the name of Ana's kitten?", "answer": "Pixel",
         "evidence": ["D1:3"], "category": 4},
        {"question": "When did Ana adopt a kitten?", "answer": "8 May 2023",
         "evidence": ["D1:1"], "category": 2},
        {"question": "What sports and repairs has Ben done?", "answer": "bike, running",
         "evidence": ["D1:4; D2:1"], "category": 1},  # malformed: two ids in one string
        {"question": "What did Ben name his dog?", "adversarial_answer": "Rex",
         "evidence": ["D1:2"], "category": 5},  # unanswerable: never asked
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "conv-test.json"
    path.write_text(json.dumps({"sample_id": "conv-test", "conversation": conv, "qa": qa}))
    return folder


def test_bench_locomo_reports_every_method_per_category_and_plots(tmp_path, embedder):
    data = _conversation(tmp_path / "data")
    out = tmp_path / "LOCOMO.md"
    result = CliRunner().invoke(cli, ["bench", "locomo", "--data", str(data),
                                      "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for method in ("bm25", "dense", "rrf", "engramdb"):
        row = re.search(rf"\| tuning \(3 questions\): {method} \| (.*?) \|", text)
        assert row, method
        at = dict(re.findall(r"@(\d+) ([\d.]+)", row.group(1)))
        assert set(at) == {"1", "5", "10", "25", "50"}
        # Ten turns in all: every method that ranks every turn finds all 4 evidence turns.
        if method != "bm25":
            assert at["50"] == "1.000", (method, row.group(1))
    # The goal row: recall() asked for exactly 10 and 25 hits, as a user would.
    assert re.search(r"\| tuning: engramdb, recall\(k=10\) and recall\(k=25\) called \| "
                     r"@10 [\d.]+ \(.*\); @25 [\d.]+ \(.*\) \| >= 0.75 @10", text)
    # Categories 1, 2 and 4 were asked (5 never is): three figures in brackets per cell.
    assert re.search(r"@10 [\d.]+ \([\d.]+ / [\d.]+ / [\d.]+\)", text)
    assert (tmp_path / "LOCOMO.png").stat().st_size > 10_000
    assert "![recall@k against k](LOCOMO.png)" in text
    assert list((tmp_path / "cache").glob("locomo-*.npz"))  # embeddings kept for the next run


def test_bench_locomo_without_data_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("ENGRAM_LOCOMO", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["bench", "locomo", "--data", str(empty)])
    assert result.exit_code != 0
    assert "--data" in result.output
