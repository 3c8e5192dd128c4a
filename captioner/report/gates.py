"""Quality gates (config ``gates:``, exit code 1 when one fails) and the verdict box's checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import ConfigError

from .config import Check, Gate


@dataclass
class GateResult:
    metric: str
    value: float | None
    min: float | None
    max: float | None
    passed: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def lookup(report: dict, dotted: str) -> Any:
    """The value at a dotted report.json path, e.g. ``caption.lexical.distinct_2``."""
    node: Any = report
    for i, part in enumerate(dotted.split(".")):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        where = ".".join(dotted.split(".")[:i]) or "(top level)"
        keys = sorted(node) if isinstance(node, dict) else []
        raise ConfigError(f"gates: metric {dotted!r}: no key {part!r} under {where} (keys there: {', '.join(keys)})")
    return node


def check_gate_paths(gates: list[Gate], report: dict) -> None:
    """Raise ConfigError (a usage error) for a gate naming a path that is not a number in report.json."""
    for gate in gates:
        value = lookup(report, gate.metric)
        if isinstance(value, (dict, list, str)):
            raise ConfigError(f"gates: metric {gate.metric!r} is not a number in report.json (it is a {type(value).__name__})")


def evaluate(gates: list[Gate], report: dict) -> list[GateResult]:
    results = []
    for gate in gates:
        value = lookup(report, gate.metric)
        bounds = " and ".join(
            s for s in ((f">= {gate.min:g}" if gate.min is not None else ""), (f"<= {gate.max:g}" if gate.max is not None else "")) if s
        )
        if value is None:
            results.append(GateResult(gate.metric, None, gate.min, gate.max, False,
                                      f"FAIL {gate.metric} is not available (null), needs {bounds}"))
            continue
        value = float(value)
        ok = (gate.min is None or value >= gate.min) and (gate.max is None or value <= gate.max)
        results.append(GateResult(gate.metric, value, gate.min, gate.max, ok,
                                  f"{'PASS' if ok else 'FAIL'} {gate.metric} = {value:.6g} (needs {bounds})"))
    return results


def warnings(report: dict, checks: Check) -> list[str]:
    """Plain-language problems for the verdict box (heuristic levels from config ``checks``)."""
    out = []
    cap, funnel = report["caption"], report["funnel"]

    def over(value, limit, text):
        if value is not None and value > limit:
            out.append(text.format(value=value, limit=limit))

    def under(value, limit, text):
        if value is not None and value < limit:
            out.append(text.format(value=value, limit=limit))

    if cap["smoke_test"]:
        out.append(f"{cap['smoke_test_clips']:,} captions come from SMOKE-TEST models: not real captions")
    if funnel["kept_clips"] == 0:
        out.append("no clip was kept")
    under(funnel["kept_share"], checks.min_kept_share, "only {value:.1%} of candidate clips were kept (< {limit:.0%})")
    if funnel["kept_clips"] and cap["attempted"] == 0:
        out.append("the kept clips have no captions yet")
    over(cap["failed_rate"], checks.max_failed_rate, "{value:.1%} of captions failed (> {limit:.0%})")
    over(cap["degenerate_rate"], checks.max_degenerate_rate, "{value:.1%} of captions are degenerate (> {limit:.0%})")
    over(cap["duplicate_rate"], checks.max_duplicate_rate, "{value:.1%} of captions are exact duplicates (> {limit:.0%})")
    over(cap["near_duplicate_rate"], checks.max_near_duplicate_rate,
         "{value:.1%} of captions are near-duplicates (> {limit:.0%})")
    over(cap["top_opener_share"], checks.max_top_opener_share,
         "{value:.1%} of captions start with the same 3 words (> {limit:.0%}): template collapse")
    under(cap["grounding"]["mean"], checks.min_grounding,
          "only {value:.0%} of caption nouns appear in a frame caption on average (< {limit:.0%}): hallucination risk")
    tokens = cap["tokens"]
    if tokens.get("available"):
        over(tokens["truncated_rate"], checks.max_truncated_rate,
             "{value:.1%} of captions exceed the text encoder's token limit (> {limit:.0%})")
    return out


def verdict(report: dict, gate_results: list[GateResult], warning_list: list[str]) -> dict[str, Any]:
    failed = [g for g in gate_results if not g.passed]
    if failed or report["caption"]["smoke_test"] or report["funnel"]["kept_clips"] == 0:
        level, text = "fail", "NOT FIT to train on"
    elif warning_list:
        level, text = "review", "REVIEW before training"
    else:
        level, text = "pass", "FIT to train on"
    return {"level": level, "text": text, "warnings": warning_list, "gates_failed": len(failed)}
