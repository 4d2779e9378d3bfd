"""Compute for the "Inside the model" tab (issue 19): one module per view.

- prompt.py: the prompt as capped token ids, a token the user names, the model's shape;
- lens.py: the logit lens (every layer's residual stream through the final norm and output head);
- ablation.py: switching heads / a layer's attention / an MLP off (zero or mean), before vs after, and the
  batched head-importance map;
- attribution.py: integrated gradients and leave-one-out for the chosen token vs a runner-up.
"""

from playground.inside.ablation import (MODES, AblationResult, HeadImportance, Part, ablate, ablation_json,
                                        head_importance, importance_json, kl_divergence, parse_parts, switched_off)
from playground.inside.attribution import (Attribution, attribute, attribution_json, integrated_gradients,
                                           leave_one_out)
from playground.inside.lens import LogitLens, lens_json, lens_logits, logit_lens, with_sampling
from playground.inside.prompt import (EncodedPrompt, InsideCancelled, InsideInputError, encode, model_shape,
                                     resolve_token)

__all__ = ["MODES", "AblationResult", "Attribution", "EncodedPrompt", "HeadImportance", "InsideCancelled",
           "InsideInputError",
           "LogitLens", "Part", "ablate", "ablation_json", "attribute", "attribution_json", "encode",
           "head_importance", "importance_json", "integrated_gradients", "kl_divergence", "leave_one_out",
           "lens_json", "lens_logits", "logit_lens", "model_shape", "parse_parts", "resolve_token", "switched_off",
           "with_sampling"]
