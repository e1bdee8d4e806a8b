"""An experiment: the (grid cell x config x seed) runs, their folders, and the report.

Experiment file (YAML):
    name: pooling_ablation
    configs: [../configs/max_pool.yaml, ...]   # relative to the experiment file
    seeds: [0, 1, 2]
    set: [train.epochs=3]                      # overrides for every run (optional)
    grid: {data.dataset: [mnist, fashion_mnist]}   # every config x seed per cell (optional)
    out: ../runs/pooling_ablation              # experiment folder (optional)
    quick: {seeds: [0], set: [...]}            # what --quick changes (optional)
    claims: [{text: ..., metric: consistency, variant: avg_pool, baseline: max_pool,
              direction: higher}]               # tested in report.md (optional; minicnn.claims)

Each run is ``fit_config(config, OUT/NAME/seedK)``, or ``fit_config(config, OUT/CELL/NAME/seedK)`` with
a grid (minicnn.study.grid: CELL is the cell's folder name), in a worker of a
``concurrent.futures.Executor``: a local process pool by default, or a Dask
cluster's (minicnn.study.cluster).  Each run takes its share of the cores inside
its task (``threads.limit``: cpu_count // jobs in the local pool).  A run is a pure function of
its resolved config and seed, and everything it returns is also on disk, so
``--resume`` only has to look at the run folders (minicnn.runs).

The experiment folder is locked like a run folder for as long as the study
runs, so two studies never share one.  minicnn writes only into an experiment
folder it made (``check_study_folder``): a new or empty one, which it then
marks with ``STUDY_MARK``, or one holding that mark (or, made before the mark
existed, a run folder of this study); any other is refused before anything is
written.  A pool worker ends by itself when the runner is gone, however the
runner ended.  Runs that fail do not stop the
study: they are listed at the end (``RunsFailed``).
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import math
import multiprocessing
import os
import pathlib
import sys
import threading
import time
import traceback

from minicnn import probes
from minicnn.config import ExperimentKeys, dump_yaml, load_config, load_yaml
from minicnn.errors import ConfigError, UserError
from minicnn.files import remove_temporaries, write_text
from minicnn.runs import CONFIG, FolderLock, RunFolder, check_ours
from minicnn.schema import MAX_GRID_RUNS, parse
from minicnn.study import claims, cluster, grid
from minicnn.study.cluster import ClusterLost
from minicnn.results import aggregate
from minicnn.study.report import PROVENANCE_FIELDS, write_report, write_results

STOP_FILE = ".stop"  # in the experiment folder while the driver stops the study
# the entries of a run's summary.json its row of results.csv takes
ROW_KEYS = ("test_accuracy", "val_accuracy", "epochs", "params", "macs", "seconds_per_epoch", "images_per_second",
            "diverged")
HEALTH_SECONDS = 2.0  # how often a study asks its executor's health (run_experiment's health)
STUDY_MARK = ".minicnn-study"  # in every experiment folder minicnn made (check_study_folder)


class StudyStopped(Exception):
    """Raised in a run whose driver stopped the study (Ctrl-C, SIGTERM) after its last saved epoch."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a study: a config file, a seed, the overrides, its folder and its grid cell."""

    config_path: str
    seed: int
    overrides: tuple[str, ...]
    name: str
    folder: pathlib.Path
    cell: grid.Cell = ()                  # ((key, value), ...) of the grid; () without one
    study: pathlib.Path | None = None     # the experiment folder (STOP_FILE's); None: not in a study

    @property
    def title(self) -> str:
        """"max seed 0", or with a grid "max seed 0 (fashion_mnist, shift 2)"."""
        return f"{self.name} seed {self.seed}" + (f" ({grid.label(self.cell)})" if self.cell else "")


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    file: str
    runs: list[Run]      # cell by cell, then config by config, then seed by seed
    variants: list[str]  # config names, in the order of the experiment file
    out: pathlib.Path
    cells: list[grid.Cell] = dataclasses.field(default_factory=lambda: [()])  # [()] without a grid
    claims: tuple = ()   # the experiment file's claims (minicnn.claims), checked against the configs


