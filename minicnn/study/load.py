"""``load_study``: a study folder read back as a Study, paired differences included."""
from __future__ import annotations

from minicnn import plots
from minicnn.results import Study, cell_labels, in_cell
from minicnn.study.stats import paired_differences


def load_study(path) -> Study:
    """Read the folder ``minicnn ablate`` wrote: its results, statistics and comparisons.

    Args:
        path: the experiment folder (results.csv and the run folders).

    Returns:
        A Study: ``rows`` (results.csv), ``stats`` (mean ± std per cell and variant),
        ``metrics`` (each run's metrics per epoch), ``confusion``, and ``differences``
        ({cell: each variant minus the first on the same seeds, test accuracy, with its 95%
        Student's t interval}); UserError when the folder holds no study.

    Example::

        >>> import pathlib, minicnn as mc
        >>> committed = pathlib.Path(mc.__file__).parent.parent / "experiments" / "results"
        >>> study = mc.load_study(committed)                      # the default study's committed results
        >>> study.variants
        ['max_pool', 'avg_pool', 'global_pool', 'strided_conv']
        >>> d = study.differences[""][1]                          # global_pool - max_pool
        >>> d.variant, round(100 * d.mean, 2)
        ('global_pool', -0.7)
    """
    study = plots.read_study(path)
    cells = cell_labels(study.rows) or [""]
    study.differences = {c: paired_differences(in_cell(study.rows, c), study.variants) for c in cells}
    return study
