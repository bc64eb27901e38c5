"""Which automatic mode runs, with which options: :class:`AutomaticPlan`, checked before any model loads.

``mode="auto"`` is settled once the model is known (:meth:`AutomaticPlan.mode_for`): the instance decoder's
:data:`AUTO_DECODER_MODE` when the model has one, the prompt grid (AMG) otherwise — unless the caller gave
options of one family only, which then names the mode (prompt-grid options → AMG; decoder options → the
decoder). Options that the chosen mode would ignore are refused, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..types import PRESET_CHOICES, AutomaticOptions, InstanceOptions, check_mode, one_of
from .inputs import require_decoder
from .options import OPTION_NAMES, auto_preset, resolve_options

__all__ = ["AUTO_DECODER_MODE", "PRESET_CHOICES", "AutomaticPlan"]

#: What ``mode="auto"`` runs on a model with an instance decoder (micro-sam's default with a decoder).
AUTO_DECODER_MODE = "ais"


@dataclass(frozen=True)
class AutomaticPlan:
    """A checked request for automatic segmentation.

    Attributes
    ----------
    mode
        What was asked: ``"auto"``, ``"ais"``, ``"apg"`` or ``"amg"``.
    amg
        The prompt grid's options (preset applied), used when the mode settles on ``"amg"``.
    instance
        The decoder modes' options.
    amg_given, instance_given
        Whether the caller gave options of that family (they steer ``"auto"``).
    """

    mode: str
    amg: AutomaticOptions
    instance: InstanceOptions
    amg_given: bool = False
    instance_given: bool = False

    @classmethod
    def make(
        cls,
        mode: Any = "auto",
        preset: Any = "auto",
        *,
        model: Any = "nano",
        amg_options: dict[str, Any] | None = None,
        instance_options: dict[str, Any] | None = None,
    ) -> AutomaticPlan:
        """Check everything and make the plan; values of None count as not given.

        Raises
        ------
        ValueError
            An unknown mode or preset, an invalid option value, options of a family the mode does not
            use (naming the first), or options of both families with ``mode="auto"``.
        """
        check_mode(mode)
        amg = {k: v for k, v in (amg_options or {}).items() if v is not None}
        inst = {k: v for k, v in (instance_options or {}).items() if v is not None}
        unknown = sorted(set(amg) - set(OPTION_NAMES))
        if unknown:
            raise ValueError(f"unknown automatic segmentation option(s) {unknown}")
        if preset not in PRESET_CHOICES:
            raise ValueError(f"preset must be {one_of(PRESET_CHOICES)}, got {preset!r}")
        decoder_mode = mode in ("ais", "apg")
        if mode == "amg" and inst:
            raise ValueError(f"{_first(inst)} does not apply to mode='amg' (an instance decoder option)")
        if decoder_mode and amg:
            raise ValueError(f"{_first(amg)} does not apply to mode={mode!r} (a prompt-grid option)")
        if decoder_mode and preset not in ("auto", None):
            raise ValueError(
                f"preset={preset!r} applies to mode='amg' (prompt-grid thresholds), not {mode!r}"
            )
        if mode == "auto" and amg and inst:
            raise ValueError(
                f"mode='auto' got both prompt-grid options ({_first(amg)}) and instance decoder options "
                f"({_first(inst)}): pass mode='amg', 'ais' or 'apg'"
            )
        chosen = auto_preset(model) if preset == "auto" else preset
        return cls(
            mode=mode,
            amg=resolve_options(chosen, **amg),
            instance=InstanceOptions(**inst),
            amg_given=bool(amg) or preset not in ("auto", None) or (preset is None and mode == "auto"),
            instance_given=bool(inst),
        )

    def mode_for(self, sam: Any) -> str:
        """The mode that runs on the loaded model ``sam``: ``"ais"``, ``"apg"`` or ``"amg"``.

        Raises
        ------
        ValueError
            A decoder mode (asked for, or implied by decoder options) and a model without a decoder.
        """
        has_decoder = getattr(sam, "instance_decoder", None) is not None
        if self.mode != "auto":
            mode = self.mode
        elif self.amg_given:
            mode = "amg"
        elif self.instance_given or has_decoder:
            mode = AUTO_DECODER_MODE
        else:
            mode = "amg"
        if mode in ("ais", "apg") and not has_decoder:
            require_decoder(sam, mode)
        return mode


def _first(options: dict[str, Any]) -> str:
    name = next(iter(options))
    return f"{name}={options[name]!r}"
