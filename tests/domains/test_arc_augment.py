"""ARC grid transforms: every transform is exactly undone by its inverse, and does what its name says."""

import numpy as np
import pytest

from seal.domains.arc.augment import (
    FAMILIES,
    IDENTITY,
    TTA,
    augmenters,
    chain,
    chained,
    colours,
    fits,
    flip_lr,
    flip_ud,
    geometric,
    height2,
    random_colours,
    random_translate,
    reflect_lr,
    reflect_ud,
    repeat,
    res2,
    rot90,
    rot180,
    rot270,
    size,
    tile_both,
    tile_cols,
    tile_rows,
    translate,
    transpose,
    validate_grid,
    width2,
)

SHAPES = [(1, 1), (1, 5), (6, 1), (2, 3), (3, 2), (4, 4), (5, 7), (7, 9)]


def grids():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 10, size=s).tolist() for s in SHAPES]


def all_transforms():
    ts = [IDENTITY, *TTA, *size(), *chained(), *repeat(), reflect_ud, reflect_lr, flip_ud]
    for seed in range(4):
        rng = np.random.default_rng(seed)
        ts += geometric(rng) + [random_colours(rng), random_translate(rng)]
    ts += [translate(0, 0), translate(2, -1), translate(10, 13)]
    ts += [chain(rot90, flip_lr, tile_both), chain(reflect_lr, height2, random_colours(np.random.default_rng(9)))]
    ts += [chain(), chain(width2, translate(1, 1), transpose)]
    return ts


@pytest.mark.parametrize("t", all_transforms(), ids=lambda t: t.name)
def test_inverse_undoes_forward(t):
    for g in grids():
        out = t.forward(g)
        assert all(type(c) is int for row in out for c in row)
        assert t.inverse(out) == g


def test_exact_forward_results():
    g = [[1, 2, 3], [4, 5, 6]]
    assert rot90.forward(g) == [[3, 6], [2, 5], [1, 4]]
    assert rot180.forward(g) == [[6, 5, 4], [3, 2, 1]]
    assert rot270.forward(g) == [[4, 1], [5, 2], [6, 3]]
    assert flip_ud.forward(g) == [[4, 5, 6], [1, 2, 3]]
    assert flip_lr.forward(g) == [[3, 2, 1], [6, 5, 4]]
    assert transpose.forward(g) == [[1, 4], [2, 5], [3, 6]]
    assert reflect_lr.forward([[1, 2]]) == [[1, 2, 2, 1]]
    assert reflect_ud.forward([[1], [2]]) == [[1], [2], [2], [1]]
    assert res2.forward([[1, 2]]) == [[1, 1, 2, 2], [1, 1, 2, 2]]
    assert height2.forward([[1, 2], [3, 4]]) == [[1, 2], [1, 2], [3, 4], [3, 4]]
    assert width2.forward([[1, 2]]) == [[1, 1, 2, 2]]
    assert tile_rows.forward([[1, 2]]) == [[1, 2], [1, 2]]
    assert tile_cols.forward([[1, 2]]) == [[1, 2, 1, 2]]
    assert tile_both.forward([[1, 2]]) == [[1, 2, 1, 2], [1, 2, 1, 2]]
    assert translate(1, 1).forward(g) == [[6, 4, 5], [3, 1, 2]]
    assert chain(flip_lr, res2).forward([[1, 2]]) == [[2, 2, 1, 1], [2, 2, 1, 1]]
    perm = (0, 3, 1, 2, 4, 5, 6, 7, 8, 9)
    assert colours(perm).forward([[0, 1, 2, 3]]) == [[0, 3, 1, 2]]
    assert colours(perm).inverse([[0, 3, 1, 2]]) == [[0, 1, 2, 3]]


