"""int8 inference of a frozen encoder on CPUs: int8 weights and GEMMs in every linear layer.

The linear layers (attention projections and MLPs) are nearly all of a ViT's time at small
sizes (three quarters of ``pixio_vitt16`` at 128 px, one thread, running near the fp32 peak),
so only fewer bits make it faster. Dynamic quantization stores each linear layer's weight as
int8 (one scale per output channel) and quantizes its input per call from the input's own
range; no calibration data is needed. The patch embedding, norms and attention products stay
fp32. On ``pixio_sim_vitt16`` at 128 px this gave 1.65-1.85x the fp32 speed on one thread of
an AMD EPYC (Zen 4, AVX512-VNNI), with pooled features within 1 % of fp32 (relative L2; cosine
0.99998); a randomly initialised encoder of the same size deviates more (about 3 %). Small as
that is, pooled features vary little between the frames of one task, so a policy should be
trained on the features it will be run on (``pixio_robot`` saves the precision with the policy).

torch's eager-mode dynamic quantization is what does it (``torch.ao.quantization``, deprecated
upstream in favour of torchao but present and tested in the pinned torch); its deprecation
warnings are silenced here, not elsewhere.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

__all__ = ["ENCODER_PRECISIONS", "quantize_linear_int8"]

ENCODER_PRECISIONS = ("fp32", "int8")


def quantize_linear_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (on the CPU, for inference) whose ``nn.Linear`` layers compute in
    int8 with per-output-channel weight scales; ``module`` itself is left as it was.

    Raises ValueError for a module with parameters off the CPU (int8 kernels are CPU-only).
    """
    devices = {p.device.type for p in module.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"int8 inference runs on the CPU; the module is on {sorted(devices)}")
    quantization = torch.ao.quantization
    engines = torch.backends.quantized.supported_engines
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(deprecated|torchao).*")
        if torch.backends.quantized.engine not in ("x86", "fbgemm"):
            preferred = [e for e in ("x86", "fbgemm", "qnnpack") if e in engines]
            if preferred:
                torch.backends.quantized.engine = preferred[0]
        quantized = quantization.quantize_dynamic(
            copy.deepcopy(module).eval(),
            {nn.Linear: quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            inplace=True,
        )
    return quantized.requires_grad_(False)
