"""The convolutions of a compiled XLA program, read from its HLO text, rebuilt and timed one by one.

XLA:CPU runs a convolution asynchronously on Eigen's thread pool, so a profiler trace holds only the launch of
its thunk (microseconds) and none of its work. `common.profile_ops` uses `timed_convolutions` to put a time on
each convolution of a step: the same shapes, window, dimension labels and dtype, compiled and run alone.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import statistics
import time

# `%name = f32[64,32,32,64]{3,2,1,0} convolution(%lhs, %rhs), window={...}, dim_labels=b01f_01io->b01f, ...`
_CONVOLUTION = re.compile(
    r"(?P<dtype>\w+)\[(?P<out>[\d,]*)\]\S* convolution\(%(?P<lhs>[^,\s]+), %(?P<rhs>[^,\s)]+)\), "
    r"window=\{(?P<window>[^}]*)\}, dim_labels=(?P<labels>\w+_\w+->\w+)(?P<rest>.*)"
)
_DEFINITION = re.compile(r"^\s*(?:ROOT )?%(?P<name>[^\s=]+) = (?P<dtype>\w+)\[(?P<shape>[\d,]*)\]")
_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}
# HLO's dimension labels name spatial dimensions by digit; JAX's string specs by letter.
_SPATIAL_LETTERS = "HWDXYZ"


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(",") if d)


@dataclasses.dataclass(frozen=True)
class Convolution:
    """One HLO convolution: operand and result shapes, its window and dimension labels, as the program has it."""

    dtype: str  # HLO's element type of the result, e.g. "f32".
    lhs_dtype: str
    rhs_dtype: str
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    window: str  # HLO's window, e.g. "size=3x3 stride=2x2 pad=0_1x0_1".
    dim_labels: str  # e.g. "b01f_01io->b01f".
    feature_group_count: int = 1
    batch_group_count: int = 1

    def describe(self) -> str:
        """One line: the result and operand shapes, window and labels."""
        groups = f" groups={self.feature_group_count}" if self.feature_group_count > 1 else ""
        groups += f" batch_groups={self.batch_group_count}" if self.batch_group_count > 1 else ""
        return (
            f"{self.dtype}{list(self.out_shape)} = conv({list(self.lhs_shape)}, {list(self.rhs_shape)}) "
            f"{{{self.window}}} {self.dim_labels}{groups}"
        )

    def window_fields(self) -> dict[str, list]:
        """HLO's window as lists per spatial dimension: size, stride, pad (lo, hi), lhs/rhs dilation, reversal."""
        count = len(self.lhs_shape) - 2
        fields = {
            "size": [1] * count,
            "stride": [1] * count,
            "pad": [(0, 0)] * count,
            "lhs_dilate": [1] * count,
            "rhs_dilate": [1] * count,
            "rhs_reversal": [0] * count,
        }
        for item in self.window.split():
            key, _, value = item.partition("=")
            if key not in fields:
                raise ValueError(f"unknown convolution window field {key!r} in {{{self.window}}}")
            parts = value.split("x")
            if key == "pad":
                fields[key] = [tuple(int(v) for v in p.split("_")) for p in parts]
            else:
                fields[key] = [int(v) for v in parts]
        return fields

    def jax_dimension_numbers(self) -> tuple[str, str, str]:
        """The labels as JAX's string specs: b/f -> N/C (operand and result), i/o -> I/O (kernel), digits -> H, W..."""
        lhs, rest = self.dim_labels.split("_")
        rhs, out = rest.split("->")

        def letters(labels: str, renames: dict[str, str]) -> str:
            return "".join(renames.get(c, _SPATIAL_LETTERS[int(c)] if c.isdigit() else c) for c in labels)

        batch_feature = {"b": "N", "f": "C"}
        return letters(lhs, batch_feature), letters(rhs, {"i": "I", "o": "O"}), letters(out, batch_feature)

    def build(self):
        """(function, lhs, rhs): a jitted `lax.conv_general_dilated` that computes this convolution, and random
        operands of its shapes and dtypes."""
        import jax
        import jax.numpy as jnp
        import numpy as np

        fields = self.window_fields()
        lhs_spec, rhs_spec, out_spec = self.jax_dimension_numbers()
        reversed_axes = tuple(
            rhs_spec.index(_SPATIAL_LETTERS[d]) for d, flag in enumerate(fields["rhs_reversal"]) if flag
        )
        out_dtype = jnp.dtype(_DTYPES[self.dtype])

        def convolution(lhs, rhs):
            if reversed_axes:  # XLA folds the flip into the convolution's rhs_reversal, as in the program.
                rhs = jnp.flip(rhs, reversed_axes)
            return jax.lax.conv_general_dilated(
                lhs,
                rhs,
                window_strides=fields["stride"],
                padding=fields["pad"],
                lhs_dilation=fields["lhs_dilate"],
                rhs_dilation=fields["rhs_dilate"],
                dimension_numbers=(lhs_spec, rhs_spec, out_spec),
                feature_group_count=self.feature_group_count,
                batch_group_count=self.batch_group_count,
                preferred_element_type=out_dtype,
            )

        rng = np.random.default_rng(0)
        lhs = jnp.asarray(rng.standard_normal(self.lhs_shape), _DTYPES[self.lhs_dtype])
        rhs = jnp.asarray(rng.standard_normal(self.rhs_shape), _DTYPES[self.rhs_dtype])
        return jax.jit(convolution), lhs, rhs


