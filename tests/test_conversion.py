"""Converters from released PRM checkpoints (MetaStone-S1, ReasonFlux-PRM-1.5B, TRL / Qwen2.5-Math-PRM token
classification) to SPRM checkpoints, tested against reference scorers written here from the documented semantics
(anchors.md 1.2-1.4, 2.1, 3, 5) on tiny random Qwen2 models with a Qwen-style byte-level BPE tokenizer."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from modeling_sprm.apps import conversion
from modeling_sprm.apps.conversion import ConversionError

ROOT = Path(__file__).resolve().parents[1]
# Qwen2's pre-tokenizer pattern: punctuation keeps the newlines after it, so ".\n\n" becomes one merged token.
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<extra_0>"]
QUESTION = "What is 2 + 3 * 4?"
STEPS = ["First multiply 3 by 4 to get 12.", "Then add 2 to 12.", "So the answer is 14."]


@pytest.fixture(scope="module")
def qwen_tokenizer():
    """A byte-level BPE with Qwen2's pre-tokenizer, trained here on text full of ".\\n\\n" step ends."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(QWEN_PATTERN), "isolated"), pre_tokenizers.ByteLevel(False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "First we multiply the numbers.\n\nThen we add them.\n\nSo the answer is 14.\n\n",
        "<think>\nLet me think about it.\n\nOK, that works.\n\n</think>\n\nThe answer is 3.\n\n",
    ] * 40
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    assert fast.encode(".\n\n", add_special_tokens=False) == [fast.convert_tokens_to_ids(".ĊĊ")]
    return fast


def tiny_qwen2_config(vocab_size: int):
    from transformers import Qwen2Config

    return Qwen2Config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=vocab_size, max_position_embeddings=512, tie_word_embeddings=False, initializer_range=0.5,
    )


def make_lm_folder(folder: Path, tokenizer, seed: int) -> Path:
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_head(c: int, seed: int) -> nn.Sequential:
    """MetaStone's head layout with weights large enough that step scores differ clearly by position."""
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(c, 2 * c), nn.ReLU(), nn.Dropout(0.5), nn.Linear(2 * c, 1))
    for p in head.parameters():
        nn.init.normal_(p, std=0.5)
    return head.eval()


@pytest.fixture(scope="module")
def metastone_folder(tmp_path_factory, qwen_tokenizer) -> Path:
    folder = make_lm_folder(tmp_path_factory.mktemp("metastone"), qwen_tokenizer, seed=0)
    torch.save(random_head(64, seed=1).state_dict(), folder / "score_module.pt")
    return folder


@pytest.fixture(scope="module")
def converted_metastone(tmp_path_factory, metastone_folder) -> Path:
    return conversion.convert("metastone", metastone_folder, tmp_path_factory.mktemp("sprm") / "converted")


def step_scorer(folder):
    """``pipeline("step-scoring")`` on a converted folder, with the package's own classes (no remote code)."""
    from transformers import AutoModel, AutoTokenizer, pipeline

    model, tokenizer = AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    return pipeline("step-scoring", model=model, tokenizer=tokenizer)


# ----------------------------------------------------------------------------------------------------------------
# MetaStone-S1: the reference scorer, on token ids (anchors.md 1.2-1.4)


