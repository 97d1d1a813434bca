"""Deterministic generator of short, lowercase, review-like English sentences.

Why not IMDb: the ``sentiment`` task runs offline on one CPU core in seconds, so a tiny GPT-2 needs a
small clean corpus that VADER can score. A seeded clause grammar gives ~12-word sentences, a balanced
positive/negative mix (the base model starts near neutral, leaving room for alignment to move it) and
identical output for a seed. Sentiment words come from VADER's own lexicon so the gold reward reacts to
them; part of speech is guessed from suffixes, which is crude, so hand lists of common review words head
each frequency ranking and the lexicon tail only adds variety.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
from importlib import resources
from random import Random

_POS, _NEG, _NEU = "pos", "neg", "neu"

# Hand-written lists. "|" separates entries so that phrases ("lead actress") can be listed.
# Sentiment lists must be VADER words of the right sign; neutral lists must be absent from VADER
# (both are enforced by _pools() and the tests).
_HAND = {
    ("adj", _POS): "good|great|wonderful|excellent|brilliant|superb|fantastic|amazing|beautiful|charming|"
    "delightful|enjoyable|fun|funny|lovely|perfect|fresh|engaging|impressive|clever|strong|gorgeous|"
    "hilarious|stunning|terrific|outstanding|entertaining|inspiring|elegant|pleasant|sweet|thrilling|"
    "nice|magnificent|marvelous|smart|exciting|awesome",
    ("adj", _NEG): "bad|awful|terrible|dull|boring|horrible|poor|weak|stupid|annoying|lame|painful|ugly|"
    "disappointing|dreadful|messy|pathetic|lousy|ridiculous|unpleasant|irritating|crappy|dumb|miserable|"
    "disgusting|frustrating|sad|depressing|nasty|hopeless|useless|worthless|mindless|lazy|grim",
    ("adj", _NEU): "long|short|slow|predictable|colorful|loud|quiet|simple|familiar|dark|modern|light|busy|"
    "plain|quick|complex|ordinary|unusual|straightforward|conventional|subtle|stylish|different|minimal|"
    "quirky|understated|grounded|theatrical|leisurely|talky|formulaic|episodic|old fashioned|restrained",
    ("adv", _POS): "beautifully|brilliantly|wonderfully|perfectly|nicely|gracefully|elegantly|cleverly",
    ("adv", _NEG): "badly|awkwardly|painfully|terribly|horribly|miserably|weakly|stupidly",
    ("adv", _NEU): "slowly|quickly|steadily|quietly|evenly|simply|briskly|predictably|loudly|smoothly",
    ("noun", _POS): "delight|joy|triumph|treat|success|masterpiece|pleasure|winner",
    ("noun", _NEG): "disappointment|disaster|mess|failure|bore|waste|insult|embarrassment",
    ("noun", _NEU): "mixed bag|slow burn|change of pace|throwback|period piece|long ride",
    ("mass", _POS): "charm|warmth|heart|joy|fun|beauty|energy|passion|excitement|elegance|brilliance",
    ("mass", _NEG): "nonsense|boredom|sadness|misery|pain|gloom|stupidity|ugliness|confusion|despair",
    ("mass", _NEU): "detail|noise|color|exposition|flashbacks|twists|small moments|long scenes",
    ("part", _POS): "impressed|amazed|delighted|charmed|thrilled|amused|entertained|pleased|enchanted",
    ("part", _NEG): "bored|disappointed|annoyed|irritated|confused|frustrated|depressed|disgusted|appalled",
    ("part", _NEU): "caught off guard|kept guessing|left guessing",
}
_SUBJECTS = (
    "acting|plot|soundtrack|script|dialogue|ending|cast|cinematography|pacing|lead actress|lead actor|"
    "director|story|premise|music|score|editing|camera work|writing|trailer|finale|opening scene|twist|"
    "production design|costume design|performance|direction|screenplay|tone|atmosphere|first half|"
    "second half|climax|narrator|main character|setting|animation|voice acting|episode|sequel|lighting|"
    "sound design|final act|ensemble|theme song|subplot|backstory|set design|choreography|visual style"
).split("|")
# Count nouns among the subjects, for "a ... S"; and subjects that can be "full of" something.
_MASS_SUBJECTS = ("acting|dialogue|cinematography|pacing|music|editing|camera work|writing|production design|"
                  "costume design|direction|animation|voice acting|lighting|sound design|set design|"
                  "choreography|episode")
_COUNT_SUBJECTS = [s for s in _SUBJECTS if s not in _MASS_SUBJECTS.split("|")]
_FULL_SUBJECTS = "plot|script|story|dialogue|screenplay|ending|first half|second half|final act|episode|" \
    "sequel|soundtrack|score|writing|trailer|subplot|backstory|finale|opening scene|cast".split("|")
_THINGS = "movie|film|drama|story|show|sequel|documentary|series|western|musical|mystery|cartoon".split("|")
_LINKS = "was|was|was|was|felt|felt|seemed|looked|sounded|came across as|turned out|became|remained|proved"
_LINKS_S = _LINKS.split("|") + ["stayed", "ended up", "grew", "is"]
_LINKS_P = [{"was": "were", "is": "are"}.get(w, w) for w in _LINKS_S]
_NEG_LINKS_S = "was not|was not|is not|did not feel|did not seem|never felt|was never".split("|")
_NEG_LINKS_P = "were not|were not|are not|did not feel|did not seem|never felt|were never".split("|")
_VERBS = "moved|flowed|unfolded|worked|came together|ended|was handled|was done|was executed|held up"
_VERBS = _VERBS.split("|")
_BOOSTERS = "very|really|extremely|incredibly|so|quite|remarkably|deeply|absolutely".split("|")
_ATTR_MODS = "very|really|extremely|incredibly|remarkably|rather|fairly|somewhat|mostly|slightly".split("|")
_HEDGES = "a bit|kind of|somewhat|mostly|fairly|slightly|rather|sort of|a little".split("|")
_NOUN_PRE = ("", "", "", "", "something of ", "a bit of ")
_NOUN_ADJ = ("", "", "", "real ", "total ", "complete ", "absolute ")
_OPENERS = "overall|in the end|frankly|all in all|for me|i think|in short|basically|personally|" \
    "if you ask me|on the whole|in my view".split("|")
_JOINS = "but|but|and|and|while|although|yet|though".split("|")

# Lexicon tail: rough part of speech by suffix. Only suffixes that are reliably adjectival are used for
# adjectives (-ing/-y/-ent are too often verbs or nouns: "granting", "tragedy", "accident").
_ADJ_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "less", "ic", "ical")
# Profanity and violence are not review language; the word list removes tail words that the suffix
# rules misfile (verbs, intransitive or non-emotion participles: "i was fired by the plot").
_PROFANE = re.compile(r"^ass|fuck|fuk|shit|bitch|bastard|cunt|dick|cock|whore|slut|piss|nigg|fag|retard|"
                      r"rape|damn|porn|sex|suicid|murder|kill|nazi|molest|terror")
_MISFILED = frozenset("""
    abduction abused admired adoration affection appreciated awardable beauteousness blessed brutalised
    brutalized celebrated cheated cheered cheerly cherished condemnation congratulation dangered delectably
    depression deprive despaired devastative devilled distrusted doomed dreaded enjoyed enjoyment evilness
    excelled excruciation fabulousness failed fired funned glamorized gorgeousness harassed harassment hated
    heavenly heroical heroized honored honoured hurrahed idealised improved insulted jollily joyed
    joyousness laughed loved lovely loverly lucked magnific magnifical magnifically neatened neglected
    nurtured optimized panic perfected perfectness perversive perverted pleasured popularized praised
    privileged rejected rejoiced relaxed respected rewarded romanced ruination smiled sorrowed splendiferous
    splendorous splendrous starved survived tortured tragical traumatization treasurable treasured triumphed
    trustable trusted ugly villainess violated violative warred wonderfulness worshiped worshipped wowed
