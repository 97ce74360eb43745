"""The model's tokenizer and metadata, loaded without its weights, for the server process.

Rendering and counting prompts stays in the server, so that a prompt too long for the window is
refused even while the engine process restarts, and no prompt crosses the process boundary
twice. A vocabulary-only load reads no tensors and runs no matrix multiply.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from codey.errors import BackendError


class Vocabulary:
    """Tokenize and detokenize with the model's own tokenizer."""

    def __init__(self, path: Path) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        try:
            self._model = LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not read the vocabulary of {path}: {exc}") from exc
        self.metadata: dict[str, str] = dict(self._model.metadata())
        self.bos = self._model.token_bos()
        self.eos = self._model.token_eos()

    def tokenize(self, text: str, *, special: bool, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; `special` lets sentinels such as <|im_start|> be one token."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def token_text(self, token: int) -> str:
        return self._model.detokenize([token], special=True).decode("utf-8", errors="replace")

    def close(self) -> None:
        self._model.close()