def metastone_reference(folder: Path, text: str) -> tuple[list[float], float]:
    """MetaStone-S1's inference scoring of one raw text, re-implemented from its documented semantics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    state = torch.load(folder / "score_module.pt", map_location="cpu", weights_only=True)
    c = state["0.weight"].shape[1]
    head = nn.Sequential(nn.Linear(c, 2 * c), nn.ReLU(), nn.Dropout(0.5), nn.Linear(2 * c, 1))
    head.load_state_dict({k: v.float() for k, v in state.items()})
    head.eval()

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # the scorer adds no special tokens
    [delimiter] = tokenizer.encode(".\n\n", add_special_tokens=False)
    [think] = tokenizer.encode("<think>", add_special_tokens=False)
    [think_end] = tokenizer.encode("</think>", add_special_tokens=False)
    n = len(ids)
    # 1. delimiter tokens, first of each run only; 2. none right after <think>
    keep = [ids[p] == delimiter and not (p > 0 and ids[p - 1] in (delimiter, think)) for p in range(n)]
    # 4. shift left by one: the score is read at the token before the delimiter
    read = [p + 1 < n and keep[p + 1] for p in range(n)]
    # 3. the thinking span (start + 1, end), start/end = the single <think>/</think> (else 0 / n)
    starts, ends = [p for p in range(n) if ids[p] == think], [p for p in range(n) if ids[p] == think_end]
    start = starts[0] if len(starts) == 1 else 0
    end = ends[0] if len(ends) == 1 else n
    positions = [p for p in range(start + 1, end) if read[p]]
    with torch.no_grad():
        features = lm(torch.tensor([ids]), output_hidden_states=True).hidden_states[-2][0]
        scores = torch.sigmoid(head(features[positions]).squeeze(-1).float())
    if not positions:
        return [], 0.0
    return scores.tolist(), math.exp(torch.log(scores.clamp(min=1e-10)).mean().item())


AGREEING_TEXTS = {
    "chat with think span": "<|im_start|>user\nWhat is 2+3*4?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    "First multiply 3 by 4.\n\nThen add 2 to get 14.\n\nSo it is 14.\n\n</think>\n\nThe answer is 14.\n\nDone.",
    "consecutive delimiters": "<think>\nFirst step.\n\n.\n\n.\n\nSecond step.\n\n</think>\nanswer.\n\n",
    "delimiter right after <think>": "<think>.\n\nThe first real step.\n\nAnother one.\n\n</think>",
    "no tags, trailing text not scored": "We add the numbers.\n\nThen we multiply them.\n\nSo the answer is 14",
    "prompt delimiters before <think>": "Question part.\n\nMore of it.\n\n<think>\nA step here.\n\n</think>",
    "two </think>: everything after <think>": "<think>\nA b c.\n\n</think> x y.\n\n</think> z w.\n\n",
    "numbers and code fences": "<think>\nThe value is 3.5 here.\n\n```\ncode line.\n\n```\nEnd of it.\n\n</think>",
    "extra newline after delimiter": "<think>\nStep one.\n\n\nStep two.\n\n</think>",
    "lone <think>, truncated": "<think>\nStep one is this.\n\nStep two is cut off here",
    "no steps at all": "<think>\nNo delimiter anywhere in this text</think>",
}


@pytest.mark.parametrize("name", sorted(AGREEING_TEXTS))
def test_converted_metastone_matches_the_reference_scorer(name, metastone_folder, converted_metastone):
    text = AGREEING_TEXTS[name]
    expected_steps, expected_score = metastone_reference(metastone_folder, text)
    result = step_scorer(converted_metastone)({"text": text})
    got = [step["score"] for step in result["steps"]]
    assert len(got) == len(expected_steps), (got, expected_steps)
    assert got == pytest.approx(expected_steps, abs=1e-5)
    assert result["score"] == pytest.approx(expected_score, abs=1e-5)
    assert result["no_steps"] == (not expected_steps)


def test_golden_cases_are_discriminative(metastone_folder):
    """Step scores differ by far more than the 1e-5 tolerance, so a wrong read position would fail."""
    scores, _ = metastone_reference(metastone_folder, AGREEING_TEXTS["chat with think span"])
    assert len(scores) == 3 and max(scores) - min(scores) > 1e-2


@pytest.mark.parametrize(
    "text, extra_reference_steps",
    [
        # a whitespace-only step: MetaStone scores a delimiter token not directly preceded by one; we skip it
        ("<think>\nStep one.\n\n \n.\n\nStep two.\n\n</think>", 1),
        ("<think>\n.\n\nStep one.\n\n</think>", 1),  # the token before the delimiter is "\n", not <think>
        # no <think>: MetaStone's span starts at token 1, so a one-token first step (read at token 0) is dropped
        ("A.\n\nThen the next step.\n\n", -1),
    ],
)
def test_documented_divergences_from_metastone(text, extra_reference_steps, metastone_folder, converted_metastone):
    """Cases 1 and 2 of conversion/README.md, where character-level steps differ from MetaStone's token ids."""
    expected_steps, _ = metastone_reference(metastone_folder, text)
    got = step_scorer(converted_metastone)({"text": text})["steps"]
    assert len(expected_steps) == len(got) + extra_reference_steps


