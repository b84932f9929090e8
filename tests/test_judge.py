"""Contradiction judges: heuristic signals, structured assertions, quality, LLM over HTTP."""

from __future__ import annotations

import importlib.util
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engramdb.errors import InvalidInput, UpstreamError
from engramdb.model import Memory
from engramdb.policy.judge import HeuristicJudge, Judge, Judgment, LLMJudge, Statement
from tests.support.openai_server import OpenAICompatServer

ROOT = Path(__file__).resolve().parent.parent
judge = HeuristicJudge()


def verdict(a: str, b: str) -> Judgment:
    return judge.judge(Statement(a), Statement(b))


# --------------------------------------------------------------------------- heuristic signals


def test_negation_contradicts_and_reason_quotes_both_phrases() -> None:
    j = verdict("The loan application is approved.", "The loan application is not approved.")
    assert j.verdict == "contradiction"
    assert j.detector == "heuristic"
    assert j.reason == "negation: 'is approved' vs 'is not approved' on shared 'loan application'"


@pytest.mark.parametrize(
    ("a", "b", "cue"),
    [
        ("The user still works at Stripe.", "The user no longer works at Stripe.", "no longer"),
        (
            "The customer never received the package.",
            "The customer received the package.",
            "never received",
        ),
        ("The cache client is thread-safe.", "The cache client isn't thread-safe.", "is not"),
        ("The subscription auto-renews.", "The subscription doesn't auto-renew.", "does not"),
        ("The user can't attend the workshop.", "The user will attend the workshop.", "can not"),
    ],
)
def test_negation_forms(a: str, b: str, cue: str) -> None:
    j = verdict(a, b)
    assert j.verdict == "contradiction"
    assert j.reason.startswith("negation:") and cue in j.reason


def test_negation_of_a_different_claim_is_compatible() -> None:
    j = verdict("The user is not in Berlin this week.", "The user is in Paris this week.")
    assert j.verdict == "compatible"
    j = verdict("The bug does not reproduce on Linux.", "The bug reproduces on macOS.")
    assert j.verdict == "compatible"


def test_negation_and_antonym_cancel() -> None:
    j = verdict("The ticket is not open.", "The ticket is closed.")
    assert j.verdict == "compatible"
    assert "'is not open' agrees with 'closed'" in j.reason


@pytest.mark.parametrize(
    ("a", "b", "words"),
    [
        (
            "Company X's outlook is positive.",
            "Company X's outlook is negative.",
            ("positive", "negative"),
        ),
        ("The staging database is up.", "The staging database is down.", ("up", "down")),
        ("Revenue increased in Q4.", "Revenue decreased in Q4.", ("increased", "decreased")),
        (
            "Finance approved the Q3 budget.",
            "The Q3 budget was rejected by finance.",
            ("approved", "rejected"),
        ),
        ("Blood pressure is elevated.", "Blood pressure is low.", ("elevated", "low")),
        ("The claim is true.", "The claim is false.", ("true", "false")),
        ("The worker on batch-2 is alive.", "The worker on batch-2 is dead.", ("alive", "dead")),
        ("Maria likes spicy food.", "Maria dislikes spicy food.", ("likes", "dislikes")),
        ("Server web-03 is healthy.", "Server web-03 is unhealthy.", ("healthy", "unhealthy")),
        ("SKU A-100 is in stock.", "SKU A-100 is out of stock.", ("in_stock", "out_of_stock")),
    ],
)
def test_antonyms_contradict(a: str, b: str, words: tuple[str, str]) -> None:
    j = verdict(a, b)
    assert j.verdict == "contradiction"
    assert j.reason.startswith(f"antonym: '{words[0]}' vs '{words[1]}'")


def test_antonym_about_different_things_is_compatible() -> None:
    j = verdict("Revenue increased in Q4.", "Costs decreased in Q4.")
    assert j.verdict == "compatible"
    assert "different things" in j.reason and "Revenue" in j.reason


