"""Labels files for image folders: any CSV with a path column and a label column.

The delimiter is whichever of ``,``, ``;`` and tab the header line uses most (``,`` if none);
the columns are ``pool.path_column``/``pool.label_column``, else the first header matching a
known name (any case). Paths are resolved against the CSV's own folder (absolute paths and
URIs as written). A wrong file says which columns it found and which it wanted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alray.sources._common import relative_keys
from alray.storage.uri import read_bytes

__all__ = ["LABEL_COLUMNS", "PATH_COLUMNS", "LabelsFile", "read_labels_file"]

PATH_COLUMNS = ("filename", "path", "file", "image", "filepath", "image_path")
LABEL_COLUMNS = ("label", "class", "classid", "class_id", "category", "target")
_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class LabelsFile:
    """A parsed labels file: each row's key (path relative to the pool root) and label."""

    uri: str
    keys: np.ndarray  # [R] str, "" where the path lies outside the pool root
    labels: np.ndarray  # [R] str
    delimiter: str
    path_column: str
    label_column: str


def _pick(header: list[str], given: str | None, known: tuple[str, ...]) -> str | None:
    if given is not None:
        return given if given in header else None
    lower = {h.strip().lower(): h for h in header}
    return next((lower[k] for k in known if k in lower), None)


def read_labels_file(uri: str, root: str, *, path_column: str | None = None,
                     label_column: str | None = None) -> LabelsFile:
    """Read a labels CSV and key its rows by their path under the pool ``root``.

    Args:
        uri: the CSV (a path or URI).
        root: the pool root the keys are relative to.
        path_column: the paths' column (None: one of :data:`PATH_COLUMNS`).
        label_column: the labels' column (None: one of :data:`LABEL_COLUMNS`).

    Raises:
        FileNotFoundError: the file does not exist (names it and ``pool.labels_file``).
        ValueError: a column is missing (names the columns found and wanted), a path is listed
            twice, or the file has no rows.
    """
    import pyarrow.csv as pcsv

    try:
        raw = read_bytes(uri)
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(f"pool.labels_file: cannot read {uri!r} ({err})") from None
    text = raw.decode("utf-8-sig")
    first = text.split("\n", 1)[0]
    delim = max(_DELIMITERS, key=first.count) if any(d in first for d in _DELIMITERS) else ","
    header = [h.strip() for h in first.rstrip("\r").split(delim)]
    path_col = _pick(header, path_column, PATH_COLUMNS)
    label_col = _pick(header, label_column, LABEL_COLUMNS)
    if path_col is None or label_col is None:
        want_p = repr(path_column) if path_column else f"one of {list(PATH_COLUMNS)}"
        want_l = repr(label_column) if label_column else f"one of {list(LABEL_COLUMNS)}"
        raise ValueError(
            f"labels file {uri}: found columns {header} (delimiter {delim!r}); wanted a path "
            f"column (pool.path_column: {want_p}) and a label column (pool.label_column: "
            f"{want_l}); set pool.path_column / pool.label_column to the right names")
    table = pcsv.read_csv(
        io.BytesIO(text.encode()), parse_options=pcsv.ParseOptions(delimiter=delim),
        convert_options=pcsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                            include_columns=[path_col, label_col],
                                            strings_can_be_null=True))
    if table.num_rows == 0:
        raise ValueError(f"labels file {uri}: no rows under the header {header}")
    paths = pc.utf8_trim_whitespace(pc.fill_null(table[path_col], "")).to_pylist()
    labels = np.asarray(pc.fill_null(table[label_col], "").to_pylist(), dtype=object)
    base = uri.rsplit("/", 1)[0]
    full = [p if "://" in p or p.startswith("/") else f"{base}/{p}" for p in paths]  # per row
    keys = np.asarray([k or "" for k in relative_keys(full, root)], dtype=object)
    uniq, counts = np.unique(keys[keys != ""].astype(str), return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"labels file {uri}: these paths are listed more than once: "
                         f"{uniq[counts > 1][:10].tolist()} (one row per image)")
    return LabelsFile(uri=uri, keys=keys, labels=labels, delimiter=delim,
                      path_column=path_col, label_column=label_col)
