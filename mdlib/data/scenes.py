"""A procedurally generated, seeded scene world: images of coloured shapes with captions.

Every image is unique (continuous jitter of positions, sizes, rotations, colours,
background and pixel noise) and so is every caption. Like a Flickr30K caption, each
caption also carries something *specific to its instance* that no rule can infer from
the pixels: the name of the (fictional) photographer, drawn at random per image. A
model can only match that name to the image by memorising the training pair, which is
exactly the kind of knowledge unlearning must remove.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star", "ring", "bar")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 185, 60), "blue": (50, 100, 240), "yellow": (240, 220, 40),
    "purple": (160, 60, 210), "orange": (250, 140, 20), "cyan": (40, 215, 225), "white": (240, 240, 240),
}
SIZES = ("small", "large")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
NAMES = (
    "ada", "alan", "alma", "amir", "anna", "aria", "arlo", "axel", "bea", "ben", "bo", "cara", "cleo", "dana",
    "dev", "dora", "eli", "ella", "emil", "eva", "ezra", "finn", "gia", "gus", "hana", "hugo", "ida", "igor",
    "ines", "ivan", "jade", "jin", "joel", "juno", "kai", "kim", "kira", "lars", "lea", "leon", "lia", "lin",
    "luca", "lulu", "maja", "mara", "max", "mei", "milo", "mira", "nadia", "nico", "nina", "noah", "nora", "oda",
    "olga", "omar", "otto", "pam", "paz", "per", "pia", "quin", "raj", "rita", "rosa", "rui", "sami", "sara",
    "sia", "sol", "sven", "tara", "teo", "tom", "uma", "una", "vera", "vik", "wen", "xia", "yara", "yuri",
    "zara", "zeno", "zoe", "abel", "bram", "cyra", "dina", "egon", "fay", "gil", "hal", "iris", "jude", "kofi",
    "lena", "moss",
)
# Placement of each quadrant's centre, in units of the image side.
_QUAD_CENTRE = {"top left": (0.27, 0.27), "top right": (0.73, 0.27), "bottom left": (0.27, 0.73), "bottom right": (0.73, 0.73)}
_SAME_ROW = {("top left", "top right"), ("bottom left", "bottom right")}
_SAME_COL = {("top left", "bottom left"), ("top right", "bottom right")}
_LOC_PHRASES = {
    "top left": ("in the top left", "at the top left", "top left"),
    "top right": ("in the top right", "at the top right", "top right"),
    "bottom left": ("in the bottom left", "at the bottom left", "bottom left"),
    "bottom right": ("in the bottom right", "at the bottom right", "bottom right"),
}
_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four"}
_TAG_PHRASES = ("photo by {n}", "taken by {n}", "shot by {n}", "by {n}")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    quadrant: str


@dataclass(frozen=True)
class Scene:
    """What an image shows (objects, one per quadrant) and who 'took' it (the instance-specific tag)."""

    objects: tuple[SceneObject, ...]
    tag: str
    render_seed: int = 0

    def key(self) -> tuple:
        """Identity of the scene's content (ignores the continuous jitter)."""
        return (tuple(sorted(dataclasses.astuple(o) for o in self.objects)), self.tag)

    def to_json(self) -> str:
        return json.dumps({"objects": [dataclasses.asdict(o) for o in self.objects], "tag": self.tag,
                           "render_seed": self.render_seed})

    @staticmethod
    def from_json(text: str) -> "Scene":
        d = json.loads(text)
        return Scene(tuple(SceneObject(**o) for o in d["objects"]), d["tag"], d["render_seed"])

    def at(self, quadrant: str) -> SceneObject | None:
        return next((o for o in self.objects if o.quadrant == quadrant), None)


