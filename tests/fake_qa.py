"""Run the qa CLI with the fake embedding model registered (for subprocess tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FAKE_MODEL, FakeEmbedder  # noqa: E402

from qa.cli import main  # noqa: E402
from qa.embedder import register_embedder  # noqa: E402

register_embedder(FAKE_MODEL, FakeEmbedder)

if __name__ == "__main__":
    main()
