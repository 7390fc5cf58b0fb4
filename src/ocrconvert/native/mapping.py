"""Bookkeeping for weight transfer: every source parameter consumed and every target tensor set is recorded,
so that a conversion can prove it is complete."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import NativeMappingError


@dataclass
class MappingReport:
    architecture: str
    task: str
    mapped: list[tuple[str, str, str]] = field(default_factory=list)  # (source param, target tensor, transform)
    unmapped_source: list[str] = field(default_factory=list)
    unset_target: list[str] = field(default_factory=list)
    neutralised_target: list[str] = field(default_factory=list)  # training-only branches set to a no-op
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unmapped_source and not self.unset_target

    def to_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "task": self.task,
            "complete": self.complete,
            "n_mapped": len(self.mapped),
            "unmapped_source": list(self.unmapped_source),
            "unset_target": list(self.unset_target),
            "n_neutralised_target": len(self.neutralised_target),
            "notes": list(self.notes),
        }


class WeightWriter:
    """Writes tensors into a torch model by module reference, recording source -> target."""

    def __init__(self, model: nn.Module, params: dict[str, np.ndarray], report: MappingReport):
        self.model = model
        self.params = params
        self.report = report
        self.names = {m: n for n, m in model.named_modules()}
        self.sd = model.state_dict()
        self.set_keys: set[str] = set()
        self.used_src: set[str] = set()

    def _key(self, module: nn.Module, attr: str) -> str:
        prefix = self.names[module]
        return f"{prefix}.{attr}" if prefix else attr

    def src(self, name: str) -> torch.Tensor:
        self.used_src.add(name)
        return torch.from_numpy(np.ascontiguousarray(self.params[name])).float()

    def put(self, module: nn.Module, attr: str, value: torch.Tensor, source: str, transform: str = "copy"):
        key = self._key(module, attr)
        tgt = self.sd[key]
        value = value.reshape(tgt.shape) if value.numel() == tgt.numel() and transform.startswith("scalar") else value
        if tuple(value.shape) != tuple(tgt.shape):
            raise NativeMappingError(
                f"shape mismatch for {key}: target {tuple(tgt.shape)} vs {tuple(value.shape)} from {source} ({transform})"
            )
        with torch.no_grad():
            tgt.copy_(value.to(tgt.dtype))
        self.set_keys.add(key)
        self.report.mapped.append((source, key, transform))

    def neutral(self, module: nn.Module, attr: str, value: float):
        key = self._key(module, attr)
        with torch.no_grad():
            self.sd[key].fill_(value)
        self.set_keys.add(key)
        self.report.neutralised_target.append(key)

    # -- common layer kinds ---------------------------------------------------------------------------------
    def conv(self, conv: nn.Module, rec, with_bias: bool | None = None):
        self.put(conv, "weight", self.src(rec.params["weight"]), rec.params["weight"])
        has_b = "bias" in rec.params
        if has_b:
            if conv.bias is None:
                    raise NativeMappingError(f"{self.names[conv]} has no bias but program conv #{rec.op.index} does")
            self.put(conv, "bias", self.src(rec.params["bias"]), rec.params["bias"])
        elif conv.bias is not None:
            self.neutral(conv, "bias", 0.0)

    def bn(self, bn: nn.BatchNorm2d, rec):
        p = rec.params
        self.put(bn, "weight", self.src(p["bn_weight"]), p["bn_weight"], "bn.scale")
        self.put(bn, "bias", self.src(p["bn_bias"]), p["bn_bias"], "bn.bias")
        self.put(bn, "running_mean", self.src(p["bn_mean"]), p["bn_mean"], "bn.mean")
        self.put(bn, "running_var", self.src(p["bn_var"]), p["bn_var"], "bn.variance")
        if not math.isclose(bn.eps, rec.attrs["bn_eps"], rel_tol=1e-3):
            bn.eps = rec.attrs["bn_eps"]
            self.report.notes.append(f"{self.names[bn]}: eps set to {rec.attrs['bn_eps']}")

    def bn_bias_only(self, bn: nn.BatchNorm2d, bias_src: str | None):
        """BN as an exact '+ bias' (eval mode): mean 0, var 1, scale sqrt(1+eps)."""
        c = bn.num_features
        self.neutral(bn, "running_mean", 0.0)
        self.neutral(bn, "running_var", 1.0)
        self.neutral(bn, "weight", float(math.sqrt(1.0 + bn.eps)))
        if bias_src is not None:
            self.put(bn, "bias", self.src(bias_src).reshape(c), bias_src, "conv.bias->bn.bias")
        else:
            self.neutral(bn, "bias", 0.0)

    def linear(self, lin: nn.Linear, rec):
        w = self.src(rec.params["weight"])
        # Paddle Linear / matmul weight is [in, out]: always transposed, whatever the shape
        if rec.attrs.get("transpose_y"):
            self.put(lin, "weight", w, rec.params["weight"], "copy (matmul transpose_y)")
        else:
            self.put(lin, "weight", w.t().contiguous(), rec.params["weight"], "transpose [in,out]->[out,in]")
        if "bias" in rec.params:
            self.put(lin, "bias", self.src(rec.params["bias"]), rec.params["bias"])
        elif lin.bias is not None:
            self.neutral(lin, "bias", 0.0)

    def layer_norm(self, ln: nn.LayerNorm, rec):
        self.put(ln, "weight", self.src(rec.params["weight"]), rec.params["weight"])
        self.put(ln, "bias", self.src(rec.params["bias"]), rec.params["bias"])
        if not math.isclose(ln.eps, rec.attrs["eps"], rel_tol=1e-3):
            raise NativeMappingError(f"{self.names[ln]}: eps {ln.eps} != program eps {rec.attrs['eps']}")

    def affine(self, module: nn.Module, rec):
        self.put(module, "scale", self.src(rec.params["scale"]), rec.params["scale"], "scalar")
        if "bias" in rec.params:
            self.put(module, "bias", self.src(rec.params["bias"]), rec.params["bias"], "scalar")
        else:
            self.neutral(module, "bias", 0.0)

    def finish(self, all_source: set[str]):
        self.model.load_state_dict(self.sd, strict=True)
        self.report.unmapped_source = sorted(all_source - self.used_src)
        self.report.unset_target = sorted(
            k for k in self.sd if k not in self.set_keys and not k.endswith("num_batches_tracked")
        )