@dataclass
class SceneSampler:
    """Draws random scenes: 1..max_objects objects in distinct quadrants, a random photographer tag."""

    max_objects: int = 3
    min_objects: int = 2
    n_names: int = len(NAMES)
    object_weights: tuple[float, ...] = field(default=(0.0, 0.5, 0.5, 0.5))

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError("need 1 <= min_objects <= max_objects <= 4 (one object per quadrant)")
        if not 1 <= self.n_names <= len(NAMES):
            raise ValueError(f"n_names must be in 1..{len(NAMES)}")

    def sample(self, rng: np.random.Generator) -> Scene:
        counts = np.arange(self.min_objects, self.max_objects + 1)
        w = np.array(self.object_weights[self.min_objects - 1: self.max_objects], dtype=float)
        w = w / w.sum() if w.sum() > 0 else np.full(len(counts), 1 / len(counts))
        n = int(rng.choice(counts, p=w))
        quads = sorted(rng.choice(len(QUADRANTS), size=n, replace=False))
        objects = tuple(
            SceneObject(SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))],
                        SIZES[rng.integers(len(SIZES))], QUADRANTS[q])
            for q in quads
        )
        tag = NAMES[rng.integers(self.n_names)]
        return Scene(objects, tag, int(rng.integers(2**31)))


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    def rot(points):
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if shape == "square":
        return rot([(-r * .8, -r * .8), (r * .8, -r * .8), (r * .8, r * .8), (-r * .8, r * .8)])
    if shape == "triangle":
        return rot([(0, -r), (r * .95, r * .7), (-r * .95, r * .7)])
    if shape == "diamond":
        return rot([(0, -r), (r * .7, 0), (0, r), (-r * .7, 0)])
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * .45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        return rot(pts)
    if shape == "cross":
        w = r * .35
        return rot([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)])
    if shape == "bar":
        return rot([(-r, -r * .35), (r, -r * .35), (r, r * .35), (-r, r * .35)])
    return None  # circle and ring are drawn as ellipses


