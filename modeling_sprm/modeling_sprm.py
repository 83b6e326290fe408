"""SPRMForStepScoring: one causal-LM backbone that both generates (its LM head) and scores reasoning steps (a small
head on its hidden states), as MetaStone-S1's self-supervised process reward model.

The one path every score takes::

    text -> processing_sprm.SPRMProcessor       (steps.build_trace: steps and the token where each score is read)
         -> backbone forward up to the highest layer read (`feature_layer`, or `feature_layers` concatenated;
                                                   captured by hooks there; the layers above it, the final norm and
                                                   the LM head are not run, see `forward`)
         -> readouts.pool                          (`step_pooling`: the read token's state, or the mean of the step's)
         -> SPRMHead                               (Linear(c, 2c) ReLU Dropout Linear(2c, 1) -> step logits)
         -> sigmoid -> aggregation                 (step scores -> solution score)

Shipped as remote code: imports only torch, transformers, safetensors and the package's remote-code modules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .aggregation import aggregate
from .backbones import resolve_backbone, weights_fingerprint
from .configuration_sprm import SPRMConfig
from .readouts import pool

AUTO_MAP = {
    "AutoConfig": "configuration_sprm.SPRMConfig",
    "AutoModel": "modeling_sprm.SPRMForStepScoring",
    "AutoModelForCausalLM": "modeling_sprm.SPRMForStepScoring",
}
CUSTOM_PIPELINES = {
    "step-scoring": {"impl": "pipeline_sprm.StepScoringPipeline", "pt": ["AutoModel"], "tf": [], "type": "text"}
}
HEAD_PREFIX = "score_head."
# from_pretrained arguments that concern loading the backbone of a head-only checkpoint
_BACKBONE_LOAD_KWARGS = ("dtype", "torch_dtype", "quantization_config", "device_map", "attn_implementation", "max_memory")
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _right_padded(attention_mask: torch.Tensor | None) -> bool:
    """Whether a ``[batch, tokens]`` mask is ones then zeros in every row (padding only on the right)."""
    if attention_mask is None or attention_mask.dim() != 2:
        return False
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def _checkpointing(model: nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is on in ``model`` (transformers 5 renamed the flag)."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


class FeatureLayerReached(Exception):
    """Raised by the feature-layer hook of a scoring forward to end the backbone's forward there (the
    architecture-independent way to skip the layers above it: no copy of any model's forward loop)."""


