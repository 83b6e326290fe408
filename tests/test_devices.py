"""--device / --dtype / --device_map reach every command that loads a model, and the pipelines the package builds
stay on the device the model was loaded on (a plain Pipeline moves a model without device_map to cuda:0)."""

import pytest
import torch

from modeling_sprm.apps.cli import main, parse_command


def test_the_scoring_pipeline_stays_where_the_model_was_loaded(tiny_sprm, monkeypatch):
    import transformers.pipelines.base as pipeline_base

    from modeling_sprm.evaluation.report import scoring_pipeline
    from modeling_sprm.pipeline_sprm import StepScoringPipeline

    model, tokenizer = tiny_sprm  # loaded on the CPU, as `--device cpu` does
    monkeypatch.setattr(pipeline_base, "is_torch_cuda_available", lambda: True)  # a machine with a GPU
    with pytest.raises((AssertionError, RuntimeError)):  # what `sprm score --device cpu` did there: moved to cuda:0
        StepScoringPipeline(model=model, tokenizer=tokenizer)
    scorer = scoring_pipeline(model, tokenizer)
    assert scorer.device == torch.device("cpu") and model.device == torch.device("cpu")
    assert 0.0 <= scorer({"question": "2+2?", "solution": "2 + 2 = 4."})["score"] <= 1.0


@pytest.mark.parametrize("command", ["score", "bon", "search", "eval", "demo", "train"])
def test_every_model_command_has_the_model_flags(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--device", "--dtype", "--device_map", "--quantization"))


def test_train_maps_device_to_the_trainer_and_refuses_what_it_cannot_do(tmp_path, capsys):
    from modeling_sprm.training.script import training_device

    _, model_args, training_args = parse_command("train", ["--data", "x", "--format", "outcome", "--output",
                                                           str(tmp_path), "--device", "cpu"])
    assert training_device(model_args.device, training_args).use_cpu is True
    assert training_device(None, training_args) is training_args
    for flags, message in [(["--device", "cuda:1"], "CUDA_VISIBLE_DEVICES"),
                           (["--quantization", "4bit"], "--quantization does not go with sprm train")]:
        with pytest.raises(SystemExit):
            main(["train", "--data", "x", "--format", "outcome", "--output", str(tmp_path), *flags])
        assert message in capsys.readouterr().err


def test_load_for_training_passes_dtype_and_device_map_to_the_load(saved_tiny, monkeypatch):
    from modeling_sprm import SPRMForStepScoring
    from modeling_sprm.training.script import load_for_training

    seen = {}
    real = SPRMForStepScoring.from_pretrained.__func__

    def spy(cls, path, *args, **kwargs):
        seen.update(kwargs)
        return real(cls, path, *args, **kwargs)

    monkeypatch.setattr(SPRMForStepScoring, "from_pretrained", classmethod(spy))
    model, _ = load_for_training(saved_tiny, dtype="bfloat16", device_map="cpu")
    assert seen["device_map"] == "cpu" and seen["dtype"] is torch.bfloat16
    assert model.device == torch.device("cpu") and model.backbone.dtype == torch.bfloat16