def test_differing_price_contradicts() -> None:
    j = verdict("The plan costs $49 per month.", "The plan costs $79 per month.")
    assert j.verdict == "contradiction"
    assert j.reason == "number: '$49' vs '$79' on shared 'plan costs month'"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("Churn for Q2 was 4.5%.", "Churn for Q2 was 7%.", "contradiction"),
        ("Churn for Q2 was 4.5%.", "Churn for Q2 was 4.5 percent.", "compatible"),
        ("Hooli has 1,200 employees.", "Hooli has about 1,150 employees.", "compatible"),
        ("Hooli has 1,200 employees.", "Hooli has about 3,000 employees.", "contradiction"),
        ("Hooli has more than 1,000 employees.", "Hooli has 1,200 employees.", "compatible"),
        ("Hooli has fewer than 1,000 employees.", "Hooli has 1,200 employees.", "contradiction"),
        ("Redis runs version 7.2.", "Redis runs version 6.0.", "contradiction"),
        ("The image is 400MB.", "The image is 0.4GB.", "compatible"),
        ("The user's timezone is UTC+2.", "The user's timezone is UTC-5.", "contradiction"),
        # Same count but different units: not comparable, so not a contradiction.
        (
            "The API limit is 100 requests per minute.",
            "The API allows 6,000 requests per hour.",
            "compatible",
        ),
        (
            "Revenue grew 12% in 2023.",
            "Revenue grew 12% in 2023 according to the filing.",
            "compatible",
        ),
    ],
)
def test_numbers(a: str, b: str, expected: str) -> None:
    j = verdict(a, b)
    assert j.verdict == expected, j.reason
    if expected == "contradiction":
        assert j.reason.startswith("number:")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The plan costs $49 per month.", "The plan includes 10 seats."),
        ("Globex has 450 employees.", "Globex had revenue of $80M in 2023."),
        ("Revenue grew 12% in 2023.", "Headcount grew 5% in 2023."),
        ("The CI build uses 4 workers.", "The CI build takes about 8 minutes."),
    ],
)
def test_numbers_of_different_attributes_do_not_contradict(a: str, b: str) -> None:
    # Whether these come out "compatible" or "unrelated" depends on how many
    # topic words the short texts share; what matters is no false alarm.
    assert verdict(a, b).verdict != "contradiction"


@pytest.mark.parametrize(
    ("a", "b", "expected", "signal"),
    [
        ("Initech was founded in 1998.", "Initech was founded in 2004.", "contradiction", "date"),
        ("Renewal is due on 2025-03-01.", "Renewal is due on 2025-06-01.", "contradiction", "date"),
        ("Renewal is due on 2025-03-01.", "Renewal is due on March 1, 2025.", "compatible", ""),
        ("The sync is on March 14.", "The sync is on 14 March.", "compatible", ""),
        (
            "The weekly sync is on Tuesday.",
            "The weekly sync is on Thursday.",
            "contradiction",
            "date",
        ),
        ("The standup is at 9am.", "The standup is at 09:30.", "contradiction", "time"),
        ("The meeting is at 3pm.", "The meeting is at 15:00.", "compatible", ""),
    ],
)
def test_dates_and_times(a: str, b: str, expected: str, signal: str) -> None:
    j = verdict(a, b)
    assert j.verdict == expected, j.reason
    assert j.reason.startswith(f"{signal}:" if signal else "compatible:")


def test_different_time_frames_are_compatible() -> None:
    j = verdict(
        "Acme's CEO was Bob Martinez until 2019.", "Acme's CEO has been Alice Chen since 2020."
    )
    assert j.verdict == "compatible"
    assert "different time frames" in j.reason
    j = verdict("Gross margin in 2023 was 62%.", "Gross margin in 2022 was 55%.")
    assert j.verdict == "compatible"
    assert "different time frames" in j.reason


def test_named_values_of_one_attribute_contradict() -> None:
    j = verdict("Acme Corp's CEO is Alice Chen.", "Acme Corp's CEO is Bob Martinez.")
    assert j.verdict == "contradiction"
    assert j.reason == "value: 'Alice Chen' vs 'Bob Martinez' for shared 'Acme Corp CEO'"
    j = verdict("User 42 lives in Paris.", "User 42 lives in Berlin.")
    assert j.verdict == "contradiction" and "'Paris' vs 'Berlin'" in j.reason
    j = verdict(
        "Alice is the on-call engineer this week.", "Bob is the on-call engineer this week."
    )
    assert j.verdict == "contradiction", j.reason


def test_values_that_can_coexist_are_compatible() -> None:
    assert (
        verdict("The user speaks Spanish.", "The user speaks Portuguese.").verdict == "compatible"
    )
    assert verdict("The user likes jazz.", "The user also likes blues.").verdict == "compatible"
    assert (
        verdict("Bob approved the request.", "Alice approved the request.").verdict == "compatible"
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Company X's outlook is positive.", "The staging database is down."),
        ("Alice lives in Paris.", "Bob lives in Berlin."),
        ("The office is closed on Friday.", "The pull request was closed on Friday."),
        ("Gross margin in 2023 was 62%.", "The laptop battery is at 62%."),
        ("Disk usage on web-01 increased to 80%.", "The newsletter open rate decreased to 21%."),
    ],
)
def test_unrelated_pairs_are_unrelated(a: str, b: str) -> None:
    j = verdict(a, b)
    assert j.verdict == "unrelated"
    assert j.reason.startswith("unrelated:")


