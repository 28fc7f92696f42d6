"""A seeded generator of short lowercase reviews: the embedded task with known gold rewards.

A text is a review of one item from one of eight domains (restaurant, cafe, hotel, movie, book,
phone, headphones, game). It opens with a header that names the item ("review of the sushi bar :"),
then clauses about aspects of the item ("the sauce was really bland"), with negation, intensifiers,
conjunctions, neutral filler sentences, a closing verdict and, now and then, an off-topic aspect, a
doubled word, a repeated clause or an exclamation. Each text has a latent rating 1..5 that tilts
its sentiment, so the corpus holds good, bad and mixed reviews of varying length.

A *prompt* is the opening of a text: the header, sometimes a filler sentence, sometimes the start
of the first clause ("... : the crust" or "... : the crust was"). The *response* is the rest and
ends with the literal ``<eos>``. Words are separated by single spaces and punctuation is a word of
its own, so the word-level tokenizer maps every word to exactly one token.

Everything is a pure function of its seed (``numpy.random.default_rng``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

EOS = "<eos>"
EVAL_PROMPT_SEED = 30_000   # `tqjax eval`'s held-out prompts (test first, validation after); never trained on


@dataclasses.dataclass(frozen=True)
class Domain:
    """One review domain: item names (tuples of words), aspect nouns, domain adjectives, fillers."""

    name: str
    items: tuple[tuple[str, ...], ...]
    aspects: tuple[str, ...]
    good: tuple[str, ...]
    bad: tuple[str, ...]
    fillers: tuple[str, ...]


def _d(name, items, aspects, good, bad, fillers) -> Domain:
    return Domain(name, tuple(tuple(i.split()) for i in items), tuple(aspects.split()),
                  tuple(good.split()), tuple(bad.split()), tuple(fillers))


DOMAINS: tuple[Domain, ...] = (
    _d("restaurant",
       ["pizza place", "sushi bar", "taco truck", "noodle shop", "steak house", "burger joint",
        "curry house", "seafood grill", "dumpling spot"],
       "food crust sauce toppings portions waiter menu dessert kitchen service staff prices",
       "tasty fresh crispy juicy generous", "bland soggy greasy salty stale",
       ["we went there on a friday night", "i came here with my family for dinner",
        "we ordered takeout on a rainy evening", "we stopped by for a late lunch",
        "we celebrated a birthday there", "my cousin suggested it after a concert"]),
    _d("cafe",
       ["corner cafe", "espresso kiosk", "teahouse", "bagel bakery", "bean roastery",
        "donut stand"],
       "coffee latte pastries croissant tea seating wifi barista music service staff prices",
       "cozy fresh tasty quiet friendly", "noisy stale cramped bitter rude",
       ["i stopped by before work", "we met there on a sunday morning",
        "i spent the afternoon there with my laptop", "i grabbed a drink on my way home",
        "we waited in line for ten minutes", "i sat by the window during a storm"]),
    _d("hotel",
       ["beach resort", "city inn", "mountain lodge", "airport motel", "harbor hostel",
        "garden suites"],
       "room bed bathroom shower pool breakfast lobby view towels reception staff location prices",
       "spacious clean comfortable quiet helpful", "dirty cramped noisy tiny rude",
       ["we stayed for two nights", "i booked it for a work trip",
        "we spent our holiday there", "we checked in late at night",
        "we came for a wedding nearby", "my parents visited last summer"]),
    _d("movie",
       ["space western", "horror sequel", "romantic comedy", "war drama", "animated musical",
        "spy thriller", "heist film"],
       "plot acting ending soundtrack dialogue villain script pacing effects cast characters",
       "gripping moving clever funny catchy", "boring predictable dull confusing clumsy",
       ["i watched it at home with friends", "we saw it on opening weekend",
        "i streamed it on a long flight",
        "my brother dragged me to the cinema", "we rented it for a lazy evening"]),
    _d("book",
       ["mystery novel", "fantasy saga", "vegan cookbook", "travel memoir", "history textbook",
        "poetry collection", "detective paperback"],
       "chapters prose characters ending plot pacing illustrations recipes cover author",
       "gripping moving clever charming vivid", "boring predictable dull confusing dry",
       ["i read it on the train", "i finished it in one weekend",
        "i borrowed it from the library",
        "my teacher assigned it last semester", "i picked it up at a train station"]),
    _d("phone",
       ["budget smartphone", "flagship phone", "flip phone", "rugged handset", "mini smartphone"],
       "battery screen camera speaker charger case software buttons signal storage price",
       "fast sharp bright durable responsive", "slow buggy laggy flimsy dim",
       ["i bought it last month", "i have used it for a year", "i got it as a gift",
        "i switched to it after my old one broke", "i ordered it during a holiday deal"]),
    _d("headphones",
       ["wireless earbuds", "studio headphones", "gaming headset", "sport earphones",
        "noise cancelling headset"],
       "bass sound battery cushions microphone cable fit case bluetooth price",
       "crisp comfortable durable balanced punchy", "tinny muddy flimsy uncomfortable weak",
       ["i use them every day on my commute", "i bought them for the gym",
        "i got them on sale",
        "i wear them while running outdoors", "i replaced my old pair with these"]),
    _d("game",
       ["puzzle game", "racing game", "board game", "card game", "strategy game", "arcade platformer"],
       "levels graphics controls story rules multiplayer difficulty soundtrack characters price",
       "fun clever smooth addictive polished", "boring buggy clumsy confusing repetitive",
       ["i played it with my kids", "we tried it at a party", "i spent a whole weekend on it",
        "my roommate taught me how to play", "we bought it for family nights"]),
)

STRONG_POSITIVE = tuple("excellent amazing wonderful fantastic superb outstanding perfect "
                        "brilliant delightful incredible".split())
MILD_POSITIVE = tuple("good nice pleasant fine lovely decent solid".split())
STRONG_NEGATIVE = tuple("terrible awful horrible disgusting dreadful atrocious unbearable "
                        "pathetic".split())
MILD_NEGATIVE = tuple("bad poor mediocre weak disappointing".split())
NEUTRAL = tuple("average okay ordinary typical standard simple different".split())
INTENSIFIERS = tuple("very really so extremely truly quite pretty super".split())
POSITIVE_VERBS = {"loved": 1.0, "liked": 0.5, "enjoyed": 0.5}
NEGATIVE_VERBS = {"hated": -1.0, "disliked": -0.5}

HEADERS = (("review", "of", "the", "{item}", ":"), ("my", "review", "of", "the", "{item}", ":"),
           ("{domain}", "review", ":", "the", "{item}", "."),
           ("a", "quick", "review", "of", "the", "{item}", ":"),
           ("thoughts", "on", "the", "{item}", ":"))
CLOSERS = {
    1: ("i would recommend it", "i would definitely recommend it", "i will be back",
        "highly recommended", "five stars", "worth every penny", "i loved it"),
    0: ("it was okay overall", "three stars", "not bad overall", "it was fine i guess"),
    -1: ("i would not recommend it", "i can not recommend it", "never again", "one star",
         "avoid it", "what a waste of money", "i hated it"),
}
PUNCTUATION = (".", ",", "!", ":")
MAX_RESPONSE_WORDS = 40
MAX_PROMPT_WORDS = 15


def topic_words() -> dict[str, int]:
    """Map each word that names a topic (domain names, item words) to its domain index."""
    out: dict[str, int] = {}
    for d_idx, dom in enumerate(DOMAINS):
        for word in (dom.name,) + tuple(w for item in dom.items for w in item):
            if out.setdefault(word, d_idx) != d_idx:
                raise ValueError(f"topic word {word!r} is claimed by two domains")
    return out


def aspect_domains() -> dict[str, frozenset[int]]:
    """Map each aspect noun to the set of domain indices it is relevant to."""
    out: dict[str, set[int]] = {}
    for d_idx, dom in enumerate(DOMAINS):
        for a in dom.aspects:
            out.setdefault(a, set()).add(d_idx)
    return {a: frozenset(s) for a, s in out.items()}


def vocabulary() -> list[str]:
    """Every word the generator can emit (without special tokens), sorted."""
    words: set[str] = set(PUNCTUATION)
    words.update(STRONG_POSITIVE + MILD_POSITIVE + STRONG_NEGATIVE + MILD_NEGATIVE + NEUTRAL)
    words.update(INTENSIFIERS, POSITIVE_VERBS, NEGATIVE_VERBS)
    words.update("the was were and but not i".split())
    words.update(w for h in HEADERS for w in h if not w.startswith("{"))
    words.update(w for c in CLOSERS.values() for s in c for w in s.split())
    for dom in DOMAINS:
        words.update((dom.name,) + dom.aspects + dom.good + dom.bad)
        words.update(w for item in dom.items for w in item)
        words.update(w for f in dom.fillers for w in f.split())
    return sorted(words)


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A prompt and the generator state it leaves the response in.

    ``tail`` is ``()`` when the prompt ends between sentences, ``(aspect,)`` when it ends with
    "the <aspect>", and ``(aspect, verb)`` when it ends with "the <aspect> was" (or "were").
    """

    words: tuple[str, ...]
    domain: int
    tail: tuple[str, ...]
    has_filler: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclasses.dataclass(frozen=True)
