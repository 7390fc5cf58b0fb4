from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .options import DebugOpt, JsonOpt
from .render import emit_json, out


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(path: Annotated[Path, typer.Argument(help="Model or artifact.")], json: JsonOpt = False,
                debug: DebugOpt = False) -> int:
        """Format, inputs/outputs with dynamic dims, opset, op histogram, parameters, dictionary, metadata."""
        from ..describe import describe

        d = describe(path)
        if json:
            emit_json(d)
            return 0
        out.print(f"[bold]{d['path']}[/]  format [cyan]{d['format']}[/]  family [cyan]{d.get('family', '-')}[/]")
        for key in ("opset", "producer", "model_type", "parameters", "dictionary_size"):
            if d.get(key) not in (None, ""):
                out.print(f"  {key}: {d[key]:,}" if isinstance(d[key], int) else f"  {key}: {d[key]}")
        t = Table("io", "name", "shape", "dtype", title_justify="left")
        for kind in ("inputs", "outputs"):
            for s in d.get(kind, []):
                t.add_row(kind[:-1], escape(s["name"]), escape("[" + ", ".join(str(x) for x in s["shape"]) + "]"), s["dtype"])
        out.print(t)
        if d.get("ops"):
            out.print("  ops: " + ", ".join(f"{k}×{v}" for k, v in d["ops"].items()))
        for k, v in (d.get("metadata") or {}).items():
            out.print(f"  metadata {k}: {v}")
        if d.get("manifest"):
            out.print(f"  manifest: {d['manifest']}")
        return 0
