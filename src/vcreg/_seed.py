"""The one seed-mixing rule of vcreg: independent, reproducible seeds from tuples of integers.

Every derived random stream (model init, data order of an epoch, augmentation of a step, the
projector's random weights) takes its seed from :func:`mix_seed` of the run seed and a few
integers naming the stream, so streams never collide and a resumed run redraws the same ones.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mix_seed"]


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``; low 32 bits of each)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0] % (2**63))
