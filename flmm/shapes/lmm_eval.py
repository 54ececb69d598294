"""Measurements of the tiny LMM on held-out scenes: QA exact match and a grounding probe.

The grounding probe reads, for every caption phrase naming things, the softmax attention of its tokens
(query = the phrase's own tokens, as F-LMM does) over the 16x16 visual tokens, averaged over the
phrase's tokens and over all layers and heads, and compares it with the phrase's ground-truth mask
(used only here, to measure; never in training):

- pointing game: the arg-max cell overlaps the mask; ``chance`` is the fraction of cells overlapping
  it (the hit rate of a uniformly random cell);
- mass ratio: attention mass on the mask (cells weighted by their mask coverage) divided by the
  mask's area fraction (1.0 = no better than uniform);
- best head: the pointing game of the single (layer, head) map that points best on these scenes.

The position probe asks whether the visual tokens the LM reads still say WHERE they are: a ridge
classifier per axis (row, column of the grid) on each ViT hidden state and on the projector's output,
fitted on some scenes and scored on others. Only the architecture's own token index is the label.

The binding probe asks whether a visual token says what the thing under it IS (colour, shape, size),
the same way: an LM can only find "the circle" among the tokens if the circle's own tokens say so.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from flmm.errors import ConfigError
from flmm.shapes.lmm import eager_attention, feature_layers
from flmm.shapes.lmm_data import CAPTION_PROMPTS, assistant_turn, user_turn
from flmm.world import narrative, qa_items, referring_expressions, sample_scene
from flmm.world.qa import LOCATED
from flmm.world.scene import Scene
from flmm.world.spec import COLORS, SHAPES, SIZES


def _image_question(question: str) -> dict:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}


@torch.inference_mode()
def answer_questions(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    images: list[np.ndarray],
    questions: list[str],
    batch_size: int = 32,
    max_new_tokens: int = 4,
) -> list[str]:
    """Greedy answers to single-turn questions, one ``(128, 128, 3) uint8`` image per question."""
    tok = processor.tokenizer
    answers: list[str] = []
    for start in range(0, len(questions), batch_size):
        chunk = range(start, min(start + batch_size, len(questions)))
        prompts = [
            processor.apply_chat_template([_image_question(questions[i])], add_generation_prompt=True)
            for i in chunk
        ]
        enc = processor(
            images=[Image.fromarray(images[i]) for i in chunk],
            text=prompts,
            return_tensors="pt",
            padding=True,
        )
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, enc["input_ids"].shape[1] :]
        answers += [a.strip() for a in tok.batch_decode(new, skip_special_tokens=True)]
    return answers


def qa_accuracy(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    seeds: list[int],
    qa_per_kind: int = 2,
    batch_size: int = 32,
    located: int = 0,
) -> dict[str, float]:
    """Exact-match accuracy of greedy answers on the questions of scenes ``seeds``: ``qa_acc`` overall and
    ``qa_acc_<kind>`` per question kind, ``qa_acc_things_<n>`` on scenes of ``n`` things (1..6: how accuracy
    falls as scenes fill), plus ``qa_n`` (number of questions). With ``located`` > 0, up to
    that many questions per scene of the opt-in kind ``located`` are asked too: they get their own
    ``qa_acc_located`` and ``qa_n_located`` and are left out of ``qa_acc`` and ``qa_n`` (comparable with or
    without them)."""
    images, questions, answers, kinds, crowd = [], [], [], [], []
    for seed in seeds:
        scene = sample_scene(seed)
        for item in qa_items(scene, max_per_kind=qa_per_kind, located=located):
            images.append(scene.image)
            questions.append(item.question)
            answers.append(item.answer)
            kinds.append(item.kind)
            crowd.append(len(scene.spec.things))
    predicted = answer_questions(model, processor, images, questions, batch_size)
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for p, a, k, n in zip(predicted, answers, kinds, crowd):
        per_kind[k].append(p == a)
        if k != LOCATED:
            per_kind[f"things_{n}"].append(p == a)
    hits = [p == a for p, a, k in zip(predicted, answers, kinds) if k != LOCATED]
    result = {"qa_acc": float(np.mean(hits)), "qa_n": float(len(hits))}
    if located:
        result["qa_n_located"] = float(kinds.count(LOCATED))
    result.update({f"qa_acc_{k}": float(np.mean(v)) for k, v in sorted(per_kind.items())})
    return result


def _cell_coverage(mask: np.ndarray, grid: int) -> np.ndarray:
    """``(grid, grid)`` fraction of each cell's pixels inside the ``(H, W)`` bool mask."""
    h, w = mask.shape
    return mask.reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3))