def test_metastone_config_spells_out_the_semantics(converted_metastone):
    from modeling_sprm import SPRMConfig

    config = SPRMConfig.from_pretrained(converted_metastone)
    for key, value in conversion.METASTONE_SEMANTICS.items():
        assert getattr(config, key) == value, key
    assert config.head_is_trained and config.head_training["family"] == "metastone"
    assert config.hidden_size == 64


def test_metastone_steps_input_scores_every_step(converted_metastone, metastone_folder):
    """{"question", "steps"} joins the steps with ".\\n\\n" after every one (MetaStone scores no trailing text),
    so each given step gets MetaStone's score of the same formatted text."""
    scorer = step_scorer(converted_metastone)
    result = scorer({"question": QUESTION, "steps": STEPS})
    assert len(result["steps"]) == len(STEPS) and all(s["score"] is not None for s in result["steps"])
    prompt = scorer.tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False,
                                                  add_generation_prompt=True)
    expected, score = metastone_reference(metastone_folder, prompt + "".join(step + "\n\n" for step in STEPS))
    assert [s["score"] for s in result["steps"]] == pytest.approx(expected, abs=1e-5)
    assert result["score"] == pytest.approx(score, abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# MetaStone: round trip, dtypes, bad input


def _tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("head_dtype", [torch.float32, torch.bfloat16])
def test_metastone_round_trip_is_exact(head_dtype, tmp_path, qwen_tokenizer):
    source = make_lm_folder(tmp_path / "source", qwen_tokenizer, seed=3)
    state = {k: v.to(head_dtype) for k, v in random_head(64, seed=4).state_dict().items()}
    torch.save(state, source / "score_module.pt")
    sprm = conversion.convert("metastone", source, tmp_path / "sprm")
    back = conversion.export_metastone(sprm, tmp_path / "back")

    assert _tensors_equal(torch.load(back / "score_module.pt", weights_only=True), state)
    assert _tensors_equal(load_file(back / "model.safetensors"), load_file(source / "model.safetensors"))
    text = AGREEING_TEXTS["chat with think span"]
    assert metastone_reference(back, text) == metastone_reference(source, text)
    assert (back / "tokenizer.json").is_file()


def test_export_of_a_lora_checkpoint_folds_the_adapter_into_the_backbone(tmp_path, qwen_tokenizer):
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import AutoModelForCausalLM

    from modeling_sprm import SPRMForStepScoring

    source = make_lm_folder(tmp_path / "source", qwen_tokenizer, seed=3)
    torch.save(random_head(64, seed=4).state_dict(), source / "score_module.pt")
    model = SPRMForStepScoring.from_pretrained(conversion.convert("metastone", source, tmp_path / "sprm"))
    model.config.backbone_name_or_path = str(source)
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["q_proj", "v_proj"]), model.backbone)
    for name, parameter in model.backbone.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(parameter, std=0.5)
    model.save_pretrained(tmp_path / "lora", head_only=True)
    ids = torch.tensor([[5, 9, 2, 7, 11]])
    with torch.no_grad():
        adapted = model.backbone(ids).logits
    back = conversion.export_metastone(tmp_path / "lora", tmp_path / "back")
    assert load_file(back / "model.safetensors").keys() == load_file(source / "model.safetensors").keys()
    with torch.no_grad():
        exported = AutoModelForCausalLM.from_pretrained(back)(ids).logits
        original = AutoModelForCausalLM.from_pretrained(source)(ids).logits
    torch.testing.assert_close(exported, adapted, rtol=1e-3, atol=1e-4)  # merging rounds differently
    assert not torch.allclose(original, adapted, atol=1e-3)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"feature_layer": -1}, "feature_layer=-1"),
        ({"step_pooling": "mean"}, "step_pooling='mean' (MetaStone: 'delimiter')"),
        ({"feature_layers": [-2, -1]}, "feature_layers=[-2, -1] (MetaStone: None)"),
    ],
)
def test_export_refuses_a_model_metastone_cannot_read(tmp_path, converted_metastone, options, match):
    from modeling_sprm import SPRMForStepScoring

    model = SPRMForStepScoring.from_pretrained(converted_metastone)
    other = SPRMForStepScoring.from_backbone(model.backbone, **{**conversion.METASTONE_SEMANTICS, **options})
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ConversionError, match=re.escape(match)) as error:
        conversion.export_metastone(tmp_path / "other", tmp_path / "out")
    assert "\n" not in str(error.value) and not (tmp_path / "out" / "score_module.pt").exists()


