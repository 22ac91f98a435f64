"""Streaming readers of event files: parquet, ROOT TTrees, HDF5 and CSV.

Every reader yields the requested columns in batches of at most ``batch_rows``
events, as 1-D numpy arrays (one value per event) or awkward arrays (a list per
event). Memory is bounded by the batch, never by the file. Errors name the file
(and the tree, row group or column) and the fix; they are raised as
:class:`l1recal.errors.InputFileError`.

Format by extension: ``.parquet``/``.pq``, ``.root``, ``.h5``/``.hdf5``/``.hdf``,
``.csv``/``.csv.gz``/``.txt``, or set explicitly. HDF5 files hold one 1-D dataset
per column inside one group (the root group unless ``tree`` names another);
pandas/PyTables ``table`` files are not supported.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l1recal.errors import InputFileError

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "root", "hdf5", "csv")
_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".root": "root",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".csv": "csv",
    ".txt": "csv",
}
#: Bytes per block of the streaming CSV reader.
_CSV_BLOCK_BYTES = 16 << 20

#: One requested column: (tree or None for the file's default, column name).
ColumnKey = tuple[str | None, str]
Batch = dict[ColumnKey, Any]


@dataclass(frozen=True)
class ColumnInfo:
    """Type of one column of a source.

    Attributes:
        dtype: type name as the format spells it (arrow or numpy), for messages.
        kind: ``integer``, ``floating`` or ``other`` (of the values of a jagged column).
        jagged: the column contains a variable-length list per event.
    """

    dtype: str
    kind: str
    jagged: bool = False


def detect_format(path: Path, explicit: str | None = None) -> str:
    """Return the reader of ``path``: ``explicit`` when given, else by file extension."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise InputFileError(
                f"{path}: unknown input format {explicit!r}; valid formats: {', '.join(FORMATS)}"
            )
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InputFileError(
            f"{path}: cannot tell the file format from the extension; "
            f"pass --format with one of {', '.join(FORMATS)}"
        )
    return fmt


def expand_inputs(patterns: Sequence[str | Path]) -> list[Path]:
    """Expand file names and glob patterns, in the given order, each pattern's matches sorted.

    Raises:
        InputFileError: when a glob pattern matches nothing, or no input is given.
    """
    paths: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise InputFileError(
                    f"{text}: pattern matches no file; check the folder and the pattern"
                )
            paths.extend(Path(match) for match in matches)
        else:
            paths.append(Path(text))
    if not paths:
        raise InputFileError("no input file given; pass at least one file or pattern")
    return paths


def _reason(error: BaseException) -> str:
    """Return an exception's message on one line, for the one-line CLI errors."""
    return " ".join(str(error).split())


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputFileError(
            f"{path}: file not found; run 'l1recal simulate' or point the stage at your data"
        )
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, expected a file")


def _arrow_info(dtype: pa.DataType) -> ColumnInfo:
    jagged = pa.types.is_list(dtype) or pa.types.is_large_list(dtype)
    value_type = dtype.value_type if jagged else dtype
    if pa.types.is_integer(value_type) or pa.types.is_boolean(value_type):
        kind = "integer"
    elif pa.types.is_floating(value_type):
        kind = "floating"
    else:
        kind = "other"
    return ColumnInfo(str(dtype), kind, jagged)


def _numpy_info(dtype: np.dtype, jagged: bool = False) -> ColumnInfo:
    if dtype.kind in "iub":
        kind = "integer"
    elif dtype.kind == "f":
        kind = "floating"
    else:
        kind = "other"
    return ColumnInfo(str(dtype), kind, jagged)


def _arrow_to_values(array: pa.Array | pa.ChunkedArray) -> Any:
    """Return numpy for a flat arrow column, awkward for a list column; nulls stay visible as NaN."""
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        import awkward as ak

        return ak.from_arrow(array, highlevel=True)
    if array.null_count:
        return array.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return array.to_numpy(zero_copy_only=False)


