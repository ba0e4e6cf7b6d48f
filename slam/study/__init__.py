"""Precision studies: many SLAM runs that differ in one setting, run in parallel, summarized as distributions.

`spec` reads the study file, `runner` executes one run (a pure function of its RunSpec), `executors`
maps runs over a process pool or a Dask cluster and resumes, `analysis` turns results into the
article's histograms and tables, `report` writes the figures and report.html.
"""