class Example:
    """One text: ``prompt`` + " " + ``response`` (which ends with ``<eos>``), with its latents."""

    prompt: str
    response: str
    domain: int
    rating: int

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.response}"


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two responses to one prompt, ordered by a gold reward (``chosen`` scores higher)."""

    prompt: str
    chosen: str
    rejected: str
    chosen_reward: float
    rejected_reward: float


def _be(aspect: str) -> str:
    """ "was" or "were", by the aspect noun's number."""
    return "were" if aspect.endswith("s") and aspect != "bass" else "was"


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _sample_prompt(rng: np.random.Generator) -> Prompt:
    d_idx = int(rng.integers(len(DOMAINS)))
    dom = DOMAINS[d_idx]
    item = _pick(rng, dom.items)
    words: list[str] = []
    for w in _pick(rng, HEADERS):
        words.extend(item if w == "{item}" else (dom.name,) if w == "{domain}" else (w,))
    filler = _pick(rng, dom.fillers).split() + ["."]
    has_filler = rng.random() < 0.3 and len(words) + len(filler) + 3 <= MAX_PROMPT_WORDS
    if has_filler:
        words.extend(filler)
    cut = int(rng.integers(3))
    tail: tuple[str, ...] = ()
    if cut:
        aspect = _pick(rng, dom.aspects)
        tail = (aspect, _be(aspect))[:cut]
        words.extend(("the",) + tail)
    return Prompt(tuple(words), d_idx, tail, bool(has_filler))


