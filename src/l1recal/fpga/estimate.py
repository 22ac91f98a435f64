"""Resource estimate of a converted model from its operations, for users without vendor tools.

The counts come from the hls4ml graph after optimisation (BatchNorm folded).
They are an estimate, not a synthesis result:

* ``multiplications``: non-zero Dense weights plus element-wise products.
  With reuse factor R, hls4ml's Latency strategy instantiates about
  multiplications / R multipliers.
* ``dsp_upper_bound``: one DSP slice per instantiated multiplier. A DSP48E2
  computes a 27 x 18 bit product, so every product of the default types fits one,
  and HLS maps narrow products (a few bits) to LUTs instead, so synthesis
  usually reports fewer.
* ``table_lookups``: activation lookup tables (ELU), one ROM read per element.
* ``weight_bits``: storage of all weights and biases at their fixed-point widths.
"""

from __future__ import annotations

import math
from typing import Any

ESTIMATE_LABEL = "estimate from operation counts; not a synthesis result"


def _size(layer: Any) -> int:
    return int(math.prod(layer.get_output_variable().shape))


def estimate_resources(graph: Any, reuse_factor: int) -> dict:
    """Count the operations of an hls4ml ``ModelGraph`` and bound its DSP use.

    Args:
        graph: converted hls4ml model.
        reuse_factor: the conversion's reuse factor.

    Returns:
        ``{"label", "multiplications", "additions", "table_lookups",
        "parameters", "weight_bits", "dsp_upper_bound", "layers"}``, where
        ``layers`` lists the hls4ml layer classes in order.
    """
    multiplications = additions = lookups = parameters = weight_bits = 0
    for layer in graph.get_layers():
        kind = layer.class_name
        if kind == "Dense":
            weight = layer.weights["weight"].data
            nonzero = int((weight != 0).sum())
            multiplications += nonzero
            additions += nonzero  # n_in - 1 sums and the bias, per output
            for variable in layer.weights.values():
                parameters += int(variable.data.size)
                weight_bits += int(variable.data.size) * int(
                    variable.type.precision.width
                )
        elif kind == "Merge" and layer.get_attr("op") == "multiply":
            multiplications += _size(layer)
        elif kind == "Merge":
            additions += _size(layer)
        elif kind in {"Activation", "ParametrizedActivation"}:
            activation = str(layer.get_attr("activation", "")).lower()
            # ReLU (hls4ml 1.3 turns the Keras ReLU layer into thresholdedrelu) is a comparison.
            if activation not in {"relu", "thresholdedrelu", "leaky_relu", "linear"}:
                lookups += _size(layer)
    return {
        "label": ESTIMATE_LABEL,
        "multiplications": multiplications,
        "additions": additions,
        "table_lookups": lookups,
        "parameters": parameters,
        "weight_bits": weight_bits,
        "dsp_upper_bound": math.ceil(multiplications / reuse_factor),
        "layers": [layer.class_name for layer in graph.get_layers()],
    }
