"""The metric Space's app: evaluate's standard widget for this metric (as `evaluate-cli create` writes it)."""

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("sprm_processbench.py")
launch_gradio_widget(module)