""".split())
# Zipf mass of a tail of N words after ~35 hand words is about ln((N+38)/38): with these caps the
# curated head keeps roughly 55-80% of each pool's probability.
_TAIL_CAP = {"adj": 60, "adv": 24, "noun": 6, "mass": 15, "part": 10}


@functools.lru_cache(maxsize=None)
def _lexicon() -> dict[str, float]:
    """VADER's word -> mean valence, read from the file shipped next to ``vaderSentiment``."""
    text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    rows = (line.split("\t") for line in text.splitlines())
    return {row[0].strip(): float(row[1]) for row in rows if len(row) >= 2}


def _tail_part_of_speech(word: str, lex: dict[str, float]) -> str | None:
    """Crude POS from the suffix, with cheap checks that the suffix really is one: an -ly adverb needs
    its base in the lexicon (happily/happy, terribly/terrible), and an -ed participle its -ing partner
    (amazed/amazing), which favours emotion verbs that fit "i was ... by the plot"."""
    if word.endswith("ly"):
        bases = (word[:-2], word[:-3] + "y", word[:-1] + "e", word[:-4])
        return "adv" if any(b in lex for b in bases) else None
    if word.endswith(("ness", "ity")):
        return "mass"
    if word.endswith(("ment", "tion", "sion")):
        return "noun"
    if word.endswith("ed"):
        return "part" if word[:-2] + "ing" in lex else None
    return "adj" if word.endswith(_ADJ_SUFFIXES) else None


