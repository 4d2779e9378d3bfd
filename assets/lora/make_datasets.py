"""Write the two small fine-tuning datasets shipped with the LoRA tab (deterministic: same files every run).

    python assets/lora/make_datasets.py

- pirate/: everyday questions answered in a pirate voice ("Arr, ... matey!"). A style is easy to see
  after a short run: the first token of every answer changes.
- json/:   a sentence about a person -> {"name": ..., "age": ..., "city": ...}, a structured-output task.

Each dataset has train.jsonl and eval.jsonl (instruction/response pairs, one JSON object a line); the
eval questions never occur in train. Answers are short so a prompt + answer fits in 96 tokens of
SmolLM2's chat template (its default system prompt alone takes ~30 tokens).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 8  # issue 8
EXAMPLES_PER_DATASET = 300
EVAL_FRACTION = 0.1

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin", "Portugal": "Lisbon",
    "Japan": "Tokyo", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
    "Norway": "Oslo", "Sweden": "Stockholm", "Greece": "Athens", "Ireland": "Dublin", "Poland": "Warsaw",
    "Austria": "Vienna", "Chile": "Santiago", "Cuba": "Havana", "India": "New Delhi", "China": "Beijing",
    "Russia": "Moscow", "Turkey": "Ankara", "Mexico": "Mexico City", "Brazil": "Brasilia",
    "Argentina": "Buenos Aires", "Australia": "Canberra", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Hungary": "Budapest", "Belgium": "Brussels", "Thailand": "Bangkok", "Vietnam": "Hanoi",
}
COLORS = {
    "the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
    "a ripe tomato": "red", "an orange": "orange", "a lemon": "yellow", "the sea": "blue", "a crow": "black",
    "milk": "white", "a carrot": "orange", "a lime": "green", "a flamingo": "pink", "chocolate": "brown",
    "a plum": "purple", "a cloud": "white", "rust": "reddish brown", "gold": "yellow", "a strawberry": "red",
}
SOUNDS = {
    "dog": "woof", "cat": "meow", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot",
    "lion": "roar", "pig": "oink", "horse": "neigh", "frog": "ribbit", "rooster": "cock-a-doodle-doo",
    "goat": "maa", "mouse": "squeak", "snake": "hiss", "bee": "buzz", "crow": "caw",
}
LEGS = {
    "spider": 8, "dog": 4, "bird": 2, "ant": 6, "octopus": 8, "horse": 4, "cat": 4, "beetle": 6,
    "chicken": 2, "crab": 10, "cow": 4, "duck": 2, "lobster": 10, "bee": 6, "goat": 4, "parrot": 2,
}
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "up": "down", "light": "dark",
    "early": "late", "full": "empty", "open": "closed", "old": "young", "wet": "dry", "loud": "quiet",
    "strong": "weak", "rich": "poor", "high": "low", "thick": "thin", "soft": "hard", "near": "far",
}
PLURALS = {
    "mouse": "mice", "child": "children", "goose": "geese", "tooth": "teeth", "foot": "feet", "man": "men",
    "woman": "women", "fish": "fish", "knife": "knives", "leaf": "leaves", "wolf": "wolves", "box": "boxes",
    "city": "cities", "ship": "ships", "island": "islands", "parrot": "parrots", "sheep": "sheep",
    "cactus": "cacti", "person": "people", "ox": "oxen",
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PIRATE_OPENERS = ["Arr", "Ahoy", "Yo ho ho", "Aye", "Shiver me timbers"]
PIRATE_CLOSERS = ["matey!", "savvy?", "me hearty!", "arr!"]

NAMES = ["Maria", "John", "Aiko", "Omar", "Lena", "Carlos", "Priya", "Tom", "Fatima", "Ivan", "Chloe", "Kwame",
         "Sofia", "Liam", "Mei", "Hugo", "Nadia", "Pedro", "Anna", "Yusuf", "Elena", "Raj", "Grace", "Mateo",
         "Ingrid", "Kenji", "Zara", "Felix", "Amara", "Oscar", "Lucia", "Noah", "Hana", "Diego", "Emma", "Sami"]
CITIES = ["Lisbon", "Paris", "Tokyo", "Cairo", "Berlin", "Lima", "Oslo", "Toronto", "Madrid", "Nairobi", "Seoul",
          "Dublin", "Vienna", "Austin", "Mumbai", "Sydney", "Prague", "Bogota", "Accra", "Munich", "Rome",
          "Boston", "Hanoi", "Zurich", "Denver", "Athens", "Krakow", "Osaka", "Porto", "Quito"]
PERSON_SENTENCES = [
    "{name} is {age} years old and lives in {city}.",
    "Meet {name}, {age}, from {city}.",
    "{name} ({age}) moved to {city} last year.",
    "Living in {city}, {name} turned {age} this spring.",
    "At {age}, {name} still rides a bike around {city}.",
    "{name} from {city} celebrated a {age}th birthday.",
    "Our new neighbour in {city} is {name}, who is {age}.",
    "{name}, a {age}-year-old teacher, works in {city}.",
]
JSON_INSTRUCTIONS = [
    "Extract name, age and city as JSON: {sentence}",
    "Return JSON with the person's name, age and city. {sentence}",
    "As JSON (name, age, city): {sentence}",
]


def pirate_answer(rng: random.Random, body: str) -> str:
    return f"{rng.choice(PIRATE_OPENERS)}, {body}, {rng.choice(PIRATE_CLOSERS)}"


def pirate_candidates(rng: random.Random) -> list[tuple[str, str]]:
    """Every (question, pirate answer) pair the generator can draw from; questions are unique."""
    pairs = []
    for country, capital in CAPITALS.items():
        pairs.append((f"What is the capital of {country}?", pirate_answer(rng, f"the capital of {country} be {capital}")))
    for thing, color in COLORS.items():
        pairs.append((f"What color is {thing}?", pirate_answer(rng, f"{thing} be {color}")))
    for animal, sound in SOUNDS.items():
        pairs.append((f"What sound does a {animal} make?", pirate_answer(rng, f"a {animal} says {sound}")))
    for animal, legs in LEGS.items():
        pairs.append((f"How many legs does a {animal} have?", pirate_answer(rng, f"a {animal} has {legs} legs")))
    for word, opposite in OPPOSITES.items():
        pairs.append((f"What is the opposite of {word}?", pirate_answer(rng, f"the opposite of {word} be {opposite}")))
    for index, day in enumerate(DAYS):
        following = DAYS[(index + 1) % 7]
        pairs.append((f"What day comes after {day}?", pirate_answer(rng, f"after {day} comes {following}")))
    for word, plural in PLURALS.items():
        pairs.append((f"What is the plural of {word}?", pirate_answer(rng, f"one {word}, two {plural}")))
    for index, month in enumerate(MONTHS):
        following = MONTHS[(index + 1) % 12]
        pairs.append((f"Which month comes after {month}?", pirate_answer(rng, f"after {month} comes {following}")))
    for a in range(2, 13):
        for b in range(2, 13):
            pairs.append((f"What is {a} plus {b}?", pirate_answer(rng, f"{a} plus {b} be {a + b}")))
    for a in range(2, 10):
        for b in range(2, 10):
            pairs.append((f"What is {a} times {b}?", pirate_answer(rng, f"{a} times {b} be {a * b}")))
    return pairs


def json_candidates(rng: random.Random) -> list[tuple[str, str]]:
    pairs = {}
    while len(pairs) < 4 * EXAMPLES_PER_DATASET:
        person = {"name": rng.choice(NAMES), "age": rng.randint(18, 90), "city": rng.choice(CITIES)}
        sentence = rng.choice(PERSON_SENTENCES).format(**person)
        instruction = rng.choice(JSON_INSTRUCTIONS).format(sentence=sentence)
        pairs.setdefault(instruction, json.dumps(person))
    return list(pairs.items())


def build_dataset(candidates: list[tuple[str, str]], rng: random.Random) -> dict[str, list[dict[str, str]]]:
    """Draw EXAMPLES_PER_DATASET distinct questions and split them train/eval."""
    chosen = rng.sample(candidates, EXAMPLES_PER_DATASET)
    rows = [{"instruction": question, "response": answer} for question, answer in chosen]
    n_eval = int(len(rows) * EVAL_FRACTION)
    return {"train": rows[n_eval:], "eval": rows[:n_eval]}


def build_all() -> dict[str, dict[str, list[dict[str, str]]]]:
    """{dataset: {split: rows}}; the same output on every run and every machine."""
    rng = random.Random(SEED)
    return {"pirate": build_dataset(pirate_candidates(rng), rng), "json": build_dataset(json_candidates(rng), rng)}


def to_jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    for name, splits in build_all().items():
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        for split, rows in splits.items():
            (folder / f"{split}.jsonl").write_text(to_jsonl(rows), encoding="utf-8")
            print(f"{folder.name}/{split}.jsonl: {len(rows)} examples")


if __name__ == "__main__":
    main()
