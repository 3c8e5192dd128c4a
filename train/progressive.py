"""Progressive training: stages run in order, each starting from the previous stage's weights.

A progressive config is a YAML file with a top-level ``stages:`` list::

    base: tiny.yaml            # a fit config (relative to this file); every stage starts from it
    root: runs/progressive     # stage k writes to ROOT/NN-NAME/
    stages:
      - name: low-res-short
        config: {data: {height: 32, num_frames: 5}, trainer: {max_steps: 20}}
      - name: full
        config: {data: {num_frames: 9}, trainer: {max_steps: 20}}

``vidforge fit --config progressive.yaml [--more.flags ...]`` runs them: for each stage the base
config is deep-merged with the stage's ``config`` (dicts merge, everything else is replaced), the
stage folder becomes ``trainer.default_root_dir`` (and the logger's ``save_dir``), ``model.init_from``
is set to the previous stage's ``final.ckpt`` (transformer + EMA weights; optimizer, LR schedule and
step counters start fresh), the merged config is written to ``NN-NAME/config.yaml`` and run through
the same LightningCLI as ``vidforge fit``. Extra command-line flags apply to every stage. A stage whose
``final.ckpt`` exists is skipped, so an interrupted progressive run resumes at the stage it stopped in.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)
FINAL_CHECKPOINT = "final.ckpt"


def is_progressive(config_path: str) -> bool:
    path = Path(config_path)
    if not path.is_file():
        return False
    data = yaml.safe_load(path.read_text())
    return isinstance(data, dict) and "stages" in data


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_plan(config_path: str) -> tuple[dict, Path, list[dict]]:
    """(base config, root folder, stages) after checking the file's shape."""
    path = Path(config_path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ValueError(f"{path}: stages: expected a non-empty list")
    base: dict = {}
    if data.get("base"):
        base_path = (path.parent / data["base"]).resolve()
        if not base_path.is_file():
            raise FileNotFoundError(f"{path}: base: {base_path} not found")
        base = yaml.safe_load(base_path.read_text()) or {}
    base = deep_merge(base, data.get("config") or {})
    root = Path(data.get("root") or f"runs/{path.stem}").resolve()  # relative to the working directory
    names = set()
    for i, stage in enumerate(data["stages"]):
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str) or not re.fullmatch(r"[\w.-]+", stage["name"]):
            raise ValueError(f"{path}: stages[{i}]: expected a mapping with a name of letters, digits, '-', '_' or '.'")
        if stage["name"] in names:
            raise ValueError(f"{path}: stages[{i}]: duplicate name {stage['name']!r}")
        names.add(stage["name"])
        if not isinstance(stage.get("config", {}), dict):
            raise ValueError(f"{path}: stages[{i}].config: expected a mapping")
    return base, root, data["stages"]


def stage_config(base: dict, stage: dict, folder: Path, init_from: Path | None) -> dict[str, Any]:
    config = deep_merge(base, stage.get("config") or {})
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    log = trainer.get("logger")
    if isinstance(log, dict) and isinstance(log.get("init_args"), dict) and "save_dir" in log["init_args"]:
        log["init_args"]["save_dir"] = str(folder)
    if init_from is not None:
        config.setdefault("model", {})["init_from"] = str(init_from)
    return config


def run_stages(config_path: str, extra_argv: list[str]) -> int:
    from train.cli import build_cli

    base, root, stages = load_plan(config_path)
    previous: Path | None = None
    for i, stage in enumerate(stages):
        folder = root / f"{i:02d}-{stage['name']}"
        final = folder / FINAL_CHECKPOINT
        if final.is_file():
            logger.info("progressive: stage %s already done (%s)", stage["name"], final)
            previous = final
            continue
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "config.yaml"
        config_file.write_text(yaml.safe_dump(stage_config(base, stage, folder, previous), sort_keys=False))
        logger.info("progressive: stage %d/%d %s -> %s", i + 1, len(stages), stage["name"], folder)
        cli = build_cli(["fit", "--config", str(config_file), *extra_argv])
        cli.trainer.save_checkpoint(final)
        previous = final
    return 0
