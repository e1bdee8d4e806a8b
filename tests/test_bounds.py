"""Hostile inputs: each is one exit-2 line, in under a second of CPU, under 200 MB resident.

Every case runs the real command in a subprocess and reads that child's own
resource usage with ``os.wait4`` (ru_maxrss is in KiB on Linux).  Before the
bounds, the alias bomb in ``name`` ran 31 s to a 3 GB MemoryError traceback and
``--set seed=99999999999999999999999`` was a TypeError traceback.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from conftest import tiny_config
from minicnn.config import MAX_FILE_BYTES, load_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

CPU_SECONDS, MAX_RSS_MB = 1.0, 200
LEVELS = 9  # 10**9 strings once expanded


def bomb(leaf: str) -> str:
    """A flow list whose aliases expand to 10**LEVELS copies of ``leaf``."""
    parts = [f"&a0 [{', '.join([leaf] * 10)}]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, LEVELS)]
    return "[" + ", ".join(parts) + "]"


def run_measured(*args, cwd):
    """Run ``python -m minicnn ARGS``; return (status, stderr, cpu seconds, max resident MB) of that child."""
    env = dict(os.environ, MINICNN_DATA=str(cwd), PYTHONPATH=str(ROOT))
    with open(cwd / "stderr.txt", "w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "minicnn", *map(str, args)], cwd=cwd, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    return child.returncode, text, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def assert_quick_one_line_exit_2(result, *words):
    status, stderr, cpu, rss = result
    assert status == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert len(stderr) < 400, f"a message of {len(stderr)} characters"
    for word in words:
        assert word in stderr, stderr
    assert cpu < CPU_SECONDS, f"{cpu:.2f} s of CPU"
    assert rss < MAX_RSS_MB, f"{rss:.0f} MB resident"


def config_text(**replace) -> str:
    """The tiny config as YAML with top-level values replaced by raw YAML text."""
    data = {k: v for k, v in tiny_config().items() if k not in replace}
    text = yaml.safe_dump(data, default_flow_style=None)
    return text + "".join(f"{k}: {v}\n" for k, v in replace.items())


CONFIG_CASES = [
    ("alias bomb in name", config_text(name=bomb("lol")), [], ["aliases are expanded"]),
    ("alias bomb in eval.shifts", config_text(eval=f"{{shifts: {bomb('0')}}}"), [], ["aliases are expanded"]),
    ("integer of 5000 digits", config_text(seed="9" * 5000), [], ["invalid YAML"]),
    ("nesting 30000 deep", config_text(name="[" * 30_000 + "]" * 30_000), [], ["invalid YAML"]),
    ("huge seed override", config_text(), ["seed=99999999999999999999999"], ["seed", "at most 4,294,967,295"]),
    ("huge epochs override", config_text(), ["train.epochs=99999999999999999999999"], ["train.epochs", "at most"]),
    ("alias bomb override", config_text(), [f"eval.shifts={bomb('0')}"], ["eval.shifts", "aliases"]),
    ("override of 100 KB", config_text(), ["name=" + "x" * 100_000], ["name", "at most"]),
    ("long string echoed", config_text(), ["train.optimizer.name=" + "x" * 3000], ["train.optimizer.name", "..."]),
]


@pytest.mark.parametrize("what, text, overrides, words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_hostile_config_is_a_quick_exit_2(tmp_path, what, text, overrides, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    sets = [a for o in overrides for a in ("--set", o)]
    assert_quick_one_line_exit_2(run_measured("summary", path, *sets, cwd=tmp_path), *words)


def test_a_50_mb_config_is_refused_before_reading(tmp_path):
    path = tmp_path / "c.yaml"
    with open(path, "w") as f:
        f.write(config_text() + "eval:\n  shifts: [")
        f.write("0, " * (50 * 2**20 // 3) + "0]\n")
    assert path.stat().st_size > 50 * 2**20
    assert_quick_one_line_exit_2(run_measured("summary", path, cwd=tmp_path), f"at most {MAX_FILE_BYTES:,}")


def test_alias_bomb_in_an_experiment_is_a_quick_exit_2(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: study\nconfigs: {bomb('a.yaml')}\n")
    assert_quick_one_line_exit_2(run_measured("ablate", path, cwd=tmp_path), "aliases are expanded")


def test_a_huge_seed_in_an_experiment_is_a_quick_exit_2(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(f"configs: [{CONFIGS / 'max_pool.yaml'}]\nseeds: [0, 99999999999999999999999]\n")
    assert_quick_one_line_exit_2(run_measured("ablate", path, cwd=tmp_path), "seeds", "at most")


def test_ordinary_aliases_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(config_text(eval="{shifts: &s [0, 1], batch_size: 100}"))
    assert load_config(path).shifts == (0, 1)


def test_summary_of_a_billion_feature_dense_layer_allocates_nothing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("model:\n  layers:\n    - {type: flatten}\n    - {type: dense, out_features: 1000000000}\n"
                    "    - {type: dense, out_features: 10}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-m", "minicnn", "summary", str(path)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err
    assert "785,000,000,000" in out and "795,000,000,010" in out          # 784 * 1e9 + 1e9, + 1e10 + 10
    assert "training memory estimate" in out and "largest: layer 1, dense" in out
    assert usage.ru_maxrss / 1024 < MAX_RSS_MB
