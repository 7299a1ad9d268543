"""Template groups, read from the data files `templates/<class>.toml` (one file per class).

A group is one subcategory of one class: prompt templates (`str.format` patterns over the keys of
its slot fillers), the fillers, and reply templates. Each template gets a stable id
(``label.subcategory.index``) so whole templates can be held out. Files are read in `CLASSES`
order and groups in file order: the generator's random draws follow that order, so it is part of
the data. `docs/categories.md` tells how to add a template.
"""

from __future__ import annotations

import string
import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from core.categories import CLASSES

TEMPLATES_PACKAGE = "workers.training"
TEMPLATES_DIR = "templates"
GROUP_KEYS = frozenset({"subcategory", "prompts", "fillers", "replies"})


class TemplateError(ValueError):
    """A template file that does not describe valid template groups."""


@dataclass(frozen=True)
class TemplateGroup:
    """Prompt templates of one subcategory with their slot fillers and reply templates."""

    label: str
    subcategory: str
    prompts: tuple[str, ...]
    fillers: tuple[dict[str, str], ...]
    replies: tuple[str, ...]


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise TemplateError(f"{where} must be a non-empty list of strings")
    return tuple(value)


def _fillers(value: object, where: str) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise TemplateError(f"{where} must be a non-empty list of tables")
    rows: list[dict[str, str]] = []
    for i, row in enumerate(value):
        if not isinstance(row, dict) or not all(isinstance(v, str) for v in row.values()):
            raise TemplateError(f'{where}[{i}] must be a table of slot = "text"')
        if rows and row.keys() != rows[0].keys():
            raise TemplateError(f"{where}[{i}] has slots {sorted(row)}, expected {sorted(rows[0])}")
        rows.append(dict(row))
    return tuple(rows)


def _slots(pattern: str, where: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(pattern) if field is not None}
    except ValueError as exc:
        raise TemplateError(f"{where}: {pattern!r}: {exc}") from None


def parse_groups(label: str, data: dict[str, object], source: str) -> tuple[TemplateGroup, ...]:
    """The groups of one parsed file; every error names the file and the group."""
    if set(data) != {"group"} or not isinstance(data["group"], list):
        raise TemplateError(f"{source}: expected only [[group]] tables, got keys {sorted(data)}")
    groups: list[TemplateGroup] = []
    for n, raw in enumerate(data["group"]):
        where = f"{source}: group {n}"
        if not isinstance(raw, dict) or set(raw) != GROUP_KEYS:
            keys = sorted(raw) if isinstance(raw, dict) else raw
            raise TemplateError(f"{where}: needs exactly {sorted(GROUP_KEYS)}, got {keys}")
        sub = raw["subcategory"]
        if not isinstance(sub, str) or not sub.isidentifier():
            raise TemplateError(f"{where}: subcategory must be an identifier, got {sub!r}")
        where = f"{source}: {sub}"
        if any(g.subcategory == sub for g in groups):
            raise TemplateError(f"{where}: subcategory defined twice")
        group = TemplateGroup(
            label=label,
            subcategory=sub,
            prompts=_strings(raw["prompts"], f"{where}.prompts"),
            fillers=_fillers(raw["fillers"], f"{where}.fillers"),
            replies=_strings(raw["replies"], f"{where}.replies"),
        )
        slots = set(group.fillers[0])
        for pattern in group.prompts + group.replies:
            unknown = _slots(pattern, where) - slots
            if unknown:
                raise TemplateError(
                    f"{where}: {pattern!r} uses {sorted(unknown)}, not a filler slot"
                )
        groups.append(group)
    return tuple(groups)


def load_template_groups(directory: Traversable | None = None) -> tuple[TemplateGroup, ...]:
    """Every class's groups, in `CLASSES` order, from `<directory>/<class>.toml`.

    The default directory is the package's own (found through `importlib.resources`, so an
    installed wheel reads its package data).
    """
    root = directory or resources.files(TEMPLATES_PACKAGE) / TEMPLATES_DIR
    groups: list[TemplateGroup] = []
    for label in CLASSES:
        file = root / f"{label}.toml"
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TemplateError(f"no template file {label}.toml in {root}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{label}.toml: {exc}") from None
        groups.extend(parse_groups(label, data, f"{label}.toml"))
    return tuple(groups)


def combinations(group: TemplateGroup) -> list[str]:
    """Every distinct prompt the group can make: each template with each filler, in file order."""
    filled = (prompt.format(**filler) for prompt in group.prompts for filler in group.fillers)
    return list(dict.fromkeys(filled))


def main(argv: list[str] | None = None) -> int:
    """`python -m workers.training.template_groups [CLASS[.SUBCATEGORY] ...]`: print every
    combination, to read them before committing a template (each must be of its class)."""
    wanted = sys.argv[1:] if argv is None else argv
    for group in load_template_groups():
        name = f"{group.label}.{group.subcategory}"
        if wanted and name not in wanted and group.label not in wanted:
            continue
        for prompt in combinations(group):
            print(f"{name}\t{prompt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