@functools.lru_cache(maxsize=None)
def _pools() -> dict[tuple[str, str], tuple[tuple[str, ...], tuple[float, ...]]]:
    """(pos, polarity) -> (words, cumulative Zipf weights 1/(rank+3)), hand words ranked first."""
    lex = _lexicon()
    tails: dict[tuple[str, str], list[str]] = {key: [] for key in _HAND}
    for word, valence in lex.items():
        if not re.fullmatch(r"[a-z]{3,14}", word) or abs(valence) < 1.0 or word in _MISFILED:
            continue  # below: drop acronyms/slang (no vowel, or 4 consonants in a row) and profanity
        if not re.search(r"[aeiouy]", word) or re.search(r"[^aeiouy]{4}", word) or _PROFANE.search(word):
            continue
        pos = _tail_part_of_speech(word, lex)
        if pos is not None:
            tails[(pos, _POS if valence > 0 else _NEG)].append(word)
    pools = {}
    for key, spec in _HAND.items():
        head = spec.split("|")
        bad = [w for w in head if not {_POS: lex.get(w, 0) >= 1, _NEG: lex.get(w, 0) <= -1,
                                       _NEU: not set(w.split()) & lex.keys()}[key[1]]]
        if bad:  # guard against typos: a "positive" hand word must really be positive to VADER
            raise RuntimeError(f"hand words {bad} have the wrong VADER valence for {key}")
        # Strongest valence first: strong words are the evaluative ones ("horrendous", "splendid").
        tail = sorted(set(tails[key]) - set(head), key=lambda w: (-abs(lex[w]), w))[:_TAIL_CAP[key[0]]]
        words = tuple(head + tail) if key[1] != _NEU else tuple(head)
        pools[key] = (words, tuple(itertools.accumulate(1.0 / (rank + 3) for rank in range(len(words)))))
    return pools


def _article(phrase: str) -> str:
    """'a'/'an' by the first letter; good enough for this vocabulary."""
    vowel = phrase[0] in "aeio" or (phrase[0] == "u" and not phrase.startswith(("uni", "use", "usu")))
    return ("an " if vowel else "a ") + phrase


