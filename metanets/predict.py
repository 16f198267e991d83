r"""Forwarder: ``python -m metanets.predict`` is now ``python eval.py CKPT --save OUT --model ...``.

    python -m metanets.predict runs/ghn/best.pt OUT.safetensors --model mynets.py:make --input-shape 1,3,32,32
    # is now
    python eval.py runs/ghn/best.pt --save OUT.safetensors --model mynets.py:make --input-shape 1,3,32,32

``metanets`` reads no files, so predicting a network's parameters with a trained GHN (reading the
checkpoint, your factory and BatchNorm data; writing the state_dict) moved to ``eval.py``. This
module prints the new spelling of the command it was given and, when ``eval.py`` is beside the
package (a source checkout), runs it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

__all__ = ["main", "new_spelling"]


def new_spelling(argv: list[str]) -> list[str]:
    """The ``eval.py`` arguments equivalent to ``python -m metanets.predict`` arguments ``argv``."""
    positional, options, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            options.append(arg)
            if "=" not in arg and i + 1 < len(argv) and arg not in ("--help", "-h"):
                options.append(argv[i + 1])
                i += 1
        else:
            positional.append(arg)
        i += 1
    out = positional[:1]
    if len(positional) > 1:
        out += ["--save", positional[1]]
    return out + options


def main(argv: list[str] | None = None) -> int:
    """Print the new spelling; run it when ``eval.py`` is found beside the package. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = new_spelling(argv)
    print(f"note: `python -m metanets.predict` is now `python eval.py {shlex.join(args)}`", file=sys.stderr)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "eval.py")
    if not os.path.isfile(script):
        return 2
    return subprocess.call([sys.executable, script, *args])


if __name__ == "__main__":
    sys.exit(main())
