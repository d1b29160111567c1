"""Command-line verbs for video-scale pools: ``alray similar``.

Wire into ``alray/cli.py`` with ``add_commands(subparsers)``.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_commands"]


def _cmd_similar(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from alray.config import load_config
    from alray.pipeline.similar import ensure_ann_index, similar_frames
    from alray.storage import Store

    cfg = load_config(args.config)
    store = Store(cfg.storage.uri)
    if store.has_frames():
        ensure_ann_index(store, cfg.pool.ann_min_rows)
    try:
        hits = similar_frames(store, args.frame_id, args.k)
    except LookupError as err:
        raise ValueError(str(err)) from None
    if args.json:
        print(json.dumps({"frame_id": args.frame_id, "similar": hits}))
        return 0
    table = Table(title=f"frames similar to {args.frame_id}")
    for col in ("frame_id", "timestamp_ms", "status", "similarity"):
        table.add_column(col)
    for h in hits:
        table.add_row(h["frame_id"], str(h["timestamp_ms"]), h["status"], f"{h['similarity']:.4f}")
    Console().print(table)
    return 0


def add_commands(subparsers) -> None:
    """Add ``similar`` to the ``alray`` command line's subparsers."""
    s = subparsers.add_parser(
        "similar", help="frames most like a given one (cosine over stored embeddings)")
    s.add_argument("config")
    s.add_argument("frame_id", help="the query frame, '<source_id>:<frame_index>'")
    s.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_similar)