def _sign(rng: np.random.Generator, rating: int) -> int:
    if rng.random() < 0.12:
        return 0
    return 1 if rng.random() < (0.08, 0.3, 0.5, 0.72, 0.92)[rating - 1] else -1


def _adjective(rng: np.random.Generator, dom: Domain, sign: int) -> str:
    if sign == 0:
        return _pick(rng, NEUTRAL)
    strong, mild, local = ((STRONG_POSITIVE, MILD_POSITIVE, dom.good) if sign > 0
                           else (STRONG_NEGATIVE, MILD_NEGATIVE, dom.bad))
    u = rng.random()
    return _pick(rng, strong if u < 0.3 else mild if u < 0.6 else local)


def _aspect(rng: np.random.Generator, d_idx: int) -> str:
    dom = DOMAINS[d_idx]
    if rng.random() < 0.08:
        other = [a for d in DOMAINS for a in d.aspects if a not in dom.aspects]
        return _pick(rng, other)
    return _pick(rng, dom.aspects)


def _predicate(rng: np.random.Generator, dom: Domain, sign: int) -> list[str]:
    """Words after "the <aspect> was" (or "were")."""
    u = rng.random()
    if sign != 0 and u < 0.15:
        return ["not", _pick(rng, MILD_NEGATIVE if sign > 0 else MILD_POSITIVE + dom.good)]
    if u < 0.35:
        return [_adjective(rng, dom, sign), "and", _adjective(rng, dom, sign)]
    adj = [_adjective(rng, dom, sign)]
    if rng.random() < 0.06:
        adj = adj * 2
    if rng.random() < 0.35:
        adj = [_pick(rng, INTENSIFIERS)] * (2 if rng.random() < 0.1 else 1) + adj
    return adj


