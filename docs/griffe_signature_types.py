"""griffe extension for the API pages: parameter types and defaults from the signature.

Our numpy-style docstrings describe related parameters together (``normalize, percentiles, channel``)
and leave types to the annotations. griffe gives every name of such a group the annotation and
default of the first one; this extension sets each documented parameter's type and default from the
function's own signature, so the tables on the API page are right.
"""

from __future__ import annotations

from typing import Any

import griffe


class SignatureTypes(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        if func.docstring is None:
            return
        for section in func.docstring.parsed:
            if section.kind is not griffe.DocstringSectionKind.parameters:
                continue
            for documented in section.value:
                name = documented.name.lstrip("*")
                if name not in func.parameters:
                    continue
                parameter = func.parameters[name]
                documented.annotation = parameter.annotation
                documented.value = parameter.default