class Source:
    """An opened input file of one format.

    Attributes:
        path: the file.
        format: one of :data:`FORMATS`.
    """

    path: Path
    format: str

    def columns(self, tree: str | None = None) -> dict[str, ColumnInfo]:
        """Return the columns of ``tree`` (the default one when None) and their types."""
        raise NotImplementedError

    def num_rows(self, tree: str | None = None) -> int:
        """Return the number of events of ``tree``."""
        raise NotImplementedError

    def iter_batches(
        self, request: dict[str | None, list[str]], batch_rows: int
    ) -> Iterator[tuple[int, Batch]]:
        """Yield (first event index, batch) with the requested columns of every tree."""
        raise NotImplementedError

    def describe(self, tree: str | None) -> str:
        """Return the file (and tree) for messages."""
        return f"{self.path}" if tree is None else f"{self.path}: tree {tree}"

    def _no_tree(self, tree: str | None) -> None:
        if tree is not None:
            raise InputFileError(
                f"{self.path}: {self.format} files have no trees, but tree {tree!r} was requested; "
                "remove 'tree' from the column map"
            )


class ParquetSource(Source):
    """A parquet file, read one row group at a time."""

    format = "parquet"

    def __init__(self, path: Path) -> None:
        _check_exists(path)
        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise InputFileError(
                f"{path}: not a readable parquet file ({_reason(error)}); a truncated or corrupt "
                "parquet file must be exported again, another format needs --format"
            ) from error

    def columns(self, tree: str | None = None) -> dict[str, ColumnInfo]:
        self._no_tree(tree)
        return {field.name: _arrow_info(field.type) for field in self.file.schema_arrow}

    def num_rows(self, tree: str | None = None) -> int:
        self._no_tree(tree)
        return self.file.metadata.num_rows

    def iter_batches(
        self, request: dict[str | None, list[str]], batch_rows: int
    ) -> Iterator[tuple[int, Batch]]:
        for tree in request:
            self._no_tree(tree)
        names = request.get(None, [])
        start = 0
        for group in range(self.file.metadata.num_row_groups):
            try:
                batches = self.file.iter_batches(
                    batch_size=batch_rows, row_groups=[group], columns=names
                )
                for batch in batches:
                    values = {
                        (None, name): _arrow_to_values(batch.column(name))
                        for name in names
                    }
                    yield start, values
                    start += batch.num_rows
            except (pa.ArrowException, OSError) as error:
                raise InputFileError(
                    f"{self.path}: row group {group} cannot be read ({_reason(error)}); "
                    "the file is truncated or corrupt: export it again"
                ) from error


