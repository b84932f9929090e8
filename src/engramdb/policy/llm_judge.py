"""The LLM contradiction judge: any OpenAI-compatible ``/chat/completions`` endpoint.

Asks the model (Ollama, vLLM, OpenAI, ...) for a JSON verdict, optionally
falling back to another judge when the endpoint fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from engramdb.errors import UpstreamError
from engramdb.llm import chat_completion
from engramdb.policy.judgment import Judge, Judgment, Statement, Verdict

__all__ = ["LLMJudge"]


_SYSTEM_PROMPT = """\
You check a shared memory written by several AI agents for contradictions.
You get two statements, A and B. Decide which one of these holds:

- "contradiction": A and B are about the same subject and the same attribute, at the
  same time, and cannot both be true. Examples: "X's CEO is Alice" / "X's CEO is Bob";
  "the build is passing" / "the build is failing"; "costs $49" / "costs $79".
- "compatible": A and B are about the same subject or topic and can both be true:
  paraphrases, added detail, different attributes of the same thing, values that agree
  after converting units or formats ("100 per minute" / "6,000 per hour").
- "unrelated": A and B are about different subjects or topics.

Rules:
- Different time periods, places, environments or instances do not contradict
  ("CEO was Bob until 2019" / "CEO is Alice since 2020"; "v7 in production" / "v6 in staging").
- Attributes that can have several values (languages spoken, things liked, offices) do not
  contradict when the values differ, unless a statement says the value is the only one.
- A negation contradicts only the same claim: "is not in Berlin" does not contradict
  "is in Paris".
- If structured fields (subject, predicate, value) are given, they are authoritative.
- Use only what the statements say plus common knowledge; do not invent context.

Reply with one JSON object and nothing else:
{"verdict": "contradiction" | "compatible" | "unrelated",
 "confidence": <probability between 0 and 1 that your verdict is right>,
 "reason": "<one short sentence naming the conflicting or agreeing parts>"}"""

_SYNONYMS: dict[str, Verdict] = {
    **dict.fromkeys(("contradiction", "contradictory", "contradicts", "conflict"), "contradiction"),
    **dict.fromkeys(("compatible", "consistent", "agree"), "compatible"),
    **dict.fromkeys(("unrelated", "independent", "irrelevant"), "unrelated"),
}


def _parse_answer(content: str) -> tuple[Verdict, float, str] | None:
    """The verdict in a model's reply, tolerating fences, prose and think blocks."""
    text = re.sub(r"<think>.*?</think>", "", content, flags=re.S)
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if not isinstance(obj, dict) or "verdict" not in obj:
            continue
        verdict = _SYNONYMS.get(str(obj["verdict"]).strip().lower())
        if verdict is None:
            return None
        try:
            confidence = float(obj.get("confidence", 0.5))
        except (TypeError, ValueError):
            confidence = 0.5
        if 1.0 < confidence <= 100.0:  # some models answer in percent
            confidence /= 100.0
        confidence = min(1.0, max(0.0, confidence)) if math.isfinite(confidence) else 0.5
        return verdict, confidence, str(obj.get("reason") or "no reason given")
    return None


class LLMJudge:
    """Contradiction judge backed by an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: API root, e.g. ``http://localhost:11434/v1`` (Ollama) or
            ``https://api.openai.com/v1``; ``/chat/completions`` is appended.
        model: Model name as the server knows it.
        api_key: Sent as a bearer token when given.
        timeout: Seconds to wait for the whole request.
        fallback: Judge used when the endpoint fails or answers badly; its
            judgment says so in the reason. Without one, failures raise.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 10.0,
        *,
        fallback: Judge | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.fallback = fallback
        self.name = f"llm:{model}"

    def __repr__(self) -> str:  # never show the key
        return f"LLMJudge(base_url={self.base_url!r}, model={self.model!r})"

    def judge(self, a: Statement, b: Statement) -> Judgment:
        """Ask the model; fall back (and say so) or raise when that fails.

        Raises:
            UpstreamError: The endpoint was unreachable, answered with an HTTP
                error, or gave no parseable verdict, and there is no fallback.
        """
        try:
            verdict, confidence, reason = self._ask(a, b)
        except UpstreamError as exc:
            if self.fallback is None:
                raise
            result = self.fallback.judge(a, b)
            return dataclasses.replace(
                result,
                reason=f"fallback to {self.fallback.name} "
                f"because the LLM judge failed ({exc.message}): "
                f"{result.reason}",
            )
        return Judgment(verdict, confidence, reason, self.name)

    def _ask(self, a: Statement, b: Statement) -> tuple[Verdict, float, str]:
        statements = {"A": _as_json(a), "B": _as_json(b)}
        content = chat_completion(
            self.base_url, self.model,
            [
                {"role": "system", "content": _SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": json.dumps(statements, ensure_ascii=False, default=str, indent=1),
                },
            ],
            api_key=self.api_key, timeout=self.timeout, who="LLM judge",
            unreachable_hint="check that the server is running and that base_url is its "
            "OpenAI-compatible root, e.g. http://localhost:11434/v1",
        )
        url = f"{self.base_url}/chat/completions"
        parsed = _parse_answer(content)
        if parsed is None:
            raise UpstreamError(
                f"model {self.model!r} at {url} did not reply with a JSON verdict "
                f"(got {str(content)[:120]!r}); check the model name, or use a model that "
                "follows instructions",
                url=url, model=self.model,
            )
        return parsed


def _as_json(s: Statement) -> dict[str, Any]:
    out: dict[str, Any] = {"text": s.text}
    for name in ("subject", "predicate", "value"):
        if getattr(s, name) is not None:
            out[name] = getattr(s, name)
    return out
