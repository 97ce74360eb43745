from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter, LlamaFileType

from codey.errors import ModelCorrupt
from codey.provision.gguf_header import ArrayInfo, read_header


def write_gguf(path: Path) -> None:
    writer = GGUFWriter(str(path), "qwen2")
    writer.add_name("Tiny Test Model")
    writer.add_context_length(2048)
    writer.add_block_count(2)
    writer.add_file_type(LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_token_list(["<a>", "b", "c"])
    writer.add_tensor("w", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_reads_scalars_and_summarises_arrays(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    header = read_header(path)
    assert header.architecture == "qwen2"
    assert header.name == "Tiny Test Model"
    assert header.context_length == 2048
    assert header.block_count == 2
    assert header.quantisation == "Q4_K_M"
    assert header.tensor_count == 1
    assert header.metadata["tokenizer.ggml.tokens"] == ArrayInfo("string", 3)


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(ModelCorrupt, match="not a GGUF file"):
        read_header(path)


def test_a_truncated_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ModelCorrupt, match="damaged GGUF header"):
        read_header(path)
