"""Name -> factory registries for models, datasets and metrics.

Built-in plugins and third-party packages register the same way: a class decorated with
``register_model("name")`` (or the dataset / metric twin) *and* declared under the entry-point
group ``mmbench.models`` (``mmbench.datasets``, ``mmbench.metrics``) of their distribution.
The harness never imports a plugin by module path; it loads entry points on first lookup.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from mmbench.errors import MMBenchError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    source: str  # module that defined it, or the distribution that declared it

    @property
    def description(self) -> str:
        """First line of the object's docstring."""
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else "(no description)"


class Registry:
    """A name -> object mapping filled by a decorator and by entry points of ``group``."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            self._add(name, obj, f"{obj.__module__}")
            obj.registry_name = name
            return obj

        return decorator

    def _add(self, name: str, obj: Any, source: str) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise MMBenchError(f"invalid {self.kind} name {name!r}: use letters, digits, '_' and '-'")
        old = self._entries.get(name)
        if old is not None and _same(old.obj, obj):
            return
        if old is not None:
            raise MMBenchError(
                f"two plugins claim the {self.kind} name {name!r}: "
                f"{_qualname(old.obj)} (from {old.source}) and {_qualname(obj)} (from {source}); "
                f"uninstall one or rename it"
            )
        self._entries[name] = Entry(name, obj, source)

    def discover(self) -> None:
        """Load every entry point of this registry's group (once)."""
        if self._discovered:
            return
        self._discovered = True
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others
                raise MMBenchError(
                    f"{self.kind} plugin {ep.name!r} declared by {dist} failed to import "
                    f"({ep.value}): {type(exc).__name__}: {exc}"
                ) from exc
            self._add(ep.name, obj, dist)

    def get(self, name: str) -> Any:
        self.discover()
        if not isinstance(name, str) or name not in self._entries:  # a name from a file may be any value
            known = ", ".join(sorted(self._entries)) or "none"
            raise MMBenchError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {known}" + did_you_mean(name, self._entries)
            )
        return self._entries[name].obj

    def entries(self) -> list[Entry]:
        self.discover()
        return [self._entries[k] for k in sorted(self._entries)]

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _same(a: Any, b: Any) -> bool:
    # A module imported twice (e.g. via entry point and directly) defines equal-named objects.
    return a is b or _qualname(a) == _qualname(b)


MODELS = Registry("model", "mmbench.models")
DATASETS = Registry("dataset", "mmbench.datasets")
METRICS = Registry("metric", "mmbench.metrics")
# Priors over z fitted after training (fit(latents), sample(n), save, load): e.g. Diff-MVAE's score prior.
PRIORS = Registry("prior", "mmbench.priors")

register_model = MODELS.register
register_dataset = DATASETS.register
register_metric = METRICS.register
register_prior = PRIORS.register
