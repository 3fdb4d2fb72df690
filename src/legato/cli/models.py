"""``legato models list``, ``legato chat`` and ``legato fake-provider``.

``models_app`` is the ``legato models`` group; other modules add commands to it
(``legato models health`` comes from routing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from legato.cli._app import app
from legato.cli._console import new_console, new_table, print_error, read_stdin
from legato.cli._loop import run_loop

__all__ = ["models_app"]

models_app = typer.Typer(name="models", help="Named models of legato.yaml.", no_args_is_help=True)
app.add_typer(models_app, name="models")

CONFIG_OPTION = typer.Option(
    None, "--config", "-c", help="legato.yaml to read (default: $LEGATO_CONFIG or ./legato.yaml)."
)


def _fail(message: str, code: int) -> typer.Exit:
    print_error(message)
    return typer.Exit(code)


@models_app.command("list")
def list_models(
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the models configured in legato.yaml and whether their keys are set."""
    from legato.config import LegatoConfig
    from legato.errors import ConfigError
    from legato.models import configured
    from legato.providers import default_pricing

    try:
        models = configured(LegatoConfig.load(config))
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    table = default_pricing()
    rows: list[dict[str, Any]] = []
    for name, cfg in sorted(models.items()):
        price = cfg.price or table.lookup(cfg.provider, cfg.model)
        missing = cfg.missing_secret()
        rows.append(
            {
                "name": name,
                "provider": cfg.provider,
                "model": cfg.model,
                "base_url": cfg.base_url,
                "key": f"missing ${missing}" if missing else ("set" if cfg.api_key else "-"),
                "price_per_1m": None if price is None else {"input": price.input, "output": price.output},
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no models configured (add a 'models:' section to legato.yaml)")
        return

    out = new_table("name", "provider", "model", "base url", "key", "$/1M in/out")
    for r in rows:
        p = r["price_per_1m"]
        out.add_row(
            r["name"], r["provider"], r["model"], r["base_url"] or "-", r["key"],
            "unknown" if p is None else f"{p['input']:g} / {p['output']:g}",
        )  # fmt: skip
    new_console().print(out)


@app.command("chat")
def chat(
    model: str = typer.Argument(..., help="A model name from legato.yaml, or provider/model."),
    prompt: str = typer.Argument(..., help="The user message ('-' reads standard input)."),
    system: str | None = typer.Option(None, "--system", "-s", help="A system message."),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it arrives."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole response as JSON."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=2.0),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Send one prompt to a model and print the answer (exit 1 if the call fails)."""

    from legato.config import LegatoConfig
    from legato.errors import ConfigError, ModelError
    from legato.providers import ChatRequest, Message

    text = read_stdin() if prompt == "-" else prompt
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=text))
    request = ChatRequest(messages=messages, max_tokens=max_tokens, temperature=temperature)
    try:
        import legato.models

        target = legato.models.get(model, LegatoConfig.load(config))
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    try:
        run_loop(_chat, target, request, stream, as_json)
    except ModelError as exc:
        raise _fail(f"{type(exc).__name__}: {exc}", 1) from None


async def _chat(model: Any, request: Any, stream: bool, as_json: bool) -> None:
    from legato.providers import StreamAssembler

    try:
        if not stream:
            response = await model.chat(request)
            typer.echo(response.model_dump_json(indent=2) if as_json else response.text)
            return
        assembler = StreamAssembler()
        async for chunk in model.stream(request):
            assembler.add(chunk)
            if as_json:
                typer.echo(chunk.model_dump_json(exclude_none=True))
            elif chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
        if not as_json:
            for call in assembler.tool_calls:
                sys.stdout.write(f"\n[tool call] {call.name}({call.arguments})")
            sys.stdout.write("\n")
    finally:
        await model.aclose()


@app.command("fake-provider")
def fake_provider(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(9100, "--port", "-p", min=0, max=65535, help="Port (0 picks a free one)."),
    script: Path | None = typer.Option(None, "--script", help="YAML/JSON script: replies, faults, latency, seed."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for latency and probabilistic faults."),
) -> None:
    """Serve the fake OpenAI / Anthropic / TGI / Hugging Face API for tests and benchmarks."""
    import asyncio

    from legato.errors import ConfigError
    from legato.testing import FakeProvider, load_script
    from legato.testing._server import serve_forever

    try:
        fake = FakeProvider.from_script(load_script(script), host=host, port=port, max_records=1000) if script else None
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    if fake is None:
        fake = FakeProvider(host=host, port=port, seed=seed, max_records=1000)
    elif seed is not None:
        raise _fail("give the seed in the script file or with --seed, not both", 2)

    def ready(f: FakeProvider) -> None:
        typer.echo(f"fake provider listening on {f.base_url}", err=True)
        typer.echo(f"  OpenAI:    {f.openai_base_url}", err=True)
        typer.echo(f"  Anthropic: {f.anthropic_base_url}", err=True)
        typer.echo(f"  TGI:       {f.base_url}/generate  HF: {f.hf_base_url}", err=True)

    loop_factory: Any = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve_forever(fake, ready))
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc}", 1) from None
    typer.echo("stopped", err=True)
