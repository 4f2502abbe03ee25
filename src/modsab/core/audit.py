"""The paper's per-instance audit: who contributed, who sabotaged.

With ``y*`` the gold label, ``y_m, c_m`` agent m's top label and confidence, ``y_hat``
the fused top-1 and ``tau`` the confidence threshold (METHOD.md, Pipeline step 4):

- contributor: ``y_m == y*``;
- potential sabotage: ``c_m >= tau`` and ``y_m != y*``;
- successful sabotage: potential sabotage and ``y_hat == y_m``.

Each (instance, agent) gets exactly one :class:`Role` code, so the three sets are
read off one small integer array: contributor and saboteur are exclusive and
successful is a subset of potential by construction.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

#: Confidences are compared with ``tau`` up to this tolerance (0.7 typed as 70/100).
TAU_TOLERANCE = 1e-9


class Role(IntEnum):
    ABSTAINED = 0
    CONTRIBUTOR = 1
    WRONG = 2  # wrong top label, below tau
    POTENTIAL_SABOTAGE = 3  # wrong and confident, the fusion did not follow it
    SUCCESSFUL_SABOTAGE = 4  # wrong and confident, the fusion followed it

    @property
    def text(self) -> str:
        return self.name.lower()


ROLE_NAMES = np.array([role.text for role in Role], dtype=object)


def agent_top(scores: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(top[n, m], confidence[n, m])``: each agent's highest-confidence valid candidate,
    ties to the earlier label; ``top = -1`` and confidence NaN where the agent abstained.

    Labels an agent did not name score 0, so wherever the best score is above 0 the
    plain argmax is a candidate; only answers whose candidates all scored 0 need the
    first named label instead. (No masked copy of the score array is made.)
    """
    top = np.argmax(scores, axis=2)
    confidence = np.take_along_axis(scores, top[..., None], axis=2)[..., 0]
    answered = candidate.any(axis=2)
    zero = answered & (confidence <= 0)
    if zero.any():
        top[zero] = np.argmax(candidate[zero], axis=1)
    return np.where(answered, top, -1), np.where(answered, confidence, np.nan)


def roles(
    top: np.ndarray,
    confidence: np.ndarray,
    gold: np.ndarray,
    fused_top: np.ndarray,
    *,
    tau: float = 0.70,
) -> np.ndarray:
    """``[n, m]`` :class:`Role` code of every agent on every instance."""
    answered = top >= 0
    correct = answered & (top == gold[:, None])
    confident = np.nan_to_num(confidence, nan=-1.0) >= tau - TAU_TOLERANCE
    potential = answered & ~correct & confident
    followed = top == fused_top[:, None]
    out = np.full(top.shape, Role.WRONG, dtype=np.int8)
    out[~answered] = Role.ABSTAINED
    out[correct] = Role.CONTRIBUTOR
    out[potential] = Role.POTENTIAL_SABOTAGE
    out[potential & followed] = Role.SUCCESSFUL_SABOTAGE
    return out