def test_names():
    assert chain(flip_lr, res2).name == "chain(flip_lr,res2)"
    assert translate(1, 2).name == "translate(1,2)"
    assert colours((0, 3, 1, 2, 4, 5, 6, 7, 8, 9)).name == "colours(0,3,1,2,4,5,6,7,8,9)"
    assert chained()[0].name == "chain(rot90,res2)"


def test_geometric_transforms_change_a_nonsymmetric_grid():
    g = np.arange(12).reshape(3, 4).tolist()
    ts = [*geometric(np.random.default_rng(1)), *size(), *chained(), *repeat(), translate(1, 2), *TTA]
    for t in ts:
        assert t.forward(g) != g, t.name
    assert IDENTITY.forward(g) == g


def test_colours_keep_background_and_are_permutations():
    g = np.arange(10).reshape(2, 5).tolist()
    seen = set()
    for seed in range(5):
        t = random_colours(np.random.default_rng(seed))
        out = t.forward(g)
        assert out[0][0] == 0
        assert sorted(c for row in out for c in row) == list(range(10))
        seen.add(t.name)
    assert len(seen) > 1


def test_colours_rejects_bad_perms():
    with pytest.raises(ValueError, match="perm\\[0\\]"):
        colours((1, 0, 2, 3, 4, 5, 6, 7, 8, 9))
    with pytest.raises(ValueError, match="permutation"):
        colours((0, 1, 1, 3, 4, 5, 6, 7, 8, 9))
    with pytest.raises(ValueError, match="permutation"):
        colours((0, 1, 2))


def test_families_deterministic_given_rng():
    a = [t.name for t in geometric(np.random.default_rng(3))]
    b = [t.name for t in geometric(np.random.default_rng(3))]
    assert a == b and len(a) == 9 and a[-1].startswith("translate(")
    dy, dx = map(int, a[-1][len("translate(") : -1].split(","))
    assert 1 <= dy <= 3 and 1 <= dx <= 3


def test_augmenters_respect_choice():
    def rng():
        return np.random.default_rng(0)

    assert augmenters({}, rng()) == []
    assert augmenters({f: False for f in FAMILIES}, rng()) == []
    assert [t.name for t in augmenters({"size": True}, rng())] == ["res2", "height2", "width2"]
    both = augmenters({"repeat": True, "size": True, "chain": False}, rng())
    assert [t.name for t in both] == ["res2", "height2", "width2", "tile_rows", "tile_cols", "tile_both"]
    everything = augmenters({f: True for f in FAMILIES}, rng())
    assert len(everything) == 9 + 3 + 6 + 3
    assert [t.name for t in everything[:9]] == [t.name for t in geometric(rng())]
    with pytest.raises(ValueError, match="rotate"):
        augmenters({"geometric": True, "rotate": True}, rng())


def test_fits():
    assert fits([[0]])
    assert fits([[0] * 30] * 30)
    assert not fits([[0] * 31])
    assert not fits([[0]] * 31)
    assert fits([[0] * 31], max_side=31)
    assert not fits([[]])


def test_validate_grid():
    g = [[0, 1], [9, 2]]
    assert validate_grid(g, "task t1 input") is g
    bad = {
        "ragged": [[1, 2], [3]],
        "colour 10": [[1, 10]],
        "colour -1": [[-1, 2]],
        "bool": [[True, 2]],
        "float": [[1.0, 2]],
        "empty grid": [],
        "empty row": [[]],
        "not a list": "12",
        "row not a list": [(1, 2)],
    }
    for what, g in bad.items():
        with pytest.raises(ValueError, match="^task 7 output: ") as e:
            validate_grid(g, "task 7 output")
        assert len(str(e.value)) > len("task 7 output: ") + 5, what
    with pytest.raises(ValueError, match="ragged"):
        validate_grid([[1, 2], [3]], "w")
    with pytest.raises(ValueError, match="10 is not a colour"):
        validate_grid([[1, 10]], "w")
    with pytest.raises(ValueError, match="must be an int, got bool"):
        validate_grid([[0, True]], "w")
