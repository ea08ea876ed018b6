"""Run the qa CLI with a deliberately slow fake embedding model, ``fake-slow``.

For crash tests (bench/crash_kills.py, tests/test_crash.py): the model is the
tests' hashed bag-of-words :class:`FakeEmbedder` (deterministic, so two builds of the
same corpus give the same vectors), with 384 dimensions like the default model and
a sleep per batch of 32 texts, so that ``qa index`` of a few hundred passages runs
for seconds and can be killed at any moment of it. Everything after embedding (the
writer lock, ``write_index``, clean-up) is qa's real code, untouched.

    QA_FAKE_SLEEP   seconds slept per batch of 32 texts (default 0.02)
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import FakeEmbedder  # noqa: E402

from qa.embedder import register_embedder  # noqa: E402

SLOW_MODEL = "fake-slow"
BATCH = 32


class SlowFakeEmbedder(FakeEmbedder):
    """The fake model, 384-dimensional, sleeping ``QA_FAKE_SLEEP`` s per batch."""

    def __init__(self):
        super().__init__(name=SLOW_MODEL, dim=384, max_tokens=64)
        self.sleep = float(os.environ.get("QA_FAKE_SLEEP", "0.02"))

    def embed_passages(self, texts, progress=None):
        import numpy as np

        texts = list(texts)
        parts = [self._embed([])]
        for start in range(0, len(texts), BATCH):
            time.sleep(self.sleep)
            parts.append(self._embed(texts[start : start + BATCH]))
            if progress:
                progress(min(start + BATCH, len(texts)), len(texts))
        return np.concatenate(parts, axis=0)


register_embedder(SLOW_MODEL, SlowFakeEmbedder)

if __name__ == "__main__":
    from qa.cli import main

    main()
