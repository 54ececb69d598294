"""The F-LMM mask head as one model: U-Net decoder + SAM refiner + language cues + keyword selector.

Checkpoints are ``config.json`` (:class:`HeadConfig`, with the identities of the LMM and SAM the head was
trained on) + ``model.safetensors`` holding only the trainable weights; the frozen SAM vision encoder comes
from the SAM checkpoint at load time. ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` work with
a local folder or a Hugging Face hub repo through ``huggingface_hub.ModelHubMixin``.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from huggingface_hub import ModelHubMixin
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from safetensors.torch import load_file, save_file

from flmm.errors import ConfigError, InputError, SpanError
from flmm.geometry import GridGeometry
from flmm.head.checks import check_capture, check_lmm, check_maps, check_sam
from flmm.head.config import HeadConfig, SamIdentity
from flmm.head.hub import CONFIG_NAME, MODEL_CARD, WEIGHTS_NAME, checkpoint_files, load_sam
from flmm.head.keyword import KeywordSelector, Phrase, group_keywords, text_of
from flmm.head.losses import canvas_targets, compute_losses, object_masks
from flmm.head.prep import CanvasBatch, canvas_logits_to_image, collate_canvases, prepare_object_maps
from flmm.head.refiner import FROZEN_PREFIXES, SamRefiner
from flmm.head.result import on_image
from flmm.head.sam_frame import frame_logits_to_image
from flmm.head.selector import PartSelector, find_parts, kept_parts, suppress_parts, true_parts
from flmm.head.text_prompt import LanguageCue
from flmm.head.types import GroundingQuery, GroundingResult, HeadOutput, ObjectFeatures, PartScorer
from flmm.head.unet import UNetDecoder
from flmm.image import load_image
from flmm.lmm.part_check import part_verifier
from flmm.lmm.types import CaptureResult, LMMIdentity

if TYPE_CHECKING:
    from flmm.lmm.frozen import FrozenLMM


class FLMMHead(
    nn.Module,
    ModelHubMixin,
    library_name="flmm",
    tags=["flmm", "image-segmentation", "grounding", "f-lmm"],
    paper_url="https://arxiv.org/abs/2406.05821",
    model_card_template=MODEL_CARD,
):
    """Trainable mask head over a frozen LMM.

    Args:
        config: the head's :class:`HeadConfig`.
        sam_model: transformers ``SamModel`` for the refiner (required when ``config.use_refiner``).
        decoder, keyword_selector, language_cue, refiner: optional pre-built parts; built from ``config``
            when omitted.
    """

    def __init__(
        self,
        config: HeadConfig,
        sam_model: nn.Module | None = None,
        decoder: UNetDecoder | None = None,
        keyword_selector: KeywordSelector | None = None,
        language_cue: LanguageCue | None = None,
        refiner: SamRefiner | None = None,
    ) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = HeadConfig.from_dict(config)
        self.config = config
        lmm = config.lmm
        self.decoder = decoder or UNetDecoder(
            config.num_input_maps, config.decoder_width, cue_width=config.decoder_cue_width
        )
        # the decoder's own language cue (flmm extension; None in the paper's head)
        self.decoder_cue: LanguageCue | None = None
        if config.decoder_cue_width:
            self.decoder_cue = LanguageCue(lmm.num_layers, lmm.hidden_size, config.decoder_cue_width)
        self.part_selector = PartSelector(lmm.num_layers, lmm.hidden_size) if config.part_selector else None
        self.keyword_selector = keyword_selector or KeywordSelector(lmm.hidden_size)
        self.refiner: SamRefiner | None = None
        self.language_cue: LanguageCue | None = None
        if config.use_refiner and config.sam is not None:  # validate() guarantees sam with use_refiner
            if refiner is None:
                if sam_model is None:
                    raise ConfigError(
                        f"this head uses a SAM refiner: pass sam_model=SamModel.from_pretrained({config.sam.name!r})"
                    )
                refiner = SamRefiner(sam_model)
            self.refiner = refiner
            check_sam(config.sam, SamIdentity.from_model(refiner.sam))
            self.language_cue = language_cue or LanguageCue(
                lmm.num_layers, lmm.hidden_size, config.sam.prompt_width
            )

    def check_compatible(self, lmm: LMMIdentity) -> None:
        """Raise :class:`ConfigError` naming both models when ``lmm`` does not fit this head (layers x heads,
        hidden size or number of visual grids differ)."""
        check_lmm(self.config.lmm, lmm)

    # ------------------------------------------------------------------ parts
    @property
    def device(self) -> torch.device:
        return self.decoder.out.weight.device

    def train(self, mode: bool = True) -> "FLMMHead":
        super().train(mode)
        if self.refiner is not None:
            self.refiner.train(mode)  # keeps SAM's vision encoder in eval mode
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should update (everything but SAM's vision encoder and positional code)."""
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict without the frozen SAM parts: exactly what ``model.safetensors`` holds."""
        frozen = tuple("refiner." + p for p in FROZEN_PREFIXES)
        return {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)}

    @torch.no_grad()
    def embed_image(self, image) -> torch.Tensor:
        """Frozen SAM embedding ``(1, P, e, e)`` float32 of a PIL / uint8 ``(H, W, 3)`` image; compute once per
        image and pass it in every :class:`GroundingQuery` / :meth:`predict` call for that image."""
        if self.refiner is None:
            raise ConfigError("this head has no SAM refiner, so it needs no image embedding")
        return self.refiner.embed_image(image)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        queries: Sequence[GroundingQuery],
        gt_masks: Sequence[torch.Tensor] | None = None,
        refine: bool = True,
        verifier: PartScorer | None = None,
    ) -> HeadOutput:
        """Run the head on a batch of samples (training and inference share this path).

        ``gt_masks`` (per query ``(K_i, H, W)``, as :meth:`compute_losses` takes them) matters only to a head
        with a part selector, in training: the refiner is then prompted with the parts the ground truth
        covers (teacher forcing, see :mod:`flmm.head.selector`). ``refine=False`` stops after the U-Net
        (and the part selector): no refiner logits, no SAM cost. ``verifier`` (inference, one query; see
        :class:`~flmm.lmm.part_check.PartVerifier`) rescores the parts of every object it ``wants`` from
        their masks, each part refined on its own, before the selector's cut.

        Returns:
            :class:`HeadOutput` with U-Net canvas logits ``(K, S, S)``, refiner low-res logits ``(K, R, R)``
            over each object's SAM frame, SAM IoU predictions, and per-query keyword logits ``(T_i,)``.
        """
        if verifier is not None and len(queries) != 1:
            raise InputError(f"a part verifier checks the objects of one query, got {len(queries)} queries")
        canvases, hidden, q_index, embeddings = [], [], [], []
        keyword_logits = []
        dev = self.device
        for qi, q in enumerate(queries):
            objects, geometries, kw_hidden = self._object_features(q)
            keyword_logits.append(
                self.keyword_selector(kw_hidden.to(dev))
                if kw_hidden is not None
                else torch.zeros(0, device=dev)
            )
            for obj in objects:
                canvases.append(
                    prepare_object_maps(
                        obj.attentions, geometries, self.config.canvas_size, self.config.merge
                    )
                )
                # moved to the device once: the decoder cue and the refiner's text prompt both read it
                hidden.append(obj.hidden_states.to(dev))
                q_index.append(qi)
            if self.refiner is not None and refine and len(objects):
                if q.image_embedding is None:
                    raise InputError(
                        f"query {qi} has objects but no image_embedding: use head.embed_image(image)"
                    )
                embeddings.append(q.image_embedding)
        query_index = torch.tensor(q_index, dtype=torch.long, device=dev)
        s = self.config.canvas_size
        if not canvases:
            # keeps the graph connected so a keyword-only batch can still backpropagate
            empty = torch.zeros(0, s, s, device=dev) + 0.0 * self.decoder.out.weight.sum()
            return HeadOutput(empty, None, None, None, [], keyword_logits, query_index)
        batch = collate_canvases(canvases)
        batch.maps = batch.maps.to(dev)
        cue = None
        if self.decoder_cue is not None:  # one vector per object: the mean of its tokens' cues
            cue = torch.stack([self.decoder_cue(h).mean(0) for h in hidden])
        logits = self.decoder(batch.maps, cue)
        parts = part_logits = selected = None
        if self.part_selector is not None:
            parts = [find_parts(lg, on) for lg, on in zip(logits, batch.on_image())]
            part_logits = self.part_selector(parts, hidden)
            if not (self.training and torch.is_grad_enabled()):  # inference: the selector decides
                if verifier is not None:
                    part_logits = self._verify_parts(
                        verifier, logits, batch, parts, part_logits, hidden, embeddings
                    )
                cut = self.config.part_threshold
                selected = suppress_parts(logits, parts, [kept_parts(pl, cut) for pl in part_logits])
            elif gt_masks is not None:  # training: the ground truth decides what prompts the refiner
                per_obj = object_masks(gt_masks, query_index, len(queries))
                targets, _ = canvas_targets(batch, per_obj, logits.device)
                selected = suppress_parts(logits, parts, true_parts(parts, targets))
        refined = iou = None
        frames = []
        if self.refiner is not None and refine:
            prompt = logits if selected is None else selected
            # one embedding per query that has objects; map each object to its row
            rows = {qi: r for r, qi in enumerate(i for i, q in enumerate(queries) if len(q.objects))}
            image_index = [rows[int(qi)] for qi in query_index]
            refined, iou, frames = self._refine(prompt, batch, hidden, image_index, embeddings)
        return HeadOutput(
            logits, batch, refined, iou, frames, keyword_logits, query_index, parts, part_logits, selected
        )

    def _object_features(
        self, q: GroundingQuery
    ) -> tuple[list[ObjectFeatures], list[GridGeometry], torch.Tensor | None]:
        """Both query forms as (objects, grid geometries, keyword hidden states), validated."""
        cap = q.capture
        if cap is None:
            if q.geometries is None:
                raise InputError("a query without a capture needs the grids' geometries")
            objects = list(q.objects)
            if not all(isinstance(o, ObjectFeatures) for o in objects):
                raise InputError("a query without a capture needs ObjectFeatures objects, not token indices")
            for o in objects:
                check_maps(self.config.lmm, o.attentions)  # type: ignore[union-attr, attr-defined]
            return objects, q.geometries, q.keyword_hidden  # type: ignore[return-value]
        check_capture(self.config.lmm, cap)
        t = cap.hidden_states.shape[0]
        feats = []
        for obj in q.objects:
            idx = [int(i) for i in obj]  # type: ignore[union-attr]
            if not idx or min(idx) < 0 or max(idx) >= t:
                raise SpanError(f"object token indices {idx} must be non-empty and lie in [0, {t})")
            feats.append(ObjectFeatures([a[idx] for a in cap.attentions], cap.hidden_states[idx]))
        return feats, cap.geometries, cap.last_hidden

    def _verify_parts(
        self, verifier, logits, batch, parts, part_logits, hidden, embeddings
    ) -> list[torch.Tensor]:
        """Part logits of a one-query batch rescored by ``verifier`` from each part's own mask on the
        image (refined alone when the head has a refiner, else the U-Net's part)."""
        out = list(part_logits)
        for k, p in enumerate(parts):
            n = p.count
            if n < 2 or not verifier.wants(k):
                continue
            one = [torch.arange(n, device=logits.device) == i for i in range(n)]
            alone = suppress_parts(logits[k : k + 1].expand(n, -1, -1), [p] * n, one)
            sub = CanvasBatch(
                batch.maps[k : k + 1].expand(n, -1, -1, -1),
                [batch.valid_hw[k]] * n,
                [batch.geometries[k]] * n,
            )
            if self.refiner is None or not embeddings:
                masks = torch.stack(canvas_logits_to_image(alone, sub.valid_hw, sub.geometries)) > 0
            else:
                refined, _, frames = self._refine(alone, sub, [hidden[k]] * n, [0] * n, embeddings)
                masks = torch.stack([frame_logits_to_image(lg, f) for lg, f in zip(refined, frames)]) > 0
            out[k] = verifier(k, part_logits[k], masks)
        return out

    def _refine(self, logits, batch, hidden, image_index, embeddings):
        """Refiner logits of the ``K`` objects of ``batch``; ``image_index`` ``(K,)``: each object's row in
        ``embeddings`` (one per image)."""
        ref = self.refiner
        cfg = self.config
        frames = [ref.frame(g.image_hw) for g in batch.geometries]
        image_index = torch.as_tensor(image_index, dtype=torch.long)
        emb = torch.cat([e.to(ref.device).reshape(1, *e.shape[-3:]) for e in embeddings])
        prompts = ref.mask_prompts(logits, batch.valid_hw, batch.geometries)
        boxes = ref.box_prompts(prompts, frames) if cfg.box_prompt else None
        text = [self.language_cue(h) for h in hidden] if cfg.text_prompt else None
        refined, iou = ref(emb, image_index, prompts if cfg.mask_prompt else None, boxes, text)
        return refined, iou, frames

    def compute_losses(
        self,
        output: HeadOutput,
        gt_masks: Sequence[torch.Tensor] | None,
        keyword_labels: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms and weighted total (see :func:`flmm.head.losses.compute_losses`); weights from config."""
        return compute_losses(
            output, gt_masks, keyword_labels, self.config.loss_weights, self.config.dice_smooth
        )

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def predict(
        self,
        capture: CaptureResult,
        objects: Sequence[Sequence[int]],
        image=None,
        image_embedding: torch.Tensor | None = None,
        lmm: "FrozenLMM | None" = None,
    ) -> GroundingResult:
        """Masks on the original image's pixels for ``K`` objects of one captured sample.

        Args:
            capture: the frozen LMM's capture for one image and text.
            objects: per object, token indices into ``capture``'s ``T`` axis.
            image: the image (PIL / uint8 array) when no ``image_embedding`` is given (refiner only).
            image_embedding: ``(1, P, e, e)`` from :meth:`embed_image`, reused across calls.
            lmm: the frozen LMM; when the config has a part check, it is asked about each part of a mask
                (:mod:`flmm.lmm.part_check`; needs ``image``). None: no check.

        Returns:
            :class:`GroundingResult` with ``(K, H, W)`` bool masks, logits and ``(K,)`` scores.
        """
        if self.refiner is not None and image_embedding is None:
            if image is None:
                raise InputError("pass image=... or image_embedding=head.embed_image(image)")
            image_embedding = self.embed_image(image)
        verifier = None
        if lmm is not None and self.config.part_check is not None:
            if image is None:
                raise InputError("the part check shows the LMM the image: pass image=... with lmm=...")
            phrases = [text_of(o, capture.offsets, capture.text) for o in objects]
            verifier = part_verifier(
                lmm, self.config.presence, self.config.part_check, load_image(image), phrases
            )
        out = self.forward([GroundingQuery(capture, objects, image_embedding)], verifier=verifier)
        return on_image(out, capture.geometries[0].image_hw)

    @torch.inference_mode()
    def select_keywords(self, capture: CaptureResult, threshold: float | None = None) -> list[Phrase]:
        """Phrases to ground in ``capture.text``: runs of adjacent tokens whose keyword probability is
        ``> threshold`` (default ``config.keyword_threshold``), with their character spans."""
        probs = torch.sigmoid(self.keyword_selector(capture.last_hidden.to(self.device)))
        thr = self.config.keyword_threshold if threshold is None else threshold
        offsets = capture.offsets if len(capture.offsets) else None
        return group_keywords(probs, thr, capture.positions, offsets, capture.text)

    # ------------------------------------------------------------------ checkpoints
    def _save_pretrained(self, save_directory: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in self.trainable_state_dict().items()}
        save_file(
            state, str(Path(save_directory) / WEIGHTS_NAME), metadata={"format": "pt", "library": "flmm"}
        )
        self.config.save(Path(save_directory) / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "FLMMHead":
        """Load a head from a local folder or a hub repo id.

        Keyword args: ``sam_model`` (a ``SamModel``; when omitted and the head has a refiner, the SAM named in
        the config is loaded with ``SamModel.from_pretrained``), ``map_location`` (default ``"cpu"``), and
        huggingface_hub's ``revision``, ``cache_dir``, ``token``, ``local_files_only``, ``force_download``.
        """
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except (HfHubHTTPError, LocalEntryNotFoundError, HFValidationError, FileNotFoundError) as e:
            raise ConfigError(
                f"cannot load an flmm head from {str(pretrained_model_name_or_path)!r}: {e}. Give a folder "
                f"holding {CONFIG_NAME} and {WEIGHTS_NAME}, or a reachable hub repo id"
            ) from e

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir=None,
        force_download: bool = False,
        local_files_only: bool = False,
        token=None,
        config=None,
        sam_model: nn.Module | None = None,
        map_location: str = "cpu",
        **kwargs,
    ) -> "FLMMHead":
        hub = dict(revision=revision, cache_dir=cache_dir, force_download=force_download, token=token)
        cfg_path, weights_path = checkpoint_files(model_id, local_files_only=local_files_only, **hub)
        head_cfg = HeadConfig.load(cfg_path)
        if head_cfg.use_refiner and sam_model is None:
            sam_model = load_sam(head_cfg.sam.name if head_cfg.sam else "")
        head = cls(head_cfg, sam_model=sam_model)
        head.load_trainable_weights(load_file(str(weights_path), device=str(map_location)))
        return head.to(map_location)

    def load_trainable_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict holding exactly the trainable weights (as saved by ``save_pretrained``)."""
        expected = set(self.trainable_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ConfigError(
                f"checkpoint does not fit this head: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise ConfigError(f"checkpoint weights do not fit this head's shapes: {e}") from e
