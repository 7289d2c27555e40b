"""What a model call may raise on inputs it cannot take, and how such an error reads as one line of evidence.

The diagnosis engines run models on inputs that may be wrong on purpose (a swapped input, a scaled one);
the model refusing them is evidence, never fatal. Only the errors listed here count as such: an error in
the engines' own code (a NameError or AttributeError in an intervention, say) is none of them, and
surfaces.
"""

from __future__ import annotations

import re
import sys

#: Errors a model call may raise on inputs it cannot take (recorded as evidence): JAX's XlaRuntimeError and
#: torch's errors derive from these, TensorFlow's from ``tf.errors.OpError`` (:func:`model_errors` adds it
#: when TensorFlow is loaded). An error in the bisection's own code (a NameError or AttributeError in an
#: intervention, say) is none of these, and surfaces.
MODEL_ERRORS = (ValueError, TypeError, RuntimeError, ArithmeticError, MemoryError, IndexError, KeyError,
                NotImplementedError, OSError)


def model_errors() -> tuple:
    """:data:`MODEL_ERRORS`, with TensorFlow's ``OpError`` when TensorFlow is already imported (never imports it)."""
    tf = sys.modules.get("tensorflow")
    op_error = getattr(getattr(tf, "errors", None), "OpError", None)
    return MODEL_ERRORS + ((op_error,) if isinstance(op_error, type) else ())


def error_text(exc) -> str:
    """An exception as one line of evidence: its type and message (TensorFlow's: the last line, the error)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errs = [i for i, ln in enumerate(lines) if re.match(r"^\w+(Error|Exception|Exhausted): ", ln)]
    if errs:
        i = errs[-1]
        msg = lines[i]
        if "Exception encountered when calling" in msg and i + 1 < len(lines):  # Keras puts the cause next
            msg += " " + lines[i + 1]
        return msg[:300]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
