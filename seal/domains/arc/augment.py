"""ARC grid transforms, each with its exact inverse, for test-time-training augmentation.

A grid is a rectangular list of rows of colours 0..9. Training data for an ARC task is enlarged by
applying a transform to every input and output grid of its examples; at evaluation the model is also
asked about transformed test inputs (`TTA`) and its answers are mapped back through `inverse`, so every
transform must satisfy `t.inverse(t.forward(g)) == g`. Work is done on numpy arrays; the public
functions take and return plain lists of Python ints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Grid = list[list[int]]
ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Transform:
    name: str
    fwd: ArrayFn = field(repr=False, compare=False)
    inv: ArrayFn = field(repr=False, compare=False)

    def forward(self, g: Grid) -> Grid:
        return self.fwd(np.asarray(g, dtype=np.int64)).tolist()

    def inverse(self, g: Grid) -> Grid:
        return self.inv(np.asarray(g, dtype=np.int64)).tolist()


def _half(a: np.ndarray, axis: int) -> np.ndarray:
    n = a.shape[axis] // 2
    return a[:n] if axis == 0 else a[:, :n]


IDENTITY = Transform("identity", lambda a: a, lambda a: a)

# geometric
rot90 = Transform("rot90", lambda a: np.rot90(a, 1), lambda a: np.rot90(a, -1))
rot180 = Transform("rot180", lambda a: np.rot90(a, 2), lambda a: np.rot90(a, -2))
rot270 = Transform("rot270", lambda a: np.rot90(a, 3), lambda a: np.rot90(a, -3))
flip_ud = Transform("flip_ud", np.flipud, np.flipud)
flip_lr = Transform("flip_lr", np.fliplr, np.fliplr)
transpose = Transform("transpose", np.transpose, np.transpose)
reflect_ud = Transform("reflect_ud", lambda a: np.concatenate([a, a[::-1]], axis=0), lambda a: _half(a, 0))
reflect_lr = Transform("reflect_lr", lambda a: np.concatenate([a, a[:, ::-1]], axis=1), lambda a: _half(a, 1))

# size
res2 = Transform("res2", lambda a: np.kron(a, np.ones((2, 2), dtype=a.dtype)), lambda a: a[::2, ::2])
height2 = Transform("height2", lambda a: np.repeat(a, 2, axis=0), lambda a: a[::2])
width2 = Transform("width2", lambda a: np.repeat(a, 2, axis=1), lambda a: a[:, ::2])

# repeat
tile_rows = Transform("tile_rows", lambda a: np.tile(a, (2, 1)), lambda a: _half(a, 0))
tile_cols = Transform("tile_cols", lambda a: np.tile(a, (1, 2)), lambda a: _half(a, 1))
tile_both = Transform("tile_both", lambda a: np.tile(a, (2, 2)), lambda a: _half(_half(a, 0), 1))


def translate(dy: int, dx: int) -> Transform:
    """Cyclic shift by dy rows and dx columns."""
    return Transform(
        f"translate({dy},{dx})",
        lambda a: np.roll(a, (dy, dx), axis=(0, 1)),
        lambda a: np.roll(a, (-dy, -dx), axis=(0, 1)),
    )


def chain(*transforms: Transform) -> Transform:
    """Apply `transforms` left to right; the inverse undoes them right to left."""

    def fwd(a: np.ndarray) -> np.ndarray:
        for t in transforms:
            a = t.fwd(a)
        return a

    def inv(a: np.ndarray) -> np.ndarray:
        for t in reversed(transforms):
            a = t.inv(a)
        return a

    return Transform(f"chain({','.join(t.name for t in transforms)})", fwd, inv)


def colours(perm: tuple[int, ...]) -> Transform:
    """Recolour c -> perm[c]; perm is a permutation of 0..9 that keeps the background 0."""
    perm = tuple(int(c) for c in perm)
    if sorted(perm) != list(range(10)):
        raise ValueError(f"colours: {perm} is not a permutation of 0..9")
    if perm[0] != 0:
        raise ValueError(f"colours: perm[0] must be 0 (background kept), got {perm[0]}")
    p = np.array(perm, dtype=np.int64)
    p_inv = np.argsort(p)
    return Transform(f"colours({','.join(map(str, perm))})", lambda a: p[a], lambda a: p_inv[a])


def random_colours(rng: np.random.Generator) -> Transform:
    return colours((0, *(int(c) + 1 for c in rng.permutation(9))))


def random_translate(rng: np.random.Generator) -> Transform:
    dy, dx = (int(v) for v in rng.integers(1, 4, size=2))
    return translate(dy, dx)


# families of augmentations a self-edit can switch on
def geometric(rng: np.random.Generator) -> list[Transform]:
    return [rot90, rot180, rot270, flip_ud, flip_lr, reflect_ud, reflect_lr, transpose, random_translate(rng)]


def size() -> list[Transform]:
    return [res2, height2, width2]


def chained() -> list[Transform]:
    return [chain(t, res2) for t in (rot90, rot180, rot270, flip_ud, flip_lr, transpose)]


def repeat() -> list[Transform]:
    return [tile_rows, tile_cols, tile_both]


FAMILIES = ("geometric", "size", "chain", "repeat")


def augmenters(choice: dict[str, bool], rng: np.random.Generator) -> list[Transform]:
    """The transforms of the families switched on in `choice`, in FAMILIES order."""
    unknown = sorted(set(choice) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown augmentation families: {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    out: list[Transform] = []
    if choice.get("geometric"):
        out += geometric(rng)
    if choice.get("size"):
        out += size()
    if choice.get("chain"):
        out += chained()
    if choice.get("repeat"):
        out += repeat()
    return out


# invertible geometric test-time augmentations used at evaluation
TTA = (rot90, rot180, rot270, flip_lr, transpose)


def fits(g: Grid, max_side: int = 30) -> bool:
    return 1 <= len(g) <= max_side and 1 <= len(g[0]) <= max_side


def validate_grid(g: Grid, where: str) -> Grid:
    """Check g is a non-empty rectangular list of lists of ints 0..9; returns g."""
    if not isinstance(g, list) or not g:
        raise ValueError(f"{where}: a grid must be a non-empty list of rows, got {type(g).__name__} {g!r:.60}")
    width = None
    for i, row in enumerate(g):
        if not isinstance(row, list) or not row:
            raise ValueError(f"{where}: row {i} must be a non-empty list, got {type(row).__name__} {row!r:.60}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(f"{where}: ragged grid, row {i} has {len(row)} cells, row 0 has {width}")
        for j, c in enumerate(row):
            if not isinstance(c, int) or isinstance(c, bool):  # bad data is a ValueError, as for the other checks
                raise ValueError(  # noqa: TRY004
                    f"{where}: cell ({i},{j}) must be an int, got {type(c).__name__} {c!r}"
                )
            if not 0 <= c <= 9:
                raise ValueError(f"{where}: cell ({i},{j}) = {c} is not a colour 0..9")
    return g
