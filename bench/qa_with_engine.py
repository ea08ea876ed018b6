"""Run the qa CLI with an ONNX engine folder as its model, for benchmarks only.

    .venv/bin/python bench/qa_with_engine.py ENGINE_DIR [--config SW,LW,MARGIN[,FLOOR[,EVIDENCE_SW]]] -- index|eval ...

Registers the engine under the model name ``onnx-engine`` (passages and questions
both go through it) and runs ``qa --model onnx-engine ARGS``. ``--config`` replaces
the default retrieval weights (sentence weight, lexical weight, no-answer margin,
and optionally the answer floor and the evidence's sentence weight),
so tuned values can be measured through the real index before qa adopts them.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL_NAME = "onnx-engine"


def main() -> None:
    args = sys.argv[1:]
    if "--" not in args or not args[0] or args[0] == "--":
        raise SystemExit(__doc__)
    split = args.index("--")
    own, qa_args = args[:split], args[split + 1 :]
    engine_dir = Path(own[0])
    if "--config" in own:
        import qa.retriever as retriever

        # The first fields' defaults, in order; the rest keep theirs.
        weights = [float(x) for x in own[own.index("--config") + 1].split(",")]
        defaults = list(retriever.RetrievalConfig.__init__.__defaults__)
        defaults[: len(weights)] = weights
        retriever.RetrievalConfig.__init__.__defaults__ = tuple(defaults)
    from qa.cli import app
    from qa.embedder import register_embedder
    from qa.models.onnx_engine import OnnxEmbedder

    engine = None

    def load():
        nonlocal engine
        if engine is None:
            engine = OnnxEmbedder(engine_dir, name=MODEL_NAME)
        return engine

    register_embedder(MODEL_NAME, load)
    app(args=[*qa_args, "--model", MODEL_NAME], prog_name="qa")


if __name__ == "__main__":
    main()
