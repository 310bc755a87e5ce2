"""irl-lens core: everything that is not UI.

One module per noun of the method (Joselowitz et al., COLM 2025):

- ``policy``: model references (hub id, local dir, .gguf, ``smollm2-135m``) for policies and backbones
- ``ground_truth``: the ground-truth reward R* (``profanity`` or ``hf:<classifier>``)
- ``text_sets``: prompt sets and labelled sentence sets from files or ``datasets``
- ``demonstrations``: the same prompts completed by pi_0 and by the expert pi_E
- ``run_store``: the run directory (manifest, Parquet tables, safetensors weights)
- ``cli``: the ``irl-lens`` command
"""

from core.errors import IrlLensError

__all__ = ["IrlLensError"]
__version__ = "0.1.0"
