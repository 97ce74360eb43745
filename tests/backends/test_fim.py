from __future__ import annotations

from codey.backends.fim import FIM_TEMPLATES, detect_family


def test_qwen_template_renders_prefix_suffix_middle() -> None:
    rendered = FIM_TEMPLATES["qwen"].render("def f(", "):\n    pass")
    assert rendered == "<|fim_prefix|>def f(<|fim_suffix|>):\n    pass<|fim_middle|>"


def test_every_family_stops_on_its_end_token() -> None:
    for template in FIM_TEMPLATES.values():
        assert template.stop


def test_family_is_detected_from_sentinel_tokens() -> None:
    assert detect_family(lambda s: s == "<|fim_prefix|>") == "qwen"
    assert detect_family(lambda s: s == "<fim_prefix>") == "starcoder"
    assert detect_family(lambda s: s == "<PRE>") == "codellama"
    assert detect_family(lambda s: False) is None