def test_export_warns_when_step_rules_differ(tmp_path, converted_metastone):
    from modeling_sprm import SPRMForStepScoring

    model = SPRMForStepScoring.from_pretrained(converted_metastone)
    model.config.score_trailing_step = True
    model.save_pretrained(tmp_path / "other")
    with pytest.warns(UserWarning, match="score_trailing_step=True"):
        conversion.export_metastone(tmp_path / "other", tmp_path / "out")


def test_metastone_to_a_bf16_backbone(tmp_path, metastone_folder, converted_metastone):
    """`--dtype bfloat16` stores the backbone in bf16; the head stays float32; scores move by bf16 rounding only."""
    from modeling_sprm import SPRMForStepScoring
    from modeling_sprm.apps.cli import main

    main(["convert", "metastone", str(metastone_folder), str(tmp_path / "bf16"), "--dtype", "bfloat16"])
    model = SPRMForStepScoring.from_pretrained(tmp_path / "bf16")
    assert model.backbone.dtype == torch.bfloat16 and model.score_head[0].weight.dtype == torch.float32
    text = {"text": AGREEING_TEXTS["chat with think span"]}
    low, full = step_scorer(tmp_path / "bf16")(text), step_scorer(converted_metastone)(text)
    assert len(low["steps"]) == len(full["steps"]) and low["score"] == pytest.approx(full["score"], abs=0.05)


def _bad_head(tmp_path, metastone_folder, qwen_tokenizer, payload) -> Path:
    folder = make_lm_folder(tmp_path / "bad", qwen_tokenizer, seed=0)
    if payload is not None:
        torch.save(payload, folder / "score_module.pt")
    return folder