def load_experiment(path, overrides=(), quick=False, out=None) -> Experiment:
    """Read and check an experiment file; every config is validated now, before any run."""
    path = pathlib.Path(path)
    file = str(path)
    keys = parse(ExperimentKeys, load_yaml(path), file, "")
    seeds, sets = list(keys.seeds), list(keys.set)
    if quick:
        seeds = list(keys.quick.seeds or seeds[:1])
        sets += keys.quick.set
    sets += list(overrides)
    name = keys.name or path.stem
    if out is None:
        out = path.parent / keys.out if keys.out is not None else pathlib.Path(f"runs/{name}")
        if quick:
            out = out.with_name(out.name + "-quick")
    out = pathlib.Path(os.path.normpath(out))

    cells = _cells(file, keys.grid, sets, len(keys.configs) * len(seeds))
    variants, configs = [], {}
    for i, rel in enumerate(keys.configs):
        config_path = path.parent / rel
        config = [_load_config(file, i, config_path, sets, cell) for cell in cells][0]  # each cell checked now
        variant = config.name
        if variant in variants:
            raise ConfigError(file, f"configs[{i}]", f"two configs are both named {variant!r}")
        variants.append(variant)
        configs[variant] = config
    claims.check(file, keys.claims, configs, [grid.label(cell) for cell in cells if cell])
    runs = []
    for cell in cells:
        base = out / grid.slug(cell) if cell else out
        for rel, config_name in zip(keys.configs, variants):
            runs += [Run(str(path.parent / rel), seed, (*sets, *grid.overrides(cell), f"seed={seed}"), config_name,
                         base / config_name / f"seed{seed}", cell, out) for seed in seeds]
    return Experiment(name, file, runs, variants, out, cells, keys.claims)


def _cells(file: str, cells: tuple, sets: list[str], runs_per_cell: int) -> list[grid.Cell]:
    """The grid's cells, once checked against the rest of the experiment; [()] without a grid."""
    if not cells:
        return [()]
    if len(cells) * runs_per_cell > MAX_GRID_RUNS:
        raise ConfigError(file, "grid", f"{len(cells)} cells x {runs_per_cell} configs and seeds make "
                          f"{len(cells) * runs_per_cell:,} runs; a study with a grid may have at most {MAX_GRID_RUNS:,}")
    fixed = {s.split("=", 1)[0].strip() for s in sets}
    for key in dict.fromkeys(key for cell in cells for key, _ in cell):
        if key in fixed:
            raise ConfigError(file, f"grid.{key}", "also given one value for every run (set, quick.set or --set); "
                              "a key is either that or a grid axis")
    for name, of in (("folder", grid.slug), ("label", grid.label)):
        seen = {}
        for cell in cells:
            if of(cell) in seen:
                raise ConfigError(file, "grid", f"the cells {grid.label(seen[of(cell)])!r} and {grid.label(cell)!r} "
                                  f"would share the {name} {of(cell)!r}; make their values differ more")
            seen[of(cell)] = cell
    return list(cells)


def _load_config(file: str, i: int, config_path: pathlib.Path, sets: list[str], cell: grid.Cell):
    """configs[i] with the overrides of every run and of ``cell``; a problem with a grid value is
    reported at its key of the grid, in the experiment file."""
    try:
        return load_config(config_path, (*sets, *grid.overrides(cell)))
    except ConfigError as e:
        if e.file == str(config_path) and not config_path.exists():
            raise ConfigError(file, f"configs[{i}]", f"no such file: {config_path}") from None
        for key, _ in cell:
            if e.path == key or e.path.startswith((f"{key}.", f"{key}[")):
                raise ConfigError(file, f"grid.{key}", f"{e.message} (checked with {config_path})") from None
        if cell:
            raise ConfigError(e.file, e.path, f"{e.message} (in the grid cell {grid.label(cell)} of {file})") from None
        raise


def run_one(run: Run, data_dir=None, threads=None, show_progress=False) -> dict:
    """Fit one run in this process (the function the executor calls); return its summary.

    ``threads``: the run's share of the cores, taken here, inside the task: an
    int, or a Dask thread plan {host: threads} (minicnn.study.cluster.thread_plan)
    looked up for the worker the run landed on; None leaves the process as is.
    Each epoch's line goes to stdout, or to the driver when the run is on a
    Dask worker.  Between epochs the run stops (its last epoch saved) once the
    driver has asked the study to stop (``STOP_FILE``, for workers the driver
    cannot kill, such as a remote cluster's).
    """
    from minicnn import threads as kernel_threads
    from minicnn.train import fit_config

    config = load_config(run.config_path, run.overrides)
    prefix = f"[{run.title}] "
    forward = cluster.worker_log(cluster.log_topic(run.study))
    if forward is not None:  # on a Dask worker
        cluster.undo_malloc_trim()
    stop = run.study / STOP_FILE if run.study is not None else None

    def log(line):
        if forward is not None:
            forward(prefix + line)
        else:
            print(prefix + line, flush=True)
        if stop is not None and stop.exists():
            raise StudyStopped(f"{run.title}: the study was stopped; --resume continues it")

    share = cluster.threads_here(threads) if isinstance(threads, dict) else threads
    with kernel_threads.limit(share) if share else contextlib.nullcontext():
        return fit_config(config, run.folder, data_dir=data_dir, resume=True, show_progress=show_progress, log=log)


