"""Run the qa CLI with the fake embedding model registered (for subprocess tests).

A question holding the word in ``QA_FAKE_SLOW_WORD`` takes a minute to embed, so a
test can interrupt an answer that is still being worked out.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FAKE_MODEL, FakeEmbedder  # noqa: E402

from qa.cli import main  # noqa: E402
from qa.embedder import register_embedder  # noqa: E402


class SlowOnCueEmbedder(FakeEmbedder):
    """The fake model, slow for any question holding ``QA_FAKE_SLOW_WORD``."""

    def embed_queries(self, texts):
        texts = list(texts)
        cue = os.environ.get("QA_FAKE_SLOW_WORD")
        if cue and any(cue in text for text in texts):
            time.sleep(60)
        return super().embed_queries(texts)


register_embedder(FAKE_MODEL, SlowOnCueEmbedder)

if __name__ == "__main__":
    main()
