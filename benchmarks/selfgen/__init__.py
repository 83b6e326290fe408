"""The self-generated data experiment: synthetic arithmetic problems (`arithmetic`), its shared pieces (`common`),
and the scripts ``python -m benchmarks.selfgen.<sft_policy|sample_rollouts|loop|report>``."""
