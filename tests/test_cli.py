"""The `vidforge` console script's dispatcher and each package's `python -m` face."""

import subprocess
import sys

from vidforge.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_has_help():
    for name in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "vidforge", name, "--help"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (name, proc.stderr)
        assert "usage" in proc.stdout.lower(), name


def test_python_dash_m_pipeline_is_curate():
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "vidforge curate" in proc.stdout


def test_caption_counts_below_one_are_usage_errors(capsys, tmp_path):
    """`vidforge caption`'s counts are checked as the command line is read: --shard-max-samples 0 ended
    in a ValueError traceback after the caption models had loaded."""
    import pytest

    from pipeline.recaption import main as caption_main

    for flag in ("--clips-per-task", "--shard-max-samples", "--num-cpus"):
        with pytest.raises(SystemExit) as exit_info:
            caption_main(["--shards", str(tmp_path / "s.tar"), "--output", str(tmp_path / "o"), flag, "0"])
        assert exit_info.value.code == 2
        assert f"{flag}: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