def test_paraphrase_is_compatible() -> None:
    j = verdict("Acme Corp's CEO is Alice Chen.", "Alice Chen leads Acme Corp as chief executive.")
    assert j.verdict == "compatible"


def test_identical_and_empty_statements() -> None:
    assert verdict("Our CTO is Dana Wu.", "Our CTO is Dana Wu.").verdict == "compatible"
    assert verdict("", "").verdict == "unrelated"


# --------------------------------------------------------------------------- structured


def test_structured_same_key_different_value_contradicts() -> None:
    a = Statement(
        "Company X looks good", subject="company:X", predicate="outlook", value="positive"
    )
    b = Statement("Company X: fine", subject="company:X", predicate="outlook", value="negative")
    j = judge.judge(a, b)
    assert j.verdict == "contradiction"
    assert j.confidence >= 0.9
    assert "structured" in j.reason and "'positive' vs 'negative'" in j.reason


def test_structured_equal_values_after_normalisation_are_compatible() -> None:
    a = Statement("x", subject="company:X", predicate="outlook", value="Positive")
    b = Statement("y", subject="Company:X", predicate="outlook", value="positive ")
    assert judge.judge(a, b).verdict == "compatible"
    a = Statement("x", subject="plan:pro", predicate="price_usd", value=49)
    b = Statement("y", subject="plan:pro", predicate="price_usd", value="49.0")
    assert judge.judge(a, b).verdict == "compatible"


def test_structured_assertion_wins_over_text() -> None:
    # The texts look contradictory, the assertions say the same thing.
    a = Statement("Outlook is positive", subject="company:X", predicate="outlook", value="up")
    b = Statement("Outlook is negative", subject="company:X", predicate="outlook", value="up")
    assert judge.judge(a, b).verdict == "compatible"


def test_structured_different_subjects_are_unrelated() -> None:
    a = Statement("X is positive", subject="company:X", predicate="outlook", value="positive")
    b = Statement("X is negative", subject="company:Y", predicate="outlook", value="negative")
    j = judge.judge(a, b)
    assert j.verdict == "unrelated" and "different subjects" in j.reason


def test_structured_different_predicates_fall_back_to_text() -> None:
    a = Statement(
        "Company X's outlook is positive.",
        subject="company:X",
        predicate="outlook",
        value="positive",
    )
    b = Statement(
        "Company X's outlook is negative.",
        subject="company:X",
        predicate="sentiment",
        value="negative",
    )
    assert judge.judge(a, b).reason.startswith("antonym:")
    half = Statement("Company X's outlook is negative.")  # one side without an assertion
    assert judge.judge(a, half).verdict == "contradiction"


def test_statement_of_memory() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    m = Memory(
        id="m1",
        version=1,
        namespace="acme",
        layer="semantic",
        text="X is up",
        subject="company:X",
        predicate="outlook",
        value="up",
        metadata={},
        importance=0.5,
        confidence=1.0,
        author="planner",
        source=None,
        session=None,
        valid_from=now,
        valid_to=None,
        tx_from=1,
        tx_to=None,
        recorded_at=now,
        status="active",
    )
    assert Statement.of(m) == Statement("X is up", "company:X", "outlook", "up")


def test_judgment_validates_its_fields() -> None:
    with pytest.raises(InvalidInput):
        Judgment("maybe", 0.5, "r", "d")
    with pytest.raises(InvalidInput):
        Judgment("compatible", 1.5, "r", "d")


def test_judges_satisfy_the_protocol() -> None:
    assert isinstance(HeuristicJudge(), Judge)
    assert isinstance(LLMJudge("http://127.0.0.1:1/v1", "m"), Judge)


