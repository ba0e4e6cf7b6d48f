"""Precision policies: which floating-point type each stage of a least-squares solve runs in."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

STAGES = ("residual", "jacobian", "matvec", "precond", "vector", "update")


@dataclass(frozen=True)
class PrecisionPolicy:
    """The dtype of every stage of a Gauss-Newton/LM solve (see docs/architecture.md).

    residual: evaluation of r(x) and of the cost LM compares steps by;
    jacobian: the Jacobian J as stored (products for the predicted decrease use it);
    matvec: the operands of J*v and J^T*u inside CGNR (the bulk of the BA flops);
    precond: the operands of the preconditioner's triangular solves (PGO incomplete Cholesky);
    vector: CG vectors, dot products and step lengths;
    update: the retraction x <- x [+] dx of the state.
    """

    name: str
    residual: np.dtype
    jacobian: np.dtype
    matvec: np.dtype
    precond: np.dtype
    vector: np.dtype
    update: np.dtype

    def as_dict(self) -> dict[str, str]:
        """Stage -> dtype name, for summaries and JSON."""
        return {f.name: (getattr(self, f.name) if f.name == "name" else np.dtype(getattr(self, f.name)).name)
                for f in fields(self)}

    def with_stage(self, **stages: Any) -> "PrecisionPolicy":
        """A copy with some stages changed (e.g. policy.with_stage(precond=np.float32))."""
        bad = set(stages) - set(STAGES)
        if bad:
            raise ValueError(f"unknown precision stage(s) {sorted(bad)}; stages are {list(STAGES)}")
        return replace(self, name=f"{self.name}*", **{k: np.dtype(v) for k, v in stages.items()})


_f16, _f32, _f64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)

PRESETS: dict[str, PrecisionPolicy] = {
    # Reference: everything double.
    "fp64": PrecisionPolicy("fp64", _f64, _f64, _f64, _f64, _f64, _f64),
    # Single precision linear algebra and residuals; the pose update stays double because small
    # increments on large coordinates vanish in fp32 (DESIGN.md).
    "fp32": PrecisionPolicy("fp32", _f32, _f32, _f32, _f32, _f32, _f64),
    # The method of this project: fp16 only where the flops are, fp32 around it, fp64 update
    # (policy_for: a pose graph keeps its products in fp32, fp16 in its triangular solves).
    "mixed": PrecisionPolicy("mixed", _f32, _f32, _f16, _f16, _f32, _f64),
    # Study case: everything half, including residuals and the update; expected to lose accuracy.
    "fp16": PrecisionPolicy("fp16", _f16, _f16, _f16, _f16, _f16, _f16),
}


def policy_for(policy: str | PrecisionPolicy, problem: object) -> PrecisionPolicy:
    """The policy a solve of `problem` runs: a preset name resolved for the problem, a policy as given.

    'mixed' puts fp16 where that problem's linear solve spends its flops (DESIGN.md): the products
    J v and J^T u of BA's CGNR, the triangular solves of PGO's static incomplete Cholesky. A problem
    names its fp16 stages in `mixed_fp16_stages`; the other linear-solve stages then run in fp32
    (a pose graph's products in fp16 cost it ~50% more LM and CG iterations: parking-garage 12 LM /
    311 CG against 8 / 143). Problems without the attribute get the preset as defined above.
    """
    pol = get_policy(policy)
    half = getattr(problem, "mixed_fp16_stages", None)
    if isinstance(policy, str) and policy == "mixed" and half is not None:
        pol = replace(pol, **{s: (_f16 if s in half else _f32) for s in ("matvec", "precond")})
    return pol


def get_policy(policy: str | PrecisionPolicy) -> PrecisionPolicy:
    """Look up a preset by name (fp64, fp32, mixed, fp16) or pass a policy through."""
    if isinstance(policy, PrecisionPolicy):
        return policy
    try:
        return PRESETS[policy]
    except KeyError:
        raise ValueError(f"unknown precision '{policy}'; choose one of {', '.join(PRESETS)}") from None
