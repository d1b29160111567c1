"""Registry behaviour: duplicates, aliases, errors, defaults."""

from __future__ import annotations

import pytest

from alray.acquisition import available, create
from alray.acquisition.registry import Registry


def test_register_create_and_defaults():
    reg = Registry("thing")

    @reg.register("a")
    class A:
        def __init__(self, x=1, y=2):
            self.x, self.y = x, y

    reg.register("b", A, x=10)
    assert reg.create("a").x == 1
    assert reg.create("b").x == 10 and reg.create("b", x=None).x == 10  # None keeps defaults
    assert reg.create("b", x=3).x == 3
    reg.alias("c", "b")
    assert reg.resolve("c") == "b" and "c" in reg
    assert reg.names() == ["a", "b", "c"] and reg.names(aliases=False) == ["a", "b"]
    assert reg.names("b*") == ["b"]


def test_duplicates_and_unknowns_raise():
    reg = Registry("thing")
    reg.register("a", dict)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", dict)
    reg.alias("z", "a")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("z", dict)
    with pytest.raises(ValueError, match="already registered"):
        reg.alias("a", "a")
    with pytest.raises(ValueError, match="unknown thing 'q'"):
        reg.alias("y", "q")
    with pytest.raises(ValueError, match="Valid names: a, z"):
        reg.create("b")
    with pytest.raises(ValueError, match="string"):
        reg.resolve(3)


def test_strategy_registry_surface():
    names = available()
    assert names == sorted(names)
    assert available("topk:*") == [n for n in names if n.startswith("topk:")]
    assert type(create("bald")).__name__ == "TopKSelector"
    assert create("powerbald").kind == "power" and create("powerbald", beta=2.0).beta == 2.0
    with pytest.raises(ValueError, match="beta=-1"):
        create("powerbald", beta=-1.0)