class _Gen:
    """One sentence at a time from a private ``Random``; every draw goes through ``self.rng``."""

    def __init__(self, seed: int):
        self.rng = Random(seed)
        self.pools = _pools()

    def polarity(self) -> str:
        """Each sentiment slot: 40% positive, 40% negative, 20% neutral."""
        r = self.rng.random()
        return _POS if r < 0.4 else _NEG if r < 0.8 else _NEU

    def word(self, pos: str, polarity: str | None = None) -> str:
        words, cum = self.pools[(pos, polarity or self.polarity())]
        return self.rng.choices(words, cum_weights=cum)[0]

    def attr(self) -> str:
        """An attributive adjective with an optional modifier that fits after 'a' ("a rather dull")."""
        mod = self.rng.choice(_ATTR_MODS) + " " if self.rng.random() < 0.3 else ""
        return _article(mod + self.word("adj"))

    def mod(self) -> str:
        """Predicative modifier: none 50%, a VADER booster 30%, a hedge 20%."""
        r = self.rng.random()
        return "" if r < 0.5 else self.rng.choice(_BOOSTERS if r < 0.8 else _HEDGES) + " "

    def link(self, plural: bool = False) -> str:
        """Linking verb, negated 12% of the time ("was not", "did not feel")."""
        if self.rng.random() < 0.12:
            return self.rng.choice(_NEG_LINKS_P if plural else _NEG_LINKS_S)
        return self.rng.choice(_LINKS_P if plural else _LINKS_S)

    def clause(self) -> str:
        rng = self.rng
        t, subj = rng.randrange(10), rng.choice(_SUBJECTS)
        if t <= 1:
            return f"the {subj} {self.link()} {self.mod()}{self.word('adj')}"
        if t == 2:
            # Paired adjectives agree in mood or the second is neutral ("dull and predictable"), as
            # "bad and thrilling" reads like noise rather than a review.
            pol = self.polarity()
            second = self.word("adj", pol if rng.random() < 0.6 else _NEU)
            return f"the {subj} {self.link()} {self.word('adj', pol)} and {second}"
        if t == 3:
            return f"the {subj} {rng.choice(_VERBS)} {self.word('adv')}"
        if t == 4:
            return f"i was {'not ' if rng.random() < 0.12 else ''}{self.word('part')} by the {subj}"
        if t == 5:
            noun = _article(rng.choice(_NOUN_ADJ) + self.word("noun"))
            return f"the {subj} was {rng.choice(_NOUN_PRE)}{noun}"
        if t == 6:
            thing = rng.choice(_THINGS)
            return f"it was {self.attr()} {thing} with {self.attr()} {rng.choice(_COUNT_SUBJECTS)}"
        if t == 7:
            neg = "did not find" if rng.random() < 0.12 else "found"
            return f"i {neg} the {subj} {self.mod()}{self.word('adj')}"
        if t == 8:
            first, second = rng.sample(_SUBJECTS, 2)
            return f"the {first} and the {second} {self.link(plural=True)} {self.mod()}{self.word('adj')}"
        return f"the {rng.choice(_FULL_SUBJECTS)} was full of {self.word('mass')}"

    def sentence(self) -> str:
        rng = self.rng
        n = rng.choices((1, 2, 3), weights=(4, 5, 1))[0]
        clauses = [self.clause() for _ in range(n)]
        if rng.random() < 0.05:
            clauses[0] = f"what {self.attr()} {rng.choice(_THINGS)}"
        text = clauses[0] + "".join(f" {rng.choice(_JOINS)} {clause}" for clause in clauses[1:])
        if rng.random() < 0.2:
            text = f"{rng.choice(_OPENERS)} {text}"
        return text


def generate_corpus(n: int, seed: int) -> list[str]:
    """``n`` lowercase review-like sentences; identical for identical ``(n, seed)`` (private RNG)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    gen = _Gen(seed)
    return [gen.sentence() for _ in range(n)]


def _words(text: str) -> list[str]:
    """Whitespace tokens, lowercased, with surrounding punctuation stripped (empty ones dropped)."""
    return [w for w in (tok.strip(string.punctuation) for tok in text.lower().split()) if w]


def corpus_vocabulary(sentences) -> frozenset[str]:
    """The words the corpus uses; the gold reward treats anything else as a non-word."""
    vocab: set[str] = set()
    for sentence in sentences:
        vocab.update(_words(sentence))
    return frozenset(vocab)


def split_corpus(sentences, *, seed: int, sizes: dict[str, int]) -> dict[str, list[str]]:
    """Shuffle with ``Random(seed)`` and cut disjoint parts: ``sizes`` in the order given, then the
    remainder as ``"train"`` (so held-out parts do not change when the corpus grows)."""
    sentences = list(sentences)
    if "train" in sizes:
        raise ValueError("'train' is the remainder and cannot be given in sizes")
    if any(int(v) != v or v < 0 for v in sizes.values()):
        raise ValueError(f"sizes must be non-negative integers, got {sizes}")
    need = sum(sizes.values())
    if need > len(sentences):
        raise ValueError(f"sizes ask for {need} sentences ({sizes}) but the corpus has only {len(sentences)}")
    order = list(range(len(sentences)))
    Random(seed).shuffle(order)
    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name] = [sentences[i] for i in order[start:start + size]]
        start += size
    parts["train"] = [sentences[i] for i in order[start:]]
    return parts


def make_prompts(sentences, *, seed: int, min_words: int = 2, max_words: int = 4) -> list[str]:
    """The first k words of each sentence, k uniform in [min_words, max_words] but always shorter than
    the sentence, so the model has something left to complete."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = Random(seed)
    prompts = []
    for sentence in sentences:
        words = sentence.split()
        if len(words) < 2:
            raise ValueError(f"cannot make a strict prefix of a sentence with < 2 words: {sentence!r}")
        k = min(rng.randint(min_words, max_words), len(words) - 1)
        prompts.append(" ".join(words[:k]))
    return prompts
