"""The report page: one self-contained HTML file (inline CSS, plots and thumbnails as data URIs)."""

from __future__ import annotations

import statistics
from html import escape
from typing import Any

from . import plots
from .collect import CLIP_METRICS

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f6f9;color:#1d2330}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:26px;margin:8px 0 2px}h2{font-size:20px;margin:0 0 12px;border-bottom:2px solid #dfe4ec;padding-bottom:6px}
h3{font-size:15px;margin:16px 0 8px}
section{background:#fff;border:1px solid #dfe4ec;border-radius:8px;padding:16px 20px;margin:16px 0}
.sub{color:#5b6475;font-size:13px}
.banner{background:#b71c1c;color:#fff;font-size:20px;font-weight:700;padding:16px 20px;border-radius:8px;margin:16px 0;
 border:4px dashed #ffeb3b;text-align:center}
.verdict{border-left:10px solid #888}.verdict.pass{border-left-color:#2e7d32}.verdict.review{border-left-color:#f9a825}
.verdict.fail{border-left-color:#c62828}
.verdict-title{font-size:24px;font-weight:700;margin-bottom:8px}.pass .verdict-title{color:#2e7d32}
.review .verdict-title{color:#b27b00}.fail .verdict-title{color:#c62828}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:#f7f9fc;border:1px solid #e3e8ef;border-radius:6px;padding:8px 12px;min-width:120px}
.card .v{font-size:20px;font-weight:700}.card .k{font-size:12px;color:#5b6475}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #e1e6ee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfd}td.bad{background:#fde0e0 !important;color:#8e0000;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.grid img{max-width:100%}.note{font-size:12px;color:#5b6475;margin:4px 0}
.flow{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:8px 0 14px}
.step{background:#eaf1fd;border:1px solid #c7d7f5;border-radius:6px;padding:8px 12px;text-align:center}
.step .v{font-size:20px;font-weight:700}.step .k{font-size:12px;color:#44516a}.arrow{font-size:20px;color:#8a96ab}
.sample{border:1px solid #e3e8ef;border-radius:6px;padding:10px;margin:10px 0;background:#fbfcfe}
.strip{display:flex;gap:4px;overflow-x:auto;margin-bottom:6px}.strip img{border-radius:3px}
.caption{font-size:14px;line-height:1.45;margin:6px 0}.scores{font-size:12px;color:#44516a}
.err{color:#b71c1c;font-size:13px}.warn li{margin:3px 0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}
nav a{margin-right:12px;font-size:13px}
details summary{cursor:pointer;font-size:13px;color:#2f5fb3}
"""


def fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if kind == "h":
            return f"{value:,.2f} h"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return escape(str(value))


def _card(key: str, value: str) -> str:
    return f'<div class="card"><div class="v">{value}</div><div class="k">{escape(key)}</div></div>'


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">' if uri else f'<p class="note">{escape(alt)}: no data</p>'


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = "num" if i >= numeric_from else ""
            if isinstance(cell, tuple):  # (text, extra class)
                cell, extra = cell
                cls = f"{cls} {extra}"
            cells.append(f'<td class="{cls.strip()}">{cell}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _counts_table(title: str, counts: dict[str, int], total: int | None) -> str:
    if not counts:
        return f"<h3>{escape(title)}</h3><p class='note'>none</p>"
    rows = [[escape(k), fmt(v), fmt(v / total, "pct") if total else "n/a"] for k, v in counts.items()]
    return f"<h3>{escape(title)}</h3>" + _table(["reason", "count", "share"], rows)


def verdict_section(report: dict) -> str:
    v, f, c = report["verdict"], report["funnel"], report["caption"]
    cards = [
        _card("inputs (failed)", f"{fmt(f['inputs'])} ({fmt(f['failed_inputs'])})"),
        _card("kept clips / candidates", f"{fmt(f['kept_clips'])} / {fmt(f['clips'])}"),
        _card("hours in → out", f"{f['hours_in']:.2f} → {f['hours_out']:.2f}"),
        _card("captions failed", fmt(c["failed_rate"], "pct")),
        _card("degenerate captions", fmt(c["degenerate_rate"], "pct")),
        _card("duplicate / near-dup", f"{fmt(c['duplicate_rate'], 'pct')} / {fmt(c['near_duplicate_rate'], 'pct')}"),
        _card("grounding (approx.)", fmt(c["grounding"]["mean"], "pct")),
        _card("mean CLIP score", fmt(c["clip_score"]["mean"])),
    ]
    warn = "".join(f"<li>{escape(w)}</li>" for w in v["warnings"]) or "<li>no warnings</li>"
    gates = report.get("gates") or []
    gate_html = (
        _table(["gate", "value", "min", "max", "result"],
               [[escape(g["metric"]), fmt(g["value"]), fmt(g["min"]), fmt(g["max"]),
                 ("PASS", "") if g["passed"] else ("FAIL", "bad")] for g in gates])
        if gates else "<p class='note'>no quality gates configured (config key <code>gates</code>)</p>"
    )
    return (
        f'<section id="verdict" class="verdict {v["level"]}"><h2>Verdict</h2>'
        f'<div class="verdict-title">{escape(v["text"])}</div><div class="cards">{"".join(cards)}</div>'
        f'<h3>Warnings</h3><ul class="warn">{warn}</ul><h3>Quality gates</h3>{gate_html}</section>'
    )


def funnel_section(report: dict) -> str:
    f = report["funnel"]
    steps = [
        ("inputs", fmt(f["inputs"]), f"{f['hours_in']:.2f} h"),
        ("ok inputs", fmt(f["ok_inputs"]), f"{fmt(f['failed_inputs'])} failed"),
        ("scenes", fmt(f["scenes"]), f"{fmt(f['transitions'])} transitions"),
        ("candidate clips", fmt(f["clips"]), f"{f['hours_candidates']:.2f} h"),
        ("kept clips", fmt(f["kept_clips"]), f"{f['hours_out']:.2f} h · {fmt(f['kept_share'], 'pct')}"),
    ]
    flow = '<span class="arrow">→</span>'.join(
        f'<div class="step"><div class="v">{v}</div><div class="k">{escape(k)}<br>{escape(extra)}</div></div>'
        for k, v, extra in steps
    )
    return (
        '<section id="funnel"><h2>Funnel</h2>'
        f'<div class="flow">{flow}</div><div class="grid"><div>'
        + _counts_table("failed inputs by reason (leading phrase)", f["failed_by_reason"], f["inputs"])
        + "</div><div>"
        + _counts_table("rejected clips by reason", f["rejected_by_reason"], f["clips"])
        + "</div><div>"
        + _img(plots.bars(f["rejected_by_reason"], "reject reasons"), "reject reasons")
        + "</div></div></section>"
    )


def clip_stats_section(report: dict) -> str:
    cs = report["clips"]
    thresholds = cs["thresholds"]
    figs = []
    for name, (label, threshold_names) in CLIP_METRICS.items():
        m = cs["metrics"][name]
        lines = [(t, thresholds[t]) for t in threshold_names if t in thresholds]
        figs.append(_img(plots.histogram([("all candidates", m["all"], plots.COLORS["all"]),
                                          ("kept", m["kept"], plots.COLORS["kept"])], label, lines), label))
    res = _table(["resolution", "kept clips"], [[escape(k), fmt(v)] for k, v in cs["resolutions"].items()])
    thr = ", ".join(f"{k}={v:g}" for k, v in thresholds.items()) or "none configured"
    return (
        '<section id="clip-stats"><h2>Clip statistics</h2>'
        f'<p class="note">Grey: all candidate clips; blue: kept clips. Red dashed lines: filter thresholds ({escape(thr)}).</p>'
        f'<div class="grid">{"".join(f"<div>{x}</div>" for x in figs)}<div><h3>kept resolutions</h3>{res}</div></div></section>'
    )


def caption_section(report: dict) -> str:
    c = report["caption"]
    lex, dup, g, tok = c["lexical"], c["duplicates"], c["grounding"], c["tokens"]
    cards = [
        _card("captions attempted", fmt(c["attempted"])),
        _card("ok", fmt(c["ok"])),
        _card("failed", f"{fmt(c['failed'])} ({fmt(c['failed_rate'], 'pct')})"),
        _card("degenerate", f"{fmt(c['degenerate'])} ({fmt(c['degenerate_rate'], 'pct')})"),
        _card("kept clips without caption", fmt(c["uncaptioned_kept"])),
        _card("mean words", fmt(c["words"]["mean"])),
        _card("mean T5 tokens", fmt(tok.get("mean")) if tok["available"] else "n/a"),
        _card("distinct-1", fmt(lex["distinct_1"])),
        _card("distinct-2", fmt(lex["distinct_2"])),
        _card("type-token ratio", fmt(lex["type_token_ratio"])),
        _card("exact duplicates", fmt(c["duplicate_rate"], "pct")),
        _card("near-duplicates", fmt(c["near_duplicate_rate"], "pct")),
        _card("grounding (approx.)", fmt(g["mean"], "pct")),
    ]
    if tok["available"]:
        token_fig = _img(plots.histogram([("ok captions", tok, plots.COLORS["kept"])], "T5 tokens per caption",
                                         [("max_tokens", tok["max_tokens"])]), "tokens")
        token_note = f"{fmt(tok['truncated'])} captions ({fmt(tok['truncated_rate'], 'pct')}) exceed {tok['max_tokens']} tokens."
    else:
        token_fig = ""
        token_note = f"Token counts not available: {tok['reason']}."
    figs = [
        _img(plots.histogram([("ok captions", c["words"], plots.COLORS["kept"])], "words per caption"), "words"),
        token_fig,
        _img(plots.histogram([("ok captions", c["clip_score"], plots.COLORS["kept"])], "caption-frame CLIP score",
                             [(k, v) for k, v in report["clips"]["thresholds"].items() if k == "min_clip_score"]),
             "clip score"),
        _img(plots.histogram([("captions", {k: g[k] for k in ("range", "counts", "count")}, plots.COLORS["other"])],
                             "grounding: share of nouns seen in frame captions"), "grounding"),
        _img(plots.histogram([("captions", lex["type_token_ratio_hist"], plots.COLORS["kept"])],
                             "type-token ratio per caption"), "ttr"),
    ]
    openers = _table(["first words", "captions", "share"],
                     [[escape(o["opener"]), fmt(o["count"]), fmt(o["share"], "pct")] for o in c["openers"]])
    fails = _counts_table("failed captions by reason (caption_error, leading phrase)", c["failed_by_reason"], c["attempted"])
    degen = _counts_table("degenerate captions by reason", c["degenerate_by_reason"], c["attempted"])
    models = _table(["caption models (provenance)", "clips"], [[escape(m["models"]), fmt(m["clips"])] for m in c["models"]]) if c["models"] else ""
    notes = [
        token_note,
        f"Grounding is an approximation: {g['method']}. {fmt(g['no_frame_captions'])} captions had no frame "
        f"captions and {fmt(g['no_nouns'])} had no noun, so they are not scored.",
        f"Duplicates: {dup['method']}. Bloom-filter false-positive bound: exact {dup['false_positive_rate_bound']['exact']:.2g}, "
        f"near {dup['false_positive_rate_bound']['near']:.2g}.",
        "Distinct-n: distinct n-grams / all n-grams over all ok captions"
        + ("" if lex["exact"] else " (estimated with a k-minimum-values sketch)")
        + "; type-token ratio: mean over captions of distinct words / words.",
        "Degenerate: a caption returned as ok that is empty, shorter than the configured minimum words, "
        "or repeats its own word 3-grams too much.",
    ]
    return (
        '<section id="caption-quality"><h2>Caption quality</h2>'
        f'<div class="cards">{"".join(cards)}</div>'
        f'<div class="grid">{"".join(f"<div>{x}</div>" for x in figs if x)}</div>'
        f'<div class="grid"><div><h3>most frequent openings (template collapse)</h3>{openers}</div>'
        f"<div>{fails}{degen}{models}</div></div>"
        + "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
        + "</section>"
    )


def _sample_html(sample: dict, label: str = "") -> str:
    thumbs = "".join(f'<img src="{u}" alt="keyframe">' for u in sample.get("thumbnails", []))
    strip = f'<div class="strip">{thumbs}</div>' if thumbs else ""
    if sample.get("thumbnail_error"):
        strip += f'<div class="err">thumbnails: {escape(sample["thumbnail_error"])}</div>'
    scores = " · ".join(f"{k} {fmt(v)}" for k, v in sample["scores"].items() if v is not None)
    extra = []
    if sample.get("grounding") is not None:
        extra.append(f"grounding {fmt(sample['grounding'], 'pct')}")
    if sample.get("degenerate"):
        extra.append(f"degenerate: {sample['degenerate']}")
    if sample["caption_status"] not in (None, "ok"):
        caption = f'<div class="err">caption failed: {escape(str(sample["caption_error"]))}</div>'
    elif sample["caption_status"] is None:
        caption = '<div class="note">not captioned</div>'
    else:
        caption = f'<div class="caption">{escape(sample["caption"] or "")}</div>'
    frames = "".join(f"<li><b>{fmt(fc['time_s'])} s</b>: {escape(fc['caption'])}</li>" for fc in sample["frame_captions"])
    details = f"<details><summary>{len(sample['frame_captions'])} frame captions</summary><ul>{frames}</ul></details>" if frames else ""
    head = f"<b>{escape(label)}</b> " if label else ""
    return (
        f'<div class="sample" id="clip-{escape(sample["clip_id"])}">{strip}'
        f'<div>{head}<code>{escape(sample["clip_id"])}</code> <span class="sub">{escape(str(sample["shard"]))} · '
        f'{escape(str(sample["source"]))} [{fmt(sample["start_s"])}–{fmt(sample["end_s"])} s]</span></div>'
        f'<div class="scores">{escape(scores)}{" · " + escape(" · ".join(extra)) if extra else ""}</div>{caption}{details}</div>'
    )


def samples_section(report: dict) -> str:
    s = report["samples"]
    worst = "".join(_sample_html(x) for x in s["worst"]) or "<p class='note'>no clip has a CLIP score</p>"
    rand = "".join(_sample_html(x) for x in s["random"]) or "<p class='note'>no kept clips</p>"
    return (
        '<section id="samples"><h2>Samples</h2>'
        f"<h3>Worst {len(s['worst'])} by caption-frame CLIP score</h3>{worst}"
        f"<h3>{len(s['random'])} random kept clips (seed {s['seed']})</h3>{rand}</section>"
    )


def shards_section(report: dict, max_rows: int) -> str:
    rows = report["shards"]
    scores = [r["mean_clip_score"] for r in rows if r["mean_clip_score"] is not None]
    low = None
    if len(scores) >= 3:
        mean, sd = statistics.fmean(scores), statistics.pstdev(scores)
        low = mean - 2 * sd if sd > 0 else None
    shown = rows if len(rows) <= max_rows else sorted(rows, key=lambda r: (r["mean_clip_score"] is None, r["mean_clip_score"] or 0))[:max_rows]
    table_rows = []
    for r in shown:
        flag = "bad" if low is not None and r["mean_clip_score"] is not None and r["mean_clip_score"] < low else ""
        bad_caps = r["caption_failed"] + r["degenerate"]
        table_rows.append([
            escape(r["shard"]), fmt(r["clips"]), f"{r['hours']:.3f}", fmt(r["mean_motion"]), fmt(r["mean_sharpness"]),
            fmt(r["mean_brightness"]), fmt(r["mean_aesthetic"]), (fmt(r["mean_clip_score"]), flag),
            fmt(r["captioned"]), (f"{bad_caps:,}", "bad" if r["captioned"] and bad_caps / r["captioned"] > 0.1 else ""),
        ])
    note = "" if len(rows) <= max_rows else f"<p class='note'>{len(rows):,} shards: the {max_rows} with the lowest mean CLIP score are listed (report.json has all).</p>"
    return (
        '<section id="shards"><h2>Per-shard table</h2>'
        "<p class='note'>Red: mean CLIP score more than 2 standard deviations below the shards' mean, or more than 10% "
        "failed/degenerate captions.</p>" + note
        + _table(["shard", "clips", "hours", "motion", "sharpness", "brightness", "aesthetic", "CLIP score",
                  "captioned", "failed+degenerate"], table_rows)
        + "</section>"
    )


def compare_section(report: dict) -> str:
    cmp = report["compare"]
    rows = []
    for m in cmp["metrics"]:
        a, b = m["a"], m["b"]
        delta = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) else None
        rows.append([escape(m["metric"]), fmt(a), fmt(b), fmt(delta)])
    pairs = []
    for p in cmp["pairs"]:
        pairs.append(
            f'<div class="pair"><div>{_sample_html(p["a"], "A")}</div>'
            f'<div>{_sample_html(p["b"], "B") if p["b"] else "<p class=note>not in B</p>"}</div></div>'
        )
    banner = f'<div class="banner">B ({escape(cmp["folder"])}) has SMOKE-TEST captions</div>' if cmp["b_smoke_test"] else ""
    return (
        f'<section id="compare"><h2>Compare: A = this folder, B = {escape(cmp["folder"])}</h2>{banner}'
        f"<p class='note'>{fmt(cmp['joined'])} of {fmt(len(cmp['pairs']))} sample clips found in B (joined on clip_id).</p>"
        + _table(["metric", "A", "B", "B − A"], rows)
        + f"<h3>Same clips, two captions</h3>{''.join(pairs)}</section>"
    )


def render(report: dict, max_shard_rows: int = 200) -> str:
    c = report["caption"]
    banner = ""
    if c["smoke_test"]:
        banner = (
            f'<div class="banner" id="smoke-banner">⚠ SMOKE-TEST CAPTIONS: {fmt(c["smoke_test_clips"])} captions come '
            "from smoke-test models (caption_provenance.smoke_test). They are NOT real captions: do not train on them.</div>"
        )
    sections = [verdict_section(report), funnel_section(report), clip_stats_section(report), caption_section(report),
                samples_section(report), shards_section(report, max_shard_rows)]
    ids = ["verdict", "funnel", "clip-stats", "caption-quality", "samples", "shards"]
    if report.get("compare"):
        sections.append(compare_section(report))
        ids.append("compare")
    nav = "".join(f'<a href="#{i}">{i.replace("-", " ")}</a>' for i in ids)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>vidforge report: {escape(report['folder'])}</title><style>{CSS}</style></head><body><main>"
        f"<h1>vidforge caption quality report</h1><div class='sub'>{escape(report['folder'])} · generated "
        f"{escape(report['generated'])}</div><nav>{nav}</nav>{banner}{''.join(sections)}</main></body></html>"
    )
