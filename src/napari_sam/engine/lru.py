"""``LRU``: the engine's one small cache of recently used things (models, decoder inputs, tiles).

A leaf: imports nothing of the package.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_MISSING: Any = object()


class LRU(Generic[K, V]):
    """At most ``size`` items; the least recently used (read or written) goes first. Thread-safe.

    Parameters
    ----------
    size
        Items kept (0 keeps none).
    weak_keys
        Hold the keys weakly: an item goes when its key is no longer used elsewhere (keys must allow
        weak references; for derived data about an object that must not keep the object alive).

    Examples
    --------
    >>> recent = LRU(2)
    >>> recent.put("a", 1); recent.put("b", 2); recent.get("a"); recent.put("c", 3)
    1
    >>> sorted(recent.keys())  # "b" was the least recently used
    ['a', 'c']
    """

    def __init__(self, size: int, *, weak_keys: bool = False) -> None:
        self.size = max(0, int(size))
        self._items: MutableMapping[K, V] = weakref.WeakKeyDictionary() if weak_keys else {}
        self._lock = threading.Lock()

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: Any = None) -> Any:
        """The item of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            if key not in self._items:
                return default
            value = self._items.pop(key)
            self._items[key] = value
            return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` as the most recently used; drop the oldest beyond ``size``."""
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = value
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The item of ``key``; when missing, made by ``make()`` (run unlocked) and kept."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = make()
            self.put(key, value)
        return value

    def keys(self) -> list[K]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items.keys())

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
