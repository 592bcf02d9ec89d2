"""What the torch backends share: moving arrays onto the device, and reading a chunk back."""

import numpy as np
import torch


def tensors(arrays, dtype: str, device: str) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(a, dtype=getattr(torch, dtype), device=device) for a in arrays)


def read(losses: torch.Tensor, params: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n losses and the parameters, in one copy to the host (one synchronisation)."""
    host = torch.cat((losses[:n], params.detach())).cpu().numpy()
    return host[:n], host[n:].astype(np.float64)