class SPRMHead(nn.Sequential):
    """MetaStone-S1's step-scoring head: ``Linear(c, m*c) -> ReLU -> Dropout(p) -> Linear(m*c, 1)``.

    The module indices (0 and 3 hold weights) match MetaStone-S1's ``score_module.pt`` keys. With
    ``standardize=True`` the features are first standardised with the buffers ``feature_mean`` and ``feature_std``
    (``[c]``, set by ``set_feature_statistics``). Input ``[..., c]`` features, output ``[...]`` step logits.
    """

    def __init__(self, hidden_size: int, multiplier: int = 2, dropout: float = 0.5, standardize: bool = False):
        inner = multiplier * hidden_size
        super().__init__(nn.Linear(hidden_size, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, 1))
        self.standardize = standardize
        if standardize:
            self.register_buffer("feature_mean", torch.zeros(hidden_size))
            self.register_buffer("feature_std", torch.ones(hidden_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            features = (features - self.feature_mean) / self.feature_std
        return super().forward(features).squeeze(-1)

    @torch.no_grad()
    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Per-feature mean and standard deviation of ``features`` (``[N, c]``, e.g. every training step)."""
        if not self.standardize:
            raise ValueError("this head does not standardize its features (feature_normalization='none')")
        if features.dim() != 2 or features.shape[0] < 2 or features.shape[1] != self.feature_mean.shape[0]:
            raise ValueError(f"need [N >= 2, {self.feature_mean.shape[0]}] features, got {tuple(features.shape)}")
        values = features.double()
        self.feature_mean.copy_(values.mean(0).to(self.feature_mean))
        self.feature_std.copy_(values.std(0).clamp(min=1e-6).to(self.feature_std))

    @torch.no_grad()
    def folded_state_dict(self) -> dict[str, torch.Tensor]:
        """The four weights of an equivalent head without standardisation (MetaStone-S1's layout):
        ``W (x - mu) / sigma + b = (W / sigma) x + (b - W mu / sigma)``."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith("feature_")}
        if self.standardize:
            weight = self[0].weight / self.feature_std
            state["0.weight"] = weight
            state["0.bias"] = self[0].bias - weight @ self.feature_mean
        return state


@dataclass
class SPRMOutput(ModelOutput):
    """Output of [`SPRMForStepScoring`].

    Args:
        logits (`torch.FloatTensor` of shape `(batch, seq_len, vocab)`, *optional*): LM logits (generation mode, or
            `return_lm_logits=True`).
        step_logits (`torch.FloatTensor` of shape `(batch, num_steps)`): head logits, 0 where `step_mask` is False.
        step_scores (`torch.FloatTensor` of shape `(batch, num_steps)`): `sigmoid(step_logits)`, 0 where masked.
        step_mask (`torch.BoolTensor` of shape `(batch, num_steps)`): True where a step exists.
        scores (`torch.FloatTensor` of shape `(batch,)`): the aggregated solution scores.
        step_features (`torch.FloatTensor` of shape `(batch, num_steps, hidden)`, *optional*): the features the
            head read (with `return_step_features=True`), e.g. to cache them for training.
        cache, hidden_states, attentions: as returned by the backbone.
    """

    logits: torch.FloatTensor | None = None
    step_logits: torch.FloatTensor | None = None
    step_scores: torch.FloatTensor | None = None
    step_mask: torch.BoolTensor | None = None
    scores: torch.FloatTensor | None = None
    step_features: torch.FloatTensor | None = None
    cache: Any = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class SPRMForStepScoring(PreTrainedModel, GenerationMixin):
    config_class = SPRMConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _keep_in_fp32_modules = ["score_head"]
    _keep_in_fp32_modules_strict = ["score_head"]  # also for bf16 loads (the plain flag only acts for fp16)
    _auto_class = "AutoModel"

    def __init__(self, config: SPRMConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModelForCausalLM.from_config(config.text_config)
        self.score_head = SPRMHead(
            config.feature_size,
            config.head_hidden_multiplier,
            config.head_dropout,
            standardize=config.feature_normalization == "standardize",
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # The backbone initialises itself (or arrives pretrained); the head keeps PyTorch's default Linear init,
        # as MetaStone-S1's nn.Sequential does.
        if isinstance(module, nn.Linear) and any(module is m for m in self.score_head.modules()):
            module.reset_parameters()

    # -- backbone delegation (generation and embeddings) -------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.backbone.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_output_embeddings(value)

    def get_decoder(self):
        return self.backbone.get_decoder()

    # -- reading features ---------------------------------------------------------------------------------------
    def feature_modules(self) -> list[nn.Module] | None:
        """The backbone modules whose outputs are ``hidden_states[k]`` for each layer read (`SPRMConfig.read_layers`,
        in order), or None when this architecture has no recognisable layer list (then ``output_hidden_states`` is
        used instead)."""
        base = self.backbone.base_model
        n = self.config.text_config.num_hidden_layers
        layers = getattr(base, "layers", None)
        modules = []
        for k in self.config.read_layers:
            if k == 0:
                module = base.get_input_embeddings()
            elif k == n:
                module = getattr(base, "norm", None)
            else:
                module = layers[k - 1] if isinstance(layers, nn.ModuleList) and len(layers) == n else None
            if module is None:
                return None
            modules.append(module)
        return modules

    @contextlib.contextmanager
    def capture_features(self, stop: bool = False):
        """Context manager that records the feature layers' outputs of every backbone forward in a list, e.g.
        during `generate()`: each entry is ``[batch, new_tokens, feature_size]``, the layers read concatenated in
        `SPRMConfig.read_layers` order. Only those layers are kept. With ``stop=True`` the forward ends at the
        highest of them, by raising `FeatureLayerReached` (see `forward`)."""
        modules = self.feature_modules()
        if modules is None:
            raise NotImplementedError(
                f"cannot hook the feature layer of {type(self.backbone).__name__}; use output_hidden_states"
            )
        captured: list[torch.Tensor] = []
        outputs: dict[int, torch.Tensor] = {}
        last = max(range(len(modules)), key=lambda i: self.config.read_layers[i])  # the layer that runs last

        def hook(i: int, output) -> None:
            outputs[i] = output[0] if isinstance(output, tuple) else output
            if i == last:
                parts = [outputs.pop(j) for j in range(len(modules))]  # device_map may spread the layers
                captured.append(parts[0] if len(parts) == 1 else torch.cat([p.to(parts[-1].device) for p in parts], -1))
                if stop:
                    raise FeatureLayerReached

        handles = [m.register_forward_hook(lambda _m, _in, out, i=i: hook(i, out)) for i, m in enumerate(modules)]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def step_features_from_hidden(
        self, hidden: torch.Tensor, step_positions: torch.Tensor, step_starts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What the head reads of each step (`SPRMConfig.step_pooling`), the one place every caller gets it from.

        Args:
            hidden: `[batch, tokens, feature_size]`, the layers read concatenated (`capture_features`).
            step_positions: `[batch, num_steps]` read positions, -1 for padding.
            step_starts: `[batch, num_steps]` first token of each step (-1 for padding); needed for `"mean"`.
        Returns:
            `[batch, num_steps, feature_size]`, zeros at padded steps.
        """
        if step_positions.dim() != 2:
            raise ValueError(f"step_positions must be [batch, num_steps], got {tuple(step_positions.shape)}")
        if (step_positions >= hidden.shape[1]).any():
            raise ValueError(f"a step position is past the sequence length {hidden.shape[1]}")
        if self.config.step_pooling == "mean" and step_starts is None:
            raise ValueError(
                "step_pooling='mean' needs step_starts (the first token of each step; SPRMProcessor.pad gives them)"
            )
        return pool(hidden, step_starts, step_positions, self.config.step_pooling)

    def score_step_features(
        self, step_features: torch.Tensor, step_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Head + sigmoid + aggregation on features already gathered at step positions.

        Args:
            step_features: `[batch, num_steps, hidden]`.
            step_mask: `[batch, num_steps]`, True where a step exists.
        Returns:
            `(step_logits, step_scores, scores)` of shapes `[batch, num_steps]`, `[batch, num_steps]`, `[batch]`;
            computed in float32 whatever the backbone's dtype.
        """
        head_param = self.score_head[0].weight
        step_mask = step_mask.bool().to(head_param.device)
        # The head runs on existing steps only: padding costs nothing, and head dropout draws the same random
        # numbers whatever the padding (so cached-feature and backbone batches train identically).
        logits = torch.zeros(step_mask.shape, dtype=torch.float32, device=head_param.device)
        features = step_features.to(device=head_param.device, dtype=head_param.dtype)
        logits = logits.masked_scatter(step_mask, self.score_head(features[step_mask]).float())
        step_scores = torch.sigmoid(logits).masked_fill(~step_mask, 0.0)
        scores = aggregate(step_scores, step_mask, self.config.aggregation, self.config.empty_solution_score)
        return logits, step_scores, scores

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        step_positions: torch.LongTensor | None = None,
        step_features: torch.FloatTensor | None = None,
        step_mask: torch.BoolTensor | None = None,
        step_starts: torch.LongTensor | None = None,
        feature_grad_scale: float | None = None,
        return_lm_logits: bool | None = None,
        return_step_features: bool = False,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> SPRMOutput:
        r"""
        Two modes. **Scoring**: give `step_positions` (`[batch, num_steps]` token indices, -1 for padding) with
        `input_ids`, or precomputed `step_features` (`[batch, num_steps, config.feature_size]`) with `step_mask`; the
        output holds step logits, step scores and solution scores. **Language model**: without either, this is the
        backbone's causal LM (what `generate()` calls); `logits` and `cache` are returned. Other keyword
        arguments go to the backbone unchanged.

        Losses are computed by the caller from `step_logits` and `step_mask` (see `modeling_sprm.training.losses`).

        Args:
            step_starts (`[batch, num_steps]`, *optional*): the first token of each step (-1 for padding), as
                `SPRMProcessor` pads it; needed by `step_pooling="mean"`, unused by `"delimiter"`.
            feature_grad_scale (`float`, *optional*): scale the gradient flowing from the head into the backbone
                (MetaStone-S1 uses 1e-4) without changing the forward value.
            return_lm_logits (`bool`, *optional*): also compute LM logits in scoring mode (for a joint LM loss).
        """
        kwargs.pop("return_dict", None)  # always a ModelOutput
        scoring = step_positions is not None or step_features is not None
        want_lm = (not scoring) if return_lm_logits is None else return_lm_logits
        backbone_out = None
        if step_features is None:
            if input_ids is None and inputs_embeds is None:
                raise ValueError("give input_ids (or inputs_embeds), or precomputed step_features")
            if scoring and use_cache is None and cache is None:
                use_cache = False  # a scoring forward has no next token: no KV cache to build
            modules = self.feature_modules() if scoring else None
            use_hidden_states = bool(output_hidden_states) or (scoring and modules is None)
            # Stop at the feature layer when nothing above it is asked for. The backbone's own forward still
            # computes the masks, position ids and device moves (any architecture, quantized or device_map'ed);
            # only the layers above the feature layer, the final norm and the LM head are skipped. Not under
            # gradient checkpointing, whose recomputation would run the hooked layer again.
            stop = (
                modules is not None
                and not (want_lm or use_hidden_states or output_attentions or use_cache)
                and not (torch.is_grad_enabled() and _checkpointing(self.backbone))
            )
            if stop and cache is None and position_ids is None and _right_padded(attention_mask):
                # Causal attention never looks right, so right padding cannot change a real token's features: without
                # the mask, attention takes its fast causal kernel instead of a masked one (same features).
                attention_mask = None
            with self.capture_features(stop) if modules is not None else contextlib.nullcontext() as captured:
                try:
                    backbone_out = self.backbone(
                        input_ids=input_ids,
                        attention_mask=attention_mask,
                        position_ids=position_ids,
                        cache=cache,
                        inputs_embeds=inputs_embeds,
                        use_cache=use_cache,
                        logits_to_keep=logits_to_keep if want_lm else 1,
                        output_hidden_states=use_hidden_states,
                        output_attentions=output_attentions,
                        return_dict=True,
                        **kwargs,
                    )
                except FeatureLayerReached:
                    if not stop:
                        raise
            if scoring:
                if modules is not None:
                    hidden = captured[-1]
                else:
                    hidden = torch.cat([backbone_out.hidden_states[k] for k in self.config.read_layers], dim=-1)
                step_mask = step_positions >= 0
                step_features = self.step_features_from_hidden(hidden, step_positions, step_starts)
        elif step_mask is None:
            if step_positions is None:
                raise ValueError("precomputed step_features need a step_mask")
            step_mask = step_positions >= 0

        out = SPRMOutput()
        if backbone_out is not None:
            out.logits = backbone_out.logits if want_lm else None
            out.cache = backbone_out.cache
            out.hidden_states = backbone_out.hidden_states if output_hidden_states else None
            out.attentions = backbone_out.attentions
        if not scoring:
            return out

        if feature_grad_scale is not None and feature_grad_scale != 1.0:
            step_features = step_features * feature_grad_scale + step_features.detach() * (1.0 - feature_grad_scale)
        step_mask = step_mask.to(step_features.device).bool()
        out.step_logits, out.step_scores, out.scores = self.score_step_features(step_features, step_mask)
        out.step_mask = step_mask
        if return_step_features:
            out.step_features = step_features
        return out

    # -- construction, saving and loading -----------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike | PreTrainedModel,
        backbone_name_or_path: str | None = None,
        **kwargs,
    ) -> "SPRMForStepScoring":
        """Attach a fresh SPRM head to a causal LM.

        Args:
            backbone: a loaded causal LM, or a Hub id / local path (the embedded default id
                `HuggingFaceTB/SmolLM2-135M-Instruct` resolves offline, see `modeling_sprm.backbones`).
            backbone_name_or_path: the reference recorded for head-only checkpoints (defaults to the id or path
                given, or the loaded model's `name_or_path`).
            **kwargs: `SPRMConfig` head fields (`feature_layer`, `step_delimiters`, `aggregation`, ...) and backbone
                loading arguments (`dtype`, `quantization_config`, `device_map`, `attn_implementation`).
        """
        load_kwargs = {k: kwargs.pop(k) for k in _BACKBONE_LOAD_KWARGS if k in kwargs}
        if isinstance(backbone, (str, os.PathLike)):
            reference = str(backbone)
            backbone = AutoModelForCausalLM.from_pretrained(resolve_backbone(reference), **load_kwargs)
        elif isinstance(backbone, PreTrainedModel):
            if isinstance(backbone, SPRMForStepScoring):
                raise TypeError("this model already has an SPRM head")
            if load_kwargs:
                raise ValueError(f"loading arguments {sorted(load_kwargs)} need a backbone name or path")
            reference = backbone.name_or_path or None
        else:
            raise TypeError(f"backbone must be a causal LM or a name/path, got {type(backbone).__name__}")
        config = SPRMConfig(
            text_config=backbone.config,
            backbone_name_or_path=backbone_name_or_path or reference,
            backbone_fingerprint=weights_fingerprint(backbone),
            # the config setter pushes this down to text_config, which is the backbone's own config object
            attn_implementation=backbone.config._attn_implementation,
            **kwargs,
        )
        model = cls(config, backbone=backbone)
        model.score_head.to(device=backbone.get_input_embeddings().weight.device)
        return model.eval()

    def save_pretrained(self, save_directory: str | os.PathLike, head_only: bool | None = None, **kwargs) -> None:
        """Save a **full** checkpoint (backbone + head, safetensors) or, with `head_only=True`, only the head's
        weights plus the backbone reference (`backbone_name_or_path`, `backbone_fingerprint`). Either way the
        folder gets the code files, a full `auto_map` and `custom_pipelines`, so `AutoModel.from_pretrained(dir,
        trust_remote_code=True)` and `pipeline(model=dir, trust_remote_code=True)` work without this package.
        `head_only=None` keeps the kind this model was loaded as."""
        head_only = self.config.head_only if head_only is None else head_only
        save_directory = Path(save_directory)
        if head_only and not self.config.backbone_name_or_path:
            raise ValueError("a head-only checkpoint needs config.backbone_name_or_path to find its backbone")
        if not head_only and has_adapter(self.backbone):
            raise ValueError("this backbone carries a LoRA adapter: save it head-only (the head plus the adapter files)")
        self.config.auto_map = dict(AUTO_MAP)
        self.config.custom_pipelines = dict(CUSTOM_PIPELINES)
        was_head_only, self.config.head_only = self.config.head_only, head_only
        try:
            if head_only:
                from safetensors.torch import save_file
                from transformers.dynamic_module_utils import custom_object_save

                save_directory.mkdir(parents=True, exist_ok=True)
                custom_object_save(self, save_directory, config=self.config)
                self.config.save_pretrained(save_directory)
                state = {HEAD_PREFIX + k: v.detach().cpu().contiguous() for k, v in self.score_head.state_dict().items()}
                save_file(state, str(save_directory / "model.safetensors"), metadata={"format": "pt"})
                save_adapter(self.backbone, save_directory)
            else:
                super().save_pretrained(save_directory, **kwargs)
        finally:
            self.config.head_only = was_head_only
        _copy_pipeline_code(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs):
        """Load a full or a head-only checkpoint (a head-only one loads its backbone from the recorded reference,
        like an adapter; backbone arguments such as `dtype` and `quantization_config` apply to it)."""
        config = kwargs.pop("config", None)
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        if not isinstance(config, SPRMConfig):
            config = SPRMConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if not config.head_only:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        else:
            model = cls._from_head_only(pretrained_model_name_or_path, config, hub_kwargs, kwargs)
        return model._refuse_non_finite_weights(pretrained_model_name_or_path)

    @classmethod
    def _from_head_only(cls, path, config: SPRMConfig, hub_kwargs: dict, kwargs: dict) -> "SPRMForStepScoring":
        from safetensors.torch import load_file
        from transformers.utils import cached_file

        if not config.backbone_name_or_path:
            raise ValueError(f"{path} is a head-only checkpoint without backbone_name_or_path in its config")
        load_kwargs = {k: kwargs[k] for k in _BACKBONE_LOAD_KWARGS if k in kwargs}
        backbone = AutoModelForCausalLM.from_pretrained(resolve_backbone(config.backbone_name_or_path), **load_kwargs)
        if backbone.config.hidden_size != config.text_config.hidden_size:
            raise ValueError(
                f"backbone {config.backbone_name_or_path} has hidden size {backbone.config.hidden_size}, but the "
                f"head in {path} was trained on hidden size {config.text_config.hidden_size}"
            )
        expected = config.backbone_fingerprint
        config.text_config = backbone.config
        model = cls(config, backbone=backbone)
        weights = load_file(cached_file(str(path), "model.safetensors", **hub_kwargs))
        head_state = {k[len(HEAD_PREFIX) :]: v for k, v in weights.items() if k.startswith(HEAD_PREFIX)}
        try:
            model.score_head.load_state_dict(head_state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"the head weights in {path} do not fit this head: {err}") from None
        model.score_head.to(device=backbone.get_input_embeddings().weight.device)
        quantized = getattr(backbone.config, "quantization_config", None) is not None
        if expected and not quantized:
            found = weights_fingerprint(backbone)
            if found != expected:
                warnings.warn(
                    f"the backbone loaded from {config.backbone_name_or_path} ({found}) differs from the one this "
                    f"head was trained on ({expected}); scores may differ from the reported ones",
                    stacklevel=3,
                )
        if cached_file(str(path), ADAPTER_CONFIG_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs):
            load_adapter(backbone, path, hub_kwargs)
        model.config.name_or_path = str(path)
        return model.eval()

    # -- load-time checks ---------------------------------------------------------------------------------------
    def _refuse_non_finite_weights(self, path) -> "SPRMForStepScoring":
        """``self``, or a ValueError naming the first weight holding NaN or infinity: such a model scores every
        step NaN, which reads as "no error". (Quantized weights are integers: nothing to check.)"""
        for name, tensor in [*self.named_parameters(), *self.named_buffers()]:
            if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all():
                raise ValueError(f"{path} holds non-finite weights (NaN or infinity) in {name}; expected finite ones")
        return self


# -- LoRA adapters on the backbone (head-only checkpoints of `sprm train --lora_r`) -----------------------------------
# The adapter is injected into the backbone's own modules (peft's `inject_adapter_in_model`), so the backbone keeps
# its layout (feature hook, generation) and the head reads the adapted features. Files in PEFT's layout, so that
# `peft.PeftModel.from_pretrained(backbone, folder)` reads them too. peft is imported only when there is an adapter.

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
_PEFT_KEY_PREFIX = "base_model.model."


def has_adapter(backbone: nn.Module) -> bool:
    return bool(getattr(backbone, "peft_config", None))


def save_adapter(backbone: nn.Module, save_directory: Path) -> None:
    """Write the backbone's adapter (config and weights) into ``save_directory``; without one, remove adapter files
    an earlier save left there (they would be applied on load)."""
    if not has_adapter(backbone):
        for name in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME):
            (save_directory / name).unlink(missing_ok=True)
        return
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    # save_embedding_layers=False: the vocabulary never changes here (and "auto" asks the Hub about the base model)
    adapter = get_peft_model_state_dict(backbone, save_embedding_layers=False)
    state = {_PEFT_KEY_PREFIX + k: v.detach().cpu().contiguous() for k, v in adapter.items()}
    save_file(state, str(save_directory / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    backbone.peft_config["default"].save_pretrained(str(save_directory))


def load_adapter_weights(backbone: nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """Copy adapter ``weights`` (PEFT's layout) into the adapter already injected into ``backbone``."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(backbone, {k.removeprefix(_PEFT_KEY_PREFIX): v for k, v in weights.items()})
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"the adapter weights in {where} do not fit the adapter (missing {missing[:3]}, "
                         f"unexpected {list(result.unexpected_keys)[:3]})")


def load_adapter(backbone: nn.Module, path, hub_kwargs: dict) -> None:
    """Inject the adapter saved in ``path`` into ``backbone`` (frozen) and load its weights."""
    from peft import PeftConfig, inject_adapter_in_model
    from safetensors.torch import load_file
    from transformers.utils import cached_file

    config = PeftConfig.from_pretrained(str(path), **hub_kwargs)
    config.inference_mode = True
    inject_adapter_in_model(config, backbone)
    load_adapter_weights(backbone, load_file(cached_file(str(path), ADAPTER_WEIGHTS_NAME, **hub_kwargs)), str(path))


def _copy_pipeline_code(save_directory: Path) -> None:
    """Put the pipeline's code, and the modules it imports (generation, answers, ...), next to the model's, for
    `pipeline(model=dir, trust_remote_code=True)`."""
    from transformers.dynamic_module_utils import get_relative_import_files

    source = Path(__file__).with_name("pipeline_sprm.py")
    if source.is_file():
        for path in [str(source), *get_relative_import_files(str(source))]:
            shutil.copy(path, save_directory / Path(path).name)


def __getattr__(name: str):
    if name == "pad_traces":  # moved to processing_sprm
        warnings.warn(
            "modeling_sprm.modeling_sprm.pad_traces moved to modeling_sprm.processing_sprm.pad_traces",
            DeprecationWarning,
            stacklevel=2,
        )
        from .processing_sprm import pad_traces

        return pad_traces
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPRMForStepScoring", "SPRMHead", "SPRMOutput"]
