"""`codey generate`, `codey chat` and `codey complete`: one service call each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.prompt import Prompt
from rich.syntax import Syntax
from rich.table import Table

from codey.backends.fim import SourceFile
from codey.cli.output import console, errors, fail, print_json
from codey.cli.runner import run_job
from codey.errors import InvalidRequest
from codey.runtime import Runtime
from codey.services.chat import ChatRequest, ChatResult
from codey.services.completion import MAX_COMPLETIONS, CompletionRequest, CompletionResult
from codey.services.generation import GenerationRequest, GenerationResult
from codey.services.repository import neighbours, project_root, relative

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Language = Annotated[str, typer.Option("--language", "-l", help="Programming language.")]
MaxTokens = Annotated[
    int | None, typer.Option("--max-tokens", min=1, help="Most tokens to generate.")
]
Temperature = Annotated[
    float | None,
    typer.Option("--temperature", "-t", min=0.0, max=2.0, help="Sampling temperature."),
]


def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What the code should do.")],
    language: Language = "python",
    context: Annotated[str | None, typer.Option(help="Code or facts to take into account.")] = None,
    require: Annotated[
        list[str] | None, typer.Option("--require", "-r", help="A requirement; repeatable.")
    ] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    as_json: JsonFlag = False,
) -> None:
    """Generate a complete function or class from a description."""
    request = GenerationRequest(
        prompt=prompt,
        language=language,
        context=context,
        requirements=tuple(require or ()),
        max_tokens=max_tokens,
        temperature=temperature,
    )

    async def job(runtime: Runtime) -> GenerationResult:
        return await runtime.generation.generate(request)

    result = run_job(ctx, as_json, job)
    if as_json:
        print_json({**vars(result), "tokens_used": result.tokens_used})
        return
    console.print(Syntax(result.code, result.language, line_numbers=False, word_wrap=True))
    syntax = {
        True: "[green]valid[/]",
        False: f"[red]invalid[/] ({result.syntax.error})",
        None: "not checked",
    }[result.syntax.valid]
    console.print(
        f"[dim]confidence {result.confidence:.3f} · syntax {syntax} · "
        f"{result.prompt_tokens}+{result.completion_tokens} tokens · "
        f"{result.elapsed_ms / 1000:.1f} s[/]"
    )


def chat(
    ctx: typer.Context,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Send one message and exit.")
    ] = None,
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Id of a conversation to go on with.")
    ] = None,
    language: Annotated[str | None, typer.Option("--language", "-l")] = None,
    context: Annotated[str | None, typer.Option(help="Context for the conversation.")] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    as_json: JsonFlag = False,
) -> None:
    """Talk about code; the conversation is kept and can be resumed with --conversation."""

    def request(text: str, conversation_id: str | None) -> ChatRequest:
        return ChatRequest(
            message=text,
            conversation_id=conversation_id,
            language=language,
            context=context,
            max_tokens=max_tokens,
            temperature=temperature,
        )

    if message is not None:

        async def one_turn(runtime: Runtime) -> ChatResult:
            return await runtime.chat.chat(request(message, conversation))

        result = run_job(ctx, as_json, one_turn)
        if as_json:
            print_json({**vars(result), "tokens_used": result.tokens_used})
        else:
            _show_answer(result)
        return

    async def interactive(runtime: Runtime) -> None:
        conversation_id = conversation
        if not as_json:
            console.print("[dim]codey chat: an empty line or Ctrl-D ends the conversation.[/]")
        while True:
            try:
                # The prompt goes to stderr, so that --json leaves stdout to the answers.
                text = Prompt.ask(
                    "[bold cyan]you[/]", console=errors, default="", show_default=False
                )
            except EOFError:
                break
            if not text.strip():
                break
            result = await runtime.chat.chat(request(text, conversation_id))
            conversation_id = result.conversation_id
            if as_json:  # one JSON object per turn
                print_json({**vars(result), "tokens_used": result.tokens_used})
            else:
                _show_answer(result)
        if conversation_id and not as_json:
            console.print(f"[dim]resume with: codey chat --conversation {conversation_id}[/]")

    run_job(ctx, as_json, interactive)


def _show_answer(result: ChatResult) -> None:
    console.print(Markdown(result.response))
    console.print(
        f"[dim]conversation {result.conversation_id} · confidence {result.confidence:.3f} · "
        f"{result.history_messages} earlier messages sent · "
        f"{result.elapsed_ms / 1000:.1f} s[/]"
    )


def complete(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="Source file; the cursor is --line/--column.")
    ] = None,
    line: Annotated[int | None, typer.Option(min=1, help="Cursor line, 1-based.")] = None,
    column: Annotated[int | None, typer.Option(min=1, help="Cursor column, 1-based.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Code before the cursor.")] = None,
    suffix: Annotated[str, typer.Option(help="Code after the cursor.")] = "",
    language: Annotated[str | None, typer.Option("--language", "-l")] = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=MAX_COMPLETIONS, help="Most suggestions.")
    ] = 3,
    max_tokens: MaxTokens = None,
    with_files: Annotated[
        list[Path] | None,
        typer.Option("--with", help="Another file to show the model; repeatable, first nearest."),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="The project FILE is in (default: the nearest folder with .git, "
            "pyproject.toml, package.json, ...)."
        ),
    ] = None,
    neighbours_: Annotated[
        bool,
        typer.Option(
            "--neighbours/--no-neighbours",
            help="Also show the files FILE imports and the project's latest changes.",
        ),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Suggest code at a cursor: in FILE at --line/--column, or between --prefix and --suffix;
    other files of the project go to the model too, within `completion.context_tokens`."""
    files: tuple[SourceFile, ...] = ()
    path = repo = ""
    try:
        if file is not None:
            prefix, suffix = split_at_cursor(file, line, column)
            language = language or _language_of(file)
            project = (root or project_root(file)).resolve()
            chosen = with_files or []
            for extra in chosen:
                if not extra.is_file():
                    raise InvalidRequest(f"--with {extra}: no such file.")
            files = tuple(neighbours(file, project, chosen, related=neighbours_))
            path, repo = relative(file.resolve(), project), project.name
        elif prefix is None:
            raise InvalidRequest(
                "Nothing to complete.", hint="Give FILE --line N --column M, or --prefix TEXT."
            )
    except InvalidRequest as exc:
        raise fail(exc, as_json) from exc
    request = CompletionRequest(
        prefix=prefix,
        suffix=suffix,
        language=language or "python",
        max_completions=count,
        max_tokens=max_tokens,
        files=files,
        path=path,
        repo=repo,
    )

    async def job(runtime: Runtime) -> CompletionResult:
        return await runtime.completion.complete(request)

    result = run_job(ctx, as_json, job)
    if as_json:
        print_json({**vars(result), "tokens_used": result.tokens_used})
        return
    table = Table("#", "confidence", "kind", "completion", title="Suggestions")
    for rank, suggestion in enumerate(result.suggestions, start=1):
        table.add_row(
            str(rank),
            f"{suggestion.confidence:.3f}",
            suggestion.kind,
            Syntax(suggestion.completion, request.language),
        )
    console.print(table if result.suggestions else "[yellow]no suggestion[/]")


_EXTENSIONS = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".sh": "bash",
    ".rb": "ruby",
    ".kt": "kotlin",
    ".cs": "csharp",
    ".php": "php",
    ".swift": "swift",
}


def _language_of(file: Path) -> str | None:
    return _EXTENSIONS.get(file.suffix.lower())


def split_at_cursor(file: Path, line: int | None, column: int | None) -> tuple[str, str]:
    """Prefix and suffix of FILE around a 1-based (line, column) cursor."""
    if line is None or column is None:
        raise InvalidRequest("A file needs a cursor.", hint="Add --line N --column M (1-based).")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Cannot read {file}: {exc}") from exc
    lines = text.split("\n")
    if line > len(lines):
        raise InvalidRequest(f"{file} has {len(lines)} lines; line {line} is past its end.")
    if column > len(lines[line - 1]) + 1:
        raise InvalidRequest(
            f"Line {line} of {file} has {len(lines[line - 1])} characters; "
            f"column {column} is past its end (the last cursor column is "
            f"{len(lines[line - 1]) + 1})."
        )
    offset = sum(len(x) + 1 for x in lines[: line - 1]) + column - 1
    return text[:offset], text[offset:]
