"""Training memory: the meter of one optimisation step and the side-by-side benchmark of methods.

* :mod:`visionkit.memory.meter`: :func:`measure_training_step`, :class:`SavedTensorMeter`,
  :func:`state_bytes`, peak RSS and CUDA peaks, :class:`MemoryReport` (bytes).
* :mod:`visionkit.memory.benchmark`: :class:`BenchmarkCase`, :func:`run_benchmark`, ratios to
  full fine-tuning, the markdown table and the bar chart (``scripts/bench_memory.py``).
"""

from visionkit.memory.benchmark import (
    BenchmarkCase,
    BenchmarkConfig,
    BenchmarkError,
    add_ratios,
    bar_chart,
    markdown_table,
    measure_overhead,
    run_benchmark,
    run_case,
    task_case,
)
from visionkit.memory.meter import (
    MIB,
    MemoryReport,
    SavedTensorMeter,
    StateBytes,
    build_memory_report,
    cuda_peak,
    cuda_peak_start,
    measure_training_step,
    model_tensors,
    optimizer_state_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    state_bytes,
)

__all__ = [
    "MIB",
    "BenchmarkCase",
    "BenchmarkConfig",
    "BenchmarkError",
    "MemoryReport",
    "SavedTensorMeter",
    "StateBytes",
    "add_ratios",
    "bar_chart",
    "build_memory_report",
    "cuda_peak",
    "cuda_peak_start",
    "markdown_table",
    "measure_overhead",
    "measure_training_step",
    "model_tensors",
    "optimizer_state_bytes",
    "peak_rss_bytes",
    "reset_peak_rss",
    "run_benchmark",
    "run_case",
    "state_bytes",
    "task_case",
]