@pytest.mark.parametrize(
    "payload, message",
    [
        (None, "score_module.pt.*not found"),
        ({"0.weight": torch.zeros(128, 64), "0.bias": torch.zeros(128), "3.weight": torch.zeros(1, 128)},
         r"missing \['3.bias'\]"),
        ({"0.weight": torch.zeros(128, 64), "0.bias": torch.zeros(128), "3.weight": torch.zeros(1, 128),
          "3.bias": torch.zeros(1), "extra": torch.zeros(1)}, r"unexpected \['extra'\]"),
        ({"0.weight": torch.zeros(100, 64), "0.bias": torch.zeros(128), "3.weight": torch.zeros(1, 128),
          "3.bias": torch.zeros(1)}, r"expected \[2c, c\]"),
        ({"0.weight": torch.zeros(128, 64), "0.bias": torch.zeros(128), "3.weight": torch.zeros(2, 128),
          "3.bias": torch.zeros(1)}, r"3.weight has shape \[2, 128\], expected \[1, 128\]"),
        ({"0.weight": torch.zeros(96, 48), "0.bias": torch.zeros(96), "3.weight": torch.zeros(1, 96),
          "3.bias": torch.zeros(1)}, "trained on hidden size 48, but the backbone .* has hidden size 64"),
        (random_head(64, 0), "not a plain state dict"),  # a pickled module, not its state dict
        ([torch.zeros(1)], "holds a list, not a state dict"),
    ],
    ids=["missing-file", "missing-key", "extra-key", "bad-first-shape", "bad-last-shape", "hidden-mismatch",
         "pickled-module", "list"],
)
def test_bad_metastone_heads_are_refused(payload, message, tmp_path, metastone_folder, qwen_tokenizer):
    folder = _bad_head(tmp_path, metastone_folder, qwen_tokenizer, payload)
    with pytest.raises(ConversionError, match=message):
        conversion.convert("metastone", folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_metastone_needs_a_single_token_delimiter(tmp_path, smollm2_tokenizer):
    """SmolLM2 splits ".\\n\\n": MetaStone's token-id rules would mean something else there, so refuse."""
    folder = make_lm_folder(tmp_path / "smol", smollm2_tokenizer, seed=0)
    torch.save(random_head(64, 0).state_dict(), folder / "score_module.pt")
    with pytest.raises(ConversionError, match="single token"):
        conversion.convert("metastone", folder, tmp_path / "out")


def test_convert_refuses_a_non_empty_destination(tmp_path, metastone_folder):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ConversionError, match="not an empty folder"):
        conversion.convert("metastone", metastone_folder, tmp_path / "out")


# ----------------------------------------------------------------------------------------------------------------
# The exact head re-parameterisations


def test_linear_as_sprm_head_computes_the_same_function():
    from modeling_sprm import SPRMHead

    torch.manual_seed(0)
    linear = nn.Linear(16, 1)
    head = SPRMHead(16, multiplier=2, dropout=0.0)
    head.load_state_dict(conversion.linear_as_sprm_head(linear.weight.data, linear.bias.data))
    x = torch.randn(5, 7, 16)
    assert torch.allclose(head(x), linear(x).squeeze(-1), atol=1e-6)


