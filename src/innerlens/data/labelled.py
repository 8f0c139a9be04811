"""A generated labelled corpus whose label needs context: the order of two names, not which occur.

Every text names exactly one person from group A (the first half of the names) and one from
group B, in varied phrasings between name-free filler sentences. The label is 1 when the
group-A name comes first. Each text holds one name of each group, so the words present say
nothing about the label: a bag-of-words model is at chance, while attention from the final token
can find both names and compare where they are.
"""
from __future__ import annotations

import random

import pandas as pd

from innerlens.data.texts import ADJECTIVES, NAMES, OBJECTS, PLACES, TOPICS
from innerlens.errors import ConfigError
from innerlens.inputs import read_input_csv

GROUP_A, GROUP_B = NAMES[: len(NAMES) // 2], NAMES[len(NAMES) // 2 :]


def _filler(rng: random.Random) -> str:
    return rng.choice([
        f"The {rng.choice(ADJECTIVES)} {rng.choice(TOPICS)} of {rng.choice(PLACES)} were discussed.",
        f"Someone left {rng.choice(OBJECTS)} in {rng.choice(PLACES)}.",
        f"Nobody expected {rng.randint(2, 99)} {rng.choice(TOPICS)} that day.",
        f"It was {rng.choice(ADJECTIVES)} and {rng.choice(ADJECTIVES)} outside.",
    ])


def order_corpus(count: int, seed: int) -> pd.DataFrame:
    """``count`` distinct (text, label) rows; label 1 when the group-A name comes first."""
    rng = random.Random(seed)
    rows: dict[str, int] = {}
    while len(rows) < count:
        a_first = rng.random() < 0.5
        a, b = rng.choice(GROUP_A), rng.choice(GROUP_B)
        first, second = (a, b) if a_first else (b, a)
        thing, place = rng.choice(OBJECTS), rng.choice(PLACES)
        sentence = rng.choice([
            f"{first} met {second} in {place}.",
            f"After {first} left {place}, {second} arrived with {thing}.",
            f"{first} wrote to {second} about {thing}.",
            f"First came {first}, then {second}.",
            f"{first} and {second} shared {thing}.",
        ])
        parts = [_filler(rng) for _ in range(rng.randint(0, 2))]
        parts.insert(rng.randint(0, len(parts)), sentence)
        rows[" ".join(parts)] = int(a_first)
    return pd.DataFrame({"text": list(rows), "label": list(rows.values())})


def read_labelled(path: str) -> pd.DataFrame:
    """A CSV with ``text`` and ``label`` (0/1) columns; one-line errors otherwise."""
    frame = read_input_csv(path, "--data")
    if not {"text", "label"} <= set(frame.columns):
        raise ConfigError(f"--data: {path} needs columns text,label; found {','.join(map(str, frame.columns))}")
    if not frame["label"].isin([0, 1]).all():
        raise ConfigError(f"--data: labels must be 0 or 1 in {path}")
    empty = frame["text"].isna() | (frame["text"].astype(str).str.strip() == "")
    if empty.any():
        raise ConfigError(f"--data: {path} has an empty text cell on line {int(empty.to_numpy().argmax()) + 2}")
    frame = frame.assign(text=frame["text"].astype(str)).drop_duplicates("text")
    if frame["label"].nunique() < 2 or len(frame) < 20:
        raise ConfigError(f"--data: {path} needs at least 20 distinct texts with both labels")
    return frame[["text", "label"]].reset_index(drop=True)