def run_folder(run: Run) -> RunFolder:
    return RunFolder(run.folder, dump_yaml(load_config(run.config_path, run.overrides).resolved))


def check_study_folder(exp: Experiment) -> None:
    """UserError unless minicnn may write into the experiment folder (module docstring)."""
    started = {r.folder.relative_to(exp.out).parts[0] for r in exp.runs if (r.folder / CONFIG).exists()}
    check_ours(exp.out, [STUDY_MARK, *started], "experiment folder")


class RunsFailed(Exception):
    """Some runs of a study failed; the others finished and are in its results.

    ``failures``: (run, exception) pairs; ``resume``: the command that continues the study.
    """

    def __init__(self, failures: list[tuple[Run, BaseException]], total: int, resume: str) -> None:
        self.failures, self.total, self.resume = failures, total, resume
        super().__init__(f"{len(failures)} of {total} runs failed")

    def table(self) -> str:
        """Which runs failed and why, one line each, and what to do."""
        rows = [(run.title, _reason(e)) for run, e in self.failures]
        width = max(len("run"), *(len(name) for name, _ in rows))
        lines = [f"{self}:", f"  {'run':<{width}}  why"]
        lines += [f"  {name:<{width}}  {why}" for name, why in rows]
        lines.append(f"The finished runs are in the results. Fix the cause, then continue with:\n  {self.resume}")
        return "\n".join(lines)

    def tracebacks(self) -> str:
        return "\n".join(f"--- {run.title}\n" + "".join(traceback.format_exception(e))
                         for run, e in self.failures)


def _reason(e: BaseException) -> str:
    if isinstance(e, concurrent.futures.CancelledError):  # Dask's is this class too
        return ("its task was cancelled: the executor lost it (a Dask scheduler killed or restarted?); its "
                "last finished epoch is saved and --resume continues it")
    if type(e).__name__ == "KilledWorker":  # distributed's, without importing it
        return ("its Dask worker died each time it was tried (killed, or out of memory); its last finished "
                "epoch is saved and --resume continues it")
    if isinstance(e, concurrent.futures.process.BrokenProcessPool):
        return ("its worker process died (killed, or out of memory); its last finished epoch is saved "
                "and --resume continues it")
    text = str(e).splitlines()[0] if str(e) else ""
    return text[:300] if isinstance(e, UserError) else f"{type(e).__name__}: {text[:300]}"


