"""ProcessBench metrics for step scorers, as an ``evaluate`` module (loads offline from its folder):

    import evaluate
    from modeling_sprm.evaluation import METRIC_PATH

    metric = evaluate.load(METRIC_PATH)   # or the folder path, or its metric Space's id once published
    metric.compute(predictions=[[0.9, 0.2, 0.8], [0.7, 0.9]], references=[1, -1], threshold=0.5)

Self-contained: it imports only ``evaluate``, ``datasets``, numpy and ``processbench.py`` beside it (which the
``modeling_sprm`` package imports too), so this folder is a complete metric Space (``README.md`` is its card).
"""

import datasets
import evaluate

from .processbench import first_below, processbench_f1, step_auroc

_DESCRIPTION = """
ProcessBench (Zheng et al., 2024, arXiv 2412.06559) for step scorers such as process reward models. A solution's
predicted first error is its first step scoring below `threshold` (-1 if none). `error_acc` is the share of
erroneous solutions (reference != -1) whose first error is predicted exactly, `correct_acc` the share of correct
solutions (reference == -1) predicted error-free, `f1` their harmonic mean (None when one kind is absent).
`step_auroc` ranks the steps before the first error (correct) against the first error (wrong); later steps are
unlabelled. Choose `threshold` on training data, never on the test split.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float | None]]`): the step scores of each solution, in [0, 1]; None for a step that
        was not scored (cut off by truncation).
    references (`list[int]`): the index of each solution's first wrong step, -1 when it has none.
    threshold (`float`, defaults to 0.5): a step scoring below it is predicted wrong.
Returns:
    `{"f1", "error_acc", "correct_acc", "step_auroc", "n", "n_error", "n_correct", "threshold"}`.
Example:
    >>> metric = evaluate.load(METRIC_PATH)
    >>> metric.compute(predictions=[[0.9, 0.2, 0.8], [0.7, 0.9]], references=[1, -1], threshold=0.5)["f1"]
    1.0
"""

_CITATION = """
@article{zheng2024processbench,
  title={ProcessBench: Identifying Process Errors in Mathematical Reasoning},
  author={Zheng, Chujie and Zhang, Zhenru and Zhang, Beichen and Lin, Runji and Lu, Keming and Yu, Bowen and
          Liu, Dayiheng and Zhou, Jingren and Lin, Junyang},
  journal={arXiv preprint arXiv:2412.06559},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SprmProcessbench(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://github.com/QwenLM/ProcessBench"],
        )

    def _compute(self, predictions, references, threshold: float = 0.5) -> dict:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        for i, (scores, label) in enumerate(zip(predictions, references)):
            if label < -1 or label >= max(len(scores), 1):
                raise ValueError(f"reference {i} is {label}: expected -1 or a step index < {len(scores)}")
        result = processbench_f1([first_below(s, threshold) for s in predictions], references)
        # ProcessBench labels only the first error: the steps before it are right, the ones after it unknown
        step_labels = [[1.0] * len(s) if label == -1 else [1.0] * label + [0.0] + [None] * (len(s) - label - 1)
                       for s, label in zip(predictions, references)]
        result["step_auroc"] = step_auroc(predictions, step_labels)
        result["threshold"] = threshold
        return result
