"""``kjv-genre``: classify a KJV verse by the genre of its book (8 classes, group = book).

The grouping is the conventional division of the Protestant canon used in English Bible
tables of contents: the Old Testament's five sections (Law / Pentateuch, History, Wisdom &
Poetry, Major and Minor Prophets, by book length as tradition has it, Daniel and Lamentations
with the Major Prophets) and the New Testament's narrative, letters and apocalypse. Acts is
grouped with the Gospels: it is narrative, and Luke-Acts is one two-volume work by one author,
so the label follows the text's style rather than its canonical position.

============== ===== ============================================ ======
label          books range                                        verses
============== ===== ============================================ ======
law              5   Genesis - Deuteronomy                        5,852
history         12   Joshua - Esther                              7,018
wisdom           5   Job - Song of Songs                          4,785
major_prophets   5   Isaiah - Daniel                              4,440
minor_prophets  12   Hosea - Malachi                              1,050
gospels_acts     5   Matthew - Acts                               4,786
epistles        21   Romans - Jude                                2,767
apocalyptic      1   Revelation                                     404
============== ===== ============================================ ======

Total 31,102 verses. The classes are imbalanced (largest 22.6 %, smallest 1.3 %): report
accuracy against the majority-class baseline.
"""

from __future__ import annotations

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, Record, TextDataset
from fedlpp.data.kjv_lm import read_verses, refuse_fields

GENRES = ["law", "history", "wisdom", "major_prophets", "minor_prophets",
          "gospels_acts", "epistles", "apocalyptic"]

# Last book number (1..66, canonical order) of each genre, in GENRES order.
_LAST_BOOK = [5, 17, 22, 27, 39, 44, 65, 66]


def genre_of(book: int) -> int:
    """The genre id (index into ``GENRES``) of book number ``book`` (1 = Genesis .. 66 = Revelation)."""
    for genre, last in enumerate(_LAST_BOOK):
        if book <= last:
            return genre
    raise ValueError(f"book number {book} is outside the 66-book canon")


@DATASETS.register("kjv-genre")
def load_kjv_genre(cfg: DataConfig) -> TextDataset:
    """Every KJV verse as a ``"cls"`` record labelled with its book's genre.

    Args:
        cfg: the data config. No file and no field is read: the label is always the book's
            genre, so ``data.label_field``, ``data.text_field``, ``data.group_field`` and
            ``data.path`` must keep their defaults (a FedlppError otherwise, never a silently
            ignored value); ``max_records`` is applied by the caller.

    Returns:
        31,102 records in canonical order; ``label_names`` = ``GENRES``.
    """
    refuse_fields(cfg)
    records = [Record(text=text, label=genre_of(book), group=title)
               for book, title, text in read_verses()]
    return TextDataset(name=cfg.name, task="cls", records=records, label_names=list(GENRES))
