"""Great Expectations gate between ingest and preprocess.

The suites are built in code (:mod:`l1recal.validation.suites`), conditions
that span several columns are computed beforehand as derived columns
(:mod:`l1recal.validation.derived`), and :mod:`l1recal.validation.runner`
runs them through a Great Expectations checkpoint and writes the reports.
"""
