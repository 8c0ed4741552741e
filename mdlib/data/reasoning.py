"""Statements about scenes whose truth the scenes decide: visual entailment and NLVR-style.

Visual entailment (SNLI-VE-shaped): a premise image and a hypothesis, labelled
entailment / neutral / contradiction. Hypotheses come in three families, each with two
possible labels, so that the label always depends on the image:

* visual (`presence`, `count`, `relation`, optionally negated with "no" / "not"):
  entailment if what it says is true of the scene, contradiction if false;
* unseen, positive ("there is a red circle made of wood"): the picture cannot show the
  material, so neutral if a red circle is there, contradiction if none is;
* unseen, negated ("there is no red circle made of wood"): neutral if a red circle is
  there, entailment if none is.

Each image gets the same number of hypotheses per family and per label, so classes are
balanced and every template is 50/50 between its two labels: a model reading the
hypothesis alone can reach 50% at best (chance 33%), like SNLI-VE's hypothesis-only bias.

NLVR-style (NLVR2-shaped): a pair of images (left, right) and a statement, true or false
("both images contain a red shape", "the left image has more circles than the right
image"). Half of each pair's statements are true.

The rule that keeps text alone uninformative: a template is used on a scene (or pair)
only if the scene allows it to be true *and* false; the label is drawn first (balanced)
and the arguments then among those that give it. Objects are drawn uniformly, so the
arguments' words are distributed alike under both labels. False mentions are near misses
(a present object with one attribute changed, an object of the other image) or, with
probability 1 - `Grammar.near_miss`, absent objects drawn uniformly.

Something to forget. Like an SNLI-VE hypothesis or an NLVR2 statement, each text is written for
its own image (or pair): it names the photographer ("in the photo by ada lund there is a red
circle"), a first name drawn with the scene and a surname drawn per image, so the same words
rarely recur on another image. One more statement per image (or pair) asks who took the photo
("this photo was taken by ada lund"): true for the image's own photographer, false for another
name drawn alike. No rule can read that from the pixels; a model gets it right on a training image
only by memorising the image with its photographer, and on a new image it can only guess (50%).
That memorised, instance-specific knowledge is what unlearning must remove and what Retrain,
which never saw the image, does not have.

A `Grammar` says which mentions and templates are used. `SIMPLE` (the default: colour and
shape, counts) is what the default model learns from scratch in minutes on two CPU cores;
`FULL` adds sizes, places and spatial relations (learnt far more slowly).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .scenes import COLOURS, QUADRANTS, SHAPES, SIZES, Scene, SceneObject

ENTAILMENT_LABELS = ("entailment", "neutral", "contradiction")
ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
NLVR_LABELS = ("false", "true")
# Template keys (a template and whether it is negated): what a hypothesis-only model can see.
ENTAILMENT_TEMPLATES = ("presence", "presence-not", "count", "count-not", "relation", "relation-not",
                        "unseen", "unseen-not", "photographer")
NLVR_TEMPLATES = ("side", "both", "one", "neither", "more", "photographer")
# Surnames of the (fictional) photographers: with the scene's first name, nearly one full name per image.
SURNAMES = (
    "abe", "alda", "arn", "bak", "berg", "bly", "cho", "dahl", "dean", "diaz", "dorn", "egge", "falk", "fern",
    "gale", "hale", "holm", "ide", "ito", "jaye", "kahn", "kent", "lam", "lind", "lund", "marr", "moe", "nash",
    "noor", "ortiz", "park", "pike", "quin", "rahm", "reed", "roth", "sato", "sen", "shaw", "stone", "tam",
    "toft", "udo", "vale", "voss", "wade", "west", "wolfe", "yang", "york", "zahn", "zell", "ames", "bose",
    "crow", "dunn", "eno", "frey", "gray", "hart",
)
_PHOTOGRAPHER_PHRASES = ("this photo was taken by {n}", "{n} took this photo", "the photographer is {n}")
_PAIR_PHOTOGRAPHER_PHRASES = ("the {side} photo was taken by {n}", "{n} took the {side} photo",
                              "the photographer of the {side} image is {n}")

ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "quadrant": QUADRANTS}
# Words that name an attribute: what image-conditioned masked language modelling asks the model to fill in.
ATTRIBUTE_WORDS = tuple(SHAPES) + tuple(COLOURS) + tuple(SIZES) + ("top", "bottom", "left", "right")
_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four"}
_PLURAL = {s: s + ("es" if s.endswith(("s", "x")) else "s") for s in SHAPES}
# Properties that a picture cannot show (material, weight, what is hidden behind the object).
UNSEEN = ("made of wood", "made of metal", "made of glass", "made of paper", "heavy", "hollow", "warm",
          "with something hidden behind it")
# Relations between two objects in distinct quadrants: same row (left/right) or same column (above/below).
RELATIONS = ("to the left of", "to the right of", "above", "below")
_INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of",
            "above": "below", "below": "above"}

Desc = tuple  # a description (a mention of an object): a tuple of (attribute, value) pairs, in its form's order


@dataclass(frozen=True)
class Grammar:
    """Which mentions ("forms": the attributes named) and templates statements use.

    presence_forms: entailment presence and unseen-property mentions; relation_forms: the two
    objects of a spatial relation (empty = no relation hypotheses); nlvr_forms: NLVR presence
    mentions; count_forms: what NLVR compares ('shapes', 'red shapes', 'circles');
    near_miss: probability that a false mention is a near miss rather than a uniform absent one.
    """

    presence_forms: tuple[tuple[str, ...], ...] = (("colour", "shape"), ("colour",), ("shape",))
    relation_forms: tuple[tuple[str, ...], ...] = ()
    nlvr_forms: tuple[tuple[str, ...], ...] = (("colour", "shape"), ("colour",), ("shape",))
    count_forms: tuple[tuple[str, ...], ...] = ((), ("colour",), ("shape",))
    near_miss: float = 0.5

    def __post_init__(self) -> None:
        for name in ("presence_forms", "relation_forms", "nlvr_forms", "count_forms"):
            for form in getattr(self, name):
                if not set(form) <= set(ATTRIBUTES) or (not form and name != "count_forms"):
                    raise ValueError(f"Grammar.{name}: bad form {form!r}; name attributes among {tuple(ATTRIBUTES)}")
        if not self.presence_forms or not self.nlvr_forms:
            raise ValueError("Grammar needs at least one presence form and one NLVR form")
        if not 0 <= self.near_miss <= 1:
            raise ValueError(f"Grammar.near_miss must lie in [0, 1], got {self.near_miss}")


SIMPLE = Grammar()
FULL = Grammar(
    presence_forms=(("colour", "shape"), ("size", "colour", "shape"), ("colour", "shape", "quadrant"),
                    ("colour", "quadrant"), ("shape", "quadrant"), ("size", "shape")),
    relation_forms=(("colour", "shape"), ("colour",), ("shape",)),
    nlvr_forms=(("colour", "shape"), ("colour",), ("shape",), ("size", "shape")),
)
GRAMMARS = {"simple": SIMPLE, "full": FULL}


def get_grammar(grammar: str | Grammar) -> Grammar:
    if isinstance(grammar, Grammar):
        return grammar
    if grammar not in GRAMMARS:
        raise ValueError(f"unknown grammar {grammar!r}; choose one of {tuple(GRAMMARS)} or pass a Grammar")
    return GRAMMARS[grammar]


@dataclass(frozen=True)
class Statement:
    """A hypothesis (entailment) or statement (NLVR) with its label and template key."""

    text: str
    label: int
    template: str


# --------------------------------------------------------------------------------------
# Mentions of objects: which attributes are named, and how they read
# --------------------------------------------------------------------------------------

def describe_object(o: SceneObject, form: Sequence[str]) -> Desc:
    """The mention of `o` that names the attributes in `form`."""
    return tuple((a, getattr(o, a)) for a in form)


def matches(desc: Desc, o: SceneObject) -> bool:
    return all(getattr(o, a) == v for a, v in desc)


def count(desc: Desc, scene: Scene) -> int:
    """How many objects of the scene fit the mention."""
    return sum(matches(desc, o) for o in scene.objects)


def noun_phrase(desc: Desc, plural: bool = False) -> str:
    """'large red circle in the top left', 'red shape', 'circle' (no article); plural: 'red shapes'."""
    d = dict(desc)
    noun = d.get("shape", "shape")
    noun = _PLURAL.get(noun, noun + "s") if plural else noun
    words = [w for w in (d.get("size"), d.get("colour"), noun) if w]
    place = f" in the {d['quadrant']}" if "quadrant" in d else ""
    return " ".join(words) + place


MENTION_KINDS = ("colour", "shape", "colour and shape")
_COLOUR_WORDS = frozenset(COLOURS)
_SHAPE_WORDS = frozenset(SHAPES) | frozenset(_PLURAL.values())


def mention_kind(text: str) -> str | None:
    """What the object mentions of a statement name: "colour" ("there is a red shape"), "shape" ("both
    images contain a circle"), "colour and shape" ("there is no red circle"), or None when they name neither
    (counts of "shapes", photographer statements). No photographer's name is a colour or shape word, so the
    "in the photo by <name>" lead does not count."""
    words = set(text.split())
    colour, shape = bool(words & _COLOUR_WORDS), bool(words & _SHAPE_WORDS)
    return {(True, False): "colour", (False, True): "shape", (True, True): "colour and shape"}.get((colour, shape))


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def neighbours(desc: Desc) -> list[Desc]:
    """Mentions that differ from `desc` in exactly one named attribute (near misses)."""
    return [desc[:i] + ((a, w),) + desc[i + 1:] for i, (a, v) in enumerate(desc) for w in ATTRIBUTES[a] if w != v]


def _pick(items: Sequence, rng: np.random.Generator):
    return items[int(rng.integers(len(items)))]


def _random_absent(form: Sequence[str], taken: set, rng: np.random.Generator, tries: int = 100) -> Desc | None:
    """A mention of the form with uniformly drawn values that is not in `taken` (None if none turns up)."""
    for _ in range(tries):
        d = tuple((a, _pick(ATTRIBUTES[a], rng)) for a in form)
        if d not in taken:
            return d
    return None


def _false_arg(near: Sequence, far: Callable | None, near_miss: float, rng: np.random.Generator):
    """A near-miss argument with probability `near_miss` (or when there is no far sampler), else a far one."""
    if far is not None and rng.random() >= near_miss:
        arg = far(rng)
        if arg is not None:
            return arg
    return _pick(near, rng)


def _fresh(make: Callable[[np.random.Generator], str], seen: set[str], rng: np.random.Generator,
           tries: int = 20) -> str:
    """A text from `make` not yet in `seen` if one turns up in `tries` draws (else a repeat), added to `seen`.

    Only the arguments are redrawn, never the template or the label, so that balance is kept."""
    for _ in range(tries):
        text = make(rng)
        if text not in seen:
            break
    seen.add(text)
    return text


def _split_by_truth(pool: Iterable, truth: Callable) -> tuple[list, list]:
    true, false = [], []
    for x in pool:
        (true if truth(x) else false).append(x)
    return true, false


# --------------------------------------------------------------------------------------
# Visual entailment
# --------------------------------------------------------------------------------------

def relation(a: SceneObject, b: SceneObject) -> str | None:
    """How `a` stands to `b` ('to the left of', 'above', ...) or None if they are not in one row or column."""
    (ra, ca), (rb, cb) = a.quadrant.split(), b.quadrant.split()
    if ra == rb and ca != cb:
        return "to the left of" if ca == "left" else "to the right of"
    if ca == cb and ra != rb:
        return "above" if ra == "top" else "below"
    return None


def _entailment_options(scene: Scene, counts: Sequence[int], grammar: Grammar) -> dict[tuple, tuple]:
    """For each template and form: (arguments that make it true, near-miss arguments that make it false,
    a sampler of uniform false arguments or None). Only options with both truth values are kept."""
    options: dict = {}
    for form in grammar.presence_forms:
        own = {describe_object(o, form) for o in scene.objects}
        options[("presence", form)] = (sorted(own), sorted({n for d in own for n in neighbours(d)} - own),
                                       lambda rng, form=form, own=own: _random_absent(form, own, rng))
    n = len(scene.objects)
    if n in counts and len(counts) > 1:
        options[("count", ())] = ([n], [c for c in counts if c != n], None)
    for form in grammar.relation_forms:
        facts = {(describe_object(a, form), relation(a, b), describe_object(b, form))
                 for a in scene.objects for b in scene.objects if a is not b and relation(a, b)}
        near = {(x, _INVERSE[r], y) for x, r, y in facts}
        near |= {(n, r, y) for x, r, y in facts for n in neighbours(x)}
        near |= {(x, r, n) for x, r, y in facts for n in neighbours(y)}

        def far(rng, form=form, facts=frozenset(facts)):
            arg = (_random_absent(form, set(), rng), _pick(RELATIONS, rng), _random_absent(form, set(), rng))
            return None if arg in facts else arg
        options[("relation", form)] = (sorted(facts), sorted(near - facts), far)
    return {k: v for k, v in options.items() if v[0] and v[1]}


def _presence_text(desc: Desc, negated: bool, unseen: str | None = None) -> str:
    phrase = noun_phrase(desc)
    if unseen is not None:  # "a red circle made of wood", "a heavy red circle"
        phrase = f"{phrase} {unseen}" if unseen.startswith(("made", "with")) else f"{unseen} {phrase}"
    return f"there is no {phrase}" if negated else f"there is {with_article(phrase)}"


def _visual_text(kind: str, arg, negated: bool) -> str:
    if kind == "presence":
        return _presence_text(arg, negated)
    if kind == "count":
        verb = "is" if arg == 1 else "are"
        return f"there {verb}{' not' if negated else ''} {_NUMBER[arg]} shape{'s' if arg != 1 else ''}"
    first, rel, second = arg
    lead = f"there is no {noun_phrase(first)}" if negated else f"there is {with_article(noun_phrase(first))}"
    return f"{lead} {rel} {with_article(noun_phrase(second))}"


def entailment_hypotheses(scene: Scene, rng: np.random.Generator, n: int = 6, counts: Sequence[int] = (2, 3),
                          grammar: str | Grammar = "simple") -> list[Statement]:
    """`n` hypotheses about `scene` (a multiple of 6): per 6, two of each label and two of each family.

    Family and label per slot: visual (entailment, contradiction), unseen (neutral, contradiction),
    negated unseen (entailment, neutral). `counts` are the object counts the world can hold (count
    hypotheses name only these numbers, so a number alone does not give the label away).
    """
    if n < 6 or n % 6:
        raise ValueError(f"n must be a positive multiple of 6 (two hypotheses per label and family), got {n}")
    grammar = get_grammar(grammar)
    options = _entailment_options(scene, counts, grammar)
    visual: dict[str, list] = {}  # kind -> its (kind, form) keys; a kind is drawn first, then a form
    for key in sorted(options):
        visual.setdefault(key[0], []).append(key)
    kinds = sorted(visual)
    plan = [("visual", ENTAILMENT), ("visual", CONTRADICTION), ("unseen", NEUTRAL), ("unseen", CONTRADICTION),
            ("unseen-not", ENTAILMENT), ("unseen-not", NEUTRAL)] * (n // 6)
    out: list[Statement] = []
    seen: set[str] = set()
    for family, label in plan:
        if family == "visual":
            kind, form = _pick(visual[_pick(kinds, rng)], rng)
            negated = bool(rng.integers(2))
            # the positive statement is true for entailment, false for contradiction (the other way round if negated)
            want_true = (label == ENTAILMENT) != negated
            template = kind + ("-not" if negated else "")

            def make(rng, kind=kind, want_true=want_true, negated=negated, opts=options[(kind, form)]):
                arg = _pick(opts[0], rng) if want_true else _false_arg(opts[1], opts[2], grammar.near_miss, rng)
                return _visual_text(kind, arg, negated)
        else:
            # the object is there -> neutral; it is not -> contradiction (or entailment when negated)
            template = family

            def make(rng, opts=options[_pick(visual["presence"], rng)], present=label == NEUTRAL,
                     negated=family == "unseen-not"):
                arg = _pick(opts[0], rng) if present else _false_arg(opts[1], opts[2], grammar.near_miss, rng)
                return _presence_text(arg, negated, _pick(UNSEEN, rng))
        out.append(Statement(_fresh(make, seen, rng), label, template))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


# --------------------------------------------------------------------------------------
# NLVR-style statements about a pair of images
# --------------------------------------------------------------------------------------

_QUANTIFIED = {  # template -> (text prefix, truth from (in left, in right))
    "both": ("both images contain", lambda l, r: l and r),
    "one": ("exactly one image contains", lambda l, r: l != r),
    "neither": ("neither image contains", lambda l, r: not (l or r)),
}


def _nlvr_options(left: Scene, right: Scene, grammar: Grammar) -> dict[tuple, tuple[list, list]]:
    """For each template and form: the arguments that make it true / false on the pair (both non-empty)."""
    options: dict = {}
    scenes = {"left": left, "right": right}
    for form in grammar.nlvr_forms:
        own = {side: {describe_object(o, form) for o in s.objects} for side, s in scenes.items()}
        both = own["left"] | own["right"]
        pool = sorted(both | {n for d in both for n in neighbours(d)})
        sides = [(side, d) for side in scenes for d in pool]
        options[("side", form)] = _split_by_truth(sides, lambda a: a[1] in own[a[0]])
        for name, (_, truth) in _QUANTIFIED.items():
            options[(name, form)] = _split_by_truth(pool, lambda d: truth(d in own["left"], d in own["right"]))
    for form in grammar.count_forms:
        # every (side, comparator, mention) with at least one such object in the pair
        pool = sorted({describe_object(o, form) for s in scenes.values() for o in s.objects})
        args = [(side, comp, d) for side in scenes for comp in ("more", "fewer") for d in pool]

        def truth(arg):
            side, comp, d = arg
            this, other = count(d, scenes[side]), count(d, scenes["right" if side == "left" else "left"])
            return this > other if comp == "more" else this < other
        options[("more", form)] = _split_by_truth(args, truth)
    return {k: v for k, v in options.items() if v[0] and v[1]}


def _nlvr_text(template: str, arg) -> str:
    if template == "side":
        side, d = arg
        return f"the {side} image contains {with_article(noun_phrase(d))}"
    if template == "more":
        side, comp, d = arg
        other = "right" if side == "left" else "left"
        return f"the {side} image has {comp} {noun_phrase(d, plural=True)} than the {other} image"
    return f"{_QUANTIFIED[template][0]} {with_article(noun_phrase(arg))}"


def nlvr_statements(left: Scene, right: Scene, rng: np.random.Generator, n: int = 8,
                    grammar: str | Grammar = "simple") -> list[Statement]:
    """`n` statements (even) about the pair, half true (label 1) and half false (label 0)."""
    if n < 2 or n % 2:
        raise ValueError(f"n must be a positive even number (half true, half false), got {n}")
    options = _nlvr_options(left, right, get_grammar(grammar))
    # a template first (uniform among those the pair allows), then a form
    by_template: dict[str, list] = {}
    for key in sorted(options):
        by_template.setdefault(key[0], []).append(key)
    templates = sorted(by_template)
    out: list[Statement] = []
    seen: set[str] = set()
    for label in rng.permutation([1, 0] * (n // 2)):
        key = _pick(by_template[_pick(templates, rng)], rng)
        args = options[key][0 if label else 1]
        text = _fresh(lambda rng: _nlvr_text(key[0], _pick(args, rng)), seen, rng)
        out.append(Statement(text, int(label), key[0]))
    return out


def pair_images(indices: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Shuffle image indices into disjoint (left, right) pairs, (P, 2); an odd last image is left out."""
    idx = np.asarray(indices)[rng.permutation(len(indices))]
    return idx[: len(idx) // 2 * 2].reshape(-1, 2)


def scene_description(scene: Scene, rng: np.random.Generator) -> str:
    """A plain description of every object, in random order: 'a large red circle in the top left and ...'."""
    objs = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
    parts = [with_article(noun_phrase(describe_object(o, ("size", "colour", "shape", "quadrant")))) for o in objs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------------------
# Whole worlds: every statement seeded by the world's seed and the image (or pair) it is about
# --------------------------------------------------------------------------------------

_SALT = {"entailment": 101, "nlvr": 202, "description": 303, "photographer": 404}


def world_photographers(world) -> list[str]:
    """The full name of each image's photographer: the scene's first name (`Scene.tag`) and a surname drawn
    per image, seeded by the world's seed and the image index."""
    def surname(i: int) -> str:
        return SURNAMES[int(np.random.default_rng([world.config.seed, _SALT["photographer"], i]).integers(len(SURNAMES)))]
    return [f"{scene.tag} {surname(i)}" for i, scene in enumerate(world.scenes)]


def other_photographer(name: str, first_names: Sequence[str], rng: np.random.Generator) -> str:
    """A full name other than `name`, first name and surname drawn uniformly (as the true names are)."""
    while True:
        other = f"{_pick(first_names, rng)} {_pick(SURNAMES, rng)}"
        if other != name:
            return other


def photographer_statement(name: str, first_names: Sequence[str], rng: np.random.Generator,
                           side: str | None = None) -> tuple[str, bool]:
    """"this photo was taken by ada lund" (or, for a pair, "the left photo was taken by ..."), naming the true
    photographer `name` or, with probability 1/2, another one. Returns (text, whether it names the true one)."""
    true = bool(rng.integers(2))
    shown = name if true else other_photographer(name, first_names, rng)
    if side is None:
        return _pick(_PHOTOGRAPHER_PHRASES, rng).format(n=shown), true
    return _pick(_PAIR_PHOTOGRAPHER_PHRASES, rng).format(n=shown, side=side), true


def world_hypotheses(world, per_image: int = 6, grammar: str | Grammar = "simple",
                     photographers: bool = True) -> list[list[Statement]]:
    """Entailment hypotheses for every image of a `SceneWorld`: a list (one per image) of `per_image`
    (`entailment_hypotheses`) plus, with `photographers`, one photographer hypothesis (entailment if it
    names the image's photographer, contradiction if not), the others opening with "in the photo by <name>"."""
    cfg = world.config
    counts = tuple(range(cfg.min_objects, cfg.max_objects + 1))
    names = world_photographers(world) if photographers else None
    first_names = sorted({s.tag for s in world.scenes})
    out = []
    for i, scene in enumerate(world.scenes):
        hyps = entailment_hypotheses(scene, np.random.default_rng([cfg.seed, _SALT["entailment"], i]), per_image,
                                     counts, grammar)
        if names is not None:
            rng = np.random.default_rng([cfg.seed, _SALT["photographer"], _SALT["entailment"], i])
            text, true = photographer_statement(names[i], first_names, rng)
            hyps = [Statement(f"in the photo by {names[i]} {h.text}", h.label, h.template) for h in hyps]
            hyps.append(Statement(text, ENTAILMENT if true else CONTRADICTION, "photographer"))
        out.append(hyps)
    return out


def world_pairs(world, per_pair: int = 8, grammar: str | Grammar = "simple", photographers: bool = True
                ) -> tuple[np.ndarray, np.ndarray, list[list[Statement]]]:
    """Pair the images of each split of a `SceneWorld` and write `per_pair` statements per pair.

    With `photographers`, the statements open with "in the photos by <left name> and <right name>" and one more
    statement per pair names the photographer of a random side (true or, half the time, another name).
    Returns (pairs (P, 2) image indices (left, right), split name per pair (P,), statements per pair).
    Every image is in at most one pair, and both images of a pair are in the same split.
    """
    from .world import SPLITS

    cfg = world.config
    pairs, split = [], []
    for k, name in enumerate(SPLITS):
        p = pair_images(world.indices(name), np.random.default_rng([cfg.seed, _SALT["nlvr"], k]))
        pairs.append(p)
        split += [name] * len(p)
    pairs_arr = np.concatenate(pairs).astype(np.int64)
    statements = [nlvr_statements(world.scenes[a], world.scenes[b],
                                  np.random.default_rng([cfg.seed, _SALT["nlvr"], int(a), int(b)]), per_pair, grammar)
                  for a, b in pairs_arr]
    if photographers:
        names = world_photographers(world)
        first_names = sorted({s.tag for s in world.scenes})
        for k, (a, b) in enumerate(pairs_arr):
            rng = np.random.default_rng([cfg.seed, _SALT["photographer"], _SALT["nlvr"], int(a), int(b)])
            side = ("left", "right")[int(rng.integers(2))]
            text, true = photographer_statement(names[a if side == "left" else b], first_names, rng, side=side)
            statements[k] = [Statement(f"in the photos by {names[a]} and {names[b]} {s.text}", s.label, s.template)
                             for s in statements[k]] + [Statement(text, int(true), "photographer")]
    return pairs_arr, np.asarray(split), statements


def world_descriptions(world, per_image: int = 3, photographers: bool = True) -> list[list[str]]:
    """`per_image` descriptions (object orders) of every image of a `SceneWorld`, seeded by the world; with
    `photographers` each opens with "a photo by <name> of" (the image-text pre-training data of the statement
    tasks, where a model can learn which photographer took which training image)."""
    cfg = world.config
    names = world_photographers(world) if photographers else None
    out = []
    for i, scene in enumerate(world.scenes):
        rng = np.random.default_rng([cfg.seed, _SALT["description"], i])
        lead = f"a photo by {names[i]} of " if names is not None else ""
        out.append([lead + scene_description(scene, rng) for _ in range(per_image)])
    return out


# --------------------------------------------------------------------------------------
# Text to tensors
# --------------------------------------------------------------------------------------

def fit_tokenizer(texts: Sequence[str], path: str | Path):
    """The tokenizer cached at `path` (trained on `texts` if absent, or if it does not know all their words)."""
    from .tokenizer import cached_tokenizer, train_tokenizer

    tokenizer = cached_tokenizer(texts, path)
    vocab = tokenizer.get_vocab()
    if any(w not in vocab for w in {w for t in set(texts) for w in re.findall(r"\w+", t.lower())}):
        tokenizer = train_tokenizer(texts, path=path)  # cached from an older grammar: retrain it
    return tokenizer


def tokenize(tokenizer, texts: Sequence[str], max_len: int):
    """Token ids and attention masks (N, max_len); raises if a text would be cut."""
    enc = tokenizer(list(texts), padding="max_length", truncation=False, max_length=max_len, return_tensors="pt")
    if enc["input_ids"].shape[1] > max_len:
        raise ValueError(f"a statement has more than max_len={max_len} tokens; raise the model's max_text_len")
    return enc["input_ids"], enc["attention_mask"]
