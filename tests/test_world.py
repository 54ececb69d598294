"""Tests of flmm.world: rendering, masks, language (checked by an independent little interpreter), CLI."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
from PIL import Image

from flmm.cli.main import main
from flmm.errors import InputError
from flmm.world import (
    COLORS,
    IMAGE_SIZE,
    SHAPES,
    SIZES,
    STUFF_BOTTOM,
    STUFF_TOP,
    SceneSpec,
    Thing,
    footprint,
    narrative,
    qa_items,
    qa_pairs,
    referring_expressions,
    render,
    sample_scene,
    sample_spec,
    split_seeds,
    vocabulary,
)
from flmm.world.shapes import PALETTE
from flmm.world.textures import horizon_line

SEEDS = range(40)
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six"]
NOUNS = {**{s: (s, False) for s in SHAPES}, **{s + "s": (s, True) for s in SHAPES}}
NOUNS.update({"object": (None, False), "objects": (None, True)})
RELS = ("left of", "right of", "above", "below")
LOCS = ("left-most", "right-most", "top-most", "bottom-most")


@pytest.fixture(scope="module")
def scenes():
    return [sample_scene(s) for s in SEEDS]


def spec_of(*things, top="sky", bottom="grass", horizon=64.0, seed=0):
    return SceneSpec(tuple(Thing(*t) for t in things), top, bottom, horizon, seed)


# ---------- an independent interpreter of the generated language (documented semantics) ----------


def parse_np(tokens, i):
    """[size] [color] noun -> ((size, color, shape), plural, next index)."""
    size = color = None
    if tokens[i] in SIZES:
        size, i = tokens[i], i + 1
    if tokens[i] in COLORS:
        color, i = tokens[i], i + 1
    shape, many = NOUNS[tokens[i]]
    return (size, color, shape), many, i + 1


def denoted(things, desc):
    return [
        k
        for k, t in enumerate(things)
        if all(v is None or v == a for v, a in zip(desc, (t.size, t.color, t.shape)))
    ]


def offset(a, b, rel):
    (ax, ay), (bx, by) = a.center, b.center
    return {"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[rel]


def resolve(things, text):
    """The set of things a referring expression denotes; AssertionError if it is ambiguous."""
    tok = text.split()
    assert tok[0] == "the"
    i, count, loc = 1, None, None
    if tok[i] in NUMBERS:
        count, i = NUMBERS.index(tok[i]), i + 1
    if tok[i] in LOCS:
        loc, i = tok[i], i + 1
    desc, many, i = parse_np(tok, i)
    members = denoted(things, desc)
    rest = " ".join(tok[i:])
    if many:
        assert not rest and len(members) >= 2 and count in (None, len(members))
        return tuple(members)
    if loc:
        axis = 0 if loc in ("left-most", "right-most") else 1
        sign = 1 if loc in ("left-most", "top-most") else -1
        vals = sorted((sign * things[k].center[axis], k) for k in members)
        assert len(vals) >= 2 and vals[1][0] - vals[0][0] >= 8 and not rest
        return (vals[0][1],)
    if rest:
        rel = next(r for r in RELS if rest.startswith(r + " the "))
        anchor_desc, _, j = parse_np(rest.split(), len(rel.split()) + 1)
        assert j == len(rest.split())
        (b,) = denoted(things, anchor_desc)
        others = [k for k in members if k != b]
        hits = [k for k in others if offset(things[k], things[b], rel) >= 10]
        assert len(hits) == 1 and all(offset(things[k], things[b], rel) <= 0 for k in others if k != hits[0])
        return tuple(hits)
    assert len(members) == 1, f"{text!r} is ambiguous"
    return tuple(members)


def answer(spec, question):
    """The correct answer to a generated question."""
    things, tok = spec.things, question.split()
    assert tok[-1] == "?"
    if tok[:3] == ["what", "is", "at"]:
        return {"top": spec.stuff_top, "bottom": spec.stuff_bottom}[tok[4]]
    if tok[0] == "what":
        (k,) = resolve(things, " ".join(tok[3:-1]))
        return {"color": things[k].color, "shape": things[k].shape, "size": things[k].size}[tok[1]]
    if tok[:2] == ["how", "many"]:
        desc, many, i = parse_np(tok, 2)
        assert many and tok[i:] == ["are", "there", "?"]
        return NUMBERS[len(denoted(things, desc))]
    if tok[:2] == ["is", "there"]:
        desc, many, i = parse_np(tok, 3)
        assert not many and i == len(tok) - 1 and tok[2] == ("an" if tok[3][0] in "aeiou" else "a")
        return "yes" if denoted(things, desc) else "no"
    assert tok[:2] == ["is", "the"]
    body = " ".join(tok[2:-1])
    rel = next(r for r in RELS if f" {r} the " in body)
    left, right = body.split(f" {rel} ")
    (a,), (b,) = resolve(things, "the " + left), resolve(things, right)
    d = offset(things[a], things[b], rel)
    assert d >= 10 or d <= 0, "relation question without a clear answer"
    return "yes" if d >= 10 else "no"


def meaning(spec, question):
    """What a generated question asks, independent of its wording."""
    things, tok = spec.things, question.split()
    if tok[:3] == ["what", "is", "at"]:
        return ("stuff", tok[4])
    if tok[0] == "what":
        return (tok[1], resolve(things, " ".join(tok[3:-1])))
    if tok[:2] == ["how", "many"]:
        return ("count", parse_np(tok, 2)[0])
    if tok[:2] == ["is", "there"]:
        return ("exist", parse_np(tok, 3)[0])
    body = " ".join(tok[2:-1])
    rel = next(r for r in RELS if f" {r} the " in body)
    left, right = body.split(f" {rel} ")
    return ("rel", resolve(things, "the " + left)[0], rel, resolve(things, right)[0])


# ---------------------------------------- rendering ----------------------------------------


def test_rendering_is_deterministic_by_seed():
    a, b, c = sample_scene(7), sample_scene(7), sample_scene(8)
    assert a.spec == b.spec and a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.thing_masks, b.thing_masks) and np.array_equal(a.stuff_masks, b.stuff_masks)
    assert a.image.tobytes() != c.image.tobytes()
    assert a.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and a.image.dtype == np.uint8


def test_masks_partition_image_and_stuff_follows_horizon(scenes):
    for sc in scenes:
        k = len(sc.spec.things)
        assert sc.thing_masks.shape == (k, IMAGE_SIZE, IMAGE_SIZE) and sc.stuff_masks.shape == (
            2,
            IMAGE_SIZE,
            IMAGE_SIZE,
        )
        total = sc.thing_masks.sum(0, dtype=int) + sc.stuff_masks.sum(0, dtype=int)
        assert (total == 1).all(), "every pixel must belong to exactly one mask"
        rows = np.arange(IMAGE_SIZE)[:, None] + 0.5
        below = rows >= horizon_line(sc.spec)[None, :]
        assert not (sc.stuff_masks[0] & below).any() and not (sc.stuff_masks[1] & ~below).any()
        assert sc.stuff_masks[0][:20].any() and sc.stuff_masks[1][-20:].any()


def test_thing_pixels_have_their_colour_and_stuff_looks_different(scenes):
    names = list(PALETTE)
    pal = np.array([PALETTE[c] for c in names])
    unit = pal / np.linalg.norm(pal, axis=1, keepdims=True)
    for sc in scenes:
        for t, m in zip(sc.spec.things, sc.thing_masks):
            # shading scales brightness, so the colour family is the direction of the mean RGB
            mean = sc.image[m].astype(float).mean(0)
            assert names[int(np.argmax(unit @ (mean / np.linalg.norm(mean))))] == t.color
        for kind, m in zip((sc.spec.stuff_top, sc.spec.stuff_bottom), sc.stuff_masks):
            mean = sc.image[m].astype(float).mean(0)
            assert np.sqrt(((pal - mean) ** 2).sum(1)).min() > 60, f"{kind} looks like a thing colour"


def test_sizes_shapes_and_visibility(scenes):
    for shape in SHAPES:
        small, big = (footprint(Thing(shape, "red", s, (64.0, 64.0))).sum() for s in ("small", "big"))
        assert 100 <= small <= 260 and 450 <= big <= 1000 and big > 3.5 * small
    ratios = {"circle": math.pi / 4, "square": 1.0, "diamond": 0.5, "triangle": 0.5}
    for shape, want in ratios.items():
        sc = render(spec_of((shape, "red", "big", (64.0, 100.0))))
        (x0, y0, x1, y1) = sc.boxes()[0]
        assert abs(sc.thing_masks[0].sum() / ((x1 - x0) * (y1 - y0)) - want) < 0.06, shape
        assert abs((x0 + x1) / 2 - 64.0) <= 1 and abs((y0 + y1) / 2 - 100.0) <= 1  # center = bbox centre
    for sc in scenes:
        for t, m in zip(sc.spec.things, sc.thing_masks):
            assert m.sum() >= 0.4 * footprint(t).sum()


def test_occlusion_and_hidden_things():
    sc = render(spec_of(("square", "red", "big", (60.0, 60.0)), ("circle", "blue", "small", (70.0, 60.0))))
    front = footprint(sc.spec.things[1])
    assert np.array_equal(sc.thing_masks[1], front)
    assert np.array_equal(sc.thing_masks[0], footprint(sc.spec.things[0]) & ~front)
    with pytest.raises(InputError, match="completely hidden"):
        render(spec_of(("circle", "red", "small", (60.0, 60.0)), ("square", "blue", "big", (60.0, 60.0))))


def test_json_round_trip():
    spec = sample_spec(123)
    again = SceneSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and render(again).image.tobytes() == render(spec).image.tobytes()


def test_numpy_seeds_and_centres_are_accepted():
    spec = SceneSpec(
        (Thing("star", "pink", "big", (np.float32(30.5), np.int64(40))),), "wall", "sand", 60, np.int64(4)
    )
    assert spec.seed == 4 and type(spec.seed) is int and spec.things[0].center == (30.5, 40.0)
    assert sample_spec(np.int64(9)) == sample_spec(9)


def test_split_seeds_are_disjoint():
    sets = [set(split_seeds(s, 1000)) for s in ("train", "val", "test")]
    assert all(len(s) == 1000 for s in sets) and not (
        sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]
    )
    with pytest.raises(InputError, match="train"):
        split_seeds("dev", 3)


# ---------------------------------------- language ----------------------------------------


def test_narrative_spans_name_every_thing_and_stuff(scenes):
    for sc in scenes:
        n = narrative(sc)
        things = sc.spec.things
        seen = []
        for seg in n.segments:
            tok = n.text[seg.start : seg.end].split()
            if seg.stuff_id is not None:
                assert (
                    tok == ["the", (sc.spec.stuff_top, sc.spec.stuff_bottom)[seg.stuff_id]]
                    and not seg.thing_ids
                )
                continue
            desc, many, i = parse_np(tok, 1)
            assert i == len(tok) and many == seg.plural == (len(seg.thing_ids) > 1)
            if many:
                assert tok[0] == NUMBERS[len(seg.thing_ids)]
            else:
                assert tok[0] == ("an" if tok[1][0] in "aeiou" else "a")
            assert set(denoted(things, desc)) >= set(seg.thing_ids)
            assert len({things[k].label for k in seg.thing_ids}) == 1  # groups only identical things
            assert np.array_equal(seg.mask(sc), sc.thing_masks[list(seg.thing_ids)].any(0))
            seen += seg.thing_ids
        assert sorted(seen) == list(range(len(things)))
        assert sorted(s.stuff_id for s in n.segments if s.stuff_id is not None) == [0, 1]
        starts = [s.start for s in n.segments]
        assert starts == sorted(starts) and all(a.end < b.start for a, b in zip(n.segments, n.segments[1:]))


def test_narrative_example_and_regions():
    spec = spec_of(
        ("circle", "red", "big", (30.0, 100.0)),
        ("square", "blue", "small", (70.0, 100.0)),
        ("square", "blue", "small", (100.0, 100.0)),
        ("star", "green", "small", (64.0, 20.0)),
    )
    sc = render(spec)
    texts = {narrative(sc, np.random.default_rng(s)).text for s in range(30)}
    plural = [s for s in narrative(sc).segments if s.plural]
    assert len(plural) == 1 and plural[0].thing_ids == (1, 2)
    assert any("two small blue squares" in t for t in texts)
    for t in texts:
        if " in the sky" in t:  # the region template: the star is the only thing in the sky
            assert t.split(" in the sky")[0].endswith("green star")
            assert "on the grass" in t


def test_referring_expressions_are_unambiguous(scenes):
    kinds = set()
    for sc in scenes:
        for r in referring_expressions(sc):
            assert resolve(sc.spec.things, r.text) == r.thing_ids, r.text
            assert np.array_equal(r.mask(sc), sc.thing_masks[list(r.thing_ids)].any(0))
            kinds.add(r.kind)
    assert kinds == {"attribute", "location", "relation"}


def test_location_expression_picks_the_extreme():
    spec = spec_of(
        ("triangle", "red", "small", (20.0, 40.0)),
        ("triangle", "blue", "small", (60.0, 90.0)),
        ("triangle", "red", "big", (100.0, 60.0)),
    )
    exprs = {r.text: r.thing_ids for r in referring_expressions(render(spec), max_per_kind=100)}
    assert exprs["the left-most triangle"] == (0,) and exprs["the right-most triangle"] == (2,)
    assert exprs["the bottom-most triangle"] == (1,) and exprs["the blue triangle"] == (1,)
    assert (0, 2) in (exprs.get("the red triangles"), exprs.get("the two red triangles"))
    # the anchor's wording is drawn at random: accept any name of the blue triangle
    left_of_blue = [
        t for t in exprs if t.startswith("the triangle left of the ") and resolve(spec.things, t[20:]) == (1,)
    ]
    assert left_of_blue and all(exprs[t] == (0,) for t in left_of_blue)


def test_qa_answers_are_right(scenes):
    counts = {}
    for sc in scenes:
        for it in qa_items(sc):
            assert answer(sc.spec, it.question) == it.answer, it.question
            counts[(it.kind, it.answer)] = counts.get((it.kind, it.answer), 0) + 1
    for kind in ("exist", "relation"):
        assert counts[(kind, "yes")] == counts[(kind, "no")] > 0


def test_qa_on_hand_built_scene():
    spec = spec_of(
        ("circle", "red", "big", (30.0, 100.0)),
        ("square", "blue", "small", (70.0, 100.0)),
        ("square", "blue", "small", (100.0, 30.0)),
        ("star", "orange", "small", (20.0, 20.0)),
        top="wall",
        bottom="water",
    )
    pairs = set(qa_pairs(render(spec), max_per_kind=1000))
    got = {}
    for q, a in pairs:
        assert answer(spec, q) == a
        got[meaning(spec, q)] = a
    # 0 big red circle (30, 100), 1 and 2 small blue squares, 3 small orange star (20, 20)
    expected = {
        ("count", (None, None, "square")): "two",
        ("color", (0,)): "red",
        ("shape", (3,)): "star",
        ("size", (0,)): "big",
        ("rel", 0, "left of", 3): "no",
        ("rel", 3, "above", 0): "yes",
        ("stuff", "bottom"): "water",
        ("stuff", "top"): "wall",
    }
    assert {k: got.get(k) for k in expected} == expected
    assert not any(k[0] == "color" and k[1] in ((1,), (2,)) for k in got)  # the two squares cannot be named
    exist = [a for k, a in got.items() if k[0] == "exist"]
    assert exist.count("yes") == exist.count("no") > 0  # existence questions are balanced


def test_located_questions_ask_what_the_place_leaves_open(scenes):
    asked = {}
    for sc in scenes:
        default = qa_items(sc)
        items = qa_items(sc, located=3)
        assert items[: len(default)] == default  # the default questions do not depend on the option
        for it in items[len(default) :]:
            assert it.kind == "located"
            kind, expr = re.fullmatch(r"what (color|shape|size) is (the .+) \?", it.question).groups()
            (k,) = resolve(sc.spec.things, expr)  # the expression names exactly one thing
            t = sc.spec.things[k]
            assert it.answer == {"color": t.color, "shape": t.shape, "size": t.size}[kind], it.question
            named = re.split(r" (?:left of|right of|above|below) ", expr)[0]  # the anchor may say more
            assert it.answer not in named.split(), it.question
            located = "relation" if named != expr else "location"
            asked[(kind, located)] = asked.get((kind, located), 0) + 1
    assert set(asked) == {(k, w) for k in ("color", "shape", "size") for w in ("location", "relation")}


def test_vocabulary_covers_all_generated_text():
    vocab = set(vocabulary())
    assert vocabulary() == sorted(vocab)
    for seed in range(200):
        sc = sample_scene(seed)
        texts = [narrative(sc).text] + [r.text for r in referring_expressions(sc)]
        texts += [q + " " + a for q, a in qa_pairs(sc, located=4)]
        for t in texts:
            assert t == t.lower() and "  " not in t
            assert set(t.split()) <= vocab, set(t.split()) - vocab


# ---------------------------------------- bad input ----------------------------------------

GOOD = {
    "things": [{"shape": "circle", "color": "red", "size": "big", "center": [40, 90]}],
    "stuff_top": "sky",
    "stuff_bottom": "grass",
}


@pytest.mark.parametrize(
    "patch, pattern",
    [
        (
            {"things": [{"shape": "hexagon", "color": "red", "size": "big", "center": [4, 9]}]},
            "shape.*circle",
        ),
        ({"things": [{"shape": "circle", "color": "teal", "size": "big", "center": [4, 9]}]}, "color.*red"),
        ({"things": [{"shape": "circle", "color": "red", "size": "huge", "center": [4, 9]}]}, "size.*small"),
        ({"things": [{"shape": "circle", "color": "red", "size": "big", "center": [4, 200]}]}, "outside"),
        ({"things": [{"shape": "circle", "color": "red", "size": "big"}]}, "missing.*center"),
        ({"things": []}, "1 to 6"),
        ({"things": GOOD["things"] * 7}, "1 to 6"),
        ({"stuff_top": "lava"}, "sky, wall"),
        ({"stuff_bottom": "sky"}, "cannot be at the bottom"),
        ({"stuff_top": "grass"}, "cannot be at the top"),
        ({"horizon": 2}, "horizon"),
        ({"seed": -1}, "seed"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_bad_specs_raise_input_error(patch, pattern):
    with pytest.raises(InputError, match=pattern):
        SceneSpec.from_json({**GOOD, **patch})


def test_same_stuff_twice_is_rejected():
    assert set(STUFF_TOP).isdisjoint(STUFF_BOTTOM)
    with pytest.raises(InputError, match="cannot be at the bottom"):
        SceneSpec.from_json({**GOOD, "stuff_top": "sky", "stuff_bottom": "sky"})


# ---------------------------------------- CLI ----------------------------------------


def test_cli_sample_render_show(tmp_path, capsys):
    out, js, npz, ov = (tmp_path / n for n in ("s.png", "s.json", "m.npz", "ov.png"))
    assert (
        main(
            [
                "world",
                "sample",
                "--seed",
                "5",
                "--out",
                str(out),
                "--json",
                str(js),
                "--masks",
                str(npz),
                "--overlay",
                str(ov),
            ]
        )
        == 0
    )
    sc = sample_scene(5)
    assert np.array_equal(np.asarray(Image.open(out)), sc.image)
    assert np.asarray(Image.open(ov)).shape == sc.image.shape
    m = np.load(npz)
    assert np.array_equal(m["things"], sc.thing_masks) and np.array_equal(m["stuff"], sc.stuff_masks)
    assert list(m["labels"]) == [t.label for t in sc.spec.things] + [sc.spec.stuff_top, sc.spec.stuff_bottom]
    again = tmp_path / "r.png"
    assert main(["world", "render", str(js), "--out", str(again), "--scale", "2"]) == 0
    assert np.array_equal(np.asarray(Image.open(again))[::2, ::2], sc.image)
    assert main(["world", "show", "--seed", "5", "--out", str(tmp_path / "v.png")]) == 0
    assert narrative(sc).text.split(" ")[0] in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GOOD, "stuff_top": "lava"}))
    assert main(["world", "render", str(bad), "--out", str(tmp_path / "x.png")]) == 1
    assert "lava" in capsys.readouterr().err


def test_language_is_the_same_in_every_process():
    # string hashing is randomised per process: anything iterating a set of words would differ
    import subprocess
    import sys

    code = (
        "import hashlib, numpy as np\n"
        "from flmm.world import narrative, qa_pairs, referring_expressions, sample_scene, split_seeds\n"
        "S = [sample_scene(s) for s in split_seeds('test', 12)]\n"
        "out = [(qa_pairs(sc, np.random.default_rng(7)), narrative(sc, np.random.default_rng(7)).text,\n"
        "        [(r.text, r.thing_ids) for r in referring_expressions(sc, np.random.default_rng(7))]) for sc in S]\n"
        "print(hashlib.md5(repr(out).encode()).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1, digests