# --------------------------------------------------------------------------- quality


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("judge_quality", ROOT / "bench/judge_quality.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labelled_set_is_big_and_balanced() -> None:
    text = (ROOT / "tests/data/contradiction_pairs.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    labels = [r["label"] for r in rows]
    assert len(rows) >= 150
    assert all(set(r) == {"a", "b", "label", "note"} for r in rows)
    for label in ("contradiction", "compatible", "unrelated"):
        assert labels.count(label) >= len(rows) // 5


def test_heuristic_quality_on_labelled_pairs() -> None:
    # Measured on 220 pairs: P 0.97, R 0.95. The first 160 pairs were written
    # before the judge, but its rules were designed with them in view; the 60
    # [held-out] pairs scored P 0.91 R 0.91 the first time the judge saw them.
    # The floors are set from the held-out figure, with room for one or two
    # more misses, so they say "better than 0.85 on unseen text", not "in-sample".
    result = _bench().run(HeuristicJudge())
    assert result["pairs"] >= 150
    assert result["precision"] >= 0.85, result["misses"]
    assert result["recall"] >= 0.85, result["misses"]
    # An unrelated pair must never be reported as a contradiction.
    assert result["confusion"]["unrelated"]["contradiction"] == 0


def test_heuristic_is_symmetric_on_labelled_pairs() -> None:
    for row in _bench().load_pairs():
        a, b = Statement(row["a"]), Statement(row["b"])
        assert judge.judge(a, b).verdict == judge.judge(b, a).verdict, row


# --------------------------------------------------------------------------- LLM judge

A = Statement("Acme's CEO is Alice Chen.", subject="company:acme", predicate="ceo", value="Alice")
B = Statement("Acme's CEO is Bob Martinez.")


def reply(verdict: str = "contradiction", confidence: float = 0.9, reason: str = "two CEOs") -> str:
    return json.dumps({"verdict": verdict, "confidence": confidence, "reason": reason})


def test_llm_request_carries_model_and_both_statements() -> None:
    with OpenAICompatServer(api_key="sk-test", chat_handler=lambda req: reply()) as server:
        LLMJudge(server.base_url, "judge-model", api_key="sk-test").judge(A, B)
        (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "judge-model"
    assert body["messages"][0]["role"] == "system"
    assert "contradiction" in body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    assert A.text in user and B.text in user and "company:acme" in user


def test_llm_well_formed_reply_is_parsed() -> None:
    with OpenAICompatServer(chat_handler=lambda req: reply("compatible", 0.7, "paraphrase")) as s:
        j = LLMJudge(s.base_url, "judge-model").judge(A, B)
    assert j == Judgment("compatible", 0.7, "paraphrase", "llm:judge-model")


@pytest.mark.parametrize(
    "content",
    [
        "```json\n" + reply() + "\n```",
        "Sure! Here is my answer:\n```\n" + reply() + "\n```\nHope that helps.",
        "<think>maybe {not json} hmm</think>\nVerdict: " + reply(),
        json.dumps({"verdict": "Contradiction", "confidence": 90, "reason": "two CEOs"}),
    ],
)
def test_llm_reply_wrapped_in_fences_or_prose_is_parsed(content: str) -> None:
    with OpenAICompatServer(chat_handler=lambda req: content) as server:
        j = LLMJudge(server.base_url, "judge-model").judge(A, B)
    assert (j.verdict, j.confidence, j.reason) == ("contradiction", 0.9, "two CEOs")


@pytest.mark.parametrize("content", ["I think they conflict.", '{"verdict": "maybe"}', ""])
def test_llm_garbage_reply_raises_upstream_error(content: str) -> None:
    with OpenAICompatServer(chat_handler=lambda req: content) as server:
        with pytest.raises(UpstreamError) as info:
            LLMJudge(server.base_url, "judge-model").judge(A, B)
    assert "'judge-model'" in info.value.message and "model name" in info.value.message
    assert info.value.status == 502


def test_llm_http_500_raises_upstream_error() -> None:
    with OpenAICompatServer(chat_handler=lambda req: reply()) as server:
        server.fail_next = 1
        with pytest.raises(UpstreamError) as info:
            LLMJudge(server.base_url, "judge-model").judge(A, B)
    assert "HTTP 500" in info.value.message and server.base_url in info.value.message
    assert info.value.details["model"] == "judge-model"
    assert info.value.details["upstream_status"] == 500


def test_llm_wrong_key_says_to_check_api_key() -> None:
    with OpenAICompatServer(api_key="right", chat_handler=lambda req: reply()) as server:
        with pytest.raises(UpstreamError, match="api_key"):
            LLMJudge(server.base_url, "judge-model", api_key="wrong").judge(A, B)


def test_llm_unreachable_server_says_to_check_the_url() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(UpstreamError) as info:
        LLMJudge(url, "judge-model", timeout=2.0).judge(A, B)
    assert url in info.value.message and "base_url" in info.value.message


def test_llm_fallback_is_used_and_named_on_failure() -> None:
    with OpenAICompatServer(chat_handler=lambda req: reply("unrelated")) as server:
        llm = LLMJudge(server.base_url, "judge-model", fallback=HeuristicJudge())
        server.fail_next = 1
        failed_over = llm.judge(A, B)
        normal = llm.judge(A, B)
    assert failed_over.detector == "heuristic"
    assert failed_over.verdict == "contradiction"
    assert failed_over.reason.startswith("fallback to heuristic because the LLM judge failed")
    assert "HTTP 500" in failed_over.reason and "value:" in failed_over.reason
    assert (normal.verdict, normal.detector) == ("unrelated", "llm:judge-model")


def test_llm_repr_hides_the_key() -> None:
    assert "sk-secret" not in repr(LLMJudge("http://x/v1", "m", api_key="sk-secret"))
