"""Every public item has a docstring (issue 4): each name in
``chronica.__all__`` that is not a constant, and every attribute its class
defines, public ones and the special methods a host calls (``__init__``,
``__new__``, ``__enter__``, ``__exit__``, ``__call__``)."""

import inspect

import chronica

SPECIAL = {"__init__", "__new__", "__enter__", "__exit__", "__call__"}


def undocumented():
    missing = []
    for name in chronica.__all__:
        obj = getattr(chronica, name)
        if isinstance(obj, (str, int)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr not in SPECIAL:
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if not getattr(value, "__doc__", None):
                missing.append(f"{name}.{attr}")
    return missing


def test_every_public_item_has_a_docstring():
    assert undocumented() == []