def _watch_parent(parent: int) -> None:
    """Pool worker initializer: exit as soon as the runner ``parent`` is gone.

    A worker whose runner was killed (even by SIGKILL) would otherwise run every
    queued run into a folder a resumed study is using.  Polled, not
    PR_SET_PDEATHSIG: that fires when the *thread* that started the worker ends.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(1)  # the run's lock dies with us; its last checkpoint is intact

    threading.Thread(target=watch, name="minicnn-watch-parent", daemon=True).start()


@contextlib.contextmanager
def process_pool(jobs: int):
    """A spawn-based process pool of ``jobs`` workers that end when the runner does."""
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_watch_parent, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        # Ctrl-C, SIGTERM or a crash: queued runs must not start, running ones stop now (their
        # last checkpoint is intact: files are replaced atomically).
        workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        for process in workers:
            process.join(5)
        raise
    else:
        pool.shutdown()


def run_experiment(path, jobs=1, resume=False, quick=False, overrides=(), out=None, data_dir=None,
                   executor=None, threads=None, log=print, health=None, resume_args="") -> list[dict]:
    """Run every unfinished run of the grid, then write results.csv, report.md and figures.

    ``executor``: any concurrent.futures.Executor (e.g. Dask's client.get_executor());
    default a local process pool of ``jobs`` workers.  ``threads``: each run's
    share of the cores (an int, or a Dask plan {host: threads}); default
    cpu_count // jobs for the local pool, the process as it is for an executor.
    ``health``: called every HEALTH_SECONDS while runs are out; it raises
    ClusterLost when the executor can run nothing more.  ``resume_args``: the
    arguments that name the executor in the resume command (" --dask ADDRESS").
    Returns the result rows.  Raises UserError for bad input, a folder in use
    or not minicnn's, or a lost executor (saying how to resume), RunsFailed
    (after writing the results of the others) when runs failed,
    KeyboardInterrupt (after saying how to resume) when interrupted, figures
    being written included.
    """
    from minicnn.train import preload

    exp = load_experiment(path, overrides, quick, out)
    again = (f"minicnn ablate {path} --resume" + (" --quick" if quick else "") + resume_args
             + "".join(f" --set {s}" for s in overrides) + (f" --out {out}" if out else ""))
    if executor is None and threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    check_study_folder(exp)
    with FolderLock(exp.out, "experiment folder"):
        if not (exp.out / STUDY_MARK).exists():
            write_text(exp.out / STUDY_MARK, f"minicnn experiment folder of {exp.file}\n")
        folders = {run: run_folder(run) for run in exp.runs}
        _check_folder(exp, folders, resume)
        (exp.out / STOP_FILE).unlink(missing_ok=True)  # left by an earlier, interrupted driver
        todo = [r for r in exp.runs if not (resume and folders[r].finished)]
        where = f"{jobs} in parallel" if executor is None else f"on {type(executor).__name__}"
        cells = f"{len(exp.cells)} grid cells x " if exp.cells != [()] else ""
        seeds = len(exp.runs) // (len(exp.variants) * len(exp.cells))
        log(f"{exp.name}: {len(exp.runs)} runs ({cells}{len(exp.variants)} configs x {seeds} "
            f"seeds), {len(exp.runs) - len(todo)} already finished, {len(todo)} to run, {where}; "
            f"folder {exp.out}")
        if todo:  # fetch and cache each data set once, before the workers read the caches
            configs = {r: load_config(r.config_path, r.overrides) for r in todo}
            preload(list(configs.values()), data_dir)
            todo = longest_first(todo, configs)
        failures = []
        start = time.perf_counter()
        progress = executor is not None or jobs > 1  # else the run's own per-batch bar shows
        try:
            if executor is not None:
                failures = _submit_all(executor, todo, data_dir, threads, progress, log, health)
            else:
                with process_pool(jobs) as pool:
                    failures = _submit_all(pool, todo, data_dir, threads, progress, log, health)
            if todo:
                log(f"ran {len(todo) - len(failures)} runs in {time.perf_counter() - start:.0f} s")
            rows = _write_results(exp, folders, log)
        except KeyboardInterrupt:
            (exp.out / STOP_FILE).touch()  # runs the driver cannot kill stop after their current epoch
            log(f"\ninterrupted; finished runs and the last epoch of each unfinished run are saved in {exp.out}. "
                f"Continue with:\n  {again}")
            raise
        except ClusterLost as e:
            (exp.out / STOP_FILE).touch()
            raise UserError(f"{e}; finished runs and the last epoch of each unfinished run are saved in "
                            f"{exp.out}. Continue with: {again}") from None
    if failures:
        raise RunsFailed(failures, len(exp.runs), again)
    return rows


def _write_results(exp: Experiment, folders: dict[Run, RunFolder], log) -> list[dict]:
    """results.csv, report.md and the figures from the finished runs; their rows."""
    rows = [_row(r, folders[r]) for r in exp.runs if folders[r].finished]
    write_results(exp.out / "results.csv", rows)
    claims.save(exp.out, exp.claims)
    write_report(exp.out / "report.md", exp, aggregate(rows, exp.variants), rows)
    if rows:  # no finished run: nothing to draw
        for figure in claims.draw_folder(exp.out):
            log(f"figure: {figure}")
    log(f"report: {exp.out / 'report.md'}")
    return rows


def longest_first(runs: list[Run], configs: dict) -> list[Run]:
    """``runs`` by estimated work, largest first (stable): forward MACs per image
    x epochs.  Handing the longest runs out first keeps the workers busy
    to the end instead of leaving one long run alone at the tail (LPT scheduling);
    results do not depend on the order."""
    from minicnn.config import build_model

    def work(run):
        config = configs[run]
        return build_model(config, allocate=False).macs * config.epochs

    return sorted(runs, key=work, reverse=True)


def _check_folder(exp: Experiment, folders: dict[Run, RunFolder], resume: bool) -> None:
    """Refuse to mix a new study into a folder with runs, unless resuming (then every started
    run must be of the config as it reads now, since finished ones are skipped)."""
    started = [r for r in exp.runs if folders[r].started]
    if started and not resume:
        raise UserError(f"{exp.out} already holds {len(started)} runs of this study; pass --resume to "
                        "continue it, or --out to start a new one")
    for r in started:
        try:
            folders[r].check_identity()
        except UserError:
            raise UserError(f"{r.folder} holds a run of an older version of {r.config_path} (the config "
                            "or the --set overrides changed since); use --out to start a new study, or "
                            "delete that run folder to run it again") from None
    # temporary files of writes a kill interrupted: never read back, but litter (MBs for checkpoints);
    # an unfinished run's own are removed when a worker claims it
    remove_temporaries(exp.out)
    for r in started:
        if folders[r].finished:
            folders[r].tidy()


def _submit_all(executor, todo, data_dir, threads, progress, log, health=None) -> list[tuple[Run, BaseException]]:
    """Hand every run to ``executor``; collect failures as they come, with one bar over runs.

    ``health()`` is called every HEALTH_SECONDS while runs are out (run_experiment's docstring).  A run whose future failed but whose folder holds its summary
    (its result was lost on the way back) counts as finished.
    """
    from tqdm import tqdm

    show_batches = not progress and sys.stderr.isatty()
    futures = {executor.submit(run_one, run, data_dir, threads, show_batches): run for run in todo}
    failures, pending, done = [], set(futures), 0
    with tqdm(total=len(todo), unit="run", desc="runs", disable=not progress or None, file=sys.stderr,
              dynamic_ncols=True) as bar:
        while pending:
            finished, pending = concurrent.futures.wait(pending, timeout=HEALTH_SECONDS if health else None,
                                                        return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                run, done = futures[future], done + 1
                try:
                    summary = future.result()
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # a failed run must not stop the study; it is reported at the end
                    if isinstance(e, concurrent.futures.CancelledError) and health is not None:
                        health()  # a lost scheduler cancels every task: say that, once
                    summary = _finished_anyway(run)
                    if summary is None:
                        failures.append((run, e))
                        status = f"FAILED: {_reason(e)}"
                if summary is not None:
                    status = "DIVERGED" if summary["diverged"] else f"test {100 * summary['test_accuracy']:.2f}%"
                bar.update()
                bar.clear()
                log(f"[{done}/{len(todo)}] {run.title}: {status}")
                bar.refresh()
            if pending and health is not None:
                health()
    return failures


def _finished_anyway(run: Run) -> dict | None:
    """The summary of a run whose folder says it finished, else None."""
    folder = run_folder(run)
    if not folder.finished:
        return None
    try:
        return folder.summary(ROW_KEYS)
    except UserError:
        return None


def _row(run: Run, folder: RunFolder) -> dict:
    s = folder.summary(ROW_KEYS)
    row = {"cell": grid.label(run.cell)} if run.cell else {}
    row |= {"config": run.name, "seed": run.seed}
    for key in ROW_KEYS:
        row[key] = math.nan if s[key] is None else s[key]  # summary.json's null: a number not measured
    rf = s.get("receptive_field")
    row["receptive_field"] = f"{rf[0]}x{rf[1]}" if rf else ""
    for shift, acc in s.get("shift_accuracy", {}).items():
        row[f"shift_{shift}"] = acc
    row |= probes.result_fields(s)
    for key in PROVENANCE_FIELDS:  # data set, its sha256, BLAS; runs of older versions lack them
        if key in s:
            row[key] = s[key]
    row["run_dir"] = run.folder.relative_to(run.study).as_posix()  # relative to the experiment folder, which may move
    return row


def run_study(target: str, experiment, *, resume=False, quick=False, overrides=(), out=None, data_dir=None,
              log=print) -> list[dict]:
    """``minicnn ablate EXPERIMENT --dask TARGET``: the study on a Dask cluster; its result rows.

    The experiment is validated before any cluster is started; paths are made
    absolute, since a remote worker's working folder is not the driver's.
    """
    from tqdm import tqdm

    kind, address = cluster.parse_target(target)
    experiment = pathlib.Path(experiment).resolve()
    out = pathlib.Path(out).resolve() if out is not None else None
    data_dir = str(pathlib.Path(data_dir).resolve()) if data_dir is not None else None
    exp = load_experiment(experiment, overrides, quick, out)
    check_study_folder(exp)  # before the probe below writes into it
    with cluster.connect(target) as client:
        exp.out.mkdir(parents=True, exist_ok=True)
        cluster.check_shared_folder(client, exp.out)
        plan = cluster.thread_plan(client)
        log(f"Dask: {len(client.scheduler_info()['workers'])} workers; threads per run by host: "
            + ", ".join(f"{host} {n}" for host, n in sorted(plan.items())))
        cluster.forward_logs(client, lambda line: tqdm.write(line, file=sys.stdout), cluster.log_topic(exp.out))
        return run_experiment(experiment, resume=resume, quick=quick, overrides=overrides, out=exp.out,
                              data_dir=data_dir, executor=client.get_executor(pure=False), threads=plan, log=log,
                              health=cluster.cluster_health(client, address if kind == "remote" else target),
                              resume_args=f" --dask {address if kind == 'remote' else target.strip()}")
