from __future__ import annotations

import typer
from rich.table import Table

from .options import DebugOpt, JsonOpt
from .render import emit_json, out


def register(app: typer.Typer) -> None:
    @app.command("routes")
    def routes(json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Every converter (built-in and plugin), and whether it is available or broken."""
        from ..pipeline import available_converters as converters, broken_plugins

        specs = converters()
        rows = [{"source": s.key.source, "target": s.key.target, "name": s.key.name, "available": s.available,
                 "missing": s.missing, "options": sorted(s.options_type.field_names()), "description": s.description}
                for s in specs]
        broken = broken_plugins()
        if json:
            emit_json({"converters": rows, "broken_plugins": broken})
            return 0
        t = Table("source", "target", "name", "status", "options", "description")
        for r in rows:
            status = "[green]available[/]" if r["available"] else f"[yellow]unavailable[/]: missing {', '.join(r['missing'])}"
            t.add_row(r["source"], r["target"], r["name"], status, ", ".join(r["options"]) or "-", r["description"])
        out.print(t)
        for name, why in broken.items():
            out.print(f"[red]broken plugin[/] {name}: {why}")
        return 0

    @app.command("plugins")
    def plugins(json: JsonOpt = False, debug: DebugOpt = False) -> int:
        """Third-party converter plugins (entry-point group ocrconvert.converters)."""
        from ..pipeline import available_converters as converters, broken_plugins

        loaded = [{"name": s.key.name, "source": s.key.source, "target": s.key.target, "module": s.cls.__module__}
                  for s in converters() if not s.cls.__module__.startswith("ocrconvert.")]
        broken = broken_plugins()
        if json:
            emit_json({"loaded": loaded, "broken": broken})
            return 0
        for p in loaded:
            out.print(f"[green]ok[/] {p['name']} ({p['source']} -> {p['target']}) from {p['module']}")
        for name, why in broken.items():
            out.print(f"[red]broken[/] {name}: {why}")
        if not loaded and not broken:
            out.print("no plugins installed")
        return 0