def _phrase_maps(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    image: np.ndarray,
    prompt: str,
    answer: str,
    spans: list[tuple[int, int]],
) -> list[torch.Tensor]:
    """For each character span of ``answer``: ``(M, N, g, g)`` attention of the span's tokens (mean over
    them) over the visual grid, teacher-forcing ``USER: <image> prompt ASSISTANT: answer``."""
    messages = [user_turn(prompt, Image.fromarray(image)), assistant_turn(answer)]
    text = processor.apply_chat_template(messages)
    enc = processor(
        images=Image.fromarray(image), text=text, return_tensors="pt", return_offsets_mapping=True
    )
    offsets = enc.pop("offset_mapping")[0]
    # offsets refer to the text after <image> expansion: anchor on the last ASSISTANT: token instead
    role = (enc["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("ASSISTANT:")).nonzero()[-1, 0]
    answer_start = int(offsets[role, 1]) + 1
    out = model(**enc, output_attentions=True)
    image_pos = (enc["input_ids"][0] == model.config.image_token_id).nonzero().squeeze(1)
    grid = int(round(len(image_pos) ** 0.5))
    # (M, N, L, 256): rows of all tokens, image columns only
    att = torch.stack([a[0][:, :, image_pos] for a in out.attentions])
    maps = []
    for s, e in spans:
        a, b = answer_start + s, answer_start + e
        tokens = (
            ((offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0]))
            .nonzero()
            .squeeze(1)
        )
        rows = att[:, :, tokens].mean(2)  # F-LMM: mean over the phrase's tokens
        maps.append(rows.reshape(rows.shape[0], rows.shape[1], grid, grid).float())
    return maps


@torch.inference_mode()
def grounding_probe(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    seeds: list[int],
    text: str = "caption",
) -> dict[str, float]:
    """Pointing game and attention mass of thing phrases (see the module docstring).

    Args:
        text: ``"caption"`` (phrases of the scene's narrative) or ``"refexp"`` (each referring expression
            teacher-forced alone as the answer to the caption prompt).

    Returns ``{prefix}_point`` (mean map), ``{prefix}_chance``, ``{prefix}_mass_ratio``,
    ``{prefix}_best_head_point``, ``{prefix}_best_head`` (index ``layer * N + head``) and
    ``{prefix}_n`` (phrases), with ``prefix = "probe_" + text``.
    """
    hits, chance, ratio, head_hits = [], [], [], []
    with eager_attention(model):  # attention weights are only returned by eager attention
        for seed in seeds:
            scene = sample_scene(seed)
            if text == "caption":
                nar = narrative(scene)
                jobs = [
                    (
                        nar.text,
                        [(s.start, s.end) for s in nar.segments if s.thing_ids],
                        [s.mask(scene) for s in nar.segments if s.thing_ids],
                    )
                ]
            else:
                jobs = [(r.text, [(0, len(r.text))], [r.mask(scene)]) for r in referring_expressions(scene)]
            for answer, spans, masks in jobs:
                if not spans:
                    continue
                maps = _phrase_maps(model, processor, scene.image, CAPTION_PROMPTS[0], answer, spans)
                for m, mask in zip(maps, masks):
                    grid = m.shape[-1]
                    cover = torch.from_numpy(_cell_coverage(mask, grid)).float()
                    mean = m.mean((0, 1))
                    hits.append(float(cover.flatten()[mean.argmax()] > 0))
                    chance.append(float((cover > 0).float().mean()))
                    mean = mean / mean.sum()
                    ratio.append(float((mean * cover).sum() / cover.mean().clamp_min(1e-6)))
                    flat = m.flatten(0, 1).flatten(1)  # (M*N, g*g)
                    head_hits.append((cover.flatten()[flat.argmax(1)] > 0).float())
    prefix = f"probe_{text}"
    if not hits:
        return {f"{prefix}_n": 0.0}
    per_head = torch.stack(head_hits).mean(0)
    return {
        f"{prefix}_point": float(np.mean(hits)),
        f"{prefix}_chance": float(np.mean(chance)),
        f"{prefix}_mass_ratio": float(np.mean(ratio)),
        f"{prefix}_best_head_point": float(per_head.max()),
        f"{prefix}_best_head": float(per_head.argmax()),
        f"{prefix}_n": float(len(hits)),
    }


@torch.inference_mode()
@torch.no_grad()
def _visual_tokens(
    model: LlavaForConditionalGeneration, processor: LlavaProcessor, scenes: list[Scene]
) -> dict[str, torch.Tensor]:
    """The visual tokens of ``scenes``, stacked scene after scene: for every ViT hidden state
    ``"0"`` .. ``"L"`` (0 = patch embeddings, CLS dropped) and ``"projector"`` (what the LM reads), a
    ``(len(scenes) * N, hidden)`` float32 tensor, N = grid * grid tokens in row-major order."""
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    layers = feature_layers(model.config)
    rows: dict[str, list[torch.Tensor]] = defaultdict(list)
    for scene in scenes:
        image = Image.fromarray(scene.image)
        pixels = processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        hidden = tower(pixels.to(tower.device, tower.dtype), output_hidden_states=True).hidden_states
        states = [h[0, 1:] for h in hidden]
        for k, h in enumerate(states):
            rows[str(k)].append(h.float().cpu())
        rows["projector"].append(projector(torch.cat([states[k] for k in layers], -1)).float().cpu())
    return {k: torch.cat(v) for k, v in rows.items()}


def _ridge_accuracy(
    fit_x: torch.Tensor,
    fit_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: int,
    ridge: float,
) -> float:
    """Accuracy on ``(test_x, test_y)`` of a ridge least-squares classifier onto one-hot labels (with a
    bias), fitted on ``(fit_x, fit_y)``; ``x`` are ``(n, d)`` features, ``y`` ``(n,)`` int64 labels."""
    x1 = torch.cat([fit_x, torch.ones(len(fit_x), 1)], 1).double()
    gram = x1.T @ x1 + ridge * torch.eye(x1.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, x1.T @ torch.nn.functional.one_hot(fit_y, classes).double())
    t1 = torch.cat([test_x, torch.ones(len(test_x), 1)], 1).double()
    return float(((t1 @ weights).argmax(1) == test_y).double().mean())


def position_probe(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    fit_seeds: list[int],
    test_seeds: list[int],
    ridge: float = 1.0,
) -> dict[str, float]:
    """How well a linear read-out recovers each visual token's grid row and column.

    For every ViT hidden state ``k`` (0 = patch embeddings, CLS dropped) and for the projector's output
    (``"projector"``, what the LM reads), a ridge-regularised least-squares classifier onto one-hot row
    and column indices is fitted on the tokens of ``fit_seeds`` scenes and scored on ``test_seeds``.

    Returns ``position_{layer}_{row|col}_acc`` (chance ``1 / grid``) for each layer.
    """
    fit, test = (
        _visual_tokens(model, processor, [sample_scene(s) for s in seeds])
        for seeds in (fit_seeds, test_seeds)
    )
    n = fit["0"].shape[0] // len(fit_seeds)
    grid = int(round(n**0.5))
    index = torch.arange(n)
    out: dict[str, float] = {}
    for name, x in fit.items():
        for axis, label in (("row", index // grid), ("col", index % grid)):
            acc = _ridge_accuracy(
                x, label.repeat(len(fit_seeds)), test[name], label.repeat(len(test_seeds)), grid, ridge
            )
            out[f"position_{name}_{axis}_acc"] = acc
    return out


def _covering_things(scenes: list[Scene], grid: int, coverage: float) -> torch.Tensor:
    """``(len(scenes) * grid * grid, 3)`` int64: per visual token (scene after scene, row-major), the colour,
    shape and size index of the thing whose visible pixels cover more than ``coverage`` of its cell;
    -1 where none does."""
    out = []
    for scene in scenes:
        labels = torch.full((grid * grid, 3), -1, dtype=torch.long)
        for thing, mask in zip(scene.spec.things, scene.thing_masks):
            cells = torch.from_numpy(_cell_coverage(mask, grid).ravel() > coverage)
            labels[cells] = torch.tensor(
                [COLORS.index(thing.color), SHAPES.index(thing.shape), SIZES.index(thing.size)]
            )
        out.append(labels)
    return torch.cat(out)


def binding_probe(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    fit_seeds: list[int],
    test_seeds: list[int],
    coverage: float = 0.5,
    ridge: float = 1.0,
) -> dict[str, float]:
    """Does a visual token say what the thing under it is? A linear read-out of the colour, shape and
    size of the thing covering a token's cell, from that token alone.

    Only tokens whose cell (an 8x8-pixel patch of the 128-pixel scene) is covered to more than
    ``coverage`` (>= 0.5: by one thing at most) by one thing's visible pixels count; the world's masks
    are used here to measure, never in training. Per ViT hidden state and for the projector's output, a ridge
    classifier is fitted on the tokens of ``fit_seeds`` and scored on those of ``test_seeds``. An LM can
    answer "what color is the circle ?" by looking for the circle only where tokens carry the shape
    locally; tokens that carry the scene's shapes as a whole leave it to guess among the scene's colours.

    Returns ``binding_{layer}_{color|shape|size}_acc`` and ``binding_{color|shape|size}_majority`` (the
    share of the most frequent value among the scored tokens: what a read-out that ignores the token
    gets), plus ``binding_tokens`` (number scored).
    """
    if not 0.5 <= coverage < 1.0:
        raise ConfigError(
            f"coverage must be in [0.5, 1) so that one thing at most covers a cell, got {coverage}"
        )
    fit_scenes, test_scenes = [sample_scene(s) for s in fit_seeds], [sample_scene(s) for s in test_seeds]
    fit, test = _visual_tokens(model, processor, fit_scenes), _visual_tokens(model, processor, test_scenes)
    grid = int(round((fit["0"].shape[0] // len(fit_seeds)) ** 0.5))
    fit_y, test_y = (
        _covering_things(fit_scenes, grid, coverage),
        _covering_things(test_scenes, grid, coverage),
    )
    fit_rows, test_rows = fit_y[:, 0] >= 0, test_y[:, 0] >= 0
    out: dict[str, float] = {"binding_tokens": float(test_rows.sum())}
    for a, (attribute, values) in enumerate((("color", COLORS), ("shape", SHAPES), ("size", SIZES))):
        counts = torch.bincount(test_y[test_rows, a], minlength=len(values))
        out[f"binding_{attribute}_majority"] = float(counts.max() / counts.sum())
        for name, x in fit.items():
            out[f"binding_{name}_{attribute}_acc"] = _ridge_accuracy(
                x[fit_rows],
                fit_y[fit_rows, a],
                test[name][test_rows],
                test_y[test_rows, a],
                len(values),
                ridge,
            )
    return out
