"""Configuration of a self-supervised process reward model (SPRM): a causal LM backbone plus a step-scoring head.

Shipped as remote code: imports only ``transformers`` (and the standard library).
"""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

AGGREGATIONS = ("geometric_mean", "min", "mean", "last", "product")
STEP_POOLINGS = ("delimiter", "mean")  # readouts.POOLINGS (this module imports only transformers)


class SPRMConfig(PretrainedConfig):
    r"""
    Configuration for [`SPRMForStepScoring`]. Defaults reproduce MetaStone-S1 (arXiv 2507.01951).

    Args:
        text_config (`dict` or `PretrainedConfig`):
            Config of the causal-LM backbone (Llama, Qwen2, ...). Named like the language model of transformers'
            composite models, so `generate()` finds it (`get_text_config()`); `backbone_config` is an alias.
        head_hidden_multiplier (`int`, defaults to 2):
            The head is `Linear(c, m*c) -> ReLU -> Dropout -> Linear(m*c, 1)` with `c` the backbone hidden size.
        head_dropout (`float`, defaults to 0.5):
            Dropout inside the head (active in training only).
        feature_normalization (`str`, defaults to `"none"`):
            `"standardize"` subtracts a per-feature mean and divides by a per-feature standard deviation (buffers of
            the head, set by the trainers from the training features) before the head's first layer. The function
            class is the same (it folds exactly into the first Linear layer, see `SPRMHead.folded_state_dict`), but
            training is not: SmolLM2's `hidden_states[-2]` has one feature near 560 (dimension 17), so a fresh head
            on raw features starts with saturated scores. `"none"` is MetaStone-S1's head.
        feature_layer (`int`, defaults to -2):
            Index into the backbone's `hidden_states` tuple whose features the head reads. -2 is the raw output of
            the second-to-last decoder layer (MetaStone-S1); -1 the final-norm output; 0 the embeddings.
        feature_layers (`list[int]`, *optional*):
            Several `hidden_states` indices whose readouts are concatenated in this order (the head then reads
            `hidden_size * len(feature_layers)` features); `None` reads `feature_layer` alone. A scoring forward
            still stops at the highest layer read.
        step_pooling (`str`, defaults to `"delimiter"`):
            What the head reads of each layer per step: `"delimiter"` the hidden state at the step's read position
            (MetaStone-S1), `"mean"` the mean of the hidden states of the step's tokens, from its first token to its
            read position inclusive (`readouts.step_means`).
        step_delimiters (`list[str]`, defaults to `[".\n\n"]`):
            Strings that end a step. Any non-empty strings work: `"\n\n"`, `"\n"`, `"。"`... Steps given as a list
            are joined with the first one.
        score_offset (`int`, defaults to -1):
            A step's score is read at the token holding the delimiter's first character plus this offset; -1 is
            the token just before the delimiter (MetaStone-S1).
        skip_empty_steps (`bool`, defaults to `True`):
            Drop steps whose text before the delimiter is only whitespace. Implies MetaStone-S1's "first delimiter of
            a run" and "no delimiter right after `<think>`" rules.
        protect_code_and_numbers (`bool`, defaults to `True`):
            Delimiters inside fenced code blocks, and whitespace-free delimiters between digits ("3.5"), do not end
            a step.
        score_trailing_step (`bool`, defaults to `True`):
            Score text after the last delimiter as a step (MetaStone-S1 does not). A solution without any delimiter
            is then one step.
        score_span (`str`, defaults to `"think"`):
            For traces with `<think>...</think>`: `"think"` scores the thinking span only (MetaStone-S1), `"response"`
            the final response only, `"both"` both, reported separately. Text without tags is scored whole.
        think_start_tag / think_end_tag (`str`):
            The tags that delimit the thinking span.
        aggregation (`str`, defaults to `"geometric_mean"`):
            How step scores make the solution score: `geometric_mean` (MetaStone-S1), `min`, `mean`, `last`,
            `product`.
        empty_solution_score (`float`, defaults to 0.0):
            The solution score when there is no step to score (MetaStone-S1 returns 0).
        threshold (`float`, defaults to 0.5):
            A step scoring below it is predicted wrong; the first such step is the predicted first error.
        max_length (`int`, *optional*):
            Longest input in tokens; longer inputs are cut and flagged `truncated`. Defaults to the backbone's
            `max_position_embeddings`.
        prompt_format (`str`, defaults to `"auto"`):
            How a question is put before a solution: `"chat"` (the tokenizer's chat template), `"plain"`
            (`plain_prompt_template`), or `"auto"` (chat when the tokenizer has a template).
        plain_prompt_template (`str`, defaults to `"{question}\n\n"`):
            Used for `prompt_format="plain"`.
        backbone_name_or_path (`str`, *optional*):
            Where the backbone comes from (Hub id or path). A head-only checkpoint loads its backbone from here.
        backbone_fingerprint (`str`, *optional*):
            Fingerprint of the backbone weights the head was attached to; a head-only load warns on a mismatch.
        head_only (`bool`, defaults to `False`):
            Whether the checkpoint holds the head only (the backbone comes from `backbone_name_or_path`).
        head_training (`dict`, *optional*):
            Set by the trainers: how the head was trained (loss, data, steps). `None` means an untrained head.
    """

    model_type = "sprm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PretrainedConfig | None = None
    head_hidden_multiplier: int = 2
    head_dropout: float = 0.5
    feature_normalization: Literal["none", "standardize"] = "none"
    feature_layer: int = -2
    feature_layers: list[int] | None = None
    step_pooling: Literal["delimiter", "mean"] = "delimiter"
    step_delimiters: list[str] = field(default_factory=lambda: [".\n\n"])
    score_offset: int = -1
    skip_empty_steps: bool = True
    protect_code_and_numbers: bool = True
    score_trailing_step: bool = True
    score_span: Literal["think", "response", "both"] = "think"
    think_start_tag: str = "<think>"
    think_end_tag: str = "</think>"
    aggregation: Literal["geometric_mean", "min", "mean", "last", "product"] = "geometric_mean"
    empty_solution_score: float = 0.0
    threshold: float = 0.5
    max_length: int | None = None
    prompt_format: Literal["auto", "chat", "plain"] = "auto"
    plain_prompt_template: str = "{question}\n\n"
    backbone_name_or_path: str | None = None
    backbone_fingerprint: str | None = None
    head_only: bool = False
    head_training: dict | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if isinstance(self.step_delimiters, str):
            self.step_delimiters = [self.step_delimiters]
        self.step_delimiters = list(self.step_delimiters)
        if not self.step_delimiters or not all(isinstance(d, str) and d for d in self.step_delimiters):
            raise ValueError(f"step_delimiters must be non-empty strings, got {self.step_delimiters!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.head_hidden_multiplier < 1:
            raise ValueError(f"head_hidden_multiplier must be >= 1, got {self.head_hidden_multiplier}")
        if self.feature_normalization not in ("none", "standardize"):
            raise ValueError(f"feature_normalization must be 'none' or 'standardize', got {self.feature_normalization!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if self.step_pooling not in STEP_POOLINGS:
            raise ValueError(f"step_pooling must be one of {STEP_POOLINGS}, got {self.step_pooling!r}")
        if self.feature_layers is not None:
            if isinstance(self.feature_layers, int) or not all(type(k) is int for k in self.feature_layers):
                raise ValueError(f"feature_layers must be a list of hidden_states indices, got {self.feature_layers!r}")
            self.feature_layers = list(self.feature_layers)
            if not self.feature_layers:
                raise ValueError("feature_layers must name at least one hidden_states index (or be None)")
        n_layers = self.text_config.num_hidden_layers
        named = [("feature_layer=", self.feature_layer)]
        for name, layer in named + [("feature_layers entry ", k) for k in self.feature_layers or []]:
            if not -(n_layers + 1) <= layer <= n_layers:
                raise ValueError(
                    f"{name}{layer} is outside the backbone's hidden_states "
                    f"(indices {-(n_layers + 1)}..{n_layers} for {n_layers} layers)"
                )
        if len(set(self.read_layers)) != len(self.read_layers):
            raise ValueError(f"feature_layers name the same hidden_states layer twice: {self.feature_layers}")
        # The wrapper ties nothing itself; the backbone ties its own embeddings.
        self.tie_word_embeddings = False
        # A checkpoint's `custom_pipelines` points transformers' `pipeline()` at the pipeline code the checkpoint
        # ships (for users without this package: `trust_remote_code=True`). When this class is the installed
        # package's own (not a copy loaded as remote code), the package registers the same "step-scoring" task
        # itself, and the entry would only make `pipeline("step-scoring", model=dir)` ask for remote code, so it is
        # dropped here; `SPRMForStepScoring.save_pretrained` writes it again.
        if not type(self).__module__.startswith("transformers_modules"):
            custom = getattr(self, "custom_pipelines", None)
            if isinstance(custom, dict) and set(custom) <= {"step-scoring"}:
                del self.custom_pipelines

    # generate() and cache code read these from the top-level config of a model.
    @property
    def num_hidden_layers(self) -> int:
        return self.text_config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def backbone_config(self) -> PretrainedConfig:
        return self.text_config

    @property
    def read_layers(self) -> list[int]:
        """The `hidden_states` indices the head reads, in order, counted from 0 (the embeddings)."""
        n = self.text_config.num_hidden_layers
        return [k if k >= 0 else n + 1 + k for k in (self.feature_layers or [self.feature_layer])]

    @property
    def feature_size(self) -> int:
        """Width of a step's features: the hidden size times the number of layers read."""
        return self.text_config.hidden_size * len(self.read_layers)

    @property
    def head_is_trained(self) -> bool:
        return bool(self.head_training)


__all__ = ["SPRMConfig"]
