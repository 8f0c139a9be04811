"""Text samples: read from a file (one per line) or generated, de-duplicated and varied.

Generated texts combine several sentence shapes with many independent slots (names, places,
numbers, moods, tenses), so neurons see real variety rather than near-copies of one template.
The same generator is the corpus the built-in tiny model's tokenizer is trained on.
"""
from __future__ import annotations

import random
from pathlib import Path

from innerlens.errors import ConfigError
from innerlens.inputs import read_input_text

NAMES = ["Ada", "Bo", "Chen", "Dara", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kai", "Lena", "Mateo", "Nia", "Omar", "Priya"]
PLACES = ["the harbour", "a quiet library", "the old mill", "Lisbon", "the market", "a mountain hut", "the lab", "Nairobi", "the garden", "a night train"]
OBJECTS = ["a red kite", "seven letters", "the broken clock", "a jar of honey", "two maps", "an umbrella", "the last ticket", "a violin", "some bread", "a notebook"]
VERBS = ["found", "lost", "painted", "sold", "repaired", "borrowed", "hid", "weighed", "counted", "described"]
MOODS = ["happily", "slowly", "at dawn", "without a word", "in a hurry", "twice", "for no reason", "carefully"]
ADJECTIVES = ["bright", "strange", "heavy", "tiny", "ancient", "noisy", "gentle", "cold", "curious", "green"]
TOPICS = ["weather", "prices", "music", "tides", "trains", "bees", "numbers", "storms", "recipes", "maps"]


def _sentence(rng: random.Random) -> str:
    name, other = rng.sample(NAMES, 2)
    shapes = [
        lambda: f"{name} {rng.choice(VERBS)} {rng.choice(OBJECTS)} in {rng.choice(PLACES)} {rng.choice(MOODS)}.",
        lambda: f"Why did {name} leave {rng.choice(PLACES)} with {rng.choice(OBJECTS)}?",
        lambda: f"In {rng.randint(1801, 2024)}, {rng.randint(2, 999)} people asked {other} about {rng.choice(TOPICS)}.",
        lambda: f"The {rng.choice(ADJECTIVES)} {rng.choice(TOPICS)} of {rng.choice(PLACES)} made {name} {rng.choice(['laugh', 'worry', 'think', 'sing'])}.",
        lambda: f"{rng.randint(3, 97)} + {rng.randint(3, 97)} = ? {name} wrote it down {rng.choice(MOODS)}.",
        lambda: f"\"{rng.choice(ADJECTIVES).capitalize()}!\" said {name} to {other}, holding {rng.choice(OBJECTS)}.",
        lambda: f"If {name} had {rng.choice(VERBS)} {rng.choice(OBJECTS)}, {other} would not {rng.choice(['know', 'care', 'stay', 'run'])}.",
        lambda: f"{name}, {other} and {rng.choice(NAMES)} counted {rng.choice(TOPICS)} until {rng.randint(1, 12)} o'clock.",
    ]
    return rng.choice(shapes)()


def generate_texts(count: int, seed: int) -> list[str]:
    """``count`` distinct texts of one or two sentences, reproducible by ``seed``."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    attempts = 0
    while len(texts) < count:
        attempts += 1
        if attempts > 100 * count:
            raise ConfigError(f"could not generate {count} distinct texts; use fewer samples or --texts FILE")
        text = _sentence(rng) if rng.random() < 0.6 else f"{_sentence(rng)} {_sentence(rng)}"
        texts[text] = None
    return list(texts)


def read_texts(path: str | Path, option: str = "--texts") -> list[str]:
    """Non-empty lines of ``path``, de-duplicated in order (one-line error naming ``option`` when missing or empty)."""
    texts = list(dict.fromkeys(line.strip() for line in read_input_text(path, option).splitlines() if line.strip()))
    if len(texts) < 10:
        raise ConfigError(f"{option}: {path} has {len(texts)} distinct non-empty lines; need at least 10")
    return texts
