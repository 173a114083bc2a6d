"""``kmh templates [NAME]``: the template catalogue, with every parameter's kind, default and meaning."""

from __future__ import annotations

from plumbum import cli

from harness.commands.common import format_table
from harness.templates import Template, catalogue, get_template
from harness.templates.params import Param

#: Parameters every template takes; listed once instead of under each template.
_COMMON = ("author", "description", "license")


def _param_rows(params: list[Param]) -> list[tuple[str, str, str, str]]:
    return [(f"  {p.name}", p.describe(), p.show_default(), p.help) for p in params]


def _describe(template: Template, *, common: bool) -> str:
    title = f"{template.name}: {template.summary}"
    if template.defect:
        title += f"\n  defect: {template.defect}"
    params = [p for p in template.params if common or p.name not in _COMMON]
    if not params:
        return title
    return title + "\n" + format_table(_param_rows(params))


class TemplatesCommand(cli.Application):
    """List the module templates and their parameters (kmh new TEMPLATE NAME -p key=value)."""

    def main(self, name: str = "") -> int:
        if name:
            print(_describe(get_template(name), common=True))
            return 0
        templates = [t for t in catalogue() if not t.is_preset]
        presets = [t for t in catalogue() if t.is_preset]
        print("Every template takes:")
        common = [row for row in _param_rows([p for p in templates[0].params if p.name in _COMMON])]
        common = [(n, k, "(per template)" if n.strip() == "description" else d, h) for n, k, d, h in common]
        print(format_table(common))
        print()
        print("\n\n".join(_describe(t, common=False) for t in templates))
        print()
        print("Bad variants (presets: a template with other defaults, for lifecycle tests):")
        print(format_table([(f"  {t.name}", t.summary, t.defect) for t in presets]))
        print()
        print("Render one with: kmh new TEMPLATE NAME [-p key=value]... [-o DIR]")
        return 0
