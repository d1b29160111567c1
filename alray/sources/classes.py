"""Class order: how a pool's raw labels become class indices (``meta.classes``, index = label).

Light (NumPy only) so listers import it cheaply; :mod:`alray.labels` re-exports it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_NUMERIC_CLASS", "class_index"]


#: Labels that are all whole numbers below this are class indices themselves ("10" is 10).
MAX_NUMERIC_CLASS = 10_000


def class_index(names: np.ndarray | list, classes: list[str] | None = None
                ) -> tuple[list[str], np.ndarray]:
    """The class list of a pool and each item's class index, in alray's documented order.

    1. ``classes`` given (``pool.classes``): that list, in that order; a label not in it is an
       error naming the unknown labels.
    2. Every label a whole number (``"10"``, ``"00010"``) and the numbers dense enough to be
       class ids (largest below ``2 * distinct + 10`` and below :data:`MAX_NUMERIC_CLASS`):
       the number *is* the index and the classes are ``"0" .. str(max)`` (a number never seen
       still has its slot, so class 10 is 10 whatever else the pool holds). Sparse numbers
       (years, say) are names.
    3. Otherwise: the distinct labels sorted by name (Python string order), index = position.

    Args:
        names: ``[N]`` raw label per item; ``""`` or ``None`` is unlabeled.
        classes: the explicit class list, or None.

    Returns:
        ``(classes, codes)``: the class names (index = label) and ``[N]`` int64 codes, -1 for
        unlabeled items.

    Raises:
        ValueError: a label is not in ``classes``, or ``classes`` repeats a name.
    """
    raw = np.asarray(names, dtype=object)
    text = np.where(raw == None, "", raw).astype(str)  # noqa: E711 - elementwise None test
    text = np.char.strip(text)
    present = text != ""
    codes = np.full(text.shape[0], -1, dtype=np.int64)
    if classes is not None:
        wanted = [str(c) for c in classes]
        names_, counts = np.unique(np.asarray(wanted, dtype=str), return_counts=True)
        dup = names_[counts > 1].tolist()
        if dup:
            raise ValueError(f"pool.classes repeats {dup}: each class once")
        order = np.asarray(wanted or [""], dtype=str)
        pos = np.argsort(order, kind="stable")
        found = np.searchsorted(order[pos], text[present]).clip(0, len(order) - 1)
        ok = order[pos][found] == text[present]
        if not ok.all():
            unknown = sorted(set(text[present][~ok].tolist()))
            raise ValueError(f"labels {unknown[:10]} are not in pool.classes {wanted} (add them, "
                             "or remove pool.classes to take the classes from the data)")
        codes[present] = pos[found]
        return wanted, codes
    uniq, inv = np.unique(text[present], return_inverse=True)
    values = _whole_numbers(uniq)
    if values is not None:
        codes[present] = values[inv]
        return [str(i) for i in range(int(values.max()) + 1)], codes
    codes[present] = inv
    return uniq.tolist(), codes


def _whole_numbers(uniq: np.ndarray) -> np.ndarray | None:
    """``uniq`` (distinct label strings) as int64 if all are whole numbers dense enough to be
    class ids, else None."""
    if uniq.size == 0 or not np.char.isdigit(uniq).all() or np.char.str_len(uniq).max() > 18:
        return None
    try:
        values = uniq.astype(np.int64)
    except ValueError:  # non-ASCII digits
        return None
    top = int(values.max())
    return values if top < MAX_NUMERIC_CLASS and top < 2 * uniq.size + 10 else None
