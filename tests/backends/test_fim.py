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


def test_a_prompt_in_the_template_is_read_back_with_what_comes_before_it() -> None:
    qwen = FIM_TEMPLATES["qwen"]
    assert qwen.parse(qwen.render("def f(", "):\n    pass")) == ("", "def f(", "):\n    pass")
    repo = "<|repo_name|>demo\n<|file_sep|>util.py\nX = 1\n<|file_sep|>main.py\n"
    assert qwen.parse(repo + qwen.render("a = ", "\n")) == (repo, "a = ", "\n")
    assert qwen.parse("<|fim_prefix|>a<|fim_suffix|>b") is None  # no middle marker at the end
    assert qwen.parse("plain code<|fim_middle|>") is None
    assert qwen.parse("def f():\n    return 1\n") is None
