"""SynthBins: procedurally generated warehouse-bin photos with exact item counts, in ABID layout.

``generate(out, cfg)`` writes ``bin-images/<id>.jpg``, ``metadata/<id>.json`` and ``synth.json``;
``render_bin(rng, count, cfg)`` draws one picture. See ``docs/synth.md``.
"""

from binsight.data.synth.generate import SYNTH_VERSION, generate, render_sample
from binsight.data.synth.plan import class_plan, image_rng, label_order, parse_counts
from binsight.data.synth.render import encode_jpeg, render_bin

__all__ = [
    "SYNTH_VERSION",
    "class_plan",
    "encode_jpeg",
    "generate",
    "image_rng",
    "label_order",
    "parse_counts",
    "render_bin",
    "render_sample",
]
