"""Video pools: mp4/mkv/avi/mov files under a folder or prefix (local or ``s3://``).

Each video is one Ray Data work item, decoded with PyAV in a CPU task that *yields* batches of
``batch_frames`` frames, so a long video never sits in memory. Sampling (``pool.sampling``):
``every_n`` keeps every n-th decoded frame, ``fps`` keeps the first frame of each
``1 / pool.fps`` interval, ``keyframes`` decodes key frames only. Frames are resized to
``input_size`` by FFmpeg's scaler while decoding.

Frame ids are ``<key>:<frame_index>`` where ``key`` is the video's path relative to the pool
root (``drive-7/front.mp4:120``; also its ``source_id``) and ``frame_index`` its position in
the decoded stream, so ids do not depend on the sampling or on where the pool is mounted, and
re-ingesting a video adds nothing. A video that cannot be opened yields one
``failed`` record (index -1) carrying the decoder's error; a decode error or truncation
mid-stream keeps the frames before it and adds one ``failed`` record at the first lost index.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from alray.sources._common import (
    VIDEO_SUFFIXES,
    check_unique,
    pack,
    pool_root,
    relative_keys,
    unpack,
    with_retry,
)
from alray.sources.base import PoolListing, make_batch
from alray.storage.uri import list_files, open_input

__all__ = ["SAMPLING_MODES", "decode_video", "list_videos", "read_video", "video_task"]

SAMPLING_MODES = ("every_n", "fps", "keyframes")
_BLOCK = 8 << 20  # bytes per storage read


def video_task(uri: str, source_id: str, *, key: str | None = None, pool=None, label: int = -1,
               limit: int | None = None) -> dict:
    """One work item for :func:`read_video` (``pool`` is a ``PoolConfig`` or None; ``key``:
    the frame ids' prefix, the video's path under the pool root; None: ``source_id``)."""
    return {
        "kind": "video", "uri": uri, "source_id": source_id, "key": key or source_id,
        "label": int(label),
        "sampling": getattr(pool, "sampling", "every_n"),
        "every_n": int(getattr(pool, "every_n", 1)),
        "fps": float(getattr(pool, "fps", 0.0) or 0.0),
        "batch_frames": int(getattr(pool, "batch_frames", 512)),
        "max_frames": int(limit or 0),
    }


def list_videos(uri: str, *, limit: int | None = None, pool=None) -> PoolListing:
    """Find the videos under ``uri`` (a folder/prefix, or one video file).

    Args:
        uri: Pool location (path, ``file://`` or ``s3://``).
        limit: At most this many frames per video (None: all).
        pool: The ``PoolConfig`` (sampling settings); None: every frame.

    Raises:
        FileNotFoundError: no video files under ``uri``.
        ValueError: ``pool.root`` does not hold the videos.
    """
    if uri.lower().endswith(VIDEO_SUFFIXES):
        files, default_root = [uri], uri.rsplit("/", 1)[0]
    else:
        files = [f for f in list_files(uri) if f.lower().endswith(VIDEO_SUFFIXES)]
        default_root = uri
    if not files:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under pool.uri={uri!r}")
    root = pool_root(getattr(pool, "root", None) or default_root)
    keys = relative_keys(files, root)
    if None in keys:
        raise ValueError(f"pool.root={root!r} does not hold the videos (e.g. "
                         f"{files[keys.index(None)]!r}): set pool.root to a folder above them")
    check_unique(keys, what=f"video pool {uri}")
    tasks = [pack(video_task(f, k, pool=pool, limit=limit)) for f, k in zip(files, keys, strict=True)]
    return PoolListing(tasks=tasks, classes=[], root=root)


def read_video(task: dict, *, input_size: int, channels: int) -> Iterator[dict[str, np.ndarray]]:
    """Decode one video work item into record batches (a Ray Data work item)."""
    yield from decode_video(unpack(task), input_size=input_size, channels=channels)


class _Reader:
    """A file object over a URI that reads in large blocks (one ranged GET per block on S3,
    not one per demuxer read) and tags read errors as I/O errors, not decoder errors."""

    def __init__(self, uri: str, block: int | None = None):
        self.uri, self.block = uri, block or _BLOCK
        self.f = with_retry(lambda: open_input(uri), what=f"open {uri}")
        self.size = self.f.size()
        self.pos, self.start, self.buf = 0, 0, b""

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        if n <= 0:
            return b""
        if not self.start <= self.pos < self.start + len(self.buf):
            self.start = self.pos - self.pos % self.block
            try:
                self.f.seek(self.start)
                self.buf = self.f.read(max(self.block, n))
            except OSError as err:
                raise _SourceIOError(f"{self.uri}: {err}") from err
        off = self.pos - self.start
        out = self.buf[off: off + n]
        self.pos += len(out)
        return out

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.f.close()


class _SourceIOError(ConnectionError):
    """Reading the object failed (network/storage), as opposed to bad video data."""


def _frames(task: dict, size: int, fmt: str, start: int,
            info: dict | None = None) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(frame_index, timestamp_ms, pixels)`` for sampled frames with index >= start;
    ``info`` gets the stream's source ``shape`` (height, width, channels)."""
    import av
    from av.video.reformatter import Interpolation, VideoReformatter

    scaler = VideoReformatter()  # keeps its FFmpeg scaler context across frames
    reader = _Reader(task["uri"])
    try:
        with av.open(reader, mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if info is not None:
                cc = stream.codec_context
                gray = (getattr(cc, "pix_fmt", "") or "").startswith("gray")
                info["shape"] = (cc.height, cc.width, 1 if gray else 3)
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            tb = float(stream.time_base or 0)
            t0 = stream.start_time or 0
            mode, every = task["sampling"], max(1, int(task["every_n"]))
            step_ms = 1000.0 / task["fps"] if mode == "fps" and task["fps"] > 0 else 0.0
            if mode == "keyframes":
                stream.codec_context.skip_frame = "NONKEY"
            last_bucket, count, i = -1, 0, -1
            for i, frame in enumerate(container.decode(stream)):
                ts = (frame.pts - t0) * tb * 1000.0 if frame.pts is not None and tb else i * 1000.0 / rate
                idx = int(round(ts * rate / 1000.0)) if mode == "keyframes" else i
                if mode == "every_n" and i % every:
                    continue
                if step_ms:
                    bucket = int(ts // step_ms)
                    if bucket == last_bucket:
                        continue
                    last_bucket = bucket
                if idx < start:
                    continue
                pix = scaler.reformat(frame, width=size, height=size, format=fmt,
                                      interpolation=Interpolation.AREA).to_ndarray()
                yield idx, int(round(ts)), pix.tobytes()
                count += 1
                if task["max_frames"] and count >= task["max_frames"]:
                    return
            expected = stream.frames
            if expected and mode != "keyframes" and i + 1 < expected:
                yield i + 1, -1, f"truncated video {task['uri']}: decoded {i + 1} of {expected} frames".encode()
    finally:
        reader.close()


def decode_video(task: dict, *, input_size: int, channels: int,
                 io_attempts: int = 4) -> Iterator[dict[str, np.ndarray]]:
    """Decode a video work item into record batches of at most ``task['batch_frames']`` rows.

    Transient storage errors restart the decode from the first frame not yet yielded (with
    backoff); a decoder error ends the video with one ``failed`` record naming the error.

    Args:
        task: A :func:`video_task` dict.
        input_size: Output side in pixels (square).
        channels: 1 (gray) or 3 (RGB).
        io_attempts: Attempts per video on storage errors.

    Yields:
        Record batches (see :mod:`alray.sources.base`).
    """
    import av

    fmt = "gray" if channels == 1 else "rgb24"
    shape = (input_size, input_size, channels)
    sid, uri, label = str(task["source_id"]), str(task["uri"]), int(task["label"])
    key = str(task.get("key") or sid)
    rows: dict[str, list] = {"idx": [], "ts": [], "img": [], "err": []}
    info: dict = {}

    def flush() -> dict[str, np.ndarray]:
        n = len(rows["idx"])
        ok = np.asarray(rows["err"], dtype=object) == ""
        src = np.zeros((n, 3), np.int32)
        src[ok] = info.get("shape", (0, 0, 0))
        out = make_batch(
            frame_id=[f"{key}:{i}" for i in rows["idx"]], source_uri=[uri] * n,
            source_id=[sid] * n, frame_index=np.asarray(rows["idx"]),
            timestamp_ms=np.maximum(np.asarray(rows["ts"], dtype=np.int64), 0),
            images=rows["img"], shape=shape, gt_label=np.full(n, label), error=rows["err"],
            src_shape=src)
        for v in rows.values():
            v.clear()
        return out

    def fail(idx: int, msg: str) -> None:
        rows["idx"].append(idx)
        rows["ts"].append(0)
        rows["img"].append(b"")
        rows["err"].append(msg)

    start, attempt = 0, 0
    while True:
        try:
            for idx, ts, pix in _frames(task, input_size, fmt, start, info):
                if ts < 0:  # truncation marker
                    fail(idx, pix.decode())
                    break
                rows["idx"].append(idx)
                rows["ts"].append(ts)
                rows["img"].append(pix)
                rows["err"].append("")
                start = idx + 1
                if len(rows["idx"]) >= task["batch_frames"]:
                    yield flush()
            break
        except _SourceIOError as err:
            attempt += 1
            if attempt >= io_attempts:
                fail(start if start else -1, f"cannot read {uri}: {err}")
                break
            import time

            time.sleep(0.25 * 2 ** (attempt - 1))
        except (av.FFmpegError, OSError, ValueError, IndexError) as err:
            fail(start if start else -1, f"cannot decode {uri}: {type(err).__name__}: {err}")
            break
    if rows["idx"]:
        yield flush()