def test_two_class_softmax_is_a_sigmoid_of_the_logit_difference():
    torch.manual_seed(0)
    linear = nn.Linear(16, 2)
    w, b = conversion.two_class_to_logit(linear.weight.data, linear.bias.data)
    x = torch.randn(9, 16)
    assert torch.allclose(torch.sigmoid(x @ w.T + b).squeeze(-1), linear(x).softmax(-1)[:, 1], atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# ReasonFlux-PRM-1.5B: Linear(h, 1) on the last token of hidden_states[-1]


def reasonflux_reference(folder: Path, text: str) -> float:
    """ReasonFlux-PRM-1.5B's RewardModel: tokenize the text, sigmoid(Linear(h, 1)) of the last token's final
    hidden state (anchors.md 5)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    state = torch.load(folder / "reward_head.pt", weights_only=True)
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = lm.model(**enc, output_hidden_states=True).hidden_states[-1][0, -1]
        return torch.sigmoid(hidden @ state["weight"][0] + state["bias"][0]).item()


@pytest.fixture(scope="module")
def reasonflux_folder(tmp_path_factory, qwen_tokenizer) -> Path:
    folder = make_lm_folder(tmp_path_factory.mktemp("reasonflux"), qwen_tokenizer, seed=5)
    torch.manual_seed(6)
    torch.save({"weight": torch.randn(1, 64), "bias": torch.randn(1)}, folder / "reward_head.pt")
    return folder


def test_converted_reasonflux_matches_the_reference(tmp_path, reasonflux_folder):
    problem = "Problem: what is 2 + 3 * 4? "
    steps = ["First multiply three by four", "Then add two", "The answer is fourteen"]
    scorer = step_scorer(conversion.convert("reasonflux", reasonflux_folder, tmp_path / "sprm"))
    result = scorer({"question": problem, "solution": "\n\n".join(steps)})
    expected = [reasonflux_reference(reasonflux_folder, problem + "\n\n".join(steps[: k + 1])) for k in range(3)]
    assert [s["score"] for s in result["steps"]] == pytest.approx(expected, abs=1e-5)
    whole = reasonflux_reference(reasonflux_folder, problem + "\n\n".join(steps))
    assert result["score"] == pytest.approx(whole, abs=1e-5)
    assert max(expected) - min(expected) > 1e-3


def test_bad_reasonflux_head_is_refused(tmp_path, qwen_tokenizer):
    folder = make_lm_folder(tmp_path / "rf", qwen_tokenizer, seed=0)
    torch.save({"weight": torch.zeros(1, 32), "bias": torch.zeros(1)}, folder / "reward_head.pt")
    with pytest.raises(ConversionError, match=r"weight has shape \[1, 32\], expected \[1, 64\]"):
        conversion.convert("reasonflux", folder, tmp_path / "out")


# ----------------------------------------------------------------------------------------------------------------
# Token-classification PRMs: TRL (Linear(h, 2)) and Qwen2.5-Math-PRM (Linear-ReLU-Linear(h, 2), <extra_0>)


@pytest.fixture(scope="module")
def trl_folder(tmp_path_factory, qwen_tokenizer) -> Path:
    from transformers import Qwen2ForTokenClassification

    folder = tmp_path_factory.mktemp("trl")
    torch.manual_seed(7)
    config = tiny_qwen2_config(len(qwen_tokenizer))
    config.num_labels = 2
    model = Qwen2ForTokenClassification(config)
    nn.init.normal_(model.score.weight, std=0.5)
    model.save_pretrained(folder)
    qwen_tokenizer.save_pretrained(folder)
    return folder


def trl_reference(folder: Path, prompt: str, steps: list[str], separator: str = "\n") -> list[float]:
    """TRL's documented PRM inference: for each prefix, ``sep.join((prompt, *steps)) + sep`` through the token
    classifier; the last token's P(LABEL_1)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder, dtype=torch.float32).eval()
    scores = []
    for k in range(1, len(steps) + 1):
        enc = tokenizer(separator.join((prompt, *steps[:k])) + separator, return_tensors="pt")
        with torch.no_grad():
            scores.append(model(**enc).logits[0, -1].softmax(-1)[1].item())
    return scores


def test_converted_trl_prm_matches_the_reference(tmp_path, trl_folder):
    scorer = step_scorer(conversion.convert("token-classification", trl_folder, tmp_path / "sprm"))
    result = scorer({"question": QUESTION, "steps": STEPS})
    expected = trl_reference(trl_folder, QUESTION, STEPS)
    assert [s["score"] for s in result["steps"]] == pytest.approx(expected, abs=1e-5)
    assert result["score"] == pytest.approx(min(expected), abs=1e-5)
    assert max(expected) - min(expected) > 1e-3


@pytest.fixture(scope="module")
def qwen_prm_folder(tmp_path_factory, qwen_tokenizer) -> Path:
    """Qwen2.5-Math-PRM's layout: Qwen2 base weights (model.*), score.0 [h, h], score.2 [2, h], no LM head, and a
    config naming the custom remote class."""
    import json

    from transformers import Qwen2Model

    folder = tmp_path_factory.mktemp("qwen_prm")
    torch.manual_seed(8)
    config = tiny_qwen2_config(len(qwen_tokenizer))
    base = Qwen2Model(config)
    score = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    for p in score.parameters():
        nn.init.normal_(p, std=0.5)
    state = {f"model.{k}": v for k, v in base.state_dict().items()}
    state.update({f"score.{k}": v for k, v in score.state_dict().items()})
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors", metadata={"format": "pt"})
    raw = config.to_dict()
    auto_map = {
        "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
        "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel",
    }
    raw.update(architectures=["Qwen2ForProcessRewardModel"], num_labels=2, auto_map=auto_map)
    (folder / "config.json").write_text(json.dumps(raw))
    qwen_tokenizer.save_pretrained(folder)
    torch.save(score.state_dict(), folder / "reference_score.pt")  # for the reference scorer below
    return folder


def qwen_prm_reference(folder: Path, question: str, steps: list[str]) -> list[float]:
    """The Qwen2.5-Math-PRM card: chat with the system prompt, steps joined and ended by <extra_0>, softmax[:, 1]
    of the head at the <extra_0> tokens (anchors.md 2.1)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    tokenizer = AutoTokenizer.from_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    config = Qwen2Config.from_pretrained(folder)
    base = Qwen2Model(config).eval()
    base.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    head.load_state_dict(torch.load(folder / "reference_score.pt", weights_only=True))
    messages = [
        {"role": "system", "content": conversion.QWEN_PRM_SYSTEM_PROMPT},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        logits = head(base(input_ids=ids).last_hidden_state)[0]
    mask = ids[0] == tokenizer.encode("<extra_0>")[0]
    return logits[mask].softmax(-1)[:, 1].tolist()


def test_converted_qwen_prm_matches_the_reference(tmp_path, qwen_prm_folder):
    sprm = conversion.convert("token-classification", qwen_prm_folder, tmp_path / "sprm")
    result = step_scorer(sprm)({"question": QUESTION, "steps": STEPS})
    expected = qwen_prm_reference(qwen_prm_folder, QUESTION, STEPS)
    assert len(expected) == len(STEPS)
    assert [s["score"] for s in result["steps"]] == pytest.approx(expected, abs=1e-5)
    assert max(expected) - min(expected) > 1e-3


def test_token_classification_needs_a_two_class_head(tmp_path, qwen_tokenizer):
    folder = make_lm_folder(tmp_path / "lm", qwen_tokenizer, seed=0)  # a causal LM: no score.* head
    with pytest.raises(ConversionError, match="no two-class step head"):
        conversion.convert("token-classification", folder, tmp_path / "out")


def test_chat_prompt_template(qwen_tokenizer):
    import copy

    system = conversion.QWEN_PRM_SYSTEM_PROMPT  # has braces: \\boxed{}
    template = conversion.chat_prompt_template(qwen_tokenizer, system)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Q {x}?"}]
    assert template.format(question="Q {x}?") == qwen_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    plain = copy.deepcopy(qwen_tokenizer)
    plain.chat_template = None
    with pytest.raises(ConversionError, match="no chat template"):
        conversion.chat_prompt_template(plain, system)


# ----------------------------------------------------------------------------------------------------------------
# One pipeline, several families; the CLI and the scripts


def test_one_pipeline_compares_prm_families(converted_metastone, tmp_path, reasonflux_folder, trl_folder):
    folders = {
        "metastone": converted_metastone,
        "reasonflux": conversion.convert("reasonflux", reasonflux_folder, tmp_path / "rf"),
        "trl": conversion.convert("token-classification", trl_folder, tmp_path / "trl"),
    }
    for name, folder in folders.items():
        result = step_scorer(folder)({"question": QUESTION, "steps": STEPS})
        assert len(result["steps"]) == len(STEPS), name
        assert all(0.0 <= s["score"] <= 1.0 for s in result["steps"]), name


def test_cli_convert_and_scripts(tmp_path, metastone_folder, capsys):
    from modeling_sprm.apps.cli import main

    main(["convert", "metastone", str(metastone_folder), str(tmp_path / "sprm")])
    assert (tmp_path / "sprm" / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "reasonflux", str(metastone_folder), str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "(reward_head.pt) not found" in capsys.readouterr().err
    # the scripts in conversion/ are the same commands
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's package, not another installed copy
    script = ROOT / "conversion" / "convert_to_metastone.py"
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "sprm"), str(tmp_path / "ms")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "ms" / "score_module.pt").is_file()