def _clause(rng: np.random.Generator, d_idx: int, sign: int, tail: tuple[str, ...] = ()
            ) -> list[str]:
    """One clause; with a non-empty ``tail`` only the part after the prompt's tail."""
    dom = DOMAINS[d_idx]
    if tail:
        return ([_be(tail[0])] if len(tail) == 1 else []) + _predicate(rng, dom, sign)
    u = rng.random()
    aspect = _aspect(rng, d_idx)
    if sign != 0 and u < 0.15:
        verbs = POSITIVE_VERBS if sign > 0 else NEGATIVE_VERBS
        return ["i", _pick(rng, sorted(verbs)), "the", aspect]
    if u < 0.27:
        other = _aspect(rng, d_idx)
        if other != aspect:
            return ["the", aspect, "and", "the", other, "were"] + _predicate(rng, dom, sign)
    return ["the", aspect, _be(aspect)] + _predicate(rng, dom, sign)


def _sample_response(rng: np.random.Generator, prompt: Prompt, rating: int) -> str:
    """The rest of a review whose opening is ``prompt``, ending with ``<eos>``."""
    d_idx, dom = prompt.domain, DOMAINS[prompt.domain]
    loud = 0.3 if rating in (1, 5) else 0.08
    words = _clause(rng, d_idx, _sign(rng, rating), prompt.tail)
    n_clauses = int(rng.integers(1, 5))
    clauses = [list(words)]
    budget = MAX_RESPONSE_WORDS - 8
    for i in range(1, n_clauses):
        clause = (list(_pick(rng, clauses)) if rng.random() < 0.07 and prompt.tail == ()
                  else _clause(rng, d_idx, _sign(rng, rating)))
        u = rng.random()
        sep = ["!"] if u < loud else [",", "and"] if u < 0.35 else [",", "but"] if u < 0.5 else ["."]
        if len(words) + len(sep) + len(clause) > budget:
            break
        words += sep + clause
        clauses.append(clause)
        if i == 1 and not prompt.has_filler and rng.random() < 0.25:
            filler = ["."] + _pick(rng, dom.fillers).split()
            if len(words) + len(filler) <= budget:
                words += filler
    words.append("!" if rng.random() < loud else ".")
    if rng.random() < 0.6:
        verdict = 1 if rating >= 4 else -1 if rating <= 2 else 0
        words += _pick(rng, CLOSERS[verdict]).split() + ["!" if rng.random() < loud else "."]
    return " ".join(words + [EOS])


def sample_examples(n: int, seed: int) -> list[Example]:
    """``n`` reviews, each split into prompt and response; a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt = _sample_prompt(rng)
        rating = int(rng.integers(1, 6))
        out.append(Example(prompt.text, _sample_response(rng, prompt, rating), prompt.domain,
                           rating))
    return out


def sample_texts(n: int, seed: int) -> list[str]:
    """``n`` full review texts ("prompt response <eos>") for SFT; a pure function of ``seed``."""
    return [e.text for e in sample_examples(n, seed)]


def sample_prompts(n: int, seed: int) -> list[str]:
    """``n`` prompts (openings of reviews, no special tokens); a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    return [_sample_prompt(rng).text for _ in range(n)]


def make_pairs(n: int, reward_fn: Callable[[str, str], float], seed: int) -> list[Pair]:
    """``n`` preference pairs: two responses to one prompt, labelled by ``reward_fn``.

    Each pair draws one prompt and two responses with independent latent ratings and orders them
    by ``reward_fn(prompt, response)`` (for example ``target_reward``); ties are redrawn.
    """
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        prompt = _sample_prompt(rng)
        a = _sample_response(rng, prompt, int(rng.integers(1, 6)))
        b = _sample_response(rng, prompt, int(rng.integers(1, 6)))
        ra, rb = float(reward_fn(prompt.text, a)), float(reward_fn(prompt.text, b))
        if ra == rb:
            continue
        if ra < rb:
            a, b, ra, rb = b, a, rb, ra
        out.append(Pair(prompt.text, a, b, ra, rb))
    return out
