"""The script of the shared fake model: what it answers to the prompts the suite sends.

The fake matches a rule's `contains` against the prompt as it reached the backend (chat turns
as "role: content" lines, fill-in-the-middle as "prefix<fill>suffix"), so a rule that spans a
conversation's earlier turns or a request's context answers only if they were really sent.
First match wins: the more specific rules come first.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from codey.backends.fake import Rule

CONTEXT_LENGTH = 4096
SURE, UNSURE = -0.01, -1.0
"""Log-probabilities of a certain and of an unsure answer."""
SLOW = 0.01
"""Seconds per token of the answers that hold their deployment."""
LONG = "Compilers turn source into machine code. " * 120
"""Far more than 600 tokens."""

RULES: list[Rule] = [
    # memory: the answer names the person only if the earlier turns reached the model
    *(
        Rule(f"user: My name is Ada.{more}\nassistant: Nice to meet you.\nuser: What is my name?",
             "Your name is Ada.")
        for more in ("", " Reply with one short sentence.")
    ),
    *(
        Rule(f"user: My name is Grace.\nassistant: {hello}\nuser: What is my name?",
             "Your name is Grace.")
        for hello in ("Hello Grace!", "Hi Grace!")
    ),
    Rule("user: My name is Ada.", "Nice to meet you."),
    # chat: the system message and a conversation's context must reach the model
    Rule("system: You answer with one word.\nuser: Which Python keyword defines a function?",
         "def"),
    Rule("We are writing Python.\n```\nuser: Which keyword defines a function?",
         "Use the `def` keyword."),
    # Vertex chat turns without authors: they alternate, ending with the user's
    Rule("user: Hello.\nassistant: Hello! How can I help?\nuser: Which keyword defines a",
         "Use the `def` keyword."),
    Rule("Count from 1 to 10 separated by commas.", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
    Rule("Write a long essay about compilers.", LONG, delay=SLOW),
    Rule("Count to ", "1, 2, 3, 4", delay=0.05),  # slow enough to be under way at a kill
    # generation
    Rule("reverses a string", "```python\ndef reverse(text):\n    return text[::-1]\n```\n"),
    Rule(
        "whether a number is prime",
        "Here is a function:\n\n```python\ndef is_prime(n):\n    if n < 2:\n        return False\n"
        "    return all(n % d for d in range(2, int(n**0.5) + 1))\n```\n",
    ),
    Rule("int add(int a, int b)", "```c\nint add(int a, int b) {\n    return a + b;\n}\n```\n"),
    Rule("Write exactly this Python line and nothing else: import os",
         "```python\nimport os\n```\n", logprob=SURE),
    Rule("Invent an unusual, creative Python function",
         "```python\ndef whirl(xs):\n    return xs[::-1] + xs\n```\n", logprob=UNSURE),
    Rule("adds two numbers", "```python\ndef add(a, b):\n    return a + b\n```\n"),
    Rule("returns the square of x", "```python\ndef square(x):\n    return x * x\n```\n"),
    Rule("a long, fully documented HTTP server", LONG, delay=SLOW),
    # fill-in-the-middle: the service heals the cursor line's trailing blanks off the prefix
    Rule("import numpy as<fill>", " np", logprob=SURE),
    Rule("def square(x):\n    return<fill>", " x * x"),
    Rule("<fill>\n\n\nprint(add(2, 3))", "a + b"),
    Rule("def add(a, b):\n    return <fill>", "a + b"),  # the completions API does not heal
    # repository context: the other file reaches the model in Qwen's repository format
    Rule("<|file_sep|>geometry/consts.py\nPI = 3.14159\n<|file_sep|>geometry/area.py\n"
         "def circle(r):\n    return<fill>", " PI * r * r"),
    Rule("<|file_sep|>consts.py\nPI = 3.14159\n<|file_sep|>untitled\nimport math\n\n"
         "def circle(r):\n    return <fill>", "PI * r * r"),
    Rule("def circle(r):\n    return <fill>", "3.14 * r * r"),
    Rule("def circle(r):\n    return<fill>", " 3.14 * r * r"),
    # the model writes the suffix's next line again: post-processing must drop it
    Rule("        total += v\n<fill>\n    return result",
         "    result = total / len(values)\n    return result"),
    # 16 distinct answers for the concurrency test, each slow enough to overlap the others
    *(
        Rule(f"a function that returns {n} * {n}",
             f"```python\ndef square_{n}():\n    return {n * n}\n```\n", delay=SLOW)
        for n in range(6)
    ),
    *(Rule(f"What is {n} plus {n}?", str(n + n), delay=SLOW) for n in range(5)),
    *(Rule(f"def times_{n}(x):\n    return<fill>", f" x * {n}", delay=SLOW) for n in range(5)),
]  # fmt: skip


def write_script(path: Path, rules: list[Rule] = RULES) -> Path:
    """The rules as the fake's script file."""
    path.write_text(json.dumps({"rules": [asdict(rule) for rule in rules]}))
    return path


def fake_config(path: Path, script: Path, **models: str) -> Path:
    """A TOML config whose models are fakes reading `script`; `models` maps each name to the
    extra lines of its deployment. Without `models`, one model named "scripted"."""
    sections = "".join(
        f'[models.{name}]\n[[models.{name}.deployments]]\nname = "{name}-1"\nbackend = "fake"\n'
        f'url = "{script}"\ncontext_length = {CONTEXT_LENGTH}\n{extra}\n'
        for name, extra in (models or {"scripted": ""}).items()
    )
    path.write_text(sections)
    return path