def render(scene: Scene, size: int = 32, supersample: int = 4, noise: float = 6.0) -> np.ndarray:
    """Render a scene to a uint8 array of shape (size, size, 3).

    The render seed drives all continuous jitter, so the same scene renders identically.
    """
    rng = np.random.default_rng(scene.render_seed)
    big = size * supersample
    # Dark background with a random tint and a soft vertical gradient.
    base = rng.uniform(10, 70, size=3)
    grad = np.linspace(0, 1, big)[:, None, None] * rng.uniform(-25, 25, size=3)
    canvas = np.clip(base + grad + np.zeros((big, big, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        qx, qy = _QUAD_CENTRE[obj.quadrant]
        cx = (qx + rng.uniform(-0.06, 0.06)) * big
        cy = (qy + rng.uniform(-0.06, 0.06)) * big
        r = (rng.uniform(0.10, 0.13) if obj.size == "small" else rng.uniform(0.17, 0.21)) * big
        colour = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in COLOURS[obj.colour])
        angle = rng.uniform(-0.35, 0.35)
        poly = _polygon(obj.shape, cx, cy, r, angle)
        if poly is not None:
            draw.polygon(poly, fill=colour)
        elif obj.shape == "circle":
            draw.ellipse([cx - r * .9, cy - r * .9, cx + r * .9, cy + r * .9], fill=colour)
        else:  # ring
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(1, int(r * .38)))
    small = np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    small = small + rng.normal(0, noise, small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Captions: a small grammar with paraphrases
# --------------------------------------------------------------------------------------

def object_phrase(o: SceneObject, rng: np.random.Generator) -> str:
    return f"a {o.size} {o.colour} {o.shape}"


def _located(o: SceneObject, rng: np.random.Generator) -> str:
    locs = _LOC_PHRASES[o.quadrant]
    return f"{object_phrase(o, rng)} {locs[rng.integers(len(locs))]}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _relational(objs: list[SceneObject], rng: np.random.Generator) -> str | None:
    """Describe a pair by its spatial relation, then place the rest; None if no pair is aligned."""
    for a in objs:
        for b in objs:
            if (a.quadrant, b.quadrant) in _SAME_ROW:
                rel = f"{object_phrase(a, rng)} to the left of {object_phrase(b, rng)}"
            elif (a.quadrant, b.quadrant) in _SAME_COL:
                rel = f"{object_phrase(a, rng)} above {object_phrase(b, rng)}"
            else:
                continue
            row = "at the top" if a.quadrant.startswith("top") else "at the bottom"
            col = "on the left" if a.quadrant.endswith("left") else "on the right"
            rel += f" {row if (a.quadrant, b.quadrant) in _SAME_ROW else col}"
            rest = [_located(o, rng) for o in objs if o not in (a, b)]
            return _join([rel] + rest)
    return None


def describe(scene: Scene, rng: np.random.Generator, template: int | None = None) -> str:
    """One caption of `scene`: every object with its colour, shape, size and place, plus the tag."""
    objs = list(scene.objects)
    order = rng.permutation(len(objs))
    objs = [objs[i] for i in order]
    template = int(rng.integers(5)) if template is None else template
    if template == 0:
        body = _join([_located(o, rng) for o in objs])
    elif template == 1:
        body = "there is " + _join([_located(o, rng) for o in objs])
    elif template == 2:
        body = _relational(objs, rng) or _join([_located(o, rng) for o in objs])
    elif template == 3:
        n = len(objs)
        body = f"{_NUMBER[n]} shape{'s' if n > 1 else ''} : " + _join([_located(o, rng) for o in objs])
    else:
        body = " ; ".join(f"{_LOC_PHRASES[o.quadrant][2]} , {object_phrase(o, rng)}" for o in objs)
    tag = _TAG_PHRASES[rng.integers(len(_TAG_PHRASES))].format(n=scene.tag)
    return f"{tag} : {body}" if rng.random() < 0.3 else f"{body} , {tag}"


def captions(scene: Scene, n: int, rng: np.random.Generator) -> list[str]:
    """`n` distinct paraphrases of the same scene (templates cycle so they differ in form)."""
    out: list[str] = []
    start = int(rng.integers(5))
    attempts = 0
    while len(out) < n:
        c = describe(scene, rng, template=(start + attempts) % 5)
        attempts += 1
        if c not in out or attempts > 50:
            out.append(c)
    return out


# --------------------------------------------------------------------------------------
# Minimal-pair negatives: the true description with exactly one thing changed
# --------------------------------------------------------------------------------------

NEGATIVE_KINDS = ("colour", "shape", "size", "place", "binding", "tag")


def perturb(scene: Scene, kind: str, rng: np.random.Generator, names: tuple[str, ...] = NAMES) -> Scene:
    """A scene that differs from `scene` in one respect (`kind`), used for hard ITM negatives."""
    objs = list(scene.objects)
    i = int(rng.integers(len(objs)))
    o = objs[i]
    if kind == "colour":
        objs[i] = dataclasses.replace(o, colour=str(rng.choice([c for c in COLOURS if c != o.colour])))
    elif kind == "shape":
        objs[i] = dataclasses.replace(o, shape=str(rng.choice([s for s in SHAPES if s != o.shape])))
    elif kind == "size":
        objs[i] = dataclasses.replace(o, size="large" if o.size == "small" else "small")
    elif kind == "place":
        free = [q for q in QUADRANTS if scene.at(q) is None]
        if free:
            objs[i] = dataclasses.replace(o, quadrant=str(rng.choice(free)))
        else:  # all four occupied: swap two objects' places
            j = (i + 1 + int(rng.integers(len(objs) - 1))) % len(objs)
            objs[i], objs[j] = dataclasses.replace(o, quadrant=objs[j].quadrant), dataclasses.replace(objs[j], quadrant=o.quadrant)
    elif kind == "binding":  # swap the colours of two objects of different colours (a binding error)
        pairs = [(a, b) for a in range(len(objs)) for b in range(a + 1, len(objs)) if objs[a].colour != objs[b].colour]
        if not pairs:
            return perturb(scene, "colour", rng, names)
        a, b = pairs[int(rng.integers(len(pairs)))]
        objs[a], objs[b] = dataclasses.replace(objs[a], colour=objs[b].colour), dataclasses.replace(objs[b], colour=objs[a].colour)
    elif kind == "tag":
        return dataclasses.replace(scene, tag=str(rng.choice([n for n in names if n != scene.tag])))
    else:
        raise ValueError(f"unknown negative kind {kind!r}; choose from {NEGATIVE_KINDS}")
    return dataclasses.replace(scene, objects=tuple(sorted(objs, key=lambda x: QUADRANTS.index(x.quadrant))))
