"""A Great Expectations session: ephemeral context, pandas data source, Data Docs site.

Nothing is written outside the Data Docs folder: the context keeps its suites,
validation definitions, checkpoints and results in memory. The site is built
once, after the last checkpoint run, because every build compiles the page
templates anew (about 0.4 s a page with Great Expectations 1.24.1 on 2 cores).
An ``UpdateDataDocsAction`` per run would also rebuild the index every time.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

logger = logging.getLogger(__name__)

DATA_SOURCE = "l1recal"
DOCS_SITE = "l1recal_site"
#: Folder name of the site inside the packed archive.
DOCS_ARCHIVE_ROOT = "data_docs"


class ValidationSession:
    """One ephemeral Great Expectations context with a local Data Docs site.

    Args:
        docs_dir: folder the Data Docs site is rendered into.
        examples: unexpected values each result keeps (``partial_unexpected_count``).
    """

    def __init__(self, docs_dir: Path, examples: int) -> None:
        self.docs_dir = docs_dir
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._context.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                # Validation pages only: they list every expectation with its result.
                "site_section_builders": {
                    "expectations": "False",
                    "profiling": "False",
                },
            },
        )
        self._source = self._context.data_sources.add_pandas(DATA_SOURCE)
        self._result_format = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": examples,
        }
        self._checkpoints: dict[str, gx.Checkpoint] = {}

    def add_suite(self, suite: gx.ExpectationSuite) -> None:
        """Register a suite with its data asset, validation definition and checkpoint.

        The asset, the batch definition and the checkpoint share the suite's name.
        """
        name = suite.name
        suite = self._context.suites.add(suite)
        asset = self._source.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe(name)
        definition = self._context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        self._checkpoints[name] = self._context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                result_format=self._result_format,
            )
        )

    def run(self, suite_name: str, frame: pd.DataFrame, run_name: str) -> list:
        """Validate ``frame`` with a registered suite; the result is kept for :meth:`build_docs`.

        Returns:
            The ``ExpectationValidationResult`` of every expectation of the suite.
        """
        result = self._checkpoints[suite_name].run(
            batch_parameters={"dataframe": frame},
            run_id=RunIdentifier(run_name=run_name),
        )
        # The data source's execution engine keeps the data of every batch it
        # loaded (Great Expectations 1.24.1), so a long run would hold all its
        # chunks in memory. Clear its cache once the result is stored.
        engine = self._source.get_execution_engine()
        engine.batch_manager.reset_batch_cache()
        engine.batch_manager.batch_data_cache.clear()
        (validation,) = result.run_results.values()
        logger.debug(
            "%s: %s, %s",
            run_name,
            "passed" if validation.success else "failed",
            validation.statistics,
        )
        return list(validation.results)

    def build_docs(self) -> None:
        """Render the Data Docs site of every run so far into ``docs_dir``."""
        self._context.build_data_docs(site_names=[DOCS_SITE])


def pack_data_docs(docs_dir: Path, archive: Path) -> None:
    """Write the Data Docs site in ``docs_dir`` into the gzip tar file ``archive``.

    Members sit under ``data_docs/`` in sorted order.
    """
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(docs_dir.rglob("*")):
            if path.is_file():
                arcname = Path(DOCS_ARCHIVE_ROOT) / path.relative_to(docs_dir)
                tar.add(path, arcname=str(arcname), recursive=False)
