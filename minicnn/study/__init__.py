"""A study: experiment files and grids, the executor (process pool or Dask), result rows,
paired statistics, report."""
