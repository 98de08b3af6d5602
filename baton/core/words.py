"""The pairing word list: 256 words, one per byte of randomness.

Invariants (tests/unit/test_pairing.py checks them):
- exactly 256 distinct words, so a uniform byte picks a uniform word;
- each word is 3-6 lowercase ascii letters, short and easy to say and to spell;
- no word is a prefix of another, so a code can be read back word by word;
- no homophones (pair/pear, sail/sale, ...), no near-twins (ember/amber, lemon/lemur)
  and no words with common spelling variants (yogurt, donut, gray), so a code read
  aloud is written down the same way.

The order is part of the code format (byte b picks WORDS[b]): only ever replace the
list as a whole together with a new code format, never edit it in place.
"""

from __future__ import annotations

# fmt: off
WORDS: tuple[str, ...] = (
    "acorn", "amber", "anchor", "anvil", "apple", "apron", "arrow", "atlas", "attic", "autumn",
    "bacon", "badger", "bagel", "bamboo", "banana", "banjo", "barley", "basket", "beach",
    "beaver", "bench", "bison", "book", "boot", "bottle", "brick", "bridge", "bubble", "bucket",
    "button", "cabin", "cactus", "cake", "camel", "canal", "candle", "canoe", "canyon",
    "carrot", "castle", "chair", "chalk", "cheese", "cherry", "clock", "cloud", "cobra", "coin",
    "comet", "cookie", "copper", "coral", "cotton", "crane", "crown", "daisy", "dancer",
    "delta", "denim", "desk", "dinner", "donkey", "dragon", "drum", "duck", "dune", "eagle",
    "easel", "echo", "elbow", "engine", "falcon", "fence", "fern", "ferret", "fiddle", "flag",
    "flute", "forest", "fork", "fossil", "fridge", "frog", "frost", "fudge", "galaxy", "garden",
    "garlic", "ginger", "glove", "goat", "gold", "goose", "grape", "gravy", "guitar", "hammer",
    "harp", "hawk", "hazel", "helmet", "heron", "hill", "hippo", "honey", "hotel", "igloo",
    "island", "ivory", "jacket", "jade", "jaguar", "jelly", "jigsaw", "judo", "jungle", "kayak",
    "kettle", "kite", "kiwi", "koala", "ladder", "lagoon", "lake", "lamp", "lava", "leaf",
    "lemon", "lilac", "lime", "lizard", "locket", "lotus", "magnet", "magpie", "mango", "maple",
    "marble", "mask", "meadow", "melon", "milk", "mint", "mitten", "monkey", "moon", "moss",
    "muffin", "nail", "nectar", "needle", "nest", "noodle", "nutmeg", "oasis", "ocean", "olive",
    "onion", "orange", "orbit", "orchid", "otter", "oven", "owl", "oyster", "paddle", "palm",
    "panda", "parrot", "pasta", "peach", "pebble", "pecan", "pencil", "pepper", "piano",
    "pickle", "pillow", "pine", "pirate", "pizza", "planet", "pocket", "pond", "poppy",
    "potato", "puffin", "puzzle", "quilt", "rabbit", "radio", "radish", "raven", "ribbon",
    "rice", "rocket", "rope", "ruby", "saddle", "salmon", "salt", "sandal", "ship", "shovel",
    "silk", "silver", "sketch", "sloth", "snail", "snow", "soap", "sock", "sofa", "spider",
    "sponge", "spoon", "squid", "stamp", "star", "summit", "sunset", "swan", "tablet", "tango",
    "teapot", "tennis", "tent", "ticket", "tiger", "tile", "toast", "tomato", "topaz", "towel",
    "truck", "tulip", "tunnel", "turtle", "tuxedo", "vase", "velvet", "violin", "viper",
    "waffle", "wagon", "walnut", "walrus", "willow", "window", "wizard", "wolf", "worm", "yarn",
    "zebra", "zinc", "zipper",
)
# fmt: on
