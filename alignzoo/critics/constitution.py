"""Constitutions: named lists of principles, written as config (``conf/critic/constitution/<name>.yaml``).

A critic's config composes one with ``critic/constitution=<name>`` (default: ``sentiment``). Each principle has
the ``text`` an LM judge reads, the ``critique`` and ``revision`` requests of the critique-revision stage, and for
rule critics the registered reward (``scorer``) it maps to, with a ``weight`` for averaging.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from alignzoo.errors import AlignzooError

CONSTITUTION_DIR = Path(__file__).resolve().parent.parent / "conf" / "critic" / "constitution"
PRINCIPLE_KEYS = ("name", "text", "critique", "revision", "scorer", "weight")


@dataclass(frozen=True)
class Principle:
    name: str
    text: str  # the question an LM judge answers with (A) or (B)
    critique: str = ""  # the critique request (SL-CAI)
    revision: str = ""  # the revision request (SL-CAI)
    scorer: Optional[str] = None  # a registered reward name for rule critics (higher is better)
    weight: float = 1.0  # share of this principle when principles are averaged


@dataclass(frozen=True)
class Constitution:
    name: str
    principles: tuple[Principle, ...]
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "principles": [asdict(p) for p in self.principles]}


def known_constitutions() -> list[str]:
    return sorted(p.stem for p in CONSTITUTION_DIR.glob("*.yaml"))


def parse_constitution(node: Any, where: str = "critic.constitution") -> Constitution:
    """A constitution from a composed config node (a mapping); every problem is reported at once."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, str):
        return load_constitution(node)
    if not isinstance(node, dict):
        raise AlignzooError(f"{where} is not set; pick one with critic/constitution=<name> "
                            f"(known: {', '.join(known_constitutions())})")
    problems = []
    name = node.get("name") or "?"
    principles = node.get("principles") or []
    if not isinstance(principles, list) or not principles:
        problems.append(f"{where}.principles must be a non-empty list of principles")
        principles = []
    out = []
    for i, p in enumerate(principles):
        key = f"{where}.principles[{i}]"
        if not isinstance(p, dict):
            problems.append(f"{key} must be a mapping with keys {', '.join(PRINCIPLE_KEYS)}")
            continue
        unknown = sorted(set(p) - set(PRINCIPLE_KEYS))
        if unknown:
            problems.append(f"{key} has unknown keys {unknown}; principles take {', '.join(PRINCIPLE_KEYS)}")
        if not p.get("text"):
            problems.append(f"{key}.text is required: the question an LM judge answers")
        weight = p.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight <= 0:
            problems.append(f"{key}.weight must be a number > 0 (got {weight!r})")
            weight = 1.0
        if not problems:
            out.append(Principle(str(p.get("name") or f"principle_{i}"), str(p["text"]), str(p.get("critique") or ""),
                                 str(p.get("revision") or ""), p.get("scorer"), float(weight)))
    if problems:
        raise AlignzooError(f"constitution {name!r}: " + "; ".join(problems))
    return Constitution(str(name), tuple(out), str(node.get("description") or ""))


def load_constitution(name_or_path: str) -> Constitution:
    """A packaged constitution by name (``sentiment``, ``hh``) or a YAML file by path."""
    import yaml

    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = CONSTITUTION_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise AlignzooError(f"unknown constitution {name_or_path!r}: known constitutions are "
                            f"{', '.join(known_constitutions())} (or give the path of a YAML file)")
    try:
        node = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AlignzooError(f"constitution file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_constitution(node, where=str(path))
