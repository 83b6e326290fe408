"""The heads of the loop at power, shared by ``gpu_job.py`` (heads that guide the search) and ``power.py`` (the
analysis on CPU), so both train them the same way.

A method is one of ``central_experiment.METHODS`` (outcome-only objectives, ``step_supervised`` on the grader's
true step labels) or a Monte-Carlo-labelled head: ``step_bce`` on the soft MC labels (``mc_soft``, the share of
finishes that reach the right answer) or the hard ones (``mc_hard``, any finish right), with standardised features
like the others. Budget: 20 epochs, lr 2e-3, batch 32 (the loop's, ``loop.py``). Training rows are the job's rows
(``rollouts.jsonl`` + features) with the step labels the method learns from.
"""

from __future__ import annotations

import tempfile

from benchmarks.central_experiment import METHODS, STANDARDIZE
from benchmarks.prm_protocols import Budget, Method, fit_head, head_for

MC_METHODS = [
    Method("mc_soft", "step", "step_bce", feature_normalization=STANDARDIZE),
    Method("mc_hard", "step", "step_bce", feature_normalization=STANDARDIZE),
]
BUDGET = Budget(epochs=20, learning_rate=2e-3, batch_size=32)
STEP_LABELS = {"mc_soft": "mc_soft", "mc_hard": "mc_hard"}  # row field a method's step labels come from


def method(name: str) -> Method:
    for m in METHODS + MC_METHODS:
        if m.name == name:
            return m
    raise ValueError(f"unknown method {name!r}")


def training_rows(rows: list[dict], name: str) -> list[dict]:
    """``prm_protocols.fit_head`` rows: float32 features, the outcome label, and the step labels of ``name``
    (the grader's, or the MC labels; rows without MC labels are left out of an MC method)."""
    field = STEP_LABELS.get(name, "step_labels")
    return [
        {
            "id": f"{r['split']}-{r['problem']}-{r['sample']}",
            "step_features": r["step_features"].float(),
            "outcome_label": r["outcome_label"],
            "step_labels": r[field],
            "num_steps": len(r["steps"]),
            "rollout_truncated": r["truncated"],
        }
        for r in rows
        if field in r
    ]


def carrier(hidden_size: int):
    """An SPRM on CPU whose head reads ``hidden_size`` features, for training heads on cached features: its backbone
    is a one-layer random stand-in of that width, never run (the rows carry the policy's features)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling_sprm import SPRMForStepScoring

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=hidden_size,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        vocab_size=8,
    )
    return SPRMForStepScoring.from_backbone(
        LlamaForCausalLM(config), backbone_name_or_path="stand-in (features cached)"
    )


def train(model, name: str, rows: list[dict], seed: int):
    """A head of method ``name`` trained (seeded) on job rows; ``model`` is an SPRM on CPU (its backbone is not
    run: the rows carry features). Returns the trained SPRM (``head_for(model, method)``)."""
    m = method(name)
    head = head_for(model, m)
    with tempfile.TemporaryDirectory() as tmp:
        fit_head(head, m, training_rows(rows, name), seed, BUDGET, tmp)
    return head
