"""``vidforge report OUT [--compare OTHER]``: write OUT/report/index.html and OUT/report/report.json.

Exit codes: 0 when every quality gate passes (or none is configured), 1 when a gate fails,
2 for usage errors (missing folder, not a vidforge output folder, bad config key, unusable tokenizer).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from pipeline.config import ConfigError

from . import gates as gates_mod
from . import html as page
from .collect import FolderError, collect, find_clips, open_folder
from .config import ReportConfig, load_report_config
from .thumbnails import attach_thumbnails

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "report" / "default.yaml"

COMPARE_METRICS = [
    "funnel.inputs", "funnel.failed_inputs", "funnel.clips", "funnel.kept_clips", "funnel.hours_out",
    "caption.attempted", "caption.ok", "caption.failed_rate", "caption.degenerate_rate", "caption.unusable_rate",
    "caption.words.mean", "caption.words.median", "caption.tokens.mean", "caption.tokens.truncated_rate",
    "caption.clip_score.mean", "caption.clip_score.median", "caption.grounding.mean",
    "caption.lexical.distinct_1", "caption.lexical.distinct_2", "caption.lexical.type_token_ratio",
    "caption.duplicate_rate", "caption.near_duplicate_rate", "caption.top_opener_share", "caption.smoke_test_clips",
]  # fmt: skip


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


def load_token_counter(path: str | None) -> tuple[Callable[[list[str]], list[int]] | None, str | None]:
    """A batch token counter for a local T5 tokenizer folder, or (None, why not)."""
    if not path:
        return None, "no tokenizer given (use --tokenizer DIR or 'tokenizer:' in the report config)"
    folder = Path(path)
    if not folder.exists():
        raise UsageError(f"--tokenizer {path}: no such file or folder")
    json_file = folder if folder.is_file() else folder / "tokenizer.json"
    try:
        if json_file.is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(json_file))
            return (lambda texts: [len(e.ids) for e in tok.encode_batch(texts)]), None
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(folder))
        return (lambda texts: [len(ids) for ids in hf(texts)["input_ids"]]), None
    except Exception as exc:  # noqa: BLE001 - any loading failure is the user's folder
        raise UsageError(f"--tokenizer {path}: cannot load a tokenizer from it: {exc}") from None


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _maybe(report: dict, dotted: str) -> Any:
    try:
        return gates_mod.lookup(report, dotted)
    except ConfigError:
        return None


def build_compare(folder_a, report_a: dict, other: str, config: ReportConfig, count_tokens, reason) -> dict:
    folder_b = open_folder(other)
    report_b = collect(folder_b, config, count_tokens, reason)
    ids, seen = [], set()
    for sample in report_a["samples"]["worst"] + report_a["samples"]["random"]:
        if sample["clip_id"] not in seen:
            seen.add(sample["clip_id"])
            ids.append(sample)
    found = find_clips(folder_b, [s["clip_id"] for s in ids], config)
    pairs = [{"a": s, "b": found.get(s["clip_id"])} for s in ids]
    return {
        "folder": str(folder_b.root),
        "metrics": [{"metric": m, "a": _maybe(report_a, m), "b": _maybe(report_b, m)} for m in COMPARE_METRICS],
        "pairs": pairs,
        "joined": sum(1 for p in pairs if p["b"] is not None),
        "b_smoke_test": report_b["caption"]["smoke_test"],
        "b": {k: v for k, v in report_b.items() if k != "samples"},
    }


def build_report(out: str, config: ReportConfig, compare: str | None = None) -> dict:
    """Compute the whole report (numbers, samples with thumbnails, gates, verdict) for ``out``."""
    folder = open_folder(out)
    count_tokens, reason = load_token_counter(config.tokenizer)
    report = collect(folder, config, count_tokens, reason)
    report["generated"] = _dt.datetime.now().isoformat(timespec="seconds")
    report["config"] = {"samples": config.samples, "seed": config.seed, "tokenizer": config.tokenizer,
                        "max_tokens": config.captions.max_tokens}
    attach_thumbnails(folder.root, report["samples"]["worst"] + report["samples"]["random"],
                      config.thumbnails, config.thumbnail_height)
    if compare:
        report["compare"] = build_compare(folder, report, compare, config, count_tokens, reason)
    gates_mod.check_gate_paths(config.gates, report)
    results = gates_mod.evaluate(config.gates, report)
    report["gates"] = [r.to_json() for r in results]
    report["verdict"] = gates_mod.verdict(report, results, gates_mod.warnings(report, config.checks))
    return _clean(report)


def _without_images(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_images(v) for k, v in value.items() if k != "thumbnails"}
    if isinstance(value, list):
        return [_without_images(v) for v in value]
    return value


def write_report(report: dict, out_dir: Path, max_shard_rows: int) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / "index.html", out_dir / "report.json"
    for path, text in ((html_path, page.render(report, max_shard_rows)),
                       (json_path, json.dumps(_without_images(report), indent=1, allow_nan=False))):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return html_path, json_path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vidforge report", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("out", help="a curation/caption output folder (manifest/, shards/)")
    parser.add_argument("--compare", metavar="OTHER", help="another output folder with captions of the same clips")
    parser.add_argument("--config", help=f"report config YAML (default: {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[2])}, "
                        "or the built-in defaults where that file is absent)")
    parser.add_argument("--samples", type=int, help="worst-N and random-N sample clips (overrides config)")
    parser.add_argument("--seed", type=int, help="seed of the random samples (overrides config)")
    parser.add_argument("--tokenizer", metavar="DIR", help="local T5 tokenizer folder for token counts")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set captions.min_words=8 (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.samples is not None:
        overrides.append(f"samples={args.samples}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.tokenizer is not None:
        overrides.append(f"tokenizer={json.dumps(args.tokenizer)}")
    # the report frees every manifest batch before reading the next; Arrow's default (mimalloc)
    # pool keeps freed pages resident, which made peak RSS climb over a large manifest's first batches
    previous_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        return _run(args, overrides)
    finally:
        pa.set_memory_pool(previous_pool)


def _run(args: argparse.Namespace, overrides: list[str]) -> int:
    try:
        config_path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
        config = load_report_config(config_path, overrides)
        report = build_report(args.out, config, args.compare)
    except (UsageError, FolderError, ConfigError) as exc:
        print(f"vidforge report: error: {exc}", file=sys.stderr)
        return 2
    html_path, json_path = write_report(report, Path(args.out) / "report", config.max_shard_rows)
    verdict = report["verdict"]
    print(f"verdict: {verdict['text']}")
    for warning in verdict["warnings"]:
        print(f"  warning: {warning}")
    for gate in report["gates"]:
        print(f"  gate {gate['message']}")
    print(f"wrote {html_path}\nwrote {json_path}")
    return 1 if verdict["gates_failed"] else 0