def parse_convolutions(hlo_text: str) -> list[Convolution]:
    """Every convolution instruction of an HLO module's text (e.g. `compiled.as_text()`), in program order."""
    definitions = {}
    for line in hlo_text.splitlines():
        match = _DEFINITION.match(line)
        if match:
            definitions[match["name"]] = (match["dtype"], _shape(match["shape"]))
        else:  # A computation's header declares its parameters: `%fused (param_0.1: f32[2,3], ...) -> ...`.
            for name, dtype, shape in re.findall(r"([\w.\-]+): (\w+)\[([\d,]*)\]", line.split("->")[0]):
                definitions.setdefault(name, (dtype, _shape(shape)))
    convolutions = []
    for line in hlo_text.splitlines():
        match = _CONVOLUTION.search(line)
        if not match:
            continue
        (lhs_dtype, lhs_shape), (rhs_dtype, rhs_shape) = definitions[match["lhs"]], definitions[match["rhs"]]
        groups = re.search(r"feature_group_count=(\d+)", match["rest"])
        batch_groups = re.search(r"batch_group_count=(\d+)", match["rest"])
        convolutions.append(
            Convolution(
                dtype=match["dtype"],
                lhs_dtype=lhs_dtype,
                rhs_dtype=rhs_dtype,
                lhs_shape=lhs_shape,
                rhs_shape=rhs_shape,
                out_shape=_shape(match["out"]),
                window=match["window"],
                dim_labels=match["labels"],
                feature_group_count=int(groups[1]) if groups else 1,
                batch_group_count=int(batch_groups[1]) if batch_groups else 1,
            )
        )
    return convolutions


def time_alone(convolution: Convolution, calls: int = 5, budget_s: float = 1.0) -> float:
    """Median seconds of one call of `convolution` compiled alone, after one untimed call; fewer than `calls`
    timed calls where they would take over `budget_s`."""
    function, lhs, rhs = convolution.build()
    function(lhs, rhs).block_until_ready()
    times = []
    while len(times) < calls and (len(times) < 2 or sum(times) < budget_s):
        start = time.perf_counter()
        function(lhs, rhs).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_convolutions(hlo_text: str) -> list[tuple[Convolution, int, float]]:
    """(convolution, occurrences, seconds per call alone) for each distinct convolution of the program, the
    largest total first."""
    counts = collections.Counter(parse_convolutions(hlo_text))
    timed = [(conv, count, time_alone(conv)) for conv, count in counts.items()]
    return sorted(timed, key=lambda item: item[1] * item[2], reverse=True)
