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


# The command runs as the grandchild of a small Python process that measures it:
# a child forked straight from pytest would inherit pytest's resident size in
# ru_maxrss (the high-water mark survives fork and exec).
MEASURE = """
import os, sys
out = open(sys.argv[1], "w")
pid = os.fork()
if pid == 0:
    if sys.argv[2] == "quiet":
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.executable, [sys.executable, "-m", "minicnn", *sys.argv[3:]])
_, status, usage = os.wait4(pid, 0)
out.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
"""


def run_measured(*args, cwd, stdout="quiet"):
    """Run ``python -m minicnn ARGS``; return (status, stderr, cpu seconds, max resident MB) of that
    process alone (ru_maxrss is in KiB on Linux).  stdout="keep": the command's output is returned
    in place of stderr's."""
    env = dict(os.environ, MINICNN_DATA=str(cwd), PYTHONPATH=str(ROOT))
    numbers = cwd / "measured.txt"
    done = subprocess.run([sys.executable, "-c", MEASURE, str(numbers), stdout, *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)
    status, cpu, rss_kib = numbers.read_text().split()
    text = done.stdout if stdout == "keep" else done.stderr
    return int(status), text, float(cpu), int(rss_kib) / 1024


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
    ("unknown key of 50 KB", config_text() + "? " + "k" * 50_000 + "\n: 1\n", [], ["unknown key", "kkk..."]),
    ("override key of 100 KB", config_text(), ["k" * 100_000 + "=1"], ["override key of 100,000 characters"]),
    ("override without = of 100 KB", config_text(), ["k" * 100_000], ["expected KEY=VALUE"]),
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
    status, out, cpu, rss = run_measured("summary", path, cwd=tmp_path, stdout="keep")
    assert status == 0
    assert "785,000,000,000" in out and "795,000,000,010" in out          # 784 * 1e9 + 1e9, + 1e10 + 10
    assert "training memory estimate" in out and "largest: layer 1, dense" in out
    assert cpu < CPU_SECONDS and rss < MAX_RSS_MB                         # the weights alone: 3 TB