class CsvSource(Source):
    """A CSV file with a header line, read in blocks by pyarrow's streaming reader."""

    format = "csv"

    def __init__(self, path: Path) -> None:
        import pyarrow.csv as pa_csv

        _check_exists(path)
        self.path = path
        self._csv = pa_csv
        try:
            with self._open() as reader:
                self.schema = reader.schema
        except (pa.ArrowInvalid, OSError) as error:
            raise InputFileError(
                f"{path}: not a readable CSV file ({_reason(error)}); check the header line and delimiter"
            ) from error
        self._rows: int | None = None

    def _open(self, names: list[str] | None = None):
        convert = self._csv.ConvertOptions(include_columns=names) if names else None
        return self._csv.open_csv(
            self.path,
            read_options=self._csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            convert_options=convert,
        )

    def columns(self, tree: str | None = None) -> dict[str, ColumnInfo]:
        self._no_tree(tree)
        return {field.name: _arrow_info(field.type) for field in self.schema}

    def num_rows(self, tree: str | None = None) -> int:
        self._no_tree(tree)
        if self._rows is None:
            self._rows = sum(len(b) for _, b in self._iter([self.schema.names[0]]))
        return self._rows

    def _iter(self, names: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
        start = 0
        try:
            with self._open(names) as reader:
                for batch in reader:
                    yield start, batch
                    start += batch.num_rows
        except (pa.ArrowInvalid, OSError) as error:
            raise InputFileError(
                f"{self.path}: rows after line {start + 1} cannot be read ({_reason(error)}); "
                "fix the values or the column types of the file"
            ) from error

    def iter_batches(
        self, request: dict[str | None, list[str]], batch_rows: int
    ) -> Iterator[tuple[int, Batch]]:
        for tree in request:
            self._no_tree(tree)
        names = request.get(None, [])
        for start, block in self._iter(names):
            for offset in range(0, block.num_rows, batch_rows):
                part = block.slice(offset, batch_rows)
                yield (
                    start + offset,
                    {(None, n): _arrow_to_values(part.column(n)) for n in names},
                )


class Hdf5Source(Source):
    """An HDF5 file with one 1-D dataset per column in one group, read by slices."""

    format = "hdf5"

    def __init__(self, path: Path, group: str | None = None) -> None:
        import h5py

        _check_exists(path)
        self.path = path
        try:
            self.file = h5py.File(path, "r")
        except OSError as error:
            raise InputFileError(
                f"{path}: not a readable HDF5 file ({_reason(error)}); export it again or pass --format"
            ) from error
        self.group_name = group or "/"
        if self.group_name not in self.file:
            raise InputFileError(
                f"{path}: group {self.group_name!r} not found (groups: "
                f"{', '.join(self._groups()) or 'none'}); set 'tree' in the column map"
            )
        self.group = self.file[self.group_name]
        datasets = {
            name: item
            for name, item in self.group.items()
            if isinstance(item, h5py.Dataset) and item.ndim == 1
        }
        self.datasets = datasets
        lengths = {item.shape[0] for item in datasets.values()}
        if len(lengths) > 1:
            raise InputFileError(
                f"{path}: datasets of group {self.group_name!r} have different lengths "
                f"{sorted(lengths)}; every column needs one value per event"
            )
        self._rows = lengths.pop() if lengths else 0

    def _groups(self) -> list[str]:
        import h5py

        names: list[str] = []
        self.file.visititems(
            lambda name, item: (
                names.append(name) if isinstance(item, h5py.Group) else None
            )
        )
        return names

    def columns(self, tree: str | None = None) -> dict[str, ColumnInfo]:
        self._check_tree(tree)
        return {name: _numpy_info(item.dtype) for name, item in self.datasets.items()}

    def _check_tree(self, tree: str | None) -> None:
        if tree is not None and tree.strip("/") != self.group_name.strip("/"):
            raise InputFileError(
                f"{self.path}: one HDF5 group per file is read ({self.group_name!r}), "
                f"but {tree!r} was requested"
            )

    def num_rows(self, tree: str | None = None) -> int:
        self._check_tree(tree)
        return self._rows

    def iter_batches(
        self, request: dict[str | None, list[str]], batch_rows: int
    ) -> Iterator[tuple[int, Batch]]:
        for tree in request:
            self._check_tree(tree)
        keys = [(tree, name) for tree, names in request.items() for name in names]
        for start in range(0, self._rows, batch_rows):
            stop = min(start + batch_rows, self._rows)
            try:
                yield start, {key: self.datasets[key[1]][start:stop] for key in keys}
            except OSError as error:
                raise InputFileError(
                    f"{self.path}: rows {start}..{stop - 1} cannot be read ({_reason(error)}); "
                    "the file is truncated or corrupt: export it again"
                ) from error


class RootSource(Source):
    """A ROOT file read with uproot; several trees of the same file are read entry-aligned."""

    format = "root"

    def __init__(self, path: Path, tree: str | None = None) -> None:
        import uproot

        _check_exists(path)
        self.path = path
        try:
            self.file = uproot.open(path)
            self.trees = [
                key.rsplit(";", 1)[0]
                for key, classname in self.file.classnames().items()
                if classname == "TTree"
            ]
        except Exception as error:  # uproot raises many types on a damaged file
            raise InputFileError(
                f"{path}: not a readable ROOT file ({_reason(error)}); "
                "the file is truncated or corrupt: export it again"
            ) from error
        self.default_tree = tree
        self._opened: dict[str, Any] = {}
        self._branch_cache: dict[str, dict[str, Any]] = {}

    def _tree(self, tree: str | None) -> Any:
        name = tree or self.default_tree
        if name is None:
            if not self.trees:
                found = ", ".join(
                    f"{k} ({c})" for k, c in self.file.classnames().items()
                )
                raise InputFileError(
                    f"{self.path}: no TTree in the file (found: {found or 'nothing'}); "
                    "write the events as a TTree (RNTuple is not supported)"
                )
            if len(self.trees) != 1:
                raise InputFileError(
                    f"{self.path}: {len(self.trees)} trees ({', '.join(self.trees)}); "
                    "name one with --tree or 'tree' in the column map"
                )
            name = self.trees[0]
        if name not in self._opened:
            if name not in self.trees:
                classes = self.file.classnames()
                stored = next(
                    (c for k, c in classes.items() if k.split(";")[0] == name), None
                )
                if stored is not None:
                    raise InputFileError(
                        f"{self.path}: {name} is a {stored}, not a TTree; "
                        "write the events as a TTree (RNTuple is not supported)"
                    )
                raise InputFileError(
                    f"{self.path}: tree {name} not found (trees: "
                    f"{', '.join(self.trees) or 'none'}); fix 'tree' in the column map or --tree"
                )
            self._opened[name] = self.file[name]
        return self._opened[name]

    def describe(self, tree: str | None) -> str:
        name = (
            tree
            or self.default_tree
            or (self.trees[0] if len(self.trees) == 1 else None)
        )
        return f"{self.path}: tree {name}"

    def _branches(self, tree: str | None) -> dict[str, Any]:
        """Return the branches of a tree by full path and, where unique, by their own name.

        Split objects (the ``L1Upgrade`` branch of L1Ntuples) have sub-branches
        with paths like ``L1Upgrade/jetEt``; a column map may name either form.
        """
        name = self._tree_name(tree)
        if name not in self._branch_cache:
            branches: dict[str, Any] = {}
            short: dict[str, list[Any]] = {}
            for path, branch in self._tree(tree).iteritems(recursive=True):
                branches[path] = branch
                short.setdefault(path.rsplit("/", 1)[-1], []).append(branch)
            for leaf, found in short.items():
                if leaf not in branches and len(found) == 1:
                    branches[leaf] = found[0]
            self._branch_cache[name] = branches
        return self._branch_cache[name]

    def _tree_name(self, tree: str | None) -> str:
        return self._tree(tree).object_path

    def columns(self, tree: str | None = None) -> dict[str, ColumnInfo]:
        import uproot

        result = {}
        for name, branch in self._branches(tree).items():
            interpretation = branch.interpretation
            if isinstance(interpretation, uproot.AsJagged):
                content = interpretation.content
                if isinstance(content, uproot.AsDtype):
                    result[name] = _numpy_info(content.to_dtype, jagged=True)
                    continue
            elif isinstance(interpretation, uproot.AsDtype):
                result[name] = _numpy_info(interpretation.to_dtype)
                continue
            result[name] = ColumnInfo(branch.typename, "other")
        return result

    def num_rows(self, tree: str | None = None) -> int:
        return int(self._tree(tree).num_entries)

    def iter_batches(
        self, request: dict[str | None, list[str]], batch_rows: int
    ) -> Iterator[tuple[int, Batch]]:
        import awkward as ak

        entries = {tree: self.num_rows(tree) for tree in request}
        if len(set(entries.values())) > 1:
            shown = ", ".join(f"{self.describe(t)} has {n}" for t, n in entries.items())
            raise InputFileError(
                f"{self.path}: trees have different numbers of entries ({shown}); "
                "the trees of one file must hold the same events"
            )
        total = next(iter(entries.values()), 0)
        for start in range(0, total, batch_rows):
            stop = min(start + batch_rows, total)
            batch: Batch = {}
            for tree, names in request.items():
                branches = self._branches(tree)
                for name in names:
                    try:
                        values = branches[name].array(
                            entry_start=start, entry_stop=stop, library="ak"
                        )
                    # uproot raises many exception types on damaged baskets.
                    except Exception as error:
                        raise InputFileError(
                            f"{self.describe(tree)}: branch {name}, entries {start}..{stop - 1} "
                            f"cannot be read ({_reason(error)}); the file is truncated or corrupt: "
                            "export it again"
                        ) from error
                    batch[(tree, name)] = (
                        ak.to_numpy(values) if values.ndim == 1 else values
                    )
            yield start, batch


def open_source(path: Path, fmt: str | None = None, tree: str | None = None) -> Source:
    """Open ``path`` with the reader of its format (by extension unless ``fmt`` is given).

    Args:
        path: the file.
        fmt: one of :data:`FORMATS`, or None to choose by extension.
        tree: default ROOT tree or HDF5 group; None picks the only tree, or the root group.
    """
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        return ParquetSource(path)
    if fmt == "csv":
        return CsvSource(path)
    if fmt == "hdf5":
        return Hdf5Source(path, tree)
    return RootSource(path, tree)
