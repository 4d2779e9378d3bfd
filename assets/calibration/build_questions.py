"""Build the calibration tab's multiple-choice question set: `python assets/calibration/build_questions.py`.

Deterministic (fixed seeds, no network): running it again rewrites questions.json byte for byte.
Every fact comes from a list written below (capitals, chemical symbols, word meanings) or is computed
(arithmetic), so each answer can be checked by reading this file.

Layout: 4 categories x 128 questions = 512. Within each category the correct letter cycles
A, B, C, D (so letters are balanced, 32 each), and consecutive groups of four alternate between the
"calibration" and "test" splits (so each split gets 16 of each letter per category).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

OUTPUT = Path(__file__).with_name("questions.json")
LETTERS = "ABCD"
PER_CATEGORY = 128

# 64 countries whose capital is not disputed and has not recently moved.
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "the United Kingdom": "London", "Ireland": "Dublin", "the Netherlands": "Amsterdam",
    "Belgium": "Brussels", "Switzerland": "Bern", "Austria": "Vienna", "Poland": "Warsaw",
    "the Czech Republic": "Prague", "Hungary": "Budapest", "Greece": "Athens", "Sweden": "Stockholm",
    "Norway": "Oslo", "Denmark": "Copenhagen", "Finland": "Helsinki", "Iceland": "Reykjavik",
    "Russia": "Moscow", "Ukraine": "Kyiv", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Serbia": "Belgrade", "Croatia": "Zagreb", "Turkey": "Ankara", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Nigeria": "Abuja", "Ethiopia": "Addis Ababa", "Morocco": "Rabat", "Ghana": "Accra", "Japan": "Tokyo",
    "China": "Beijing", "South Korea": "Seoul", "India": "New Delhi", "Pakistan": "Islamabad",
    "Bangladesh": "Dhaka", "Thailand": "Bangkok", "Vietnam": "Hanoi", "the Philippines": "Manila",
    "Iran": "Tehran", "Iraq": "Baghdad", "Saudi Arabia": "Riyadh", "Afghanistan": "Kabul",
    "Nepal": "Kathmandu", "Mongolia": "Ulaanbaatar", "Australia": "Canberra", "New Zealand": "Wellington",
    "Canada": "Ottawa", "the United States": "Washington, D.C.", "Mexico": "Mexico City", "Cuba": "Havana",
    "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Chile": "Santiago", "Peru": "Lima",
    "Colombia": "Bogota", "Venezuela": "Caracas", "Ecuador": "Quito", "Uruguay": "Montevideo",
    "Syria": "Damascus", "Jordan": "Amman",
}

# 64 elements and their symbols (IUPAC).
SYMBOLS = {
    "hydrogen": "H", "helium": "He", "lithium": "Li", "beryllium": "Be", "boron": "B", "carbon": "C",
    "nitrogen": "N", "oxygen": "O", "fluorine": "F", "neon": "Ne", "sodium": "Na", "magnesium": "Mg",
    "aluminium": "Al", "silicon": "Si", "phosphorus": "P", "sulfur": "S", "chlorine": "Cl", "argon": "Ar",
    "potassium": "K", "calcium": "Ca", "scandium": "Sc", "titanium": "Ti", "vanadium": "V", "chromium": "Cr",
    "manganese": "Mn", "iron": "Fe", "cobalt": "Co", "nickel": "Ni", "copper": "Cu", "zinc": "Zn",
    "gallium": "Ga", "germanium": "Ge", "arsenic": "As", "selenium": "Se", "bromine": "Br", "krypton": "Kr",
    "rubidium": "Rb", "strontium": "Sr", "zirconium": "Zr", "molybdenum": "Mo", "silver": "Ag",
    "cadmium": "Cd", "tin": "Sn", "antimony": "Sb", "iodine": "I", "xenon": "Xe", "caesium": "Cs",
    "barium": "Ba", "tungsten": "W", "platinum": "Pt", "gold": "Au", "mercury": "Hg", "lead": "Pb",
    "bismuth": "Bi", "radon": "Rn", "radium": "Ra", "uranium": "U", "plutonium": "Pu", "thorium": "Th",
    "palladium": "Pd", "cerium": "Ce", "neodymium": "Nd", "osmium": "Os", "iridium": "Ir",
}

# 64 words with short meanings chosen so that no meaning also fits another word in the list.
MEANINGS = {
    "enormous": "very large", "tiny": "very small", "ancient": "very old", "rapid": "very fast",
    "silent": "making no sound", "fragile": "easily broken", "generous": "willing to give freely",
    "hostile": "unfriendly and aggressive", "humid": "damp and warm (of air)", "arid": "very dry, with little rain",
    "brave": "ready to face danger", "timid": "shy and easily frightened", "honest": "telling the truth",
    "lazy": "unwilling to work", "famous": "known by many people", "hungry": "wanting food",
    "thirsty": "wanting a drink", "furious": "extremely angry", "cheerful": "happy and bright",
    "sticky": "tending to stick to things", "transparent": "easy to see through", "invisible": "impossible to see",
    "edible": "safe to eat", "fertile": "able to produce crops or young", "metallic": "made of or like metal",
    "rigid": "stiff, not able to bend", "fluent": "able to speak a language easily",
    "punctual": "arriving on time", "obsolete": "no longer in use", "fictional": "invented, not real",
    "nocturnal": "active at night", "aquatic": "living in water", "rural": "of the countryside",
    "urban": "of a city or town", "annual": "happening once a year", "fragrant": "having a pleasant smell",
    "bitter": "having a sharp, unpleasant taste", "shallow": "not deep", "narrow": "not wide",
    "dim": "not bright", "vivid": "bright and intense", "frugal": "careful not to waste money",
    "curious": "eager to learn or know", "spicy": "strongly flavoured with spice", "polite": "having good manners",
    "clumsy": "likely to drop or knock things", "loyal": "faithful to a person or cause",
    "wooden": "made of wood", "rusty": "covered with rust", "frozen": "turned into ice",
    "optional": "not required", "identical": "exactly alike", "hollow": "empty inside",
    "portable": "easy to carry", "toxic": "poisonous", "solar": "of the sun", "lunar": "of the moon",
    "marine": "of the sea", "dental": "of the teeth", "verbal": "using words", "mobile": "able to move",
    "temporary": "lasting a short time", "permanent": "lasting forever or a very long time",
    "audible": "loud enough to be heard",
}


def _distinct_distractors(answer: str, pool: list[str], rng: random.Random) -> list[str]:
    """Three wrong options drawn from pool, none equal to the answer."""
    return rng.sample([item for item in pool if item != answer], 3)


def _arranged(answer: str, distractors: list[str], letter_index: int) -> list[str]:
    """The four options with the answer at letter_index and the distractors in the other slots."""
    options = list(distractors)
    options.insert(letter_index, answer)
    return options


QuestionMaker = Callable[[int, random.Random], tuple[str, str, list[str]]]


def two_way(table: dict[str, str], ask_value: str, ask_key: str) -> QuestionMaker:
    """Questions both ways over a one-to-one table: even indices ask for an entry's value
    (`ask_value` with {key}), odd ones for the key of a value (`ask_key` with {value})."""
    keys, values = list(table), list(table.values())

    def make(index: int, rng: random.Random) -> tuple[str, str, list[str]]:
        key = keys[index // 2]
        if index % 2 == 0:
            return ask_value.format(key=key), table[key], _distinct_distractors(table[key], values, rng)
        return ask_key.format(value=table[key]), key, _distinct_distractors(key, keys, rng)

    return make


def arithmetic(index: int, rng: random.Random) -> tuple[str, str, list[str]]:
    """Addition, subtraction, multiplication and integer division in turn; the answer is computed."""
    kind = index % 4
    if kind == 0:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        question, value = f"What is {a} + {b}?", a + b
    elif kind == 1:
        a, b = rng.randint(30, 99), rng.randint(10, 29)
        question, value = f"What is {a} - {b}?", a - b
    elif kind == 2:
        a, b = rng.randint(3, 19), rng.randint(3, 12)
        question, value = f"What is {a} x {b}?", a * b
    else:
        b, value = rng.randint(2, 12), rng.randint(3, 15)
        question = f"What is {b * value} / {b}?"
    # Near misses (off by one, by ten, by a digit swap) make plausible wrong answers.
    candidates = {value + 1, value - 1, value + 10, value - 10, value + 2, int(str(value)[::-1])} - {value}
    distractors = rng.sample(sorted(c for c in candidates if c > 0), 3)
    return question, str(value), [str(d) for d in distractors]


CATEGORIES: dict[str, QuestionMaker] = {
    "geography": two_way(CAPITALS, "What is the capital of {key}?", "{value} is the capital of which country?"),
    "chemistry": two_way(SYMBOLS, "What is the chemical symbol for {key}?",
                         "Which element has the chemical symbol {value}?"),
    "arithmetic": arithmetic,
    "vocabulary": two_way(MEANINGS, "What does the word '{key}' mean?", "Which word means '{value}'?"),
}


def build_questions() -> list[dict[str, object]]:
    questions = []
    for category_index, (category, make) in enumerate(CATEGORIES.items()):
        rng = random.Random(1000 + category_index)
        for index in range(PER_CATEGORY):
            question, answer, distractors = make(index, rng)
            letter_index = index % 4
            questions.append({
                "id": f"{category[:4]}-{index:03d}",
                "category": category,
                "split": "calibration" if (index // 4) % 2 == 0 else "test",
                "question": question,
                "options": _arranged(answer, distractors, letter_index),
                "answer": LETTERS[letter_index],
            })
    return questions


def render() -> str:
    """The file's exact text (the unit tests compare it with what is committed)."""
    payload = {"description": "Multiple-choice questions for the calibration tab; built by build_questions.py.",
               "questions": build_questions()}
    return json.dumps(payload, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(build_questions())} questions)")
